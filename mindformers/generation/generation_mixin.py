"""GenerationMixin: `model.generate(input_ids, **options)` for the causal LMs (greedy, sampling, beam search)."""
import contextlib
import logging

import numpy as np
from mindspore import Tensor

from mindformers.generation.beam_search import BeamSearch
from mindformers.generation.decoding_state import DecodingState
from mindformers.generation.generation_config import GenerationConfig
from mindformers.generation.logits_process import apply_repetition_penalty, log_softmax
from mindformers.generation.row_decoding import DecodingRow, decode_rows, ends_with_stop, token_budget
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
    """Adds `generate` to a causal LM with a `config` (its model_config gives the defaults)."""

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
        with self._inference(config):
            if config.num_beams > 1:
                return self._beam_search(rows, budgets, config, tokenizer)
            return self._decode(rows, budgets, config, tokenizer, streamer)

    def generate_rows(self, rows, tokenizer=None):
        """Continue DecodingRows (mindformers.generation.row_decoding) in one batch, each under its own options
        (sampling, eos, stop strings, budget) and with its own token callback: the server's batches. Stop strings
        need `tokenizer`."""
        if tokenizer is None and any(row.config.stop_list for row in rows):
            raise ConfigError("generate: stop_strings: pass tokenizer= as well (it turns tokens into text)")
        with self._inference(rows[0].config):
            decode_rows(self, rows, tokenizer)

    @contextlib.contextmanager
    def _inference(self, config):
        """Inference mode (and on CPU the transposed weight copies) for the length of one generation."""
        was_training = self.training
        self.set_train(False)
        try:
            with transposed_weights(self, config.transposed_weights):
                yield
        finally:
            self.set_train(was_training)

    def _budgets(self, rows, config):
        """New tokens each row may take (row_decoding.token_budget); a max_new_tokens the KV cache cuts is said."""
        budgets = np.array([token_budget(len(row), config, self.config.seq_length) for row in rows])
        if config.max_new_tokens and budgets.min() < config.max_new_tokens:
            logger.warning("generate: max_new_tokens %d is cut to %d for the longest prompt (%d tokens): the KV cache "
                           "holds seq_length %d tokens, prompt included", config.max_new_tokens, budgets.min(),
                           max(len(row) for row in rows), self.config.seq_length)
        return budgets

    def _decode(self, rows, budgets, config, tokenizer, streamer):
        """Greedy or sampling, all rows in step under one config and one random generator."""
        rng = np.random.default_rng(config.seed)
        on_token = None
        if streamer is not None:
            streamer.put(np.array(rows[0]))

            def on_token(token):
                streamer.put(np.array([token]))
        decoding = [DecodingRow(row, budget, config, rng, on_token) for row, budget in zip(rows, budgets)]
        decode_rows(self, decoding, tokenizer)
        if streamer is not None:
            streamer.end()
        return [row.prompt + row.generated for row in decoding]

    def _beam_search(self, rows, budgets, config, tokenizer):
        beams = config.num_beams
        state = DecodingState(self, [row for row in rows for _ in range(beams)], int(budgets.max()), config)
        search = BeamSearch(len(rows), beams, len(config.eos_ids), config.length_penalty, config.early_stopping)
        eos = set(config.eos_ids)

        def ends(item, tokens):
            return tokens[-1] in eos or len(tokens) >= budgets[item] or ends_with_stop(tokens, config, tokenizer)

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
