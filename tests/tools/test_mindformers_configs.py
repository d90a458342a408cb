"""MindFormers' four Llama 2 7b configs (pretrain, finetune, LoRA, predict), in their published shape with only CPU
edits (tests/fixtures/mindformers_configs), run as written through run_mindformer's main()."""
import json
import os

import pytest

from mindformers.run import main
from tests.e2e.helpers import read_metrics

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "mindformers_configs")
SEQ = 32  # the configs' (CPU-edited) seq_length
RECORDS = 16  # a few steps per run: the point is that the configs run, not how far they train


@pytest.fixture(scope="module")
def wiki_rows(tmp_path_factory, sample_text_files, sp_model_file):
    """24 rows of 33 tokens: three steps of the pretrain config's batch 1 x gradient_accumulation_steps 8."""
    from mindformers.tools.dataset_preprocess.llama.llama_preprocess import main as preprocess
    from tests.fixtures.data import leading_documents
    folder = tmp_path_factory.mktemp("mf_wiki")
    (folder / "wiki.txt").write_text("\n\n".join(leading_documents(sample_text_files, 2000)), encoding="utf-8")
    preprocess(["--dataset_type", "wiki", "--input_glob", str(folder / "wiki.txt"), "--model_file",
                str(sp_model_file), "--seq_length", str(SEQ), "--output_file", str(folder / "wiki.mindrecord")])
    return str(folder / "wiki.mindrecord")


@pytest.fixture(scope="module")
def qa_mindrecord(tmp_path_factory, alpaca_json, sp_model_file):
    from mindformers.tools.dataset_preprocess.llama.alpaca_converter import main as convert
    from mindformers.tools.dataset_preprocess.llama.llama_preprocess import main as preprocess
    folder = tmp_path_factory.mktemp("mf_qa")
    with open(alpaca_json, encoding="utf-8") as stream:
        shortest = sorted(json.load(stream), key=lambda r: len(r["instruction"]))[:RECORDS]  # prompts fit 32 tokens
        (folder / "alpaca.json").write_text(json.dumps(shortest), encoding="utf-8")
    convert(["--data_path", str(folder / "alpaca.json"), "--output_path", str(folder / "conv.json")])
    preprocess(["--dataset_type", "qa", "--template", "llama-2", "--input_glob", str(folder / "conv.json"),
                "--model_file", str(sp_model_file), "--seq_length", str(SEQ), "--output_file",
                str(folder / "qa.mindrecord")])
    return str(folder / "qa.mindrecord")


def run(name, output_dir, *flags):
    return main(["--config", os.path.join(CONFIGS, f"{name}_llama2_7b.yaml"), "--output_dir", str(output_dir),
                 *map(str, flags)])


def run_log(output_dir):
    with open(os.path.join(output_dir, "log", "rank_0", "info.log"), encoding="utf-8") as stream:
        return stream.read()


def test_the_four_llama2_7b_configs_run_as_written(tmp_path, wiki_rows, qa_mindrecord, sp_model_file):
    run("pretrain", tmp_path / "pretrain", "--train_dataset_dir", wiki_rows, "--vocab_file", sp_model_file,
        "--epochs", 1)
    losses = [row["loss"] for row in read_metrics(tmp_path / "pretrain")]
    assert losses and all(loss == loss for loss in losses)
    log = run_log(tmp_path / "pretrain")
    assert log.count("ObsMonitor: no upload target") == 1  # MindFormers' placeholder remote_save_url: one warning
    assert "settings with no effect on this trainer" in log and "runner_config.sink_mode=True" in log
    checkpoint = tmp_path / "pretrain" / "checkpoint"
    for name in ("finetune", "lora"):
        run(name, tmp_path / name, "--train_dataset_dir", qa_mindrecord, "--vocab_file", sp_model_file,
            "--load_checkpoint", checkpoint, "--epochs", 1)
        assert read_metrics(tmp_path / name)[-1]["loss"] > 0
    run("predict", tmp_path / "predict", "--load_checkpoint", checkpoint, "--vocab_file", sp_model_file,
        "--predict_data", "The for statement", "--max_new_tokens", 4)
    with open(tmp_path / "predict" / "predict_results.jsonl", encoding="utf-8") as stream:
        record = json.loads(stream.readline())
    assert record["prompt"] == "The for statement" and len(record["output_ids"]) == 4
