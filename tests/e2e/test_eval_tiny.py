"""End to end: run_mindformer.py --run_mode eval in a subprocess on the tiny model.

Perplexity: held-out sample text -> llama_preprocess.py (wiki) -> a briefly trained tiny model -> eval, checked
against exp(mean NLL) computed with NumPy from the model's own logits, and on instruction rows (labels -100 on the
prompts, so batches count different numbers of tokens) also against transformers running the same weights
converted with convert_weight.py --reversed. EM/F1: SQuAD rows from squad_data_process.py for questions the model
was trained to answer.
"""
import json
import math
import os
import sys
import types

import numpy as np
import pytest

from mindformers.checkpoint import list_checkpoints
from tests.e2e.helpers import (REPO, TINY_SIZES, assert_one_line_error, read_metrics, run_cli, run_main,
                               write_user_config)
from tests.fixtures.instruction_data import QA_SEQ_LENGTH

SQUAD_SEQ_LENGTH = 192
HELD_OUT_CHARACTERS = 5000
PPL_LINE = "PerplexityMetric = {'PerplexityMetric': {'loss': "


def held_out_text(path, characters):
    """Whole documents from the end of the sample text (the training rows come from its start)."""
    with open(path, encoding="utf-8") as stream:
        documents = [doc.strip("\n") for doc in stream.read().split("\n\n") if doc.strip()]
    kept = []
    while sum(len(doc) for doc in kept) < characters:
        kept.insert(0, documents.pop())
    return "\n\n".join(kept) + "\n"


def read_rows(path):
    from mindspore.mindrecord import FileReader  # pylint: disable=import-outside-toplevel
    reader = FileReader(str(path))
    try:
        rows = [record for _, record in zip(range(10 ** 6), reader.get_next())]
    finally:
        reader.close()
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def nll_per_row(logits, ids, labels=None, pad_token_id=0):
    """NumPy float64: per row, the summed NLL of the next tokens over the counted positions (label not -100, input
    not padding) and their number."""
    targets = (ids if labels is None else labels)[:, 1:]
    mask = (targets != -100) & (ids[:, :-1] != pad_token_id)
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.maximum(targets, 0)[..., None], -1)[..., 0]
    return -(picked * mask).sum(1), mask.sum(1)


def token_mean(sums, counts):
    return float(sums.sum() / counts.sum())


def uneven_batch_size(rows):
    """A batch size that leaves a short last batch."""
    return next(size for size in (4, 3, 5, 7) if rows % size)


def our_logits(checkpoint, config, ids):
    """The model of the run's YAML, its own forward (PyNative) over every row but its last token."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.causal_language_modeling import build_network  # noqa: E501 pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, model = build_network(MindFormerConfig(str(config)))
    params = ms.load_checkpoint(checkpoint)
    ms.load_param_into_net(model, {name: params[name] for name, _ in model.parameters_and_names()})
    model.set_train(False)
    return model(ms.Tensor(ids[:, :-1])).asnumpy()


def run_eval(config, rows, checkpoint, output, *flags):
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "eval", "--eval_dataset_dir", rows,
                      "--load_checkpoint", checkpoint, "--output_dir", output] + list(flags))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(output, "eval_results.json"), encoding="utf-8") as stream:
        return json.load(stream), result


def train(config, rows, output, *flags):
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "train", "--train_dataset_dir", rows,
                      "--output_dir", output] + list(flags))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return list_checkpoints(os.path.join(output, "checkpoint", "rank_0"))[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sp_model_file, wiki_mindrecord):
    """(config, checkpoint file) of the tiny model (seq 32) trained for one epoch on the leading sample text."""
    folder = tmp_path_factory.mktemp("eval_trained")
    config = write_user_config(
        folder / "my_pretrain.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file, seed=3,
        runner_config={"epochs": 1, "batch_size": 4}, lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        tensorboard={"log_timers_to_tensorboard": False},
        callbacks=[{"type": "MFLossMonitor", "per_print_times": 100},
                   {"type": "CheckpointMonitor", "prefix": "tiny", "save_checkpoint_steps": 1000}])
    return config, train(config, wiki_mindrecord, folder / "out")


@pytest.fixture(scope="module")
def held_out_rows(tmp_path_factory, sp_model_file, sample_text_files):
    """Held-out text preprocessed twice: rows of seq_length+1 (33, this project's and the training rows' layout,
    through the CLI) and rows of seq_length (32, what MindFormers' README makes with --seq_length 4095 for 4096)."""
    from mindformers.tools.dataset_preprocess.llama import llama_preprocess  # noqa: E501 pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("held_out")
    text = folder / "wiki.valid.tokens"
    text.write_text(held_out_text(sample_text_files[0], HELD_OUT_CHARACTERS), encoding="utf-8")
    args = ["--dataset_type", "wiki", "--input_glob", str(text), "--model_file", sp_model_file]
    result = run_cli(["mindformers/tools/dataset_preprocess/llama/llama_preprocess.py"] + args
                     + ["--seq_length", "32", "--output_file", folder / "wiki33.mindrecord"])
    assert result.returncode == 0, result.stderr[-2000:]
    llama_preprocess.main(args + ["--seq_length", "31", "--output_file", str(folder / "wiki32.mindrecord")])
    return {33: str(folder / "wiki33.mindrecord"), 32: str(folder / "wiki32.mindrecord")}


def test_perplexity_of_a_trained_model_equals_numpy_over_its_logits(trained, held_out_rows, tmp_path):
    config, checkpoint = trained
    training_output = os.path.dirname(os.path.dirname(os.path.dirname(checkpoint)))
    outputs = {33: training_output, 32: tmp_path / "rows32"}  # one result beside the training run's records
    for length, rows in held_out_rows.items():
        ids = read_rows(rows)["input_ids"]
        assert ids.shape[1] == length
        results, result = run_eval(config, rows, checkpoint, outputs[length], "--batch_size",
                                   str(uneven_batch_size(len(ids))))
        assert list(results) == ["PerplexityMetric"] and PPL_LINE in result.stdout
        assert "eval: 100%" in result.stderr  # the progress bar ran to the end
        expected = token_mean(*nll_per_row(our_logits(checkpoint, config, ids), ids))
        ppl = results["PerplexityMetric"]
        assert ppl["loss"] == pytest.approx(expected, rel=1e-4)
        assert ppl["PPL"] == pytest.approx(math.exp(expected), rel=1e-4)
        assert ppl["PPL"] < 0.6 * TINY_SIZES["vocab_size"]  # trained: far better than a uniform guess
    assert not [name for name in os.listdir(training_output) if name.startswith(".tmp-")]
    check_eval_is_recorded(training_output)


def check_eval_is_recorded(output):
    """With a tensorboard section the result is also an eval/... scalar at the checkpoint's training step, and the
    run's report shows it."""
    from mindformers.tools.report import main as report  # pylint: disable=import-outside-toplevel
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    with open(os.path.join(output, "eval_results.json"), encoding="utf-8") as stream:
        ppl = json.load(stream)["PerplexityMetric"]
    last_step = read_metrics(output)[-1]["step"]
    events = event_accumulator.EventAccumulator(os.path.join(output, "tensorboard", "rank_0"))
    events.Reload()
    [loss] = events.Scalars("eval/PerplexityMetric/loss")
    assert loss.step == last_step and loss.value == pytest.approx(ppl["loss"], rel=1e-6)
    assert "throughput" not in events.Tags()["scalars"] and "loss" in events.Tags()["scalars"]  # no timers
    assert report([output]) == 0
    page = open(os.path.join(output, "report", "index.html"), encoding="utf-8").read()
    assert "Evaluation" in page and "PerplexityMetric.PPL" in page and f"{ppl['PPL']:.6g}" in page


@pytest.fixture(scope="module")
def instruction_rows(tmp_path_factory, sp_model_file):
    """The shipped Q&A sample through alpaca_converter.py and llama_preprocess.py --dataset_type qa (seq 128)."""
    from mindformers.tools.dataset_preprocess.llama import alpaca_converter, llama_preprocess  # noqa: E501 pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("qa_eval")
    conversations, output = str(folder / "conversations.json"), str(folder / "qa.mindrecord")
    alpaca_converter.main(["--data_path", os.path.join(REPO, "datasets", "sample", "python_docs_alpaca.json"),
                           "--output_path", conversations])
    llama_preprocess.main(["--dataset_type", "qa", "--input_glob", conversations, "--model_file", sp_model_file,
                           "--seq_length", str(QA_SEQ_LENGTH), "--template", "llama-2", "--output_file", output])
    return output


def transformers_logits(checkpoint, config, ids, folder):
    """The same weights converted with convert_weight.py --reversed, run by transformers (torch, fp32)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import convert_weight  # pylint: disable=import-outside-toplevel
    convert_weight.main(["--no_progress", "--model", "llama2", "--input_path", checkpoint, "--output_path",
                         str(folder), "--reversed", "--config", config])
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        return model(torch.tensor(ids[:, :-1], dtype=torch.long)).logits.numpy()


def test_perplexity_on_instruction_rows_matches_transformers(trained, instruction_rows, sp_model_file, tmp_path):
    """Labels are -100 on prompts and padding, so every batch counts a different number of tokens: the result is
    the token-weighted mean of the whole set, not a mean of batch means."""
    pretrain_config, checkpoint = trained
    sizes = dict(TINY_SIZES, seq_length=QA_SEQ_LENGTH)  # same weights, longer rows (rotary tables are not weights)
    config = write_user_config(tmp_path / "qa_eval.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file,
                               sizes=sizes)
    rows = read_rows(instruction_rows)
    ids, labels = rows["input_ids"], rows["labels"]
    batch_size = uneven_batch_size(len(ids))
    results, _ = run_eval(config, instruction_rows, checkpoint, tmp_path / "out", "--batch_size", str(batch_size))
    loss = results["PerplexityMetric"]["loss"]

    sums, counts = nll_per_row(our_logits(checkpoint, config, ids), ids, labels)
    theirs = token_mean(*nll_per_row(transformers_logits(checkpoint, pretrain_config, ids, tmp_path / "hf"), ids,
                                     labels))
    assert loss == pytest.approx(token_mean(sums, counts), rel=1e-4) and loss == pytest.approx(theirs, rel=1e-4)
    assert results["PerplexityMetric"]["PPL"] == pytest.approx(math.exp(theirs), rel=1e-4)
    # batches count different numbers of tokens, and averaging batch means would give a clearly different number
    batches = [slice(start, start + batch_size) for start in range(0, len(ids), batch_size)]
    assert len({int(counts[batch].sum()) for batch in batches}) > 1
    mean_of_means = np.mean([token_mean(sums[batch], counts[batch]) for batch in batches])
    assert abs(mean_of_means - loss) > 1e-3 * loss, (mean_of_means, loss)


@pytest.fixture(scope="module")
def squad_rows(tmp_path_factory, sp_model_file, sample_text_files):
    """A SQuAD-format file of six questions on sample-text passages -> squad_data_process.py train and eval rows."""
    from mindformers.tools.dataset_preprocess.llama import squad_data_process  # noqa: E501 pylint: disable=import-outside-toplevel
    from tests.tools.test_squad_data_process import squad_file  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("squad")
    source, _ = squad_file(folder, sample_text_files[0], articles=6)
    rows = {}
    for mode in ("train", "eval"):
        rows[mode] = str(folder / f"squad_{mode}.mindrecord")
        squad_data_process.main(["--input_file", str(source), "--output_file", rows[mode], "--mode", mode,
                                 "--max_length", str(SQUAD_SEQ_LENGTH), "--tokenizer_type", sp_model_file])
    return rows


def test_em_f1_on_squad_rows_of_learned_questions(tmp_path, sp_model_file, squad_rows):
    config = write_user_config(
        tmp_path / "my_squad.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file, seed=0,
        sizes=dict(TINY_SIZES, seq_length=SQUAD_SEQ_LENGTH), runner_config={"epochs": 80, "batch_size": 6},
        lr_schedule={"learning_rate": 1.e-2, "lr_end": 1.e-3, "warmup_steps": 2},
        train_dataset={"input_columns": ["input_ids", "labels"]},
        callbacks=[{"type": "CheckpointMonitor", "prefix": "squad", "save_checkpoint_steps": 1000}])
    checkpoint = train(config, squad_rows["train"], tmp_path / "train")  # the model learns the six answers by heart
    results, result = run_eval(config, squad_rows["eval"], checkpoint, tmp_path / "eval", "--batch_size", "4")
    assert results == {"EmF1Metric": {"F1": 100.0, "Em": 100.0, "total_count": 6}}
    assert "EmF1Metric = {'EmF1Metric': {'F1': 100.0, 'Em': 100.0, 'total_count': 6}}" in result.stdout
    assert "F1 score: 100.0, Em score: 100.0, total_count: 6" in result.stdout


# ---- one-line errors ---------------------------------------------------------------------------------------------

def assert_user_error(outcome, *fragments):
    code, _, err = outcome
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def pynative_config(tmp_path_factory, sp_model_file):
    return write_user_config(tmp_path_factory.mktemp("eval_errors") / "eval.yaml", "llama2/pretrain_llama2_tiny.yaml",
                             sp_model_file, context={"mode": 1})


def test_bad_input_is_one_line(pynative_config, trained, held_out_rows, squad_rows, tmp_path, capsys,
                               sp_model_file, monkeypatch):
    _, checkpoint = trained
    rows = held_out_rows[33]

    def evaluate(*flags, config=pynative_config):
        return run_main(["--config", config, "--run_mode", "eval", "--output_dir", tmp_path] + list(flags), capsys)

    assert_user_error(evaluate("--load_checkpoint", checkpoint), "eval_dataset.data_loader.dataset_dir: missing",
                      "--eval_dataset_dir")
    assert_user_error(evaluate("--eval_dataset_dir", tmp_path / "none.mindrecord", "--load_checkpoint", checkpoint),
                      "eval_dataset.data_loader.dataset_dir", "none.mindrecord")
    assert_user_error(evaluate("--eval_dataset_dir", rows), "load_checkpoint", "run_mode eval")
    assert_user_error(evaluate("--eval_dataset_dir", rows, "--load_checkpoint", tmp_path / "no_such_ckpt"),
                      "load_checkpoint", "no_such_ckpt")
    typo = write_user_config(tmp_path / "typo.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file,
                             context={"mode": 1}, metric={"type": "PerplexityMetrc"})
    assert_user_error(evaluate("--eval_dataset_dir", rows, "--load_checkpoint", checkpoint, config=typo),
                      "metric.type", "PerplexityMetrc", "did you mean 'PerplexityMetric'")
    listed = write_user_config(tmp_path / "listed.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file,
                               context={"mode": 1}, metric=[{"type": "PerplexityMetric"}, {"type": "EmF1Metric"}])
    assert_user_error(evaluate("--eval_dataset_dir", rows, "--load_checkpoint", checkpoint, config=listed),
                      "eval_dataset.input_columns", "EmF1Metric needs the rows' labels")
    squad = write_user_config(tmp_path / "squad.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file,
                              context={"mode": 1}, sizes=dict(TINY_SIZES, seq_length=128))
    assert_user_error(evaluate("--eval_dataset_dir", squad_rows["eval"], "--load_checkpoint", checkpoint,
                               config=squad), "eval_dataset.data_loader.dataset_dir: row 0: a prompt of",
                      "model.model_config.seq_length 128")
    assert_user_error(evaluate("--eval_task", "mmlu", "--load_checkpoint", checkpoint), "eval_data_path",
                      "--eval_data_path")
    assert_user_error(evaluate("--eval_task", "mmlu", "--eval_data_path", tmp_path / "absent"), "eval_data_path",
                      "not found", "absent")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "mindformers.evaluation", None)  # a build without the benchmark package
        assert_user_error(evaluate("--eval_task", "mmlu", "--eval_data_path", tmp_path, "--load_checkpoint",
                                   checkpoint), "eval_task", "mindformers.evaluation")
    assert not (tmp_path / "eval_results.json").exists()


def test_rows_shorter_than_seq_length_through_the_cli(trained, held_out_rows, tmp_path):
    """The shipped tiny config has seq_length 128; the held-out rows were made for 32."""
    result = run_cli(["run_mindformer.py", "--config", os.path.join(REPO, "configs", "llama2",
                                                                    "pretrain_llama2_tiny.yaml"),
                      "--run_mode", "eval", "--eval_dataset_dir", held_out_rows[33], "--load_checkpoint", trained[1],
                      "--output_dir", tmp_path])
    assert_one_line_error(result, "eval_dataset.data_loader.dataset_dir: rows hold 33 tokens",
                          "model.model_config.seq_length is 128", "--seq_length 128")
    assert not (tmp_path / "eval_results.json").exists()


def test_eval_task_gets_the_predict_model_and_the_flags(pynative_config, trained, tmp_path, capsys, monkeypatch):
    """--eval_task hands mindformers.evaluation.run_benchmark_task the questions load_benchmark read, the network
    with the checkpoint's weights, the tokenizer and the flags (the tasks themselves are tested with that
    package)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    calls = []
    package = types.ModuleType("mindformers.evaluation")
    package.load_benchmark = lambda task, data_path: [f"questions of {task} in {data_path}"]
    package.run_benchmark_task = lambda **kwargs: calls.append(kwargs) or {"accuracy": 0.25}
    monkeypatch.setitem(sys.modules, "mindformers.evaluation", package)
    data = tmp_path / "mmlu_data"
    data.mkdir()
    code, out, err = run_main(["--config", pynative_config, "--run_mode", "eval", "--eval_task", "mmlu",
                               "--eval_data_path", data, "--load_checkpoint", trained[1], "--evaluation_batch_size",
                               "2", "--max_new_tokens", "3", "--output_dir", tmp_path / "out"], capsys)
    assert code == 0, err
    (call,) = calls
    assert {key: call[key] for key in ("task", "data_path", "output_dir", "batch_size", "max_new_tokens")} == {
        "task": "mmlu", "data_path": str(data), "output_dir": str(tmp_path / "out"), "batch_size": 2,
        "max_new_tokens": 3}
    assert call["questions"] == [f"questions of mmlu in {data}"]  # read before the model was built
    assert not call["model"].training and len(call["tokenizer"]) == TINY_SIZES["vocab_size"]
    saved = ms.load_checkpoint(trained[1])
    for name, param in call["model"].parameters_and_names():
        np.testing.assert_array_equal(param.asnumpy(), saved[name].asnumpy())
    assert "mmlu = {'accuracy': 0.25}" in out
