"""The shard math of CPU tensor parallelism, in one process (PyNative): each of 2 model-parallel ranks is built
without communication, so its collectives return the rank's own contribution, and the ranks' results, summed or
joined as the real all-reduce would, must equal the whole layer's. The real collectives (and graph mode) are
covered by the msrun runs in test_msrun_model_parallel.py."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.core.loss.cross_entropy import VocabParallelWeightedNll, WeightedNll
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.models.modules import Attention, Embedding, Linear, SwiGLUFeedForward
from mindformers.models.modules.shape_only import initial_values_deferred
from mindformers.models.modules.layout import parameter_layouts
from mindformers.parallel import ParallelSettings
from mindformers.parallel.groups import ParallelGroups, group_ranks
from mindformers.parallel.parallelize import parallelize

SHARDS = 2
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def build(make, rank=None, seed=5):
    """The cell `make()` builds from `seed`: whole (rank None), or as a model-parallel rank `rank` of SHARDS builds
    it (initial values deferred, then split by parallelize, drawing only the rank's slices)."""
    np.random.seed(seed)
    if rank is None:
        return make()
    with initial_values_deferred():
        cell = make()
    return parallelize(cell, ParallelGroups(model_parallel=SHARDS, model_rank=rank))


def forward_and_input_grad(cell, x, dout):
    """cell(x) and d<cell(x), dout>/dx, as numpy."""
    grad = ops.GradOperation(get_all=True, sens_param=True)
    out = cell(Tensor(x))
    (dx,) = grad(cell)(Tensor(x), Tensor(dout))
    return out.asnumpy(), dx.asnumpy()


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_column_parallel_linear_keeps_its_slice_of_the_outputs():
    make = lambda: Linear(6, 8, has_bias=True, parallel="column", init_std=0.5)  # noqa: E731
    whole = build(make)
    whole.bias.set_data(Tensor(randn(8)))
    x, dout = randn(3, 6), randn(3, 8)
    out, dx = forward_and_input_grad(whole, x, dout)
    outs, dxs = [], []
    for rank in range(SHARDS):
        part = build(make, rank)
        # Same seed -> this rank's weight is exactly its slice of the whole layer's.
        np.testing.assert_array_equal(part.weight.asnumpy(), np.split(whole.weight.asnumpy(), SHARDS, 0)[rank])
        part.bias.set_data(Tensor(np.split(whole.bias.asnumpy(), SHARDS)[rank]))
        o, d = forward_and_input_grad(part, x, np.split(dout, SHARDS, -1)[rank])
        outs.append(o)
        dxs.append(d)
    np.testing.assert_allclose(np.concatenate(outs, -1), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(dxs), dx, rtol=1e-5, atol=1e-6)  # the input gradient is summed over the group


def test_column_parallel_linear_can_gather_whole_outputs():
    make = lambda: Linear(6, 8, parallel="column", gather_output=True, init_std=0.5)  # noqa: E731
    x = randn(2, 3, 6)
    out = build(make)(Tensor(x)).asnumpy()
    # Without communication each rank's gathered output holds its own columns in place and zeros elsewhere.
    parts = [build(make, rank)(Tensor(x)).asnumpy() for rank in range(SHARDS)]
    assert parts[0].shape == out.shape
    np.testing.assert_array_equal(parts[0][..., 4:], 0)
    np.testing.assert_allclose(sum(parts), out, rtol=1e-5, atol=1e-6)


def test_row_parallel_linear_sums_partial_outputs():
    make = lambda: Linear(8, 6, parallel="row", init_std=0.5)  # noqa: E731
    whole = build(make)
    x, dout = randn(3, 8), randn(3, 6)
    out, dx = forward_and_input_grad(whole, x, dout)
    outs, dxs = [], []
    for rank in range(SHARDS):
        part = build(make, rank)
        assert part.weight.shape == (6, 4)
        o, d = forward_and_input_grad(part, np.split(x, SHARDS, -1)[rank], dout)
        outs.append(o)
        dxs.append(d)
    np.testing.assert_allclose(sum(outs), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(dxs, -1), dx, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4)])
def test_attention_splits_heads_and_keeps_gqa_groups_whole(heads, kv_heads):
    make = lambda: Attention(16, heads, kv_heads, seq_length=5, init_std=0.3)  # noqa: E731
    x, dout = randn(2, 5, 16), randn(2, 5, 16)
    out, dx = forward_and_input_grad(build(make), x, dout)
    outs, dxs = [], []
    for rank in range(SHARDS):
        part = build(make, rank)
        assert (part.num_heads, part.n_kv_heads) == (heads // SHARDS, kv_heads // SHARDS)
        o, d = forward_and_input_grad(part, x, dout)
        outs.append(o)
        dxs.append(d)
    np.testing.assert_allclose(sum(outs), out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sum(dxs), dx, rtol=1e-4, atol=1e-5)


def test_swiglu_splits_the_intermediate_features():
    make = lambda: SwiGLUFeedForward(8, 12, init_std=0.4)  # noqa: E731
    x, dout = randn(2, 3, 8), randn(2, 3, 8)
    out, dx = forward_and_input_grad(build(make), x, dout)
    parts = [forward_and_input_grad(build(make, rank), x, dout) for rank in range(SHARDS)]
    assert build(make, 1).w2.weight.shape == (8, 6)
    np.testing.assert_allclose(sum(o for o, _ in parts), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(d for _, d in parts), dx, rtol=1e-5, atol=1e-6)


def test_vocab_parallel_embedding_looks_up_only_its_rows():
    make = lambda: Embedding(10, 4, init_std=1.0, vocab_parallel=True)  # noqa: E731
    ids = np.array([[0, 4, 5, 9], [9, 3, 6, 6]], np.int32)
    dout = randn(2, 4, 4)
    grad = ops.GradOperation(get_by_list=True, sens_param=True)
    whole = build(make)
    out = whole(Tensor(ids)).asnumpy()
    (whole_grad,) = grad(whole, whole.trainable_params())(Tensor(ids), Tensor(dout))
    outs = []
    for rank in range(SHARDS):
        part = build(make, rank)
        outs.append(part(Tensor(ids)).asnumpy())
        (part_grad,) = grad(part, part.trainable_params())(Tensor(ids), Tensor(dout))
        # Ids of the other half look up zeros here and leave this rank's rows without gradient.
        np.testing.assert_allclose(part_grad.asnumpy(), np.split(whole_grad.asnumpy(), SHARDS)[rank], rtol=1e-6)
    np.testing.assert_array_equal(outs[0][0, 2:], 0)
    np.testing.assert_allclose(sum(outs), out, rtol=1e-6)


def test_vocab_parallel_nll_equals_the_fused_nll_on_one_shard():
    """The vocab-parallel formulas (global max, sum of exponentials, picked logit, closed-form backward) with the
    whole vocabulary in one shard agree with the log-softmax version, ignored rows included."""
    logits, labels = randn(6, 11) * 3, np.array([0, 3, 10, 7, 7, 2], np.int32)
    weights = np.array([0.2, 0.0, 0.3, 0.1, 0.25, 0.15], np.float32)
    grad = ops.GradOperation(get_all=True)
    results = []
    for cell in (WeightedNll(), VocabParallelWeightedNll(ParallelGroups())):
        args = (Tensor(logits), Tensor(labels), Tensor(weights))
        loss = cell(*args)
        loss = loss[0] if isinstance(loss, tuple) else loss  # the vocab-parallel cell also returns its statistics
        results.append((loss.asnumpy(), grad(cell)(*args)[0].asnumpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)


def test_model_parallel_llama_is_the_whole_model_cut_along_the_declared_dims():
    config = dict(vocab_size=64, seq_length=8, hidden_size=16, num_layers=1, num_heads=4, n_kv_heads=2,
                  intermediate_size=24, compute_dtype="float32", param_init_type="float32")
    split = LlamaConfig(**config, parallel_config={"vocab_emb_dp": False})
    whole = {p.name: p.asnumpy() for p in build(lambda: LlamaForCausalLM(LlamaConfig(**config))).get_parameters()}
    dims = None
    for rank in range(SHARDS):
        part = build(lambda: LlamaForCausalLM(split), rank)
        dims = parameter_layouts(part)
        for param in part.get_parameters():
            dim = dims[param.name]
            expected = whole[param.name] if dim is None else np.split(whole[param.name], SHARDS, dim)[rank]
            np.testing.assert_array_equal(param.asnumpy(), expected, err_msg=param.name)
    assert {name for name, dim in dims.items() if dim is not None} >= {
        "model.tok_embeddings.embedding_weight", "lm_head.weight", "model.layers.0.attention.wq.weight",
        "model.layers.0.attention.wo.weight", "model.layers.0.feed_forward.w2.weight"}


@pytest.mark.parametrize("tied", [False, True])
def test_split_vocabulary_head_gives_each_rank_its_logits(tied):
    """With vocab_emb_dp False the head (lm_head, or the tied embedding table) yields this rank's vocabulary columns;
    logits() gathers them (here: each rank's columns in place, zeros elsewhere)."""
    sizes = dict(vocab_size=64, seq_length=8, hidden_size=16, num_layers=1, num_heads=4, n_kv_heads=2,
                 intermediate_size=24, compute_dtype="float32", param_init_type="float32", tie_word_embeddings=tied)
    hidden, dout = randn(2, 3, 16), randn(2, 3, 64)
    whole = build(lambda: LlamaForCausalLM(LlamaConfig(**sizes)))
    logits, dhidden = forward_and_input_grad(whole.head_logits, hidden, dout)
    parts, dparts = [], []
    for rank in range(SHARDS):
        part = build(lambda: LlamaForCausalLM(LlamaConfig(**sizes, parallel_config={"vocab_emb_dp": False})), rank)
        local, dlocal = forward_and_input_grad(part.head_logits, hidden, np.split(dout, SHARDS, -1)[rank])
        np.testing.assert_allclose(part.logits(Tensor(hidden)).asnumpy()[..., rank * 32:(rank + 1) * 32], local)
        parts.append(local)
        dparts.append(dlocal)
    np.testing.assert_allclose(np.concatenate(parts, -1), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(dparts), dhidden, rtol=1e-5, atol=1e-6)


def test_groups_follow_mindspore_rank_order():
    # rank = stage * dp * mp + data * mp + model
    settings = ParallelSettings(data_parallel=2, model_parallel=2, pipeline_stage=2)
    assert group_ranks(0, settings) == ([0, 1], [0, 2])
    assert group_ranks(3, settings) == ([2, 3], [1, 3])
    assert group_ranks(6, settings) == ([6, 7], [4, 6])
