"""LoRA and prefix tuning split over 2 model-parallel ranks, in one process (PyNative): each rank is built without
communication, so its collectives return the rank's own contribution, and the ranks' results summed or joined as
the real collectives would must equal the whole layer's: outputs, input gradients and adapter gradients. The real
run (2 msrun workers, LoRA fine-tuning on the single process' curve) is in tests/parallel/test_msrun_four_workers.py.
"""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.models.modules import Attention, Linear
from mindformers.pet.lora import add_lora
from mindformers.pet.prefix_tuning import add_prefix
from tests.parallel.test_tensor_parallel import SHARDS, build

RNG = np.random.default_rng(8)


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def run(cell, x, dout):
    """Output, input gradient and adapter gradients (lora_a, lora_b)."""
    params = [cell.lora_a, cell.lora_b]
    out = cell(Tensor(x)).asnumpy()
    dx = ops.GradOperation(get_all=True, sens_param=True)(cell)(Tensor(x), Tensor(dout))[0].asnumpy()
    grads = ops.GradOperation(get_by_list=True, sens_param=True)(cell, params)(Tensor(x), Tensor(dout))
    return out, dx, [g.asnumpy() for g in grads]


def lora(parallel, rank=None):
    def make():
        return add_lora(Linear(6 if parallel == "column" else 8, 8 if parallel == "column" else 6, parallel=parallel,
                               init_std=0.5), 2, 4, 0.0)
    cell = build(make, rank)
    whole_b = np.random.default_rng(1).standard_normal((8 if parallel == "column" else 6, 2)).astype(np.float32)
    cell.lora_b.set_data(Tensor(whole_b if rank is None or parallel == "row" else np.split(whole_b, SHARDS)[rank]))
    return cell


def test_column_parallel_lora_splits_b_and_sums_the_gradient_of_a():
    x, dout = RNG.standard_normal((3, 6)).astype(np.float32), RNG.standard_normal((3, 8)).astype(np.float32)
    whole = lora("column")
    out, dx, (da, db) = run(whole, x, dout)
    parts = [run(lora("column", r), x, np.split(dout, SHARDS, -1)[r]) for r in range(SHARDS)]
    assert lora("column", 1).lora_a.shape == (2, 6) and lora("column", 1).lora_b.shape == (4, 2)
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts], -1), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(p[1] for p in parts), dx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(p[2][0] for p in parts), da, rtol=1e-5, atol=1e-6)  # summed over the group
    np.testing.assert_allclose(np.concatenate([p[2][1] for p in parts]), db, rtol=1e-5, atol=1e-6)


def test_row_parallel_lora_splits_a_and_sums_the_low_rank_products():
    x, dout = RNG.standard_normal((3, 8)).astype(np.float32), RNG.standard_normal((3, 6)).astype(np.float32)
    whole = lora("row")
    out, dx, (da, db) = run(whole, x, dout)
    parts = [run(lora("row", r), np.split(x, SHARDS, -1)[r], dout) for r in range(SHARDS)]
    assert lora("row", 1).lora_a.shape == (2, 4) and lora("row", 1).lora_b.shape == (6, 2)
    np.testing.assert_allclose(sum(p[0] for p in parts), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts], -1), dx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([p[2][0] for p in parts], -1), da, rtol=1e-5, atol=1e-6)
    # every rank's B gradient is the whole one; without communication each holds its own share of the product
    np.testing.assert_allclose(sum(p[2][1] for p in parts), db, rtol=1e-5, atol=1e-6)


def test_prefixes_are_the_single_process_prefixes_cut_by_heads():
    def make():
        return add_prefix(Attention(16, 4, 2, seq_length=5, init_std=0.3), 3)
    whole = build(make)
    for rank in range(SHARDS):
        part = build(make, rank)
        for name in ("prefix_key", "prefix_value"):
            np.testing.assert_array_equal(getattr(part, name).asnumpy(),
                                          np.split(getattr(whole, name).asnumpy(), SHARDS, 1)[rank])
    x = RNG.standard_normal((2, 5, 16)).astype(np.float32)
    outs = [build(make, r)(Tensor(x)).asnumpy() for r in range(SHARDS)]
    np.testing.assert_allclose(sum(outs), whole(Tensor(x)).asnumpy(), rtol=1e-4, atol=1e-5)
