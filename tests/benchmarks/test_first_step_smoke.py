"""The first-step benchmark runs end to end on tiny shapes (no timing asserted): every step prints its pieces with
wall seconds, CPU seconds and page faults (the layer forwards, the trace among them, and the head + loss inside
forward+backward), the layer graph is traced in the first step only, the loss falls, and the first step is compared
with the last."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "first_step.py")
FIGURES = r"wall +([\d.]+) s \| CPU +([\d.]+) s \| minor faults +(\d+)"


def test_first_step_prints_each_step_by_piece(tmp_path):
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--vocab", "512", "--seq", "16", "--batch", "1",
            "--steps", "2"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^model: layers=1 .* seq=16 .*; attention: exact; PyNative with context.layerwise_compile$",
                     out, re.M), out
    for name in ("imports", "build"):
        assert re.search(rf"^{name} +{FIGURES}$", out, re.M), out
    steps = re.findall(rf"^step (\d) +{FIGURES} \| loss ([\d.]+)$", out, re.M)
    assert [number for number, *_ in steps] == ["1", "2"], out
    assert float(steps[1][4]) < float(steps[0][4]), out  # one update on the same batch lowers its loss
    blocks = out.split("\nstep ")[1:]
    traces = []
    for block, (_, wall, cpu, _, _) in zip(blocks, steps):
        pieces = {name.strip(): (float(w), float(c), int(f))
                  for name, w, c, f in re.findall(rf"^( +[a-z+ ]+?) +{FIGURES}$", block, re.M)}
        assert set(pieces) == {"forward+backward", "of which layer forwards", "of which trace", "of which head+loss",
                               "optimizer", "rest"}, block
        # The pieces lie inside the step (to the printed digits), the trace inside the layer forwards.
        assert pieces["forward+backward"][0] + pieces["optimizer"][0] <= float(wall) + 0.02, block
        assert pieces["forward+backward"][1] + pieces["optimizer"][1] <= float(cpu) + 0.02, block
        assert pieces["of which trace"][0] <= pieces["of which layer forwards"][0], block
        assert (pieces["of which layer forwards"][0] + pieces["of which head+loss"][0]
                <= pieces["forward+backward"][0] + 0.02), block
        traces.append(pieces["of which trace"])
    assert traces[0][0] > 0 and traces[1] == (0.0, 0.0, 0), out  # traced once, then the compiled graph runs
    assert re.search(r"^ratio first/step 2: wall \d+\.\d\d, CPU \d+\.\d\d \(minor faults \d+ vs \d+\)$", out, re.M), out
