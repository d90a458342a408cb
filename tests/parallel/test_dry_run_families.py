"""--dry_run of every published family size on the device count ModelLink's performance table gives (Yi 6B and
CodeLlama 7B/13B, which it does not list, on 8 like Llama 2): the YAML builds the architecture its release has, the
mesh is valid and the estimate fits the configs' 58 GB budget."""
import re

import pytest

from mindformers.parallel.dry_run import run_dry_run
from mindformers.run import build_parser, load_config
from tests.e2e.helpers import REPO

# config -> (devices, layers, hidden, heads, kv heads, ffn, vocab, seq), from each release's config.json
PUBLISHED = {
    "qwen1_5/pretrain_qwen1_5_0_5b": (8, 24, 1024, 16, 16, 2816, 151936, 8192),
    "qwen1_5/pretrain_qwen1_5_1_8b": (8, 24, 2048, 16, 16, 5504, 151936, 8192),
    "qwen1_5/pretrain_qwen1_5_4b": (8, 40, 2560, 20, 20, 6912, 151936, 8192),
    "qwen1_5/pretrain_qwen1_5_7b": (8, 32, 4096, 32, 32, 11008, 151936, 8192),
    "qwen1_5/pretrain_qwen1_5_14b": (8, 40, 5120, 40, 40, 13696, 152064, 8192),
    "qwen1_5/pretrain_qwen1_5_32b": (32, 64, 5120, 40, 8, 27392, 152064, 8192),
    "qwen1_5/pretrain_qwen1_5_72b": (64, 80, 8192, 64, 64, 24576, 152064, 8192),
    "gemma/pretrain_gemma_2b": (8, 18, 2048, 8, 1, 16384, 256000, 8192),
    "gemma/pretrain_gemma_7b": (8, 28, 3072, 16, 16, 24576, 256000, 8192),
    "internlm/pretrain_internlm_7b": (8, 32, 4096, 32, 32, 11008, 103168, 2048),
    "yi/pretrain_yi_6b": (8, 32, 4096, 32, 4, 11008, 64000, 4096),
    "yi/pretrain_yi_34b": (16, 60, 7168, 56, 8, 20480, 64000, 4096),
    "codellama/pretrain_codellama_7b": (8, 32, 4096, 32, 32, 11008, 32016, 4096),
    "codellama/pretrain_codellama_13b": (8, 40, 5120, 40, 40, 13824, 32016, 4096),
    "codellama/pretrain_codellama_34b": (16, 48, 8192, 64, 8, 22016, 32000, 4096),
    "aquila2/pretrain_aquila2_7b": (8, 32, 4096, 32, 32, 11008, 100008, 2048),
    "aquila2/pretrain_aquila2_34b": (16, 60, 6144, 48, 8, 24576, 100008, 4096),
    "mistral/pretrain_mistral_7b": (8, 32, 4096, 32, 8, 14336, 32000, 32768),
    "bloom/pretrain_bloom_7b1": (8, 30, 4096, 32, 32, 16384, 250880, 2048),
    "bloom/pretrain_bloom_176b": (96, 70, 14336, 112, 112, 57344, 250880, 2048),
    "baichuan2/pretrain_baichuan2_7b": (8, 32, 4096, 32, 32, 11008, 125696, 4096),
    "baichuan2/pretrain_baichuan2_13b": (8, 40, 5120, 40, 40, 13696, 125696, 4096),
    "gpt3/pretrain_gpt3_175b": (128, 96, 12288, 96, 96, 49152, 51200, 2048),  # GPT-2's 50257 tokens, padded
    "glm3/pretrain_glm3_6b": (8, 28, 4096, 32, 2, 13696, 65024, 8192),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_size_dry_runs_on_its_device_count(name, capsys):
    devices, layers, hidden, heads, kv_heads, ffn, vocab, seq = PUBLISHED[name]
    args = build_parser().parse_args(["--config", f"{REPO}/configs/{name}.yaml", "--dry_run", "--device_num",
                                      str(devices)])
    run_dry_run(load_config(args), device_num=args.device_num, show_layouts=False)
    out = capsys.readouterr().out
    assert f"-> {devices} devices" in out
    assert (f"model: {layers} layers, hidden {hidden}, heads {heads}/{kv_heads} kv, ffn {ffn}, vocab {vocab}, "
            f"seq {seq};") in out
    assert re.search(r"peak [0-9.]+ GiB per device fits in 58.00 GiB", out), out[-300:]


def test_mixtral_8x7b_dry_run_counts_each_devices_experts(capsys):
    """16 devices (ModelLink's 2x8): dp 2 x mp 4 x pp 2, the experts over expert_parallel 2; a device holds 4 of
    each layer's 8 experts with a quarter of their FFN, and the memory counts just those."""
    args = build_parser().parse_args(["--config", f"{REPO}/configs/mixtral/pretrain_mixtral_8x7b.yaml", "--dry_run",
                                      "--device_num", "16"])
    run_dry_run(load_config(args), device_num=args.device_num)
    out = capsys.readouterr().out
    assert "data_parallel=2 model_parallel=4 pipeline_stage=2 expert_parallel=2 -> 16 devices" in out
    assert ("model: 32 layers, hidden 4096, heads 32/8 kv, ffn 14336, vocab 32000, seq 32768, 8 experts (2 per "
            "token, ffn 14336, capacity_factor 1.1) in 32 layers, 4 per device;") in out
    assert "model.layers.31.feed_forward.ffn.w2.weight | (8, 4096, 14336) | Float32 | experts 0, 2 | " \
           "(4, 4096, 3584) | 1" in out
    hidden, kv, ffn, layers_per_stage = 4096, 1024, 14336, 16
    experts = layers_per_stage * 4 * 3 * ffn // 4 * hidden
    dense = layers_per_stage * ((2 * hidden * hidden + 2 * kv * hidden) // 4 + 8 * hidden + 2 * hidden) \
        + 32000 * hidden // 4
    row = re.search(r"^\s+0\s+([0-9.]+)\s+([0-9.]+)", out, re.MULTILINE)
    assert float(row.group(1)) == pytest.approx((experts + dense) / 1e6, abs=0.1)
    # float32 weights; the parallel optimizer cuts the dense ones over data_parallel 2, not the experts: with
    # expert_parallel 2 no other rank holds them
    assert float(row.group(2)) == pytest.approx((experts + dense / 2) * 4 / 2 ** 30, abs=0.01)
    assert re.search(r"peak [0-9.]+ GiB per device fits in 58.00 GiB", out), out[-300:]
