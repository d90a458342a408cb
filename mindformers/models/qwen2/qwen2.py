"""Qwen1.5 / Qwen2: the shared decoder with biases on the q/k/v projections (none on the output projection),
rope theta 1e6 and a 151936/152064-token byte-level BPE vocabulary; the smallest sizes tie the LM head to the
embedding table. HF: Qwen2ForCausalLM (model_type qwen2) serves both generations."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class Qwen2Config(DecoderConfig):
    """Defaults are Qwen1.5-7B's."""

    model_type = "qwen2"
    defaults = dict(seq_length=8192, hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008,
                    vocab_size=151936, rms_norm_eps=1e-6, theta=1000000.0, qkv_has_bias=True,
                    bos_token_id=151643, eos_token_id=151643, pad_token_id=151643, compute_dtype="bfloat16")


Qwen2ForCausalLM = causal_lm_class("Qwen2ForCausalLM", Qwen2Config)


def sliding_window_from_hf(hf, kwargs, where):
    """Qwen2's window applies to layers from max_window_layers on (or where layer_types says); this decoder has one
    window for every layer, so a window on some layers only is refused."""
    layers = hf["num_hidden_layers"]
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    types = hf.get("layer_types") or ["sliding_attention" if window and i >= hf.get("max_window_layers", layers)
                                      else "full_attention" for i in range(layers)]
    sliding = {kind == "sliding_attention" for kind in types}
    if sliding == {True, False}:
        raise ConfigError(f"{where}: sliding-window attention on some layers only (max_window_layers / "
                          f"layer_types) is not supported; expected it on every layer or on none")
    kwargs["sliding_window"] = window if sliding == {True} else None


def sliding_window_to_hf(config, hf):
    for key in ("attention_bias", "mlp_bias"):  # HF Qwen2Config has neither: its q/k/v biases are fixed
        hf.pop(key)
    hf.update(use_sliding_window=config.sliding_window is not None, sliding_window=config.sliding_window,
              max_window_layers=0 if config.sliding_window else config.num_layers)


QWEN2 = register_family(decoder_family(
    "qwen2", "Qwen2Config", "Qwen2ForCausalLM", ("qwen2",), "Qwen2ForCausalLM",
    implied={"qkv_has_bias": True, "attn_proj_has_bias": False}, expresses=("sliding_window",),
    read=sliding_window_from_hf, write=sliding_window_to_hf), "qwen1.5", "qwen1_5")
