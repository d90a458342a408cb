"""Running the real CLIs in subprocesses, as a user would (or their main in this process where the CLI is not the
point)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(args, cwd=None, timeout=600):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_main(argv, capsys=None):
    """run_mindformer.py's main in this process (the same code the CLI runs); returns (exit code, stdout, stderr),
    the output as captured by `capsys` (empty without it)."""
    from mindformers.run import main  # pylint: disable=import-outside-toplevel
    try:
        code = main([str(item) for item in argv])
    except SystemExit as error:
        code = error.code
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "log", "train_metrics.jsonl"), encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def assert_one_line_error(result, *fragments):
    """A user error: exit code 2, no traceback, one line on stderr naming what is wrong."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def main_one_line_error(capsys, main, argv):
    """A CLI's main(argv) called in this process on a user error: exit 2 and one `error:` line on stderr."""
    import pytest  # pylint: disable=import-outside-toplevel
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# The model the end-to-end tests train: small enough for seconds per run, large enough for the loss to fall.
TINY_SIZES = dict(vocab_size=600, seq_length=32, num_layers=2, hidden_size=64, intermediate_size=128)


def merge_sections(base, extra):
    """Nested dicts merged key by key (extra wins); lists and scalars are replaced whole, as a YAML override is."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge_sections(merged[key], value)
        merged[key] = value
    return merged


def plain_paths(value):
    """Path objects (tmp_path fixtures) as strings, so the YAML holds plain text."""
    if isinstance(value, dict):
        return {key: plain_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_paths(item) for item in value]
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def write_user_config(path, base_config, sp_model_file, sizes=None, **sections):
    """A user's YAML over a shipped config: the tiny model sizes, the test tokenizer, and `sections` on top."""
    import yaml  # pylint: disable=import-outside-toplevel
    config = {"base_config": [os.path.join(REPO, "configs", base_config)],
              "processor": {"tokenizer": {"vocab_file": str(sp_model_file)}},
              "model": {"model_config": dict(TINY_SIZES if sizes is None else sizes)}}
    config = plain_paths(merge_sections(config, sections))
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(config, stream, sort_keys=False)
    return str(path)
