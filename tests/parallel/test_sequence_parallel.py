"""The composed collectives of sequence parallelism, in one process (PyNative) for 2 model-parallel ranks: each rank's
cell is built without a group, so its AllReduce returns the rank's own contribution and the real collective's
result is the sum of the ranks' contributions. Forward: the sums equal the all-gather / reduce-scatter / scatter.
Backward: each cell's gradient (summed likewise) is the adjoint of its forward, i.e. gather's backward is a
reduce-scatter and reduce-scatter's an all-gather. The whole decoder with real communication is the msrun test
(test_msrun_four_workers.py); the config errors are here."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.models.llama import LlamaConfig
from mindformers.parallel import check_parallel_config
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.sequence_parallel import (GatherFromSequenceParallel, ReduceScatterToSequenceParallel,
                                                    ScatterToSequenceParallel)
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig

SHARDS = 2
RNG = np.random.default_rng(5)
BATCH, SEQ, WIDTH = 2, 6, 3


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def rank_cell(cls, rank):
    return cls(ParallelGroups(model_parallel=SHARDS, model_rank=rank))


def forward_and_grad(cell, x, dout):
    out = cell(Tensor(x)).asnumpy()
    (dx,) = ops.GradOperation(get_all=True, sens_param=True)(cell)(Tensor(x), Tensor(dout))
    return out, dx.asnumpy()


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def slices(x):
    return np.split(x, SHARDS, axis=1)


def test_gather_joins_the_slices_and_its_backward_reduce_scatters():
    parts = slices(randn(BATCH, SEQ, WIDTH))
    douts = [randn(BATCH, SEQ, WIDTH) for _ in range(SHARDS)]  # each rank's gradient of the whole sequence
    whole = sum(rank_cell(GatherFromSequenceParallel, r)(Tensor(parts[r])).asnumpy() for r in range(SHARDS))
    np.testing.assert_array_equal(whole, np.concatenate(parts, axis=1))
    for rank in range(SHARDS):
        # the real backward of rank r: sum the ranks' gradients (every rank's contribution through r's bprop)
        grad = sum(forward_and_grad(rank_cell(GatherFromSequenceParallel, rank), parts[rank], d)[1] for d in douts)
        np.testing.assert_allclose(grad, slices(sum(douts))[rank], rtol=1e-6)
    # adjoint: sum_k <gather(x), dout_k> = sum_r <x_r, grad_r>
    grads = [slices(sum(douts))[r] for r in range(SHARDS)]
    assert np.isclose(sum(np.vdot(whole, d) for d in douts), sum(np.vdot(p, g) for p, g in zip(parts, grads)))


def test_reduce_scatter_sums_and_slices_and_its_backward_all_gathers():
    partial = [randn(BATCH, SEQ, WIDTH) for _ in range(SHARDS)]  # each rank's partial sums of the whole sequence
    douts = slices(randn(BATCH, SEQ, WIDTH))  # each rank's gradient of its slice
    for rank in range(SHARDS):
        out = sum(rank_cell(ReduceScatterToSequenceParallel, rank)(Tensor(p)).asnumpy() for p in partial)
        np.testing.assert_allclose(out, slices(sum(partial))[rank], rtol=1e-6)
    # every rank's input gradient is the gathered gradient: the ranks' bprop contributions summed
    grad = sum(forward_and_grad(rank_cell(ReduceScatterToSequenceParallel, r), partial[r], douts[r])[1]
               for r in range(SHARDS))
    np.testing.assert_array_equal(grad, np.concatenate(douts, axis=1))
    outs = slices(sum(partial))
    assert np.isclose(sum(np.vdot(o, d) for o, d in zip(outs, douts)), sum(np.vdot(p, grad) for p in partial))


def test_scatter_keeps_the_slice_and_its_backward_all_gathers():
    x = randn(BATCH, SEQ, WIDTH)  # whole on every rank (the embeddings)
    douts = slices(randn(BATCH, SEQ, WIDTH))
    grad = 0
    for rank in range(SHARDS):
        out, contribution = forward_and_grad(rank_cell(ScatterToSequenceParallel, rank), x, douts[rank])
        np.testing.assert_array_equal(out, slices(x)[rank])
        grad = grad + contribution
    np.testing.assert_array_equal(grad, np.concatenate(douts, axis=1))


def test_gather_backward_equals_reduce_scatter_forward_on_one_rank():
    dout = randn(BATCH, SEQ, WIDTH)
    for rank in range(SHARDS):
        _, grad = forward_and_grad(rank_cell(GatherFromSequenceParallel, rank), slices(dout)[rank], dout)
        np.testing.assert_array_equal(grad, rank_cell(ReduceScatterToSequenceParallel, rank)(Tensor(dout)).asnumpy())


def check(mp=2, seq_length=16, world=2, pp=1, **model):
    cfg = MindFormerConfig(parallel_config={"data_parallel": 1, "model_parallel": mp, "use_seq_parallel": True,
                                            "pipeline_stage": pp, "micro_batch_num": pp},
                           runner_config={"batch_size": 2})
    mdl = LlamaConfig(seq_length=seq_length, hidden_size=32, num_layers=2, num_heads=4, n_kv_heads=2,
                      intermediate_size=64, vocab_size=64, **model)
    with pytest.raises(ConfigError) as caught:
        check_parallel_config(cfg, mdl, world, "CPU")
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_sequence_parallel_errors_name_the_key():
    assert check(mp=1, world=1).startswith("parallel_config.use_seq_parallel: True needs model_parallel > 1")
    assert check(seq_length=15).startswith("model.model_config.seq_length: 15 is not divisible by "
                                           "parallel_config.model_parallel (2)")
    assert check(moe_config={"expert_num": 2, "num_experts_chosen": 1}).startswith(
        "parallel_config.use_seq_parallel: sequence parallelism with mixture-of-experts")
    # with pipeline stages it runs (tests/parallel/test_msrun_pipeline.py): the stages pass sequence slices
    accepted = MindFormerConfig(parallel_config={"data_parallel": 1, "model_parallel": 2, "use_seq_parallel": True,
                                                 "pipeline_stage": 2, "micro_batch_num": 2},
                                runner_config={"batch_size": 2})
    assert check_parallel_config(accepted, LlamaConfig(seq_length=16, hidden_size=32, num_layers=2, num_heads=4,
                                                       n_kv_heads=2, intermediate_size=64, vocab_size=64),
                                 4, "CPU").use_seq_parallel
