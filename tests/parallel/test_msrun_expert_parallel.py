"""Expert parallelism on CPU through scripts/msrun_launcher.sh: the tiny Mixtral (4 experts, top 2, dropless) with
data_parallel 2 and expert_parallel 2 (each worker holds 2 of every layer's 4 experts and their AdamW moments; tokens
travel to the experts' rank and back by all-reduce) follows the single process' loss curve, router load and
auxiliary loss to 1e-5; its checkpoint, saved under expert_parallel 2, resumes in ONE process with auto_trans_ckpt
(experts merged) on the same curve, and transform_ckpt merges it and splits it back bit for bit. One launch
(~1 min) beside two single-process runs."""
import os

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint.checkpoint_io import list_checkpoints
from mindformers.parallel.layout_file import read_layout_file
from mindformers.tools.transform_ckpt import main as transform_main
from tests.e2e.helpers import TINY_SIZES, read_metrics, run_main, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

SAVE_EVERY = 4
EXPERTS = 4
EXPERT_WEIGHTS = ("ffn.w1.weight", "ffn.w2.weight", "ffn.w3.weight")


def user_config(path, sp_model_file, wiki_mindrecord, **sections):
    """The tiny Mixtral, global batch 16 (about 10 steps over the test data), a checkpoint every 4 steps."""
    return write_user_config(
        path, "mixtral/pretrain_mixtral_tiny.yaml", sp_model_file, sizes=dict(TINY_SIZES, num_heads=4, n_kv_heads=2),
        seed=7, moe_config={"expert_num": EXPERTS, "num_experts_chosen": 2, "capacity_factor": -1.0,
                            "aux_loss_factor": 0.05},
        runner_config={"epochs": 1, "global_batch_size": 16, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "ep", "save_checkpoint_steps": SAVE_EVERY,
                    "keep_checkpoint_max": 10}],
        **sections)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("expert_parallel")
    outputs = {name: str(base / name) for name in ("ep2", "single", "resumed")}
    ep2_config = user_config(base / "ep2.yaml", sp_model_file, wiki_mindrecord,
                             parallel_config={"data_parallel": 2, "expert_parallel": 2})
    ep2 = launch(train_command(ep2_config, outputs["ep2"]), 2, log_dir=str(base / "log_ep2"))
    # The single-process runs go through run_mindformer's main in this process (the CLI is not the point here).
    single_config = user_config(base / "single.yaml", sp_model_file, wiki_mindrecord)
    assert run_main(["--config", single_config, "--run_mode", "train", "--output_dir", outputs["single"]])[0] == 0
    code, out, err = finish(ep2)
    assert code == 0, out[-2000:] + err[-2000:] + logs(base / "log_ep2")
    assert run_main(["--config", single_config, "--run_mode", "train", "--output_dir", outputs["resumed"],
                     "--load_checkpoint", os.path.join(outputs["ep2"], "checkpoint"), "--resume_training",
                     f"ep_rank_0-1_{SAVE_EVERY}.ckpt", "--auto_trans_ckpt", "True"])[0] == 0
    return outputs, base



def assert_same_curve(reference, got):
    for ref, step in zip(reference, got):
        assert step["step"] == ref["step"]
        assert step["loss"] == pytest.approx(ref["loss"], abs=1e-5), (ref["step"], ref["loss"], step["loss"])
        assert step["aux_loss"] == pytest.approx(ref["aux_loss"], abs=1e-5), ref["step"]
        assert step["expert_load"] == ref["expert_load"], ref["step"]
        assert step["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4), ref["step"]


def test_expert_parallel_follows_the_single_process(runs):
    outputs, _ = runs
    single, ep2 = read_metrics(outputs["single"]), read_metrics(outputs["ep2"])
    assert len(single) == len(ep2) >= SAVE_EVERY + 4
    assert single[-1]["loss"] < single[0]["loss"] - 0.1  # the model learns
    # Every record holds the routers' numbers: 2 layers x 4 experts, 16 rows of 32 tokens routed to 2 experts each.
    assert all(len(m["expert_load"]) == 2 and all(sum(layer) == 16 * 32 * 2 for layer in m["expert_load"])
               and m["dropped_tokens"] == 0 and m["aux_loss"] >= 2.0 - 1e-6 for m in single)
    assert_same_curve(single, ep2)


def test_expert_parallel_checkpoint_resumes_in_one_process(runs):
    outputs, _ = runs
    single, resumed = read_metrics(outputs["single"]), read_metrics(outputs["resumed"])
    assert [m["step"] for m in resumed] == [m["step"] for m in single[SAVE_EVERY:]]
    assert_same_curve(single[SAVE_EVERY:], resumed)
    log = open(os.path.join(outputs["resumed"], "log", "rank_0", "info.log"), encoding="utf-8").read()
    assert "data_parallel=2 model_parallel=1 pipeline_stage=1 expert_parallel=2" in log, log[-2000:]


def newest_tensors(folder):
    """The newest save in a rank folder (what transform_ckpt takes from each), as numpy."""
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(list_checkpoints(folder)[-1]).items()}


def test_each_rank_holds_its_experts_and_transform_ckpt_merges_and_splits_them(runs):
    outputs, base = runs
    folders = [os.path.join(outputs["ep2"], "checkpoint", f"rank_{rank}") for rank in (0, 1)]
    layout = read_layout_file(os.path.join(folders[0], "strategy.json"))
    assert layout["mesh"]["expert_parallel"] == 2
    ranks = [newest_tensors(folder) for folder in folders]
    experts = [name for name in layout["parameters"] if name.endswith(EXPERT_WEIGHTS)]
    assert len(experts) == 6
    for name in experts:
        entry = layout["parameters"][name]
        assert (entry["expert_dim"], entry["expert_parts"], entry["shape"][0]) == (0, 2, EXPERTS)
        for tensors in ranks:  # the weight and its moments: 2 of the 4 experts
            assert tensors[name].shape[0] == 2 and tensors[f"adam_m.{name}"].shape[0] == 2
    router = "model.layers.0.feed_forward.router.dense.weight"
    np.testing.assert_array_equal(ranks[0][router], ranks[1][router])  # replicated weights stay identical

    merged = str(base / "merged.ckpt")
    assert transform_main(["--src_checkpoint", os.path.join(outputs["ep2"], "checkpoint"), "--dst_checkpoint", merged,
                           "--no_progress"]) == 0
    whole = {k: v.asnumpy() for k, v in ms.load_checkpoint(merged).items()}
    for name in experts:
        np.testing.assert_array_equal(whole[name], np.concatenate([ranks[0][name], ranks[1][name]]))
    split = str(base / "split")
    assert transform_main(["--src_checkpoint", merged, "--dst_checkpoint", split, "--dst_mesh", "2,1,1,2",
                           "--config", str(base / "ep2.yaml"), "--no_progress"]) == 0  # the layers say the split
    for rank, original in enumerate(ranks):
        again = newest_tensors(os.path.join(split, f"rank_{rank}"))
        assert again.keys() == original.keys()
        for key, value in original.items():
            np.testing.assert_array_equal(again[key], value, err_msg=key)
