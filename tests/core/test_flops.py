"""The MFU denominator: one core's measured GEMM rate turned into a peak that does not follow the host's clock."""
import pytest

from mindformers.core.flops import flops_per_cycle, nominal_clock_hz, onednn_sgemm, per_core_gemm_flops


@pytest.mark.parametrize("measured_gflops", [118.0, 142.3, 145.0, 167.6, 180.0, 210.0])
def test_flops_per_cycle_is_the_power_of_two_near_the_measurement(measured_gflops):
    # An AVX-512 core with two FMA units at 2.3 GHz: 64 FLOP/cycle whether the run caught it above its nominal
    # clock (turbo) or somewhat below its peak.
    assert flops_per_cycle(measured_gflops * 1e9, 2.3e9) == 64


@pytest.mark.parametrize("measured_gflops", [208.8, 222.1, 236.4, 241.7])
def test_flops_per_cycle_holds_through_turbo_past_the_geometric_midpoint(measured_gflops):
    # Per-core rates measured on the AMD host (2596 MHz nominal, 64 FLOP/cycle): up to 1.46x nominal in turbo,
    # past sqrt(2), where the nearest power of two in log scale turned to 128 in some runs.
    assert flops_per_cycle(measured_gflops * 1e9, 2.596e9) == 64


def test_flops_per_cycle_tells_wider_and_narrower_cores_apart():
    assert flops_per_cycle(70e9, 2.3e9) == 32  # one 512-bit FMA unit, or two 256-bit ones
    assert flops_per_cycle(300e9, 2.3e9) == 128


def test_nominal_clock(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2299.998\n")
    missing = str(tmp_path / "missing")
    assert nominal_clock_hz(str(cpuinfo), missing) == pytest.approx(2.299998e9)  # a VM: no cpufreq, the TSC rate
    base = tmp_path / "base_frequency"
    base.write_text("2100000\n")  # kHz; bare metal, where "cpu MHz" is the current clock
    assert nominal_clock_hz(str(cpuinfo), str(base)) == pytest.approx(2.1e9)
    (tmp_path / "other").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # e.g. an ARM board: no clock given
    assert nominal_clock_hz(str(tmp_path / "other"), missing) is None
    assert nominal_clock_hz(missing, missing) is None


def test_per_core_gemm_restores_torch_threads():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    rates = per_core_gemm_flops(sizes=(64, 128), trials=2)
    assert set(rates) == {64, 128} and all(rate > 0 for rate in rates.values())
    assert torch.get_num_threads() == threads


def test_onednn_sgemm_through_ctypes_multiplies():
    """The per-core peak times oneDNN's sgemm through ctypes: the arguments it passes give the real product."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    sgemm = onednn_sgemm()
    if sgemm is None:
        pytest.skip("MindSpore's oneDNN is not there")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    c = np.empty((3, 4), np.float32)
    sgemm(b"N", b"N", 3, 4, 5, 1.0, a.ctypes.data, 5, b.ctypes.data, 4, 0.0, c.ctypes.data, 4)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-6)
