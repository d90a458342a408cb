"""Few-shot prompts as lm-evaluation-harness lays them out, and fitting their tokens into the model's context."""
import dataclasses

from mindformers.tools.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    """header (lm-eval's task description) + shots (each a worked example with its separator) + query."""

    query: str
    header: str = ""
    shots: tuple = ()

    def text(self):
        return self.header + "".join(self.shots) + self.query


def context_budget(model, max_new_tokens):
    """Prompt tokens a generation row may use: the model's seq_length less the room for max_new_tokens."""
    seq_length = model_seq_length(model)
    budget = seq_length - max_new_tokens
    if budget < 2:
        raise ConfigError(f"max_new_tokens: {max_new_tokens} leaves no room for a prompt in seq_length {seq_length} "
                          f"(model.model_config.seq_length); expected max_new_tokens <= {seq_length - 2}")
    return budget


def model_seq_length(model):
    seq_length = getattr(getattr(model, "config", None), "seq_length", None)
    if not isinstance(seq_length, int):
        raise ConfigError("model.model_config.seq_length: benchmark evaluation needs the model's context length")
    return seq_length


def keep_last(ids, budget):
    """The last `budget` tokens, as lm-eval truncates a context that is too long (from the left, whatever is
    there: a shot, the bos token, the start of the question). Returns (ids, whether anything was cut)."""
    if len(ids) <= budget:
        return ids, False
    return ids[len(ids) - budget:], True
