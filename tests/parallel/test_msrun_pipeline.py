"""Pipeline stages on CPU through scripts/msrun_launcher.sh, 4 workers each (tiny GQA model, clipping on, 3
micro-batches per step over 2 stages): data_parallel 2 x pipeline_stage 2 with the parallel optimizer in PyNative
mode and model_parallel 2 (vocabulary split) x pipeline_stage 2 in graph mode follow the single process' loss curve;
each stage saves only its own weights (and its data-parallel slice of their moments) with the layout of the whole
model. Their checkpoints resume under other meshes with auto_trans_ckpt on the same curve: mp2 x pp2 in ONE process,
dp2 x pp2 on 4 workers as model_parallel 2 x pipeline_stage 2 with sequence parallelism. Two launches (~40 s each)
run side by side with the single-process reference, then the 4-worker resume beside the one-process resume."""
import os

import mindspore as ms
import pytest

from mindformers.parallel.layout_file import read_layout_file
from tests.e2e.helpers import TINY_SIZES, read_metrics, run_cli, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

MAX_GRAD_NORM = 0.3  # below the tiny model's gradient norms, so every step is clipped
SAVE_EVERY = 2
RUNS = {  # name -> (context.mode, parallel_config); the tiny YAML enables the parallel optimizer (as MindFormers')
    "dp2_pp2": (1, {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 2, "micro_batch_num": 3}),
    "mp2_pp2": (0, {"data_parallel": 1, "model_parallel": 2, "pipeline_stage": 2, "micro_batch_num": 3,
                    "vocab_emb_dp": False}),
}
# resumed run -> (the run whose checkpoint it resumes, its workers, the mesh it resumes under)
RESUMES = {"mp2_pp2_as_1": ("mp2_pp2", 1, {}),
           "dp2_pp2_as_mp2_pp2_seq": ("dp2_pp2", 4, {"data_parallel": 1, "model_parallel": 2, "pipeline_stage": 2,
                                                     "micro_batch_num": 3, "vocab_emb_dp": False,
                                                     "use_seq_parallel": True})}


def user_config(path, sp_model_file, wiki_mindrecord, **sections):
    """Global batch 48 (4 steps over the test data), a checkpoint every 2 steps."""
    return write_user_config(
        path, "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=dict(TINY_SIZES, num_heads=4, n_kv_heads=2),
        seed=7, runner_config={"epochs": 1, "global_batch_size": 48, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        parallel={"parallel_optimizer_config": {"parallel_optimizer_threshold": 0}},  # every weight's moments split
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 1},
        runner_wrapper={"use_clip_grad": True, "max_grad_norm": MAX_GRAD_NORM},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "pp", "save_checkpoint_steps": SAVE_EVERY,
                    "keep_checkpoint_max": 5}],
        **sections)


def resume_arguments(output):
    return (f" --load_checkpoint {os.path.join(output, 'checkpoint')} --resume_training pp_rank_0-1_{SAVE_EVERY}.ckpt"
            " --auto_trans_ckpt True")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("pp_runs")
    outputs = {name: str(base / name) for name in ("single", *RUNS, *RESUMES)}
    launches = {}
    for name, (mode, parallel_config) in RUNS.items():
        config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, context={"mode": mode},
                             parallel_config=parallel_config)
        launches[name] = launch(train_command(config, outputs[name]), 4, log_dir=str(base / f"log_{name}"))
    single_config = user_config(base / "single.yaml", sp_model_file, wiki_mindrecord)
    single = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                      "--output_dir", outputs["single"]])
    assert single.returncode == 0, single.stderr[-3000:]
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    launches = {}
    for name, (source, workers, parallel_config) in RESUMES.items():
        if workers > 1:  # PyNative: two steps do not pay for a graph compile
            config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, context={"mode": 1},
                                 parallel_config=parallel_config)
            launches[name] = launch(train_command(config, outputs[name], extra=resume_arguments(outputs[source])),
                                    workers, log_dir=str(base / f"log_{name}"))
    for name, (source, workers, _) in RESUMES.items():
        if workers == 1:
            resumed = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                               "--output_dir", outputs[name], *resume_arguments(outputs[source]).split()])
            assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    return outputs


def assert_same_curve(reference, got, name):
    assert [m["step"] for m in got] == [m["step"] for m in reference], name
    for ref, step in zip(reference, got):
        assert step["loss"] == pytest.approx(ref["loss"], rel=1e-5), (name, ref["step"], ref["loss"], step["loss"])
        assert step["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4), (name, ref["step"])
        assert step["lr"] == pytest.approx(ref["lr"], rel=1e-6), (name, ref["step"])
        assert not step["overflow"]


@pytest.mark.parametrize("name", list(RUNS))
def test_pipeline_runs_follow_the_single_process_loss_curve(runs, name):
    single = read_metrics(runs["single"])
    assert len(single) >= 4 and all(m["grad_norm"] > MAX_GRAD_NORM for m in single)
    assert single[-1]["loss"] < single[0]["loss"]
    assert_same_curve(single, read_metrics(runs[name]), name)


def test_each_stage_saves_only_its_weights_with_the_whole_model_layout(runs):
    folder = os.path.join(runs["dp2_pp2"], "checkpoint")
    held, moments = {}, {}
    for rank in range(4):
        names = [n for n in os.listdir(os.path.join(folder, f"rank_{rank}")) if n.endswith(".ckpt")]
        params = ms.load_checkpoint(os.path.join(folder, f"rank_{rank}", sorted(names)[-1]))
        held[rank] = {k: v.shape for k, v in params.items() if not k.startswith(
            ("adam_", "global_step", "scale", "step", "epoch", "loss_scale", "learning_rate", "current"))}
        moments[rank] = {k[len("adam_m."):]: v.shape for k, v in params.items() if k.startswith("adam_m.")}
    layout = read_layout_file(os.path.join(folder, "rank_2", "strategy.json"))
    assert layout["stage"] == 1 and layout["mesh"]["pipeline_stage"] == 2
    stage_of = {name: entry["stage"] for name, entry in layout["parameters"].items()}
    assert set(held[0]) == set(held[1]) == {n for n, s in stage_of.items() if s == 0}  # data-parallel replicas
    assert set(held[2]) == set(held[3]) == {n for n, s in stage_of.items() if s == 1}
    assert "model.tok_embeddings.embedding_weight" in held[0] and "lm_head.weight" in held[2]
    # the parallel optimizer: each data-parallel rank of a stage keeps half of every moment, and one rank's layout
    # file says so for the whole model
    assert all(entry["optimizer_parts"] == 2 for entry in layout["parameters"].values())
    for rank in range(4):
        assert moments[rank].keys() == held[rank].keys()
        assert all(shape[0] * 2 == held[rank][name][0] for name, shape in moments[rank].items()), rank


@pytest.mark.parametrize("name", list(RESUMES))
def test_resumes_under_another_mesh_follow_the_loss_curve(runs, name):
    single, resumed = read_metrics(runs["single"]), read_metrics(runs[name])
    assert_same_curve(single[SAVE_EVERY:], resumed, name)
    log = open(os.path.join(runs[name], "log", "rank_0", "info.log"), encoding="utf-8").read()
    source_mesh = RUNS[RESUMES[name][0]][1]
    saved = " ".join(f"{key}={source_mesh[key]}" for key in ("data_parallel", "model_parallel", "pipeline_stage"))
    assert "auto_trans_ckpt: resharded" in log and saved in log and "resuming at global step 2" in log, log[-2000:]
