"""The tools as a user runs them: transform_ckpt splits a whole checkpoint for a mesh with the model's YAML and
merges the rank folders back (script form) bit for bit; predict with --auto_trans_ckpt True from the split folder
prints what predict from the whole file prints."""
import os

from tests.checkpoint.tiny_checkpoint import raw_tensors, save_training_checkpoint
from tests.e2e.helpers import TINY_SIZES, run_cli, write_user_config

SIZES = dict(TINY_SIZES, num_heads=4, n_kv_heads=2, max_decode_length=12)


def test_split_merge_and_predict_from_the_split(tmp_path, sp_model_file):
    full = save_training_checkpoint(tmp_path / "tiny.ckpt", **SIZES)
    config = write_user_config(tmp_path / "predict.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file,
                               sizes=SIZES, context={"mode": 1})
    split = run_cli(["-m", "mindformers.tools.transform_ckpt", "--src_checkpoint", full, "--dst_checkpoint",
                     tmp_path / "split", "--dst_mesh", "2,2,2", "--config", config])
    assert split.returncode == 0, split.stderr[-3000:]
    assert f"wrote 8 rank folders to {tmp_path / 'split'}" in split.stdout
    assert sorted(os.listdir(tmp_path / "split")) == [f"rank_{rank}" for rank in range(8)]
    assert sorted(os.listdir(tmp_path / "split" / "rank_5")) == ["strategy.json", "tiny_rank_5-0_0.ckpt",
                                                               "tiny_rank_5-0_0.ckpt.sha256"]
    merged = run_cli(["mindformers/tools/transform_ckpt.py", "--src_checkpoint", tmp_path / "split",
                      "--dst_checkpoint", tmp_path / "merged.ckpt"])
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert f"from 8 rank file(s) into {tmp_path / 'merged.ckpt'}" in merged.stdout
    assert raw_tensors(tmp_path / "merged.ckpt") == raw_tensors(full)

    def predict(checkpoint, *flags):
        output = tmp_path / f"predict_{len(flags)}"
        result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "predict", "--load_checkpoint",
                          checkpoint, "--predict_data", "def fib(n):", "The for statement", "--predict_batch_size",
                          "2", "--output_dir", output, *flags])
        assert result.returncode == 0, result.stderr[-3000:]
        return (output / "predict_results.jsonl").read_text()
    assert predict(tmp_path / "split", "--auto_trans_ckpt", "True") == predict(full)
