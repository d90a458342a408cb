"""End to end: run_mindformer.py --run_mode eval --eval_task mmlu on a saved tiny model, in a subprocess (graph mode,
as the shipped config sets; one batch, so one graph compile), against the same task run in this process (PyNative,
batches of 3) on the same weights."""
import json
import os

import numpy as np
import pytest

from tests.e2e.helpers import assert_one_line_error, run_cli, write_user_config
from tests.fixtures.benchmark_data import (BENCHMARK_VOCAB_SIZE, benchmark_folders,  # noqa: F401
                                           benchmark_tokenizer_file)

SIZES = dict(vocab_size=BENCHMARK_VOCAB_SIZE, seq_length=512, num_layers=2, hidden_size=64, num_heads=4,
             n_kv_heads=4, intermediate_size=128)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A random tiny model (sharp logits: initializer_range 0.3) and the checkpoint it was saved to."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    np.random.seed(5)
    model = LlamaForCausalLM(LlamaConfig(compute_dtype="float32", initializer_range=0.3, **SIZES))
    path = tmp_path_factory.mktemp("benchmark_ckpt") / "tiny.ckpt"
    ms.save_checkpoint(model, str(path))
    return model, str(path)


def read_json_lines(path):
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def test_mmlu_through_run_mindformer(saved_model, benchmark_folders, benchmark_tokenizer_file,  # noqa: F811
                                     tmp_path):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.evaluation import run_benchmark_task  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama.llama_tokenizer import LlamaTokenizer  # pylint: disable=import-outside-toplevel
    model, checkpoint = saved_model
    config = write_user_config(tmp_path / "eval_mmlu.yaml", "llama2/predict_llama2_tiny.yaml",
                               benchmark_tokenizer_file, sizes=SIZES)
    out = tmp_path / "out"
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "eval", "--eval_task", "mmlu",
                      "--eval_data_path", benchmark_folders["mmlu"], "--evaluation_batch_size", "16",
                      "--load_checkpoint", checkpoint, "--output_dir", out])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "mmlu:" in result.stderr  # the progress bar
    with open(out / "eval_mmlu_results.json", encoding="utf-8") as stream:
        results = json.load(stream)
    assert results["total"] == 13 and len(results["subjects"]) == 5 and len(results["categories"]) == 4
    assert results["batch_size"] == 16 and results["max_new_tokens"] == 1
    cli_records = read_json_lines(out / "eval_mmlu_predictions.jsonl")

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    here = run_benchmark_task("mmlu", model, LlamaTokenizer(vocab_file=benchmark_tokenizer_file),
                              benchmark_folders["mmlu"], str(tmp_path / "here"), batch_size=3)
    here_records = read_json_lines(tmp_path / "here" / "eval_mmlu_predictions.jsonl")
    assert [r["predicted"] for r in cli_records] == [r["predicted"] for r in here_records]
    np.testing.assert_allclose([r["loglikelihoods"] for r in cli_records],
                               [r["loglikelihoods"] for r in here_records], atol=1e-4)
    assert {k: results[k] for k in ("accuracy", "subjects", "categories")} == {
        k: here[k] for k in ("accuracy", "subjects", "categories")}


def test_a_folder_without_mmlu_files_is_a_one_line_error(saved_model, benchmark_tokenizer_file,  # noqa: F811
                                                         tmp_path):
    config = write_user_config(tmp_path / "eval_mmlu.yaml", "llama2/predict_llama2_tiny.yaml",
                               benchmark_tokenizer_file, sizes=SIZES)
    empty = tmp_path / "mmlu"
    empty.mkdir()
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "eval", "--eval_task", "mmlu",
                      "--eval_data_path", empty, "--load_checkpoint", saved_model[1], "--output_dir", tmp_path / "o"])
    assert_one_line_error(result, f"eval_data_path: {empty}: no MMLU files found", "data/test/<subject>_test.csv")
    assert not os.path.exists(tmp_path / "o" / "eval_mmlu_results.json")
    # The files are read before the model is built: a checkpoint that is not there is never reached.
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "eval", "--eval_task", "mmlu",
                      "--eval_data_path", empty, "--load_checkpoint", tmp_path / "absent.ckpt"])
    assert_one_line_error(result, f"eval_data_path: {empty}: no MMLU files found", "data/test/<subject>_test.csv")
