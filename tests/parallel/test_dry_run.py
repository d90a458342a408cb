"""--dry_run on the published llama2 configs: structure from the real model code, nothing allocated, no device."""
import resource

import pytest

from mindformers.parallel.dry_run import parse_memory, run_dry_run
from mindformers.run import load_config, build_parser
from mindformers.tools.errors import ConfigError
from tests.e2e.helpers import REPO, assert_one_line_error, run_cli


def dry(capsys, size, *flags):
    args = build_parser().parse_args(["--config", f"{REPO}/configs/llama2/pretrain_llama2_{size}.yaml", "--dry_run",
                                      *flags])
    run_dry_run(load_config(args), device_num=args.device_num, device_memory=args.device_memory)
    return capsys.readouterr().out


@pytest.mark.parametrize("size,params_b", [("7b", 6.74), ("13b", 13.0), ("70b", 69.0)])
def test_published_configs_report_every_weight_and_fit(capsys, size, params_b):
    out = dry(capsys, size)
    weights = [line for line in out.splitlines() if line.startswith("  model.") or line.startswith("  lm_head")]
    stages = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    per_device = sum(float(row[1]) for row in stages) / 1e3  # billions of parameters over all stages
    mp = {"7b": 1, "13b": 4, "70b": 8}[size]
    assert "fits in 58.00 GiB" in out  # run_general.yaml's context.max_device_memory
    assert any("| 0 |" in line for line in weights) and any("| - |" in line for line in weights)
    assert len(weights) > 100
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4_000_000  # KB: the weights were never allocated
    # Stages partition the model; each holds 1/mp of every split weight (the 7b/13b embedding stays whole).
    assert params_b / mp * 0.95 < per_device < params_b / mp * 1.15, per_device


def test_70b_on_8_devices_does_not_fit_and_fp16_vs_fp32(capsys):
    out = dry(capsys, "70b", "--device_num", "32", "--device_memory", "64GB")
    assert "data_parallel=1 model_parallel=8 pipeline_stage=4 -> 32 devices" in out and "64.00 GiB" in out
    with pytest.raises(ConfigError, match="--device_num: 12 is not a multiple of model_parallel x pipeline_stage"):
        dry(capsys, "70b", "--device_num", "12")


def test_memory_sizes_parse():
    assert parse_memory("64GB") == 64 * 1024 ** 3 and parse_memory("512MB") == 512 * 1024 ** 2
    with pytest.raises(ConfigError, match="expected a size such as 64GB"):
        parse_memory("lots")


def test_cli_dry_run_and_one_line_errors():
    result = run_cli(["run_mindformer.py", "--config", "configs/llama2/pretrain_llama2_7b.yaml", "--dry_run",
                      "--device_num", "8", "--device_memory", "64GB"], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "peak" in result.stdout and "fits in 64.00 GiB" in result.stdout
    assert_one_line_error(run_cli(["run_mindformer.py", "--config", "configs/llama2/pretrain_llama2_7b.yaml",
                                   "--dry_run", "--device_memory", "huge"]), "--device_memory")


def test_use_parallel_without_msrun_is_one_line_error(tmp_path):
    result = run_cli(["run_mindformer.py", "--config", "configs/llama2/pretrain_llama2_tiny.yaml", "--use_parallel",
                      "True", "--output_dir", str(tmp_path)])
    assert_one_line_error(result, "use_parallel", "msrun_launcher.sh")


def stage_rows(out):
    """[{params, grads, optimizer, activations, kv_cache, total}] in GiB, per pipeline stage."""
    keys = ("params", "grads", "optimizer", "activations", "kv_cache", "total")
    return [dict(zip(keys, map(float, line.split()[2:]))) for line in out.splitlines()
            if line.strip() and line.split()[0].isdigit() and len(line.split()) == 8]


def dry_config(capsys, name, *flags, device_num=None, overrides=None):
    args = build_parser().parse_args(["--config", f"{REPO}/configs/llama2/{name}.yaml", "--dry_run", *flags])
    config = load_config(args)
    config.merge_from_dict(overrides or {})
    run_dry_run(config, device_num=device_num, device_memory="64GB", show_layouts=False)
    return stage_rows(capsys.readouterr().out)


def test_memory_follows_the_run_mode(capsys):
    """predict: weights + KV cache, nothing for training; LoRA: gradients and moments of the adapters only."""
    (predict,) = dry_config(capsys, "predict_llama2_7b")
    assert predict["grads"] == predict["optimizer"] == 0
    assert predict["kv_cache"] == 2.0  # 2 x 32 layers x 32 heads x 128 x 4096 tokens x fp16
    (paged,) = dry_config(capsys, "predict_llama2_7b", overrides={
        "model.model_config.is_dynamic": True, "model.model_config.num_blocks": 1024})
    assert paged["kv_cache"] == 8.0  # MindFormers' paged cache: num_blocks x block_size (16) tokens
    (lora,) = dry_config(capsys, "lora_llama2_7b", device_num=8)
    (full,) = dry_config(capsys, "finetune_llama2_7b", device_num=8)
    assert lora["grads"] < 0.01 and lora["optimizer"] < 0.05 < full["optimizer"]


def test_parallel_optimizer_shards_weights_grads_and_moments(capsys):
    (sharded,) = dry_config(capsys, "finetune_llama2_7b", device_num=8)
    (whole,) = dry_config(capsys, "finetune_llama2_7b", device_num=8,
                          overrides={"parallel.enable_parallel_optimizer": False})
    for key in ("params", "grads", "optimizer"):
        assert abs(sharded[key] * 8 - whole[key]) < 0.05, key
    (fp32_state,) = dry_config(capsys, "finetune_llama2_7b", device_num=8,
                               overrides={"optimizer": {"type": "FP32StateAdamWeightDecay"}})
    assert abs(fp32_state["optimizer"] - 2 * sharded["optimizer"]) < 0.01  # float32 moments of fp16 weights
    (capped,) = dry_config(capsys, "finetune_llama2_7b", device_num=8, overrides={
        "parallel.parallel_optimizer_config.optimizer_weight_shard_size": 2})
    assert abs(capped["params"] * 2 - whole["params"]) < 0.05


SEVEN_B = {"seq_length": 4096, "hidden_size": 4096, "num_layers": 32, "num_heads": 32, "vocab_size": 32000,
           "compute_dtype": "float16", "param_init_type": "float16", "softmax_compute_type": "float16",
           "rotary_dtype": "float16"}


@pytest.mark.parametrize("name,devices", [("pretrain", 8), ("finetune", 8), ("lora", 8), ("predict", 1)])
def test_mindformers_7b_configs_fit_where_mindformers_runs_them(capsys, name, devices):
    """MindFormers' own 7b configs (tests/fixtures/mindformers_configs with their CPU edits undone: 7b sizes, fp16,
    FP32StateAdamWeightDecay, the parallel optimizer) on the devices MindFormers publishes them for."""
    args = build_parser().parse_args(["--config", f"{REPO}/tests/fixtures/mindformers_configs/{name}_llama2_7b.yaml",
                                      "--dry_run"])
    config = load_config(args)
    config.merge_from_dict({f"model.model_config.{key}": value for key, value in SEVEN_B.items()})
    run_dry_run(config, device_num=devices, device_memory="64GB", show_layouts=False)
    out = capsys.readouterr().out
    assert f"-> {devices} devices" in out and "fits in 64.00 GiB" in out, out[-600:]
