"""Few-shot prompts and fitting them into the model's context."""
import dataclasses

from mindformers.tools.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    """header + shots + query. Shots are dropped from the end when the prompt is too long for the model, as
    MMLU's reference evaluation does."""

    query: str
    header: str = ""
    shots: tuple = ()

    def text(self, num_shots=None):
        count = len(self.shots) if num_shots is None else num_shots
        return self.header + "".join(self.shots[:count]) + self.query


@dataclasses.dataclass(frozen=True)
class FittedPrompt:
    ids: list
    shots: int          # how many shots were kept
    truncated: bool     # even without shots the prompt was too long: only its end was kept


def context_budget(model, max_new_tokens):
    """Prompt tokens a row may use: the model's seq_length less the room for max_new_tokens."""
    seq_length = getattr(getattr(model, "config", None), "seq_length", None)
    if not isinstance(seq_length, int):
        raise ConfigError("model.model_config.seq_length: benchmark evaluation needs the model's context length")
    budget = seq_length - max_new_tokens
    if budget < 2:
        raise ConfigError(f"max_new_tokens: {max_new_tokens} leaves no room for a prompt in seq_length {seq_length} "
                          f"(model.model_config.seq_length); expected max_new_tokens <= {seq_length - 2}")
    return budget


def fit_prompt(tokenizer, prompt, budget):
    """Token ids of `prompt` with as many shots as fit in `budget` tokens. When not even the bare query fits, its
    end is kept (the question's tail and the answer cue), behind the bos token."""
    for shots in range(len(prompt.shots), -1, -1):
        ids = tokenizer.encode(prompt.text(shots))
        if len(ids) <= budget:
            return FittedPrompt(ids, shots, False)
    bos = tokenizer.bos_token_id
    head = ids[:1] if bos is not None and ids and ids[0] == bos else []
    return FittedPrompt(head + ids[len(ids) - (budget - len(head)):], 0, True)

