"""LlamaProcessor: text in, the model's input_ids out (what `processor:` in a Llama config builds)."""
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister, build_from_config


@MindFormerRegister.register(MindFormerModuleType.PROCESSOR)
class LlamaProcessor:
    """Tokenizes text to fixed-length ids; `tokenizer` is a tokenizer or its config mapping."""

    def __init__(self, tokenizer=None, max_length=128, padding="max_length", return_tensors="ms", **kwargs):
        if isinstance(tokenizer, dict):  # a YAML section such as processor.tokenizer
            tokenizer = build_from_config(tokenizer, MindFormerModuleType.TOKENIZER, where="processor.tokenizer")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding = padding
        self.return_tensors = return_tensors

    def __call__(self, text_input=None, max_length=None, padding=None, return_tensors=None, **kwargs):
        if self.tokenizer is None:
            raise ValueError("LlamaProcessor has no tokenizer (set processor.tokenizer)")
        return self.tokenizer(text_input, max_length=max_length or self.max_length,
                              padding=self.padding if padding is None else padding, truncation=True,
                              return_tensors=return_tensors or self.return_tensors, **kwargs)

    def decode(self, ids, skip_special_tokens=True):
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens=True):
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)
