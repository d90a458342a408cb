"""GenerationMixin: `model.generate(input_ids, **options)` for the causal LMs (greedy, sampling, beam search)."""
import logging

import numpy as np
from mindspore import Tensor

from mindformers.generation.beam_search import BeamSearch
from mindformers.generation.decoding_state import DecodingState
from mindformers.generation.generation_config import GenerationConfig
from mindformers.generation.logits_process import apply_repetition_penalty, log_softmax, next_tokens
from mindformers.generation.transposed_weights import mark_stale, transposed_weights
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")


def prompt_rows(input_ids, attention_mask=None):
    """Prompts as lists of ints: from one list, a list of lists (lengths may differ), or a 2-D array/Tensor whose
    padding `attention_mask` marks with 0 (either side)."""
    if isinstance(input_ids, Tensor):
        input_ids = input_ids.asnumpy()
    if isinstance(attention_mask, Tensor):
        attention_mask = attention_mask.asnumpy()
    if isinstance(input_ids, np.ndarray):
        input_ids = input_ids.tolist()
    if not isinstance(input_ids, (list, tuple)) or not input_ids:
        raise ConfigError("generate: input_ids: expected a non-empty list of token ids, or a batch of them")
    if all(isinstance(i, (int, np.integer)) for i in input_ids):
        input_ids = [input_ids]
    rows = [[int(i) for i in row] for row in input_ids]
    if attention_mask is not None:
        mask = np.asarray(attention_mask).reshape(len(rows), -1)
        rows = [[t for t, keep in zip(row, mask[r]) if keep] for r, row in enumerate(rows)]
    if any(not row for row in rows):
        raise ConfigError("generate: input_ids: every prompt needs at least one token")
    return rows


class GenerationMixin:
    """Adds `generate` to a Llama-layout causal LM with a `config` (its model_config gives the defaults)."""

    def generation_config(self):
        return GenerationConfig.from_model_config(self.config)

    def add_flags(self, **flags):
        """set_train(True) on the model or any wrapper around it lands here: training may change the weights, so
        generation's transposed copies of them are refreshed before they are used again."""
        if flags.get("training"):
            mark_stale(self)
        return super().add_flags(**flags)

    def generate(self, input_ids, attention_mask=None, streamer=None, tokenizer=None, generation_config=None,
                 **options):
        """Continue each prompt; returns one list per prompt: its tokens followed by the generated ones (ending at
        eos or a stop string when they occur). Options are GenerationConfig fields (max_new_tokens, do_sample,
        top_k, top_p, temperature, repetition_penalty, num_beams, eos_token_id, stop_strings, seed, use_past, ...);
        unset ones come from the model config. `stop_strings` needs `tokenizer`; `streamer` gets the tokens of a
        single prompt as they come."""
        config = (generation_config or self.generation_config()).updated(**options)
        rows = prompt_rows(input_ids, attention_mask)
        budgets = self._budgets(rows, config)
        if config.stop_list and tokenizer is None:
            raise ConfigError("generate: stop_strings: pass tokenizer= as well (it turns tokens into text)")
        if streamer is not None and (len(rows) != 1 or config.num_beams > 1):
            raise ConfigError("generate: streamer: expected one prompt and num_beams 1")
        was_training = self.training
        self.set_train(False)
        try:
            with transposed_weights(self, config.transposed_weights):
                if config.num_beams > 1:
                    return self._beam_search(rows, budgets, config, tokenizer)
                return self._decode(rows, budgets, config, tokenizer, streamer)
        finally:
            self.set_train(was_training)

    def _budgets(self, rows, config):
        """New tokens each row may take: max_new_tokens, else up to max_decode_length, and never past seq_length."""
        seq_length = self.config.seq_length
        budgets = []
        for row in rows:
            if len(row) >= seq_length:
                raise ConfigError(f"generate: a prompt of {len(row)} tokens is too long for seq_length {seq_length} "
                                  f"(model.model_config.seq_length); shorten it or raise seq_length")
            wanted = config.max_new_tokens or config.max_decode_length - len(row)
            if wanted < 1:
                raise ConfigError(f"generate: max_decode_length {config.max_decode_length} leaves no room after a "
                                  f"prompt of {len(row)} tokens; raise it or set max_new_tokens")
            budgets.append(min(wanted, seq_length - len(row)))
        if config.max_new_tokens and any(budget < config.max_new_tokens for budget in budgets):
            logger.warning("generate: max_new_tokens %d is cut to %d for the longest prompt (%d tokens): the KV cache "
                           "holds seq_length %d tokens, prompt included", config.max_new_tokens, min(budgets),
                           max(len(row) for row in rows), seq_length)
        return np.array(budgets)

    @staticmethod
    def _ends_with_stop(tokens, config, tokenizer):
        if not config.stop_list:
            return False
        longest = max(len(s) for s in config.stop_list)
        text = tokenizer.decode(tokens[-(longest + 8):], skip_special_tokens=True)
        return any(s in text for s in config.stop_list)

    def _decode(self, rows, budgets, config, tokenizer, streamer):
        """Greedy or sampling, all rows in step; a row that ends (eos, stop string, budget) stops growing."""
        state = DecodingState(self, rows, int(budgets.max()), config)
        rng = np.random.default_rng(config.seed)
        eos = set(config.eos_ids)
        generated = [[] for _ in rows]
        done = np.zeros(len(rows), bool)
        if streamer is not None:
            streamer.put(np.array(rows[0]))
        logits = state.first_logits()
        column = state.prompt_columns
        while True:
            seen = [row + gen for row, gen in zip(rows, generated)] if config.repetition_penalty != 1.0 else None
            tokens = next_tokens(logits, seen, config, rng)
            for r, token in enumerate(tokens):
                if done[r]:
                    continue
                generated[r].append(int(token))
                done[r] = (int(token) in eos or len(generated[r]) >= budgets[r]
                           or self._ends_with_stop(generated[r], config, tokenizer))
            if streamer is not None:
                streamer.put(np.array([int(tokens[0])]))
            if done.all():
                break
            logits = state.next_logits(np.where(done, config.pad_token_id, tokens), column)
            column += 1
        if streamer is not None:
            streamer.end()
        return [row + gen for row, gen in zip(rows, generated)]

    def _beam_search(self, rows, budgets, config, tokenizer):
        beams = config.num_beams
        state = DecodingState(self, [row for row in rows for _ in range(beams)], int(budgets.max()), config)
        search = BeamSearch(len(rows), beams, len(config.eos_ids), config.length_penalty, config.early_stopping)
        eos = set(config.eos_ids)

        def ends(item, tokens):
            return (tokens[-1] in eos or len(tokens) >= budgets[item]
                    or self._ends_with_stop(tokens, config, tokenizer))

        logits = state.first_logits()
        column = state.prompt_columns
        while True:
            scores = log_softmax(logits)
            if config.repetition_penalty != 1.0:
                seen = [rows[item] + search.tokens[item][b] for item in range(len(rows)) for b in range(beams)]
                scores = apply_repetition_penalty(scores, seen, config.repetition_penalty)
            sources, tokens = search.step(scores, ends)
            if search.done:
                break
            state.reorder(sources)
            logits = state.next_logits(tokens, column)
            column += 1
        return [row + search.best(item) for item, row in enumerate(rows)]
