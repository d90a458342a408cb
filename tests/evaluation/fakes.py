"""Stand-in models whose answers are known, for checking extraction and aggregation exactly."""
import types

import numpy as np


class AnswerKeyModel:
    """A Llama-layout model on NumPy (`model` is the decoder, `logits` the head) that answers each question from an
    answer key: {question text: the answer as written after its cue, e.g. "Answer: B"}; the answer's token is the
    last one the tokenizer gives for that text. It finds the question by reading the prompt, so it answers the
    right question whatever the batch order or padding."""

    def __init__(self, tokenizer, answer_key, seq_length=512, vocab_size=2000):
        self.config = types.SimpleNamespace(seq_length=seq_length, pad_token_id=0)
        self.tokenizer, self.answer_key, self.vocab_size = tokenizer, answer_key, vocab_size
        self.token_of = {answer: tokenizer.encode(answer, add_special_tokens=False)[-1]
                         for answer in set(answer_key.values())}

    def model(self, input_ids, attention_mask):
        """'Hidden states': the token id of the answer, in every column."""
        hidden = np.zeros(input_ids.shape + (1,), np.float32)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            text = self.tokenizer.decode(ids[mask == 1].tolist())
            question = max(self.answer_key, key=text.rfind)  # the last question of the prompt is the one asked
            assert text.rfind(question) >= 0, text
            hidden[row, :, 0] = self.token_of[self.answer_key[question]]
        return hidden

    def logits(self, hidden):
        out = np.zeros(hidden.shape[:2] + (self.vocab_size,), np.float32)
        np.put_along_axis(out, hidden.astype(np.int64), 10.0, axis=2)
        return out


class ScriptedGenerator:
    """generate() that continues each prompt with the text scripted for the question it ends with:
    {question text: continuation}."""

    def __init__(self, tokenizer, script, seq_length=512):
        self.config = types.SimpleNamespace(seq_length=seq_length, pad_token_id=0)
        self.tokenizer, self.script = tokenizer, script
        self.calls = []

    def generate(self, rows, max_new_tokens=None, tokenizer=None, stop_strings=None, **options):
        self.calls.append(dict(batch=len(rows), max_new_tokens=max_new_tokens, stop_strings=stop_strings, **options))
        outputs = []
        for row in rows:
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            question = max(self.script, key=text.rfind)
            assert text.rfind(question) >= 0, text
            outputs.append(list(row) + self.tokenizer.encode(self.script[question], add_special_tokens=False))
        return outputs
