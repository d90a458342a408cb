"""Tensor (model) parallelism on CPU through scripts/msrun_launcher.sh (2 workers, tiny GQA model, clipping on):
model_parallel 2 in graph mode (vocabulary split: vocab-parallel embedding and cross-entropy), model_parallel 2 in
PyNative mode (vocab_emb_dp: whole embedding, lm_head outputs gathered) and data_parallel 2 all follow the loss
curve of the single process, and each model-parallel rank saves only its shards of the single process' weights.
The tiny Bloom (ALiBi over 6 heads, so each rank biases its 3 heads with their own slopes; LayerNorm; biases; tied
head over the split vocabulary) with model_parallel 2 follows its own single-process curve. Four launches (~30 s
each) run side by side with the single-process references."""
import os

import mindspore as ms
import numpy as np
import pytest

from mindformers.parallel.layout_file import read_layout_file
from tests.e2e.helpers import TINY_SIZES, read_metrics, run_cli, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

MAX_GRAD_NORM = 0.3  # below the tiny models' gradient norms, so every step is clipped
RUNS = {  # name -> (context.mode, parallel_config, model)
    "mp2_graph": (0, {"data_parallel": 1, "model_parallel": 2, "vocab_emb_dp": False}, "llama"),
    "mp2_pynative": (1, {"data_parallel": 1, "model_parallel": 2, "vocab_emb_dp": True}, "llama"),
    "dp2": (0, {"data_parallel": 2, "model_parallel": 1}, "llama"),
    "alibi_mp2_graph": (0, {"data_parallel": 1, "model_parallel": 2, "vocab_emb_dp": False}, "bloom"),
}
MODELS = {  # model -> (shipped config, sizes, sections over it)
    # grouped-query attention: 4 heads, 2 key/value heads (one group per mp=2 rank)
    "llama": ("llama2/pretrain_llama2_tiny.yaml", dict(TINY_SIZES, num_heads=4, n_kv_heads=2), {}),
    "bloom": ("bloom/pretrain_bloom_tiny.yaml", dict(TINY_SIZES, hidden_size=48, num_heads=6, pad_token_id=0),
              {"processor": {"tokenizer": {"type": "LlamaTokenizer", "tokenizer_file": None, "pad_token": "<unk>"}}}),
}


def user_config(path, sp_model_file, wiki_mindrecord, model="llama", **sections):
    shipped, sizes, extra = MODELS[model]
    return write_user_config(
        path, shipped, sp_model_file, sizes=sizes, **extra,
        seed=11, runner_config={"epochs": 1, "global_batch_size": 32, "batch_size": None},  # 7 steps
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        runner_wrapper={"use_clip_grad": True, "max_grad_norm": MAX_GRAD_NORM},
        callbacks=[{"type": "MFLossMonitor"},  # and a checkpoint at the end of training
                   {"type": "CheckpointMonitor", "prefix": "mp", "save_checkpoint_steps": 1000,
                    "keep_checkpoint_max": 1}],
        **sections)


def checkpoint(output, rank):
    folder = os.path.join(output, "checkpoint", f"rank_{rank}")
    names = [n for n in os.listdir(folder) if n.endswith(".ckpt")]
    assert len(names) == 1, names
    params = ms.load_checkpoint(os.path.join(folder, names[0]))
    return folder, {k: v.asnumpy() for k, v in params.items() if not k.startswith(("adam_", "global_step", "scale"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("mp_runs")
    outputs = {name: str(base / name) for name in [*(f"single_{model}" for model in MODELS), *RUNS]}
    launches = {}
    for name, (mode, parallel_config, model) in RUNS.items():
        config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, model, context={"mode": mode},
                             parallel_config=parallel_config)
        launches[name] = launch(train_command(config, outputs[name]), 2, log_dir=str(base / f"log_{name}"))
    for model in MODELS:
        single = run_cli(["run_mindformer.py", "--config", user_config(base / f"single_{model}.yaml", sp_model_file,
                                                                        wiki_mindrecord, model),
                          "--run_mode", "train", "--output_dir", outputs[f"single_{model}"]])
        assert single.returncode == 0, single.stderr[-3000:]
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    return outputs


@pytest.mark.parametrize("name", list(RUNS))
def test_loss_and_gradient_norm_follow_the_single_process(runs, name):
    single, parallel = read_metrics(runs[f"single_{RUNS[name][2]}"]), read_metrics(runs[name])
    assert len(single) == len(parallel) >= 5
    assert all(m["grad_norm"] > MAX_GRAD_NORM for m in single)  # clipping is active on every step
    assert single[-1]["loss"] < single[0]["loss"] - 0.1  # and the model learns
    for ref, got in zip(single, parallel):
        assert got["loss"] == pytest.approx(ref["loss"], rel=2e-3), (name, ref["step"], ref["loss"], got["loss"])
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=2e-3), (name, ref["step"])
        assert not got["overflow"]


@pytest.mark.parametrize("name", ["mp2_graph", "mp2_pynative"])
def test_each_rank_saves_its_shards_of_the_single_process_weights(runs, name):
    _, whole = checkpoint(runs["single_llama"], 0)
    (folder, rank0), (_, rank1) = checkpoint(runs[name], 0), checkpoint(runs[name], 1)
    layout = read_layout_file(os.path.join(folder, "strategy.json"))["parameters"]
    split_names = [n for n, entry in layout.items() if entry["split_dim"] is not None]
    # vocab_emb_dp keeps the embedding whole; every projection and the lm_head are split either way.
    assert ("model.tok_embeddings.embedding_weight" in split_names) == (name == "mp2_graph")
    assert "lm_head.weight" in split_names and "model.layers.1.attention.wk.weight" in split_names
    assert rank0.keys() == whole.keys() and set(layout) <= set(whole)
    for param, entry in layout.items():
        value = whole[param]
        assert list(value.shape) == entry["shape"], param
        if entry["split_dim"] is None:
            assert rank0[param].shape == value.shape
            np.testing.assert_array_equal(rank0[param], rank1[param], err_msg=param)  # replicas stay identical
            joined = rank0[param]
        else:
            assert rank0[param].shape[entry["split_dim"]] * 2 == value.shape[entry["split_dim"]], param
            joined = np.concatenate([rank0[param], rank1[param]], axis=entry["split_dim"])
        np.testing.assert_allclose(joined, value, rtol=2e-3, atol=2e-4, err_msg=param)
