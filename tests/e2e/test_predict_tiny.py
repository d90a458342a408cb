"""End to end: run_mindformer.py --run_mode predict on the tiny config, with a saved checkpoint, in a subprocess."""
import json
import os
import re

import pytest

from tests.e2e.helpers import REPO, TINY_SIZES, assert_one_line_error, run_cli, write_user_config

SIZES = TINY_SIZES


@pytest.fixture(scope="module")
def predict_config(tmp_path_factory, sp_model_file):
    folder = tmp_path_factory.mktemp("predict")
    path = write_user_config(folder / "my_predict.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file,
                             sizes=dict(SIZES, max_decode_length=20))
    pynative = folder / "my_predict_pynative.yaml"
    pynative.write_text(f"base_config: ['{path}']\ncontext:\n  mode: 1\n")
    return str(path), str(pynative)


def saved_tiny_model(folder, seed):
    """A saved random tiny model (as a training run's checkpoint folder would hold it)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    np.random.seed(seed)
    model = LlamaForCausalLM(LlamaConfig(compute_dtype="float32", initializer_range=0.3, **SIZES))
    folder = folder / "checkpoint" / "rank_0"
    os.makedirs(folder)
    ms.save_checkpoint(model, str(folder / "tiny_rank_0-1_4.ckpt"))
    return str(folder.parent.parent)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("ckpt"), 3)


TIMING = re.compile(r"predict timing: load [0-9.]+ s .*, compile ([0-9.]+) s, prefill [0-9.]+ s, decode [0-9.]+ s "
                    r"\(\d+ tokens, [0-9.]+ tokens/s\)")


def test_predict_prompts_and_file(predict_config, checkpoint, tmp_path):
    """Graph mode, batches of 2 from a file; then PyNative, one batch of 3 from the command line: same results."""
    graph_config, pynative_config = predict_config
    prompts = ["The for statement", "def", "Python is a"]
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n\n")
    out_file, out_args = tmp_path / "from_file", tmp_path / "from_args"
    common = ["run_mindformer.py", "--run_mode", "predict", "--load_checkpoint", checkpoint]
    by_file = run_cli(common + ["--config", graph_config, "--predict_batch_size", "2", "--predict_data", prompt_file,
                                "--output_dir", out_file])
    assert by_file.returncode == 0, by_file.stdout[-2000:] + by_file.stderr[-3000:]
    by_args = run_cli(common + ["--config", pynative_config, "--predict_batch_size", "3", "--predict_data"]
                      + prompts + ["--output_dir", out_args])
    assert by_args.returncode == 0, by_args.stderr[-3000:]
    records = [json.loads(line) for line in (out_file / "predict_results.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == prompts
    for record in records:
        assert record["output"] and record["output_ids"]
        assert len(record["input_ids"]) + len(record["output_ids"]) <= 20  # max_decode_length of the YAML
        assert f"{record['prompt']}{record['output']}" in by_file.stdout
    assert (out_args / "predict_results.jsonl").read_text() == (out_file / "predict_results.jsonl").read_text()
    graph_timing = TIMING.search(by_file.stdout + by_file.stderr)
    pynative_timing = TIMING.search(by_args.stdout + by_args.stderr)
    assert graph_timing and pynative_timing, by_file.stderr[-2000:]
    assert float(graph_timing.group(1)) > 0 and float(pynative_timing.group(1)) == 0  # PyNative compiles nothing


def test_predict_compile_cache(predict_config, checkpoint, tmp_path):
    """context.enable_compile_cache in predict: a second run of the same command with another checkpoint of the same
    config reuses the first run's graphs, which compute with the weights it loaded (the tokens of a run without the
    cache)."""
    graph_config, pynative_config = predict_config
    cached = tmp_path / "cached.yaml"
    cached.write_text(f"base_config: ['{graph_config}']\ncontext:\n  enable_compile_cache: True\n"
                      f"  compile_cache_path: '{tmp_path / 'cache'}'\n")
    other = saved_tiny_model(tmp_path / "other", 4)
    prompts = ["The for statement", "def"]
    runs = {}
    for name, config, weights in (("first", cached, checkpoint), ("other", cached, other),
                                  ("other_uncached", pynative_config, other)):
        result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "predict", "--load_checkpoint",
                          weights, "--predict_batch_size", "2", "--output_dir", tmp_path / name,
                          "--predict_data"] + prompts)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = ((tmp_path / name / "predict_results.jsonl").read_text(), result.stdout + result.stderr)
    assert "(new)" in runs["first"][1] and "(reused)" in runs["other"][1]
    assert len(os.listdir(tmp_path / "cache")) == 1
    assert runs["other"][0] == runs["other_uncached"][0] != runs["first"][0]


def test_predict_errors(predict_config, checkpoint, tmp_path):
    base = ["run_mindformer.py", "--config", predict_config[1], "--run_mode", "predict", "--output_dir", tmp_path]
    assert_one_line_error(run_cli(base + ["--load_checkpoint", checkpoint]), "predict_data")
    assert_one_line_error(run_cli(base + ["--load_checkpoint", tmp_path / "missing", "--predict_data", "hi"]),
                          "load_checkpoint", "missing")
    assert not (tmp_path / "predict_results.jsonl").exists()


def test_chat_by_piped_stdin(predict_config, checkpoint):
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    script = "Hello there\n/clear\nWhat is a list?\n/exit\nnever read\n"
    result = subprocess.run([sys.executable, "run_chat.py", "--config", predict_config[1], "--load_checkpoint",
                             checkpoint, "--max_new_tokens", "4"], input=script, cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=dict(os.environ, GLOG_v="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("assistant: ") == 2
    assert "(conversation cleared)" in result.stdout and "never read" not in result.stdout


def test_chat_bad_template_is_one_line_error(predict_config, checkpoint):
    result = run_cli(["run_chat.py", "--config", predict_config[1], "--load_checkpoint", checkpoint, "--template",
                      "nope"])
    assert_one_line_error(result, "--template", "nope")
