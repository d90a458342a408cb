"""The shared decoder <-> HuggingFace checkpoints in the Llama layout (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, GemmaForCausalLM, ...): weight names, shapes and config keys, declared once for both directions.

A family declares itself with `decoder_family`: its HF model types and architecture, the config values its HF
architecture hard-codes (`implied`: Qwen2's q/k/v-only bias, Gemma's (1 + w) norms and scaled embeddings), the
HF config defaults it assumes when a key is absent, and hooks for keys only it has (Mistral's sliding_window).
A model the HF architecture cannot express is a one-line error, never a silently different checkpoint.

Rotary layout: our RotaryEmbedding rotates the two halves of each head (HF's rotate_half), the layout HF checkpoints
are stored in, so q/k weights copy unchanged. Fused layouts: with qkv_concat our w_qkv holds HF's q, k and v rows
one after another (w_gate_hidden: gate, then up), so a fused weight is the concatenation of HF's along dim 0.
"""
import logging

from mindformers.checkpoint.hf_mapping import HFFamily, WeightMap, weight
from mindformers.checkpoint.tensor_dtypes import YAML_NAME, canonical
from mindformers.models.decoder.config import ACTIVATIONS
from mindformers.models.modules.rotary import LLAMA3_SCALING_KEYS
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

LAYER = "model.layers.{layer}"
ATTN, MLP = f"{LAYER}.self_attn", f"{LAYER}.mlp"
QKV = (f"{ATTN}.q_proj", f"{ATTN}.k_proj", f"{ATTN}.v_proj")


def fused(ours, hf_names, shapes, when):
    return WeightMap(ours, tuple(hf_names), tuple(tuple(shape) for shape in shapes), when)


DECODER_WEIGHTS = (
    weight("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight", ("vocab", "hidden")),
    weight(f"{LAYER}.attention_norm.weight", f"{LAYER}.input_layernorm.weight", ("hidden",)),
    weight(f"{LAYER}.attention.wq.weight", f"{ATTN}.q_proj.weight", ("q", "hidden"), when="separate"),
    weight(f"{LAYER}.attention.wk.weight", f"{ATTN}.k_proj.weight", ("kv", "hidden"), when="separate"),
    weight(f"{LAYER}.attention.wv.weight", f"{ATTN}.v_proj.weight", ("kv", "hidden"), when="separate"),
    weight(f"{LAYER}.attention.wq.bias", f"{ATTN}.q_proj.bias", ("q",), when="separate_qkv_bias"),
    weight(f"{LAYER}.attention.wk.bias", f"{ATTN}.k_proj.bias", ("kv",), when="separate_qkv_bias"),
    weight(f"{LAYER}.attention.wv.bias", f"{ATTN}.v_proj.bias", ("kv",), when="separate_qkv_bias"),
    fused(f"{LAYER}.attention.w_qkv.weight", [f"{name}.weight" for name in QKV],
          [("q", "hidden"), ("kv", "hidden"), ("kv", "hidden")], when="fused"),
    fused(f"{LAYER}.attention.w_qkv.bias", [f"{name}.bias" for name in QKV], [("q",), ("kv",), ("kv",)],
          when="fused_qkv_bias"),
    weight(f"{LAYER}.attention.wo.weight", f"{ATTN}.o_proj.weight", ("hidden", "q")),
    weight(f"{LAYER}.attention.wo.bias", f"{ATTN}.o_proj.bias", ("hidden",), when="o_bias"),
    weight(f"{LAYER}.ffn_norm.weight", f"{LAYER}.post_attention_layernorm.weight", ("hidden",)),
    weight(f"{LAYER}.feed_forward.w1.weight", f"{MLP}.gate_proj.weight", ("ffn", "hidden"), when="separate_mlp"),
    weight(f"{LAYER}.feed_forward.w3.weight", f"{MLP}.up_proj.weight", ("ffn", "hidden"), when="separate_mlp"),
    fused(f"{LAYER}.feed_forward.w_gate_hidden.weight", [f"{MLP}.gate_proj.weight", f"{MLP}.up_proj.weight"],
          [("ffn", "hidden"), ("ffn", "hidden")], when="fused_mlp"),
    weight(f"{LAYER}.feed_forward.w2.weight", f"{MLP}.down_proj.weight", ("hidden", "ffn"), when="dense_mlp"),
    weight("model.norm_out.weight", "model.norm.weight", ("hidden",)),
    weight("lm_head.weight", "lm_head.weight", ("vocab", "hidden"), when="untied"),
)

CONDITIONS = {
    "untied": lambda config: not config.tie_word_embeddings,
    "mlp_bias": lambda config: config.mlp_has_bias,
    "separate": lambda config: not config.qkv_concat,
    "fused": lambda config: config.qkv_concat,
    "separate_qkv_bias": lambda config: config.qkv_has_bias and not config.qkv_concat,
    "fused_qkv_bias": lambda config: config.qkv_has_bias and config.qkv_concat,
    "o_bias": lambda config: config.attn_proj_has_bias,
    # A mixture-of-experts model has no dense MLP (its family adds the experts' weights: mixtral.py).
    "dense_mlp": lambda config: not config.moe,
    "separate_mlp": lambda config: not config.moe and not config.qkv_concat,
    "fused_mlp": lambda config: not config.moe and config.qkv_concat,
}

# Keys that copy one to one: (ours, HF).
SAME_KEYS = (
    ("hidden_size", "hidden_size"), ("num_layers", "num_hidden_layers"), ("num_heads", "num_attention_heads"),
    ("intermediate_size", "intermediate_size"), ("vocab_size", "vocab_size"), ("rms_norm_eps", "rms_norm_eps"),
    ("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
)
HF_ACTIVATION = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}


def sizes(config):
    return {"hidden": config.hidden_size, "vocab": config.vocab_size, "ffn": config.ffn_size,
            "q": config.q_size, "kv": config.kv_size, "qkv": config.q_size + 2 * config.kv_size,
            "gate_up": 2 * config.ffn_size, "positions": config.max_position_embedding,
            "heads": config.num_heads, "head_dim": config.size_per_head,
            "experts": config.moe.expert_num if config.moe else 1}


def rope_settings(hf, where):
    """{theta, scaling_factor, extend_method, partial_rotary_factor} from transformers 5's rope_parameters or the
    older rope_theta and rope_scaling: linear interpolation is a number, Llama 3.1's scaling the mapping of
    extend_method LLAMA3."""
    rope = dict(hf.get("rope_parameters") or {})
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
    settings = {"theta": theta}
    partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor"))
    if partial not in (None, 1, 1.0):
        settings["partial_rotary_factor"] = float(partial)
    scaling = rope if rope.get("rope_type") not in (None, "default") else (hf.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        settings["scaling_factor"] = float(scaling["factor"])
    elif kind == "llama3":
        missing = [key for key in LLAMA3_SCALING_KEYS if key not in scaling]
        if missing:
            raise ConfigError(f"{where}: rope scaling llama3 lacks {', '.join(missing)}")
        settings.update(extend_method="LLAMA3",
                        scaling_factor={key: float(scaling[key]) for key in LLAMA3_SCALING_KEYS})
    elif kind != "default":
        logger.warning("%s: rope scaling '%s' is not implemented by this project's rotary embedding; weights "
                       "convert unchanged, but the model will not match transformers' positions", where, kind)
    return settings


def rope_parameters(config):
    rope = {"rope_type": "default", "rope_theta": float(config.theta)}
    if isinstance(config.scaling_factor, dict):  # extend_method LLAMA3 (validated by the config)
        rope.update(rope_type="llama3", **config.scaling_factor)
    elif config.scaling_factor != 1.0:
        rope.update(rope_type="linear", factor=float(config.scaling_factor))
    return rope


_REQUIRED = object()


def hf_value(hf, where, *names, default=_REQUIRED):
    """The value of the first of `names` in config dict `hf` (HF configs spell some keys several ways); a missing
    required key is a one-line error."""
    for name in names:
        if hf.get(name) is not None:
            return hf[name]
    if default is _REQUIRED:
        raise ConfigError(f"{where}: expected the key {names[0]}")
    return default


def dtype_settings(dtype):
    """The weights' dtype is the model's: fp32 weights compute in fp32, half weights in that half type."""
    return {"param_init_type": YAML_NAME[dtype], "compute_dtype": YAML_NAME[dtype]}


def decoder_config_from_hf(hf, dtype, where="config.json"):
    """Our config keyword arguments for a HF config dict in the Llama layout; unsupported features are errors."""
    activation = str(hf.get("hidden_act", hf.get("hidden_activation", "silu")))
    if activation.lower() not in ACTIVATIONS:
        raise ConfigError(f"{where}: hidden_act {activation!r} is not supported (expected one of "
                          f"{', '.join(ACTIVATIONS)})")
    if hf.get("mlp_bias"):
        raise ConfigError(f"{where}: mlp_bias: true is not supported by this project's decoder (expected false)")
    kwargs = {ours: hf[theirs] for ours, theirs in SAME_KEYS if theirs in hf}
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    if hf.get("head_dim") not in (None, hidden // heads):
        kwargs["head_dim"] = hf["head_dim"]
    kv_heads = hf.get("num_key_value_heads") or heads
    kwargs["n_kv_heads"] = None if kv_heads == heads else kv_heads
    kwargs["seq_length"] = hf.get("max_position_embeddings", 2048)
    kwargs.update(rope_settings(hf, where))
    kwargs["hidden_act"] = activation
    kwargs["tie_word_embeddings"] = bool(hf.get("tie_word_embeddings", False))
    bias = bool(hf.get("attention_bias", False))
    kwargs["qkv_has_bias"] = kwargs["attn_proj_has_bias"] = bias
    if hf.get("pad_token_id") is not None:
        kwargs["pad_token_id"] = hf["pad_token_id"]
    kwargs.update(dtype_settings(dtype))
    return kwargs


# What the Llama-layout HF architectures have no config key for: any of these set in our config stops --reversed
# unless the family's HF architecture implies it.
NOT_IN_HF = {"add_rmsnorm_offset": False, "scale_embedding": False, "final_logit_softcapping": None,
             "partial_rotary_factor": 1.0, "sliding_window": None, "position_embedding_type": "rope",
             "rotary_interleaved": False, "normalization": "RMSNorm", "embedding_norm": False, "gated_mlp": True,
             "mlp_has_bias": False, "norm_head": False}


def canonical_value(config, key):
    """A config value as compared with what an HF architecture can express (names in their canonical spelling)."""
    value = getattr(config, key)
    if key == "position_embedding_type":
        return config.position_kind
    if key == "normalization":
        return "LayerNorm" if config.uses_layer_norm else "RMSNorm"
    if key == "hidden_act":
        return config.activation
    return value


def require(config, architecture, expected):
    """A one-line error unless our config has `expected` (key -> value): what HF `architecture` hard-codes. A
    mixture of experts only where `expected` names moe_config (an architecture that expresses it)."""
    if config.moe and "moe_config" not in expected:
        raise ConfigError(f"model_config.moe_config: HF {architecture} has no mixture of experts (expected no "
                          f"moe_config, or expert_num 1, for that architecture)")
    for key, value in expected.items():
        if key != "moe_config" and canonical_value(config, key) != value:
            raise ConfigError(f"model_config.{key}: HF {architecture} cannot express {getattr(config, key)!r} "
                              f"(expected {value!r} for that architecture)")


# What the decoder offers beyond the architectures the families outside the Llama layout (Bloom, GPT-2) map to.
PLAIN_ARCHITECTURE = {"add_rmsnorm_offset": False, "scale_embedding": False, "final_logit_softcapping": None,
                      "sliding_window": None, "norm_head": False}


def require_multi_head(config, architecture):
    """HF architectures with one key/value head per query head and head_dim hidden_size / num_heads."""
    if config.kv_heads != config.num_heads or config.size_per_head * config.num_heads != config.hidden_size:
        raise ConfigError(f"model_config: HF {architecture} has one key/value head per query head and head_dim "
                          f"hidden_size / num_heads (expected n_kv_heads null, head_dim null)")


def shared_hf_keys(config, dtype):
    """config.json keys every HF causal LM config has, from our config."""
    name = YAML_NAME[canonical(dtype)]
    return {"initializer_range": config.initializer_range, "use_cache": True,
            "tie_word_embeddings": bool(config.tie_word_embeddings), "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id, "dtype": name,
            "torch_dtype": name}


def decoder_config_to_hf(config, dtype, model_type, architecture, implied):
    """The HF config dict of our config for `architecture`, which hard-codes `implied` (our key -> value)."""
    require(config, architecture, dict(NOT_IN_HF, **implied))
    if "qkv_has_bias" not in implied and config.qkv_has_bias != config.attn_proj_has_bias:
        raise ConfigError(f"model_config.qkv_has_bias: HF {architecture} has one attention_bias for q/k/v and the "
                          f"output projection (expected qkv_has_bias == attn_proj_has_bias)")
    hf = {"architectures": [architecture], "model_type": model_type}
    hf.update({theirs: getattr(config, ours) for ours, theirs in SAME_KEYS})
    hf.update(intermediate_size=config.ffn_size, num_key_value_heads=config.kv_heads, head_dim=config.size_per_head,
              max_position_embeddings=config.max_position_embedding, hidden_act=HF_ACTIVATION[config.activation],
              attention_bias=bool(config.qkv_has_bias), mlp_bias=False, rope_parameters=rope_parameters(config),
              rope_theta=float(config.theta), tie_word_embeddings=bool(config.tie_word_embeddings),
              pad_token_id=config.pad_token_id, dtype=YAML_NAME[canonical(dtype)],
              torch_dtype=YAML_NAME[canonical(dtype)])
    return hf


def decoder_family(name, config_type, arch_type, model_types, hf_architecture, write_model_type=None, implied=None,
                   hf_defaults=None, expresses=(), read=None, write=None, weights=DECODER_WEIGHTS):
    """The HFFamily of a family built on the shared decoder and stored in HF's Llama layout.

    implied: our config values the HF architecture hard-codes (set when reading, required when writing).
    hf_defaults: HF config values the architecture assumes when config.json leaves the key out.
    read(hf, kwargs, where) / write(config, hf): adjust what the generic translation made, for keys only this
    family has; `expresses` names our keys the write hook puts in config.json (so they are not refused).
    write_model_type: the model_type written (default model_types[0]).
    weights: the weight table, when the family stores some weights apart from the Llama layout."""
    implied = dict(implied or {})

    def config_from_hf(hf, dtype, where="config.json"):
        hf = dict(hf_defaults or {}, **hf)
        kwargs = decoder_config_from_hf(hf, dtype, where)
        kwargs.update(implied)
        if read is not None:
            read(hf, kwargs, where)
        return kwargs

    def config_to_hf(config, dtype):
        allowed = dict(implied, **{key: canonical_value(config, key) for key in expresses})
        hf = decoder_config_to_hf(config, dtype, write_model_type or model_types[0], hf_architecture, allowed)
        if write is not None:
            write(config, hf)
        return hf

    return HFFamily(name=name, model_types=tuple(model_types), hf_architecture=hf_architecture,
                    our_config_type=config_type, our_arch_type=arch_type, weights=weights, sizes=sizes,
                    config_from_hf=config_from_hf, config_to_hf=config_to_hf, conditions=CONDITIONS)

