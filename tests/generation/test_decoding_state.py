"""Generation's buffers follow the prompts, not seq_length: the KV cache holds the prompt grid and the new tokens,
a long prompt runs in chunks of about prefill_chunk_tokens tokens whatever the batch, and a kept step with a
somewhat longer cache serves shorter grids. Builds states only (no step runs), PyNative."""
import pytest

from mindformers import LlamaConfig, LlamaForCausalLM
from mindformers.generation.decoding_state import (DECODE_GRAPH_PREFILL_TOKENS, LENGTH_SLACK, DecodingState,
                                                   prefill_columns)
from mindformers.generation.generation_config import GenerationConfig


@pytest.fixture(scope="module")
def model():
    return LlamaForCausalLM(LlamaConfig(seq_length=4096, hidden_size=16, num_layers=2, num_heads=2, vocab_size=64,
                                        intermediate_size=32, compute_dtype="float32"))


def prompts(batch, longest):
    return [[5] * longest] + [[6] * 3] * (batch - 1)


@pytest.mark.parametrize("batch", [1, 4])
def test_cache_and_prefill_chunks_follow_the_prompts(model, batch):
    config = GenerationConfig(prefill_chunk_tokens=64, length_bucket=16)
    model.__dict__.pop("_decoding_steps", None)
    state = DecodingState(model, prompts(batch, 150), 20, config)
    assert state.chunk == 64 // batch  # the same tokens per prefill step at any batch
    assert state.prompt_columns == -(-150 // state.chunk) * state.chunk
    assert state.step.cache.length == -(-(state.prompt_columns + 20) // 16) * 16
    assert state.step.cache.length < 250  # not seq_length's 4096
    assert state.step.cache.keys[0].shape == (batch * 2 * state.step.cache.length, 8)
    short = DecodingState(model, prompts(batch, 10), 20, config)
    assert (short.chunk, short.prompt_columns) == (16, 16)  # a grid that fits one step runs whole
    assert short.step.cache.length == 48 and short.step is not state.step


def test_graph_mode_runs_a_short_prompt_through_the_decode_graph():
    """In graph mode a short prompt grid prefills one column per step (decode's graph, no prefill graph to compile);
    a longer one, or any grid in PyNative, runs as before."""
    config = GenerationConfig(prefill_chunk_tokens=64, length_bucket=16)
    assert prefill_columns(1, DECODE_GRAPH_PREFILL_TOKENS, config, graph_mode=True) == 1
    assert prefill_columns(2, DECODE_GRAPH_PREFILL_TOKENS // 2, config, graph_mode=True) == 1
    assert prefill_columns(2, DECODE_GRAPH_PREFILL_TOKENS, config, graph_mode=True) == 16
    assert prefill_columns(1, 6, config, graph_mode=False) == 16


def test_a_kept_step_serves_shorter_grids_within_the_slack(model):
    config = GenerationConfig(prefill_chunk_tokens=64)
    model.__dict__.pop("_decoding_steps", None)
    first = DecodingState(model, prompts(2, 200), 8, config).step
    assert DecodingState(model, prompts(2, 150), 8, config).step is first
    shorter = DecodingState(model, prompts(2, first.cache.length // LENGTH_SLACK - 40), 8, config).step
    assert shorter is not first and shorter.cache.length <= first.cache.length // LENGTH_SLACK
    assert DecodingState(model, prompts(1, 150), 8, config).step not in (first, shorter)  # another batch size
