"""Four CPU workers through scripts/msrun_launcher.sh: data_parallel 2 x model_parallel 2, plain and with sequence
parallelism plus the parallel optimizer (AdamW moments split over the data-parallel ranks), follow the loss curve of
the single process; the sharded run's checkpoint resumes in ONE process with --auto_trans_ckpt True on the same
curve, and so does the plain dp2 x mp2 run's. Two launches run side by side with the single-process reference.

Then, from the single process' checkpoint (resharded on load), model_parallel 2 on 2 workers: LoRA fine-tuning (on
column- and row-parallel layers) follows the single process' curve, perplexity evaluation gives its number, and
predict its tokens. Three launches side by side with the three single-process runs."""
import json
import os

import mindspore as ms
import numpy as np
import pytest

from tests.e2e.helpers import TINY_SIZES, read_metrics, run_main, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

SAVE_EVERY = 3
DP2_MP2 = {"data_parallel": 2, "model_parallel": 2, "vocab_emb_dp": False}
RUNS = {  # name -> (parallel_config, parallel); graph mode (the tiny YAML's)
    "dp2_mp2": (DP2_MP2, {"enable_parallel_optimizer": False}),  # the shipped configs enable it
    "dp2_mp2_seq_opt": (dict(DP2_MP2, use_seq_parallel=True),
                        {"enable_parallel_optimizer": True,
                         "parallel_optimizer_config": {"parallel_optimizer_threshold": 0}}),
}


def user_config(path, sp_model_file, wiki_mindrecord, **sections):
    """The tiny GQA model (4 heads, 2 kv heads), global batch 32: 7 steps, a checkpoint every 3."""
    return write_user_config(
        path, "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=dict(TINY_SIZES, num_heads=4, n_kv_heads=2),
        seed=7, runner_config={"epochs": 1, "global_batch_size": 32, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        runner_wrapper={"use_clip_grad": True, "max_grad_norm": 1.0},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "run", "save_checkpoint_steps": SAVE_EVERY,
                    "keep_checkpoint_max": 10}],
        **sections)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("four_workers")
    outputs = {name: str(base / name) for name in ("single", *RUNS, *(f"{run}_resumed" for run in RUNS))}
    launches = {}
    for name, (parallel_config, parallel) in RUNS.items():
        config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, parallel_config=parallel_config,
                             parallel=dict(parallel, full_batch=False))
        launches[name] = launch(train_command(config, outputs[name]), 4, log_dir=str(base / f"log_{name}"))
    single_config = user_config(base / "single.yaml", sp_model_file, wiki_mindrecord)
    # The single-process runs go through run_mindformer's main in this process (the CLI is not the point here).
    assert run_main(["--config", single_config, "--run_mode", "train", "--output_dir", outputs["single"]])[0] == 0
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    for name in RUNS:
        assert run_main(["--config", single_config, "--run_mode", "train", "--output_dir", outputs[f"{name}_resumed"],
                         "--load_checkpoint", os.path.join(outputs[name], "checkpoint"),
                         "--resume_training", f"run_rank_0-1_{SAVE_EVERY}.ckpt", "--auto_trans_ckpt", "True"])[0] == 0
    return outputs


@pytest.mark.parametrize("name", list(RUNS))
def test_loss_and_gradient_norm_follow_the_single_process(runs, name):
    single, parallel = read_metrics(runs["single"]), read_metrics(runs[name])
    assert len(single) == len(parallel) >= 6
    assert single[-1]["loss"] < single[0]["loss"] - 0.1  # the model learns
    for ref, got in zip(single, parallel):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), (name, ref["step"], ref["loss"], got["loss"])
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4), (name, ref["step"])


def moments(output, rank):
    folder = os.path.join(output, "checkpoint", f"rank_{rank}")
    name = next(n for n in sorted(os.listdir(folder)) if n.endswith(f"_{SAVE_EVERY}.ckpt"))
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(os.path.join(folder, name)).items()
            if k.startswith("adam_m.")}


def test_each_data_parallel_rank_keeps_its_slice_of_the_moments(runs):
    plain = moments(runs["dp2_mp2"], 0)
    first, second = moments(runs["dp2_mp2_seq_opt"], 0), moments(runs["dp2_mp2_seq_opt"], 2)  # same model part
    assert plain.keys() == first.keys()
    for key, value in plain.items():
        assert first[key].shape[0] * 2 == value.shape[0], key
        np.testing.assert_allclose(np.concatenate([first[key], second[key]]), value, rtol=1e-3, atol=1e-6,
                                   err_msg=key)


@pytest.mark.parametrize("name", list(RUNS))
def test_the_sharded_checkpoint_resumes_in_one_process_on_the_curve(runs, name):
    single, resumed = read_metrics(runs["single"]), read_metrics(runs[f"{name}_resumed"])
    assert [m["step"] for m in resumed] == [m["step"] for m in single[SAVE_EVERY:]]
    for ref, got in zip(single[SAVE_EVERY:], resumed):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), (ref["step"], ref["loss"], got["loss"])


INFERENCE_MESH = {"data_parallel": 1, "model_parallel": 2, "vocab_emb_dp": False}
LORA = {"pet_type": "lora", "lora_rank": 4, "lora_alpha": 8, "target_modules": ".*wq|.*wv|.*w2"}
PROMPTS = "The history of the\nIn the year\n"


def last_checkpoint(output):
    folder = os.path.join(output, "checkpoint", "rank_0")
    return os.path.join(folder, sorted((n for n in os.listdir(folder) if n.endswith(".ckpt")),
                                       key=lambda n: int(n.rsplit("_", 1)[1].split(".")[0]))[-1])


def command(config, output, mode, checkpoint, wiki_mindrecord, parallel, prompts):
    args = ["run_mindformer.py", "--config", config, "--run_mode", mode, "--output_dir", output,
            "--load_checkpoint", checkpoint]
    if mode == "eval":
        args += ["--eval_dataset_dir", wiki_mindrecord]
    if mode == "predict":
        args += ["--predict_data", prompts, "--max_new_tokens", "8"]
    if mode == "finetune":
        args += ["--train_dataset_dir", wiki_mindrecord]
    if parallel:
        args += ["--use_parallel", "True", "--auto_trans_ckpt", "True"]
    return args


@pytest.fixture(scope="module")
def mp2_runs(runs, tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("mp2_inference")
    checkpoint = last_checkpoint(runs["single"])
    prompts = base / "prompts.txt"
    prompts.write_text(PROMPTS, encoding="utf-8")
    modes = {"eval": {}, "predict": {}, "finetune": {"model": {"model_config": {"pet_config": LORA}}}}
    outputs, launches = {}, {}
    for mode, sections in modes.items():
        for parallel in (True, False):
            name = f"{mode}_{'mp2' if parallel else 'single'}"
            outputs[name] = str(base / name)
            config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, **sections,
                                 **({"parallel_config": INFERENCE_MESH} if parallel else {}))
            args = command(config, outputs[name], mode, checkpoint, wiki_mindrecord, parallel, str(prompts))
            if parallel:
                launches[name] = launch(" ".join(args), 2, log_dir=str(base / f"log_{name}"))
    for mode in modes:
        name = f"{mode}_single"
        config = str(base / f"{name}.yaml")
        args = command(config, outputs[name], mode, checkpoint, wiki_mindrecord, False, str(prompts))
        assert run_main(args[1:])[0] == 0, name
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    return outputs


def read_json_lines(path):
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def test_lora_with_model_parallel_follows_the_single_process(mp2_runs):
    single, parallel = read_metrics(mp2_runs["finetune_single"]), read_metrics(mp2_runs["finetune_mp2"])
    assert len(single) == len(parallel) >= 6
    for ref, got in zip(single, parallel):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), (ref["step"], ref["loss"], got["loss"])
        # the adapters' gradients (the only ones) agree: B on column- and row-parallel layers, then A too
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4) and ref["grad_norm"] > 0


def test_eval_and_predict_with_model_parallel_equal_the_single_process(mp2_runs):
    results = {}
    for name in ("eval_single", "eval_mp2"):
        with open(os.path.join(mp2_runs[name], "eval_results.json"), encoding="utf-8") as stream:
            results[name] = json.load(stream)["PerplexityMetric"]
    assert results["eval_mp2"]["loss"] == pytest.approx(results["eval_single"]["loss"], rel=1e-5)
    assert results["eval_mp2"]["PPL"] == pytest.approx(results["eval_single"]["PPL"], rel=1e-5)
    single = read_json_lines(os.path.join(mp2_runs["predict_single"], "predict_results.jsonl"))
    parallel = read_json_lines(os.path.join(mp2_runs["predict_mp2"], "predict_results.jsonl"))
    assert [r["output_ids"] for r in parallel] == [r["output_ids"] for r in single] and len(single) == 2
