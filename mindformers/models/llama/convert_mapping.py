"""Llama <-> HuggingFace LlamaForCausalLM: weight names, shapes and config keys, declared once.

Rotary layout: our RotaryEmbedding rotates the two halves of each head (HF's rotate_half), which is the layout
HF checkpoints are stored in, so q/k weights copy unchanged. (Meta's original consolidated.*.pth checkpoints
interleave pairs instead and would need a per-head row permutation; they are not an input here.)
GQA: wk/wv hold n_kv_heads * head_dim rows, exactly HF's k_proj/v_proj. Tied embeddings: neither side has
an lm_head tensor; the embedding table serves as the output projection.
"""
import logging

from mindformers.checkpoint.hf_mapping import HFFamily, register_family, weight
from mindformers.checkpoint.tensor_dtypes import YAML_NAME, canonical
from mindformers.models.modules.rotary import LLAMA3_SCALING_KEYS
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

LAYER = "model.layers.{layer}"
LLAMA_WEIGHTS = (
    weight("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight", ("vocab", "hidden")),
    weight(f"{LAYER}.attention_norm.weight", f"{LAYER}.input_layernorm.weight", ("hidden",)),
    weight(f"{LAYER}.attention.wq.weight", f"{LAYER}.self_attn.q_proj.weight", ("q", "hidden")),
    weight(f"{LAYER}.attention.wk.weight", f"{LAYER}.self_attn.k_proj.weight", ("kv", "hidden")),
    weight(f"{LAYER}.attention.wv.weight", f"{LAYER}.self_attn.v_proj.weight", ("kv", "hidden")),
    weight(f"{LAYER}.attention.wo.weight", f"{LAYER}.self_attn.o_proj.weight", ("hidden", "q")),
    weight(f"{LAYER}.ffn_norm.weight", f"{LAYER}.post_attention_layernorm.weight", ("hidden",)),
    weight(f"{LAYER}.feed_forward.w1.weight", f"{LAYER}.mlp.gate_proj.weight", ("ffn", "hidden")),
    weight(f"{LAYER}.feed_forward.w3.weight", f"{LAYER}.mlp.up_proj.weight", ("ffn", "hidden")),
    weight(f"{LAYER}.feed_forward.w2.weight", f"{LAYER}.mlp.down_proj.weight", ("hidden", "ffn")),
    weight("model.norm_out.weight", "model.norm.weight", ("hidden",)),
    weight("lm_head.weight", "lm_head.weight", ("vocab", "hidden"), when="untied"),
)

CONDITIONS = {"untied": lambda config: not config.tie_word_embeddings}

# Keys that copy one to one: (ours, HF).
SAME_KEYS = (
    ("hidden_size", "hidden_size"), ("num_layers", "num_hidden_layers"), ("num_heads", "num_attention_heads"),
    ("intermediate_size", "intermediate_size"), ("vocab_size", "vocab_size"), ("rms_norm_eps", "rms_norm_eps"),
    ("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
)


def sizes(config):
    return {"hidden": config.hidden_size, "vocab": config.vocab_size, "ffn": config.ffn_size,
            "q": config.num_heads * config.head_dim, "kv": config.kv_heads * config.head_dim}


def rope_settings(hf, where):
    """{theta, scaling_factor, extend_method} from transformers 5's rope_parameters or the older rope_theta and
    rope_scaling: linear interpolation is a number, Llama 3.1's scaling the mapping of extend_method LLAMA3."""
    rope = dict(hf.get("rope_parameters") or {})
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = rope if rope.get("rope_type") not in (None, "default") else (hf.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        return {"theta": theta, "scaling_factor": float(scaling["factor"])}
    if kind == "llama3":
        missing = [key for key in LLAMA3_SCALING_KEYS if key not in scaling]
        if missing:
            raise ConfigError(f"{where}: rope scaling llama3 lacks {', '.join(missing)}")
        return {"theta": theta, "extend_method": "LLAMA3",
                "scaling_factor": {key: float(scaling[key]) for key in LLAMA3_SCALING_KEYS}}
    if kind != "default":
        logger.warning("%s: rope scaling '%s' is not implemented by this project's rotary embedding; weights "
                       "convert unchanged, but the model will not match transformers' positions", where, kind)
    return {"theta": theta}


def llama_config_from_hf(hf, dtype, where="config.json"):
    """Our LlamaConfig keyword arguments for a HF config dict; unsupported features are one-line errors."""
    if hf.get("hidden_act", "silu") not in ("silu", "swish"):
        raise ConfigError(f"{where}: hidden_act {hf['hidden_act']!r} is not supported (expected silu)")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ConfigError(f"{where}: {flag}: true is not supported by this project's Llama (expected false)")
    kwargs = {ours: hf[theirs] for ours, theirs in SAME_KEYS if theirs in hf}
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    if hf.get("head_dim") not in (None, hidden // heads):
        raise ConfigError(f"{where}: head_dim {hf['head_dim']} differs from hidden_size/num_attention_heads "
                          f"({hidden // heads}), which this project's attention assumes")
    kv_heads = hf.get("num_key_value_heads") or heads
    kwargs["n_kv_heads"] = None if kv_heads == heads else kv_heads
    kwargs["seq_length"] = hf.get("max_position_embeddings", 2048)
    kwargs.update(rope_settings(hf, where))
    kwargs["tie_word_embeddings"] = bool(hf.get("tie_word_embeddings", False))
    if hf.get("pad_token_id") is not None:
        kwargs["pad_token_id"] = hf["pad_token_id"]
    # The weights' dtype is the model's: fp32 weights compute in fp32, half weights in that half type.
    kwargs["param_init_type"] = kwargs["compute_dtype"] = YAML_NAME[dtype]
    return kwargs


def llama_config_to_hf(config, dtype, model_type="llama", architecture="LlamaForCausalLM"):
    if config.qkv_has_bias:
        raise ConfigError("model_config.qkv_has_bias: HF Llama has no q/k/v-only bias (expected false)")
    rope = {"rope_type": "default", "rope_theta": float(config.theta)}
    if isinstance(config.scaling_factor, dict):  # extend_method LLAMA3 (validated by LlamaConfig)
        rope.update(rope_type="llama3", **config.scaling_factor)
    elif config.scaling_factor != 1.0:
        rope.update(rope_type="linear", factor=float(config.scaling_factor))
    hf = {"architectures": [architecture], "model_type": model_type}
    hf.update({theirs: getattr(config, ours) for ours, theirs in SAME_KEYS})
    hf.update(intermediate_size=config.ffn_size, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
              max_position_embeddings=config.max_position_embedding, hidden_act="silu", attention_bias=False,
              mlp_bias=False, rope_parameters=rope, rope_theta=float(config.theta),
              tie_word_embeddings=bool(config.tie_word_embeddings), pad_token_id=config.pad_token_id,
              dtype=YAML_NAME[canonical(dtype)], torch_dtype=YAML_NAME[canonical(dtype)])
    return hf


LLAMA = register_family(HFFamily(
    name="llama", model_types=("llama",), hf_architecture="LlamaForCausalLM", our_config_type="LlamaConfig",
    our_arch_type="LlamaForCausalLM", weights=LLAMA_WEIGHTS, sizes=sizes, config_from_hf=llama_config_from_hf,
    config_to_hf=llama_config_to_hf, conditions=CONDITIONS), "llama2", "llama3")
