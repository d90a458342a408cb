"""The rotary embedding's CPU kernel (mindformers/kernels/cpu_rotary.py) rotates queries and keys and gives their
gradients as the composed rotation does (kernels turned off), for the (b, heads, s, d) layout with (s, d) tables
and the fused attention's (b, s, heads, d) with (s, 1, d) ones, in PyNative and graph mode, and is not used where
it does not apply (interleaved pairs, partial rotary). Its library's cache key covers the header the kernels share."""
import shutil

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn, ops

from mindformers.kernels import build, cpu_rotary
from mindformers.models.modules import RotaryEmbedding

RNG = np.random.default_rng(0)


CPU_KERNEL = cpu_rotary  # tests/fixtures/cpu_kernels.py skips these tests where it does not build


class WeightedRotation(nn.Cell):
    """sum(rotate(x) * weights) over first(seq)'s tables, with a heads axis after the positions when `heads_second`
    is False (the fused attention's layout)."""

    def __init__(self, rotary, heads_second):
        super().__init__()
        self.rotary, self.heads_second = rotary, heads_second

    def construct(self, x, weights):
        seq = x.shape[2] if self.heads_second else x.shape[1]
        tables = self.rotary.first(seq)
        if not self.heads_second:
            tables = tuple(ops.expand_dims(table, 1) for table in tables)
        return (self.rotary.rotate(x, tables) * weights).sum()


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
@pytest.mark.parametrize("heads_second", [True, False])
def test_kernel_rotation_and_gradient_equal_the_composed_ones(mode, heads_second, monkeypatch):
    ms.set_context(mode=mode)
    shape = (2, 3, 7, 8) if heads_second else (2, 7, 3, 8)
    x, weights = (Tensor(RNG.standard_normal(shape).astype(np.float32)) for _ in range(2))
    results = []
    try:
        for kernels in ("1", "0"):
            monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", kernels)
            rotary = RotaryEmbedding(8, 16, theta=100.0)
            assert (rotary.cpu_kernel is not None) == (kernels == "1")
            loss, d_x = ms.value_and_grad(WeightedRotation(rotary, heads_second), 0)(x, weights)
            results.append((loss.asnumpy(), d_x.asnumpy()))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_kernel_only_for_the_full_half_split_rotation():
    assert RotaryEmbedding(8, 16).cpu_kernel is not None
    assert RotaryEmbedding(8, 16, interleaved=True).cpu_kernel is None
    assert RotaryEmbedding(8, 16, rotary_dim=4).cpu_kernel is None


def test_changing_the_shared_header_rebuilds_the_kernel(monkeypatch, tmp_path):
    """kernel_common.h is hashed with each source: an edited header gives a new library, not the cached one."""
    sources, cache = tmp_path / "src", tmp_path / "cache"
    sources.mkdir()
    for name in (cpu_rotary.SOURCE,) + build.HEADERS:
        shutil.copy(f"{build.SOURCE_DIR}/{name}", sources / name)
    monkeypatch.setattr(build, "SOURCE_DIR", str(sources))
    monkeypatch.setenv("MINDFORMERS_KERNEL_CACHE", str(cache))
    build.library.cache_clear()
    try:
        first = build.library(cpu_rotary.SOURCE)
        with open(sources / build.HEADERS[0], "a", encoding="utf-8") as header:
            header.write("// edited\n")
        build.library.cache_clear()
        second = build.library(cpu_rotary.SOURCE)
    finally:
        build.library.cache_clear()
    assert first is not None and second is not None and first != second
    assert sorted(str(path) for path in cache.iterdir()) == sorted([first, second])
