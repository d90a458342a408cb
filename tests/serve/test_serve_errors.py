"""Bad flags and paths for `python -m mindformers.serve`: one line naming what is wrong, exit code 2, nothing
started. The real command once in a subprocess; the other cases through its main() in this process (they all
fail before a model or a context is built)."""
import os
import socket

import pytest

from mindformers.serve.launcher import main
from tests.e2e.helpers import TINY_SIZES, assert_one_line_error, main_one_line_error, run_cli, write_user_config


@pytest.fixture(scope="module")
def serve_config(tmp_path_factory, sp_model_file):
    folder = tmp_path_factory.mktemp("serve_errors")
    return write_user_config(folder / "serve.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file,
                             sizes=TINY_SIZES, output_dir=folder / "output"), folder


def test_the_command_names_a_missing_tokenizer_file_and_starts_nothing(serve_config, tmp_path):
    config, folder = serve_config
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli(["-m", "mindformers.serve", "--config", config, "--vocab_file", tmp_path / "missing.model",
                      "--port", port])
    assert_one_line_error(result, "processor.tokenizer.vocab_file", "missing.model")
    assert not os.path.exists(folder / "output" / "log" / "serve" / "controller.log")


def one_line_error(capsys, argv):
    return main_one_line_error(capsys, main, argv)


def test_bad_flags_and_paths(serve_config, tmp_path, capsys):
    config, _ = serve_config
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, ["--config", config, "--bogus"])
    assert "--port" in one_line_error(capsys, ["--config", config, "--port", "70000"])
    assert "--max_batch_size" in one_line_error(capsys, ["--config", config, "--max_batch_size", "0"])
    assert "config file not found" in one_line_error(capsys, ["--config", str(tmp_path / "nope.yaml")])
    line = one_line_error(capsys, ["--config", config, "--load_checkpoint", str(tmp_path / "nothing.ckpt")])
    assert "load_checkpoint" in line and "nothing.ckpt" in line
    assert "unknown fschat conversation template 'no-such'" in one_line_error(
        capsys, ["--config", config, "--template", "no-such"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(capsys, ["--config", config, "--port", str(port)])
    assert f"--port: cannot listen on 127.0.0.1:{port}" in line
