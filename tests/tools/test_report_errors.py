"""python -m mindformers.tools.report on folders that are not runs: one line naming the folder or file, exit 2, no
report left behind."""
import json
import os

import pytest

from mindformers.tools.report import main, smoothed
from tests.e2e.helpers import main_one_line_error


def one_line_error(capsys, argv):
    return main_one_line_error(capsys, main, argv)


def write_metrics(folder, lines):
    os.makedirs(folder / "log", exist_ok=True)
    (folder / "log" / "train_metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_not_a_run(tmp_path, capsys):
    assert "not a folder" in one_line_error(capsys, [str(tmp_path / "missing")])
    assert "no log/train_metrics.jsonl" in one_line_error(capsys, [str(tmp_path)])
    write_metrics(tmp_path / "run", [json.dumps({"step": 1, "loss": 2.0}), "{not json"])
    line = one_line_error(capsys, [str(tmp_path / "run")])
    assert "train_metrics.jsonl: line 2: not JSON" in line
    write_metrics(tmp_path / "run", [json.dumps({"loss": 2.0})])
    assert "line 1: expected an object with an integer 'step'" in one_line_error(capsys, [str(tmp_path / "run")])
    assert not (tmp_path / "run" / "report").exists()


def test_bad_flags(tmp_path, capsys):
    write_metrics(tmp_path / "run", [json.dumps({"step": 1, "loss": 2.0})])
    assert "--smoothing" in one_line_error(capsys, [str(tmp_path / "run"), "--smoothing", "1.5"])
    (tmp_path / "taken").write_text("a file")
    assert "--output" in one_line_error(capsys, [str(tmp_path / "run"), "--output", str(tmp_path / "taken")])


def test_smoothing_is_debiased():
    assert smoothed([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards zero at the start
    assert smoothed([1.0, 3.0], 0.0) == [1.0, 3.0]
