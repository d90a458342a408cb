"""Generated answers for the metrics that score text (EmF1Metric): each row of squad_data_process.py --mode eval
holds a prompt in input_ids and the reference answer's ids in labels, both padded at the end with the model's
pad_token_id."""
import numpy as np

from mindformers.tools.errors import ConfigError
from mindformers.trainer.predict import continuation

DEFAULT_MAX_NEW_TOKENS = 20  # SQuAD answers are a few words; MindFormers' SQuAD recipe generates 20 tokens


def without_padding(ids, model_config):
    """The ids before the trailing padding, ignore ids dropped."""
    ids = np.asarray(ids)
    kept = np.flatnonzero(ids != model_config.pad_token_id)
    ids = ids[:kept[-1] + 1] if kept.size else ids[:0]
    return [int(i) for i in ids if i != model_config.ignore_token_id]


def prompt_and_answer(input_ids, labels, row, model_config, where):
    """(prompt ids, reference answer ids) of one row; a row the model cannot answer is a one-line error."""
    prompt, answer = without_padding(input_ids, model_config), without_padding(labels, model_config)
    if not prompt or not answer:
        raise ConfigError(f"{where}: row {row} holds no {'prompt' if not prompt else 'reference answer'} (all "
                          f"padding id {model_config.pad_token_id}); expected squad_data_process.py --mode eval rows")
    if len(prompt) >= model_config.seq_length:
        raise ConfigError(f"{where}: row {row}: a prompt of {len(prompt)} tokens leaves no room to generate within "
                          f"model.model_config.seq_length {model_config.seq_length} (squad_data_process.py "
                          "--max_length sets the longest prompt)")
    return prompt, answer


def check_answer_rows(dataset, model_config, where):
    """Every row checked before the model is built, so a bad row stops the run at once rather than hours in."""
    row = 0
    for batch in dataset:
        for input_ids, labels in zip(batch["input_ids"], batch["labels"]):
            prompt_and_answer(input_ids, labels, row, model_config, where)
            row += 1


class AnswerGenerator:
    """Continues each row's prompt with model.generate (max_new_tokens: the run's max_new_tokens, else the
    model config's, else 20) and decodes the new tokens and the reference answer."""

    def __init__(self, network, tokenizer, model_config, config, where):
        self.network = network
        self.tokenizer = tokenizer
        self.model_config = model_config
        self.where = where  # the key naming the rows, for error messages
        self.max_new_tokens = (config.get("max_new_tokens") or getattr(model_config, "max_new_tokens", None)
                               or DEFAULT_MAX_NEW_TOKENS)

    def answer(self, batch, real_rows, first_row):
        """(predictions, golds) of the batch's first `real_rows` rows; the rows after them are filler copies,
        generated only to keep the batch shape. first_row numbers the rows in error messages."""
        pairs = [prompt_and_answer(ids, labels, first_row + r, self.model_config, self.where)
                 for r, (ids, labels) in enumerate(zip(batch["input_ids"][:real_rows], batch["labels"][:real_rows]))]
        prompts = [prompt for prompt, _ in pairs]
        prompts += [prompts[-1]] * (len(batch["input_ids"]) - real_rows)
        outputs = self.network.generate(prompts, tokenizer=self.tokenizer, max_new_tokens=self.max_new_tokens)
        predictions = [continuation(self.tokenizer, prompt, output)
                       for prompt, output in zip(prompts[:real_rows], outputs)]
        golds = [self.tokenizer.decode(answer, skip_special_tokens=True) for _, answer in pairs]
        return predictions, golds
