"""TextGenerationPipeline: text in, text out, through the tokenizer and model.generate."""
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.PIPELINE, alias="text_generation")
class TextGenerationPipeline:
    """`pipe("prompt")` or `pipe([...])` -> [{"text_generation_text": [prompt + continuation]}] per prompt
    (MindFormers' output shape). Keyword arguments are generate options, given at creation or per call."""

    def __init__(self, model, tokenizer, batch_size=None, **generate_options):
        if tokenizer is None:
            raise ConfigError("pipeline text_generation: tokenizer: expected a tokenizer")
        if isinstance(model, str):
            from mindformers.models.auto import AutoModelForCausalLM  # pylint: disable=import-outside-toplevel
            model = AutoModelForCausalLM.from_pretrained(model)
        if not hasattr(model, "generate"):
            raise ConfigError(f"pipeline text_generation: model: expected a causal LM or a path, got "
                              f"{type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size or 1
        self.generate_options = generate_options

    def __call__(self, inputs, **generate_options):
        prompts = [inputs] if isinstance(inputs, str) else list(inputs)
        options = {**self.generate_options, **generate_options}
        results = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            ids = [self.tokenizer.encode(prompt) for prompt in batch]
            for output in self.model.generate(ids, tokenizer=self.tokenizer, **options):
                text = self.tokenizer.decode(output, skip_special_tokens=True)
                results.append({"text_generation_text": [text]})
        return results
