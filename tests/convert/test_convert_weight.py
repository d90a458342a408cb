"""convert_weight.py: exact round trips, dtype casts, sharded and .bin inputs, one-line errors with no output."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("transformers")
import mindspore as ms  # noqa: E402
import torch  # noqa: E402

import convert_weight  # noqa: E402
from mindformers.checkpoint.safetensors_stream import SafetensorsWriter, read_safetensors  # noqa: E402
from tests.fixtures.hf_models import build_hf_model, hf_folders, hf_state, load_hf  # noqa: E402,F401


def convert(*args):
    return convert_weight.main(["--no_progress"] + [str(a) for a in args])


def assert_one_line_error(capsys, excinfo, *fragments):
    assert excinfo.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_nothing_written(directory):
    leftovers = [name for name in os.listdir(directory)] if os.path.isdir(directory) else []
    assert leftovers == [], leftovers


@pytest.mark.parametrize("kind", ["gqa", "tied", "mistral"])
def test_round_trip_is_bit_exact_and_loads_in_transformers(kind, hf_folders, tmp_path):  # noqa: F811
    model = "mistral" if kind == "mistral" else "llama"
    ckpt = tmp_path / "ours.ckpt"
    convert("--model", model, "--input_path", hf_folders[kind], "--output_path", ckpt)
    ours = ms.load_checkpoint(str(ckpt))
    assert ("lm_head.weight" in ours) == (kind != "tied")
    back = tmp_path / "hf"
    convert("--model", model, "--input_path", ckpt, "--output_path", back, "--reversed", "--max_shard_size", "20KB")
    index = json.loads((back / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    original, returned = hf_state(hf_folders[kind]), hf_state(back)
    assert sorted(original) == sorted(returned)
    for name, tensor in original.items():
        assert returned[name].dtype == tensor.dtype and torch.equal(returned[name], tensor), name
    reloaded = load_hf(str(back))
    assert type(reloaded).__name__ == ("MistralForCausalLM" if kind == "mistral" else "LlamaForCausalLM")
    assert reloaded.config.tie_word_embeddings == (kind == "tied")
    if kind == "mistral":
        assert reloaded.config.sliding_window == 4
    if kind == "gqa":
        assert reloaded.config.num_key_value_heads == 2
        assert reloaded.config.rope_parameters["rope_theta"] == 500000.0


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_dtype_casts_round_like_torch(dtype, hf_folders, tmp_path):  # noqa: F811
    out = tmp_path / "ours.safetensors"
    convert("--model", "llama2", "--input_path", hf_folders["mha"], "--output_path", out, "--dtype", dtype)
    assert f"param_init_type: {'bfloat16' if dtype == 'bf16' else 'float16'}" in (tmp_path / "ours.yaml").read_text()
    back = tmp_path / "hf"
    convert("--model", "llama2", "--input_path", out, "--output_path", back, "--reversed")
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    original, returned = hf_state(hf_folders["mha"]), hf_state(back)
    for name, tensor in original.items():
        assert torch.equal(returned[name], tensor.to(torch_dtype)), name
    loaded = ms.load_checkpoint(str(out), format="safetensors")
    assert loaded["model.norm_out.weight"].dtype == (ms.bfloat16 if dtype == "bf16" else ms.float16)


def test_sharded_and_pytorch_bin_inputs(tmp_path):
    model = build_hf_model("gqa")
    sharded, binary = tmp_path / "sharded", tmp_path / "bin"
    model.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    model.config.save_pretrained(binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    convert("--model", "llama3", "--input_path", sharded, "--output_path", tmp_path / "a.ckpt")
    convert("--model", "llama3", "--input_path", binary, "--output_path", tmp_path / "b.ckpt")
    a, b = ms.load_checkpoint(str(tmp_path / "a.ckpt")), ms.load_checkpoint(str(tmp_path / "b.ckpt"))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy())
    np.testing.assert_array_equal(a["model.layers.1.attention.wk.weight"].asnumpy(),
                                  model.model.layers[1].self_attn.k_proj.weight.detach().numpy())


def rewrite_without(source, target, drop=None, reshape=None):
    """Copy a HF folder, dropping one tensor or giving one a different shape."""
    os.makedirs(target)
    with open(os.path.join(source, "config.json"), encoding="utf-8") as handle:
        config = handle.read()
    with open(os.path.join(target, "config.json"), "w", encoding="utf-8") as handle:
        handle.write(config)
    tensors = read_safetensors(os.path.join(source, "model.safetensors"))
    kept = [info for name, info in tensors.items() if name != drop]
    shapes = {info.name: (reshape[1] if reshape and info.name == reshape[0] else info.shape) for info in kept}
    writer = SafetensorsWriter(os.path.join(target, "model.safetensors"),
                               [(info.name, info.dtype, shapes[info.name]) for info in kept])
    for info in kept:
        data = info.read().reshape(-1)
        size = int(np.prod(shapes[info.name]))
        writer.write_tensor(info.name, [np.resize(data, size)])
    writer.close()


def test_errors_are_one_line_and_leave_nothing(hf_folders, tmp_path, capsys):  # noqa: F811
    out_dir = tmp_path / "out"
    out = out_dir / "x.ckpt"
    source = hf_folders["gqa"]
    missing = "model.layers.1.mlp.up_proj.weight"
    rewrite_without(source, tmp_path / "missing", drop=missing)
    rewrite_without(source, tmp_path / "shape", reshape=("model.layers.0.self_attn.k_proj.weight", (8, 32)))
    truncated = tmp_path / "truncated"
    rewrite_without(source, truncated)
    path = truncated / "model.safetensors"
    os.truncate(path, os.path.getsize(path) - 100)
    cases = [
        (["--model", "llama", "--input_path", tmp_path / "missing"], [missing]),
        (["--model", "llama", "--input_path", tmp_path / "shape"],
         ["model.layers.0.self_attn.k_proj.weight", "(8, 32)", "(16, 32)"]),
        (["--model", "gpt9", "--input_path", source], ["--model", "gpt9", "llama, llama2, llama3, mistral"]),
        (["--model", "llama", "--input_path", tmp_path / "nowhere"], ["--input_path", "nowhere"]),
        (["--model", "llama", "--input_path", truncated], ["truncated", "model.safetensors"]),
        (["--model", "llama", "--input_path", source, "--dtype", "fp8"], ["--dtype", "fp8"]),
        (["--model", "mistral", "--input_path", source], ["model_type", "'llama'"]),
    ]
    for args, fragments in cases:
        with pytest.raises(SystemExit) as excinfo:
            convert(*args, "--output_path", out)
        assert_one_line_error(capsys, excinfo, *fragments)
        assert_nothing_written(out_dir)
    with pytest.raises(SystemExit) as excinfo:
        convert("--model", "llama", "--input_path", tmp_path / "none.ckpt", "--output_path", tmp_path / "hf",
                "--reversed")
    assert_one_line_error(capsys, excinfo, "none.ckpt")
    assert not (tmp_path / "hf").exists()


def test_failure_mid_write_leaves_no_partial_file(hf_folders, tmp_path, monkeypatch):  # noqa: F811
    from mindformers.checkpoint import ckpt_stream  # pylint: disable=import-outside-toplevel
    calls = []

    def failing(self, name, dtype, shape, chunks):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, name, dtype, shape, chunks)

    original = ckpt_stream.CkptWriter.write_tensor
    monkeypatch.setattr(ckpt_stream.CkptWriter, "write_tensor", failing)
    with pytest.raises(OSError):
        convert("--model", "llama", "--input_path", hf_folders["mha"], "--output_path", tmp_path / "o" / "x.ckpt")
    assert os.listdir(tmp_path / "o") == []
