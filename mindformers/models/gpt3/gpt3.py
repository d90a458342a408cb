"""GPT-3 (the 175B shape of ModelLink's GPT3 example, after Megatron's GPT): the shared decoder with learned absolute
positions, LayerNorm with bias, a plain GELU MLP with biases, biases on every projection and the LM head tied to the
embedding table.

HF: GPT2LMHeadModel (model_type gpt2), which computes this architecture. Its Conv1D layers store each matrix as
(in, out), the transpose of ours, and its c_attn holds q, k and v side by side (columns), so wq/wk/wv are the
transposed blocks. The published GPT-2 checkpoints name their tensors without the `transformer.` prefix that
transformers' save_pretrained adds: both are read, the published names are written; their causal-mask buffers
(`attn.bias`, `attn.masked_bias`) are skipped.
"""
from mindformers.checkpoint.hf_mapping import HFFamily, register_family, row_block, weight
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.config import ACTIVATIONS
from mindformers.models.decoder.hf_layout import (CONDITIONS, PLAIN_ARCHITECTURE, dtype_settings, hf_value, require,
                                                  require_multi_head, shared_hf_keys, sizes)
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# What GPT2LMHeadModel computes, in our config's terms (set when reading, required when writing).
GPT_ARCHITECTURE = dict(position_embedding_type="learned_absolute", normalization="LayerNorm", gated_mlp=False,
                        mlp_has_bias=True, qkv_has_bias=True, attn_proj_has_bias=True)
HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new"}


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class GPT3Config(DecoderConfig):
    """Defaults are GPT-3 175B's: 96 layers of 12288 with 96 heads over 2048 positions, Megatron's exact GELU and
    the GPT-2 vocabulary (50257) padded to 51200, a multiple of 128 x tensor parallel 8, as Megatron pads it."""

    model_type = "gpt2"
    defaults = dict(seq_length=2048, hidden_size=12288, num_layers=96, num_heads=96, intermediate_size=49152,
                    vocab_size=51200, hidden_act="gelu", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                    bos_token_id=50256, eos_token_id=50256, pad_token_id=50256, compute_dtype="float16",
                    **GPT_ARCHITECTURE)


GPT3ForCausalLM = causal_lm_class("GPT3ForCausalLM", GPT3Config)

OURS, LAYER = "model.layers.{layer}", "h.{layer}"
C_ATTN = f"{LAYER}.attn.c_attn"
Q, K, V = row_block("q"), row_block("kv", after=("q",)), row_block("kv", after=("q", "kv"))


def conv1d(ours, hf, shape, when=None, rows=None):
    """A Conv1D weight (stored (in, out): ours is its transpose) and its bias."""
    return (weight(f"{ours}.weight", f"{hf}.weight", shape, when, transposed=True, rows=rows),
            weight(f"{ours}.bias", f"{hf}.bias", shape[1:], when, rows=rows))


def layer_norm(ours, hf):
    return weight(f"{ours}.weight", f"{hf}.weight", ("hidden",)), weight(f"{ours}.bias", f"{hf}.bias", ("hidden",))


GPT2_WEIGHTS = (
    weight("model.tok_embeddings.embedding_weight", "wte.weight", ("vocab", "hidden")),
    weight("model.position_embeddings.embedding_weight", "wpe.weight", ("positions", "hidden")),
    *layer_norm(f"{OURS}.attention_norm", f"{LAYER}.ln_1"),
    *conv1d(f"{OURS}.attention.wq", C_ATTN, ("hidden", "qkv"), "separate", rows=Q),
    *conv1d(f"{OURS}.attention.wk", C_ATTN, ("hidden", "qkv"), "separate", rows=K),
    *conv1d(f"{OURS}.attention.wv", C_ATTN, ("hidden", "qkv"), "separate", rows=V),
    *conv1d(f"{OURS}.attention.w_qkv", C_ATTN, ("hidden", "qkv"), "fused"),
    *conv1d(f"{OURS}.attention.wo", f"{LAYER}.attn.c_proj", ("hidden", "hidden")),
    *layer_norm(f"{OURS}.ffn_norm", f"{LAYER}.ln_2"),
    *conv1d(f"{OURS}.feed_forward.w1", f"{LAYER}.mlp.c_fc", ("hidden", "ffn")),
    *conv1d(f"{OURS}.feed_forward.w2", f"{LAYER}.mlp.c_proj", ("ffn", "hidden")),
    *layer_norm("model.norm_out", "ln_f"),
    weight("lm_head.weight", "lm_head.weight", ("vocab", "hidden"), when="untied"),
)


def config_from_hf(hf, dtype, where="config.json"):
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if hf.get(key):
            raise ConfigError(f"{where}: {key}: true is not supported (expected false)")
    if hf.get("scale_attn_weights") is False:
        raise ConfigError(f"{where}: scale_attn_weights: false is not supported (expected true)")
    activation = str(hf_value(hf, where, "activation_function", default="gelu_new"))
    if activation.lower() not in ACTIVATIONS:
        raise ConfigError(f"{where}: activation_function {activation!r} is not supported (expected one of "
                          f"{', '.join(HF_ACTIVATION.values())})")
    hidden = hf_value(hf, where, "n_embd", "hidden_size")
    positions = hf_value(hf, where, "n_positions", "max_position_embeddings", default=1024)
    kwargs = dict(GPT_ARCHITECTURE, hidden_size=hidden, hidden_act=activation,
                  intermediate_size=hf_value(hf, where, "n_inner", default=4 * hidden),
                  num_layers=hf_value(hf, where, "n_layer", "num_hidden_layers"),
                  num_heads=hf_value(hf, where, "n_head", "num_attention_heads"),
                  vocab_size=hf_value(hf, where, "vocab_size"), seq_length=positions,
                  layer_norm_epsilon=float(hf_value(hf, where, "layer_norm_epsilon", default=1e-5)),
                  tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)), **dtype_settings(dtype))
    kwargs.update({key: hf[key] for key in ("bos_token_id", "eos_token_id") if hf.get(key) is not None})
    pad = hf.get("pad_token_id")
    kwargs["pad_token_id"] = pad if pad is not None else kwargs.get("eos_token_id", 0)  # GPT-2 names no pad
    return kwargs


def config_to_hf(config, dtype):
    require(config, "GPT2LMHeadModel", dict(GPT_ARCHITECTURE, embedding_norm=False, **PLAIN_ARCHITECTURE))
    require_multi_head(config, "GPT2LMHeadModel")
    if config.activation not in HF_ACTIVATION:
        raise ConfigError(f"model_config.hidden_act: HF GPT2LMHeadModel cannot express {config.hidden_act!r} "
                          f"(expected gelu or gelu_tanh)")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": config.hidden_size,
            "n_layer": config.num_layers, "n_head": config.num_heads, "n_inner": config.ffn_size,
            "n_positions": config.max_position_embedding, "vocab_size": config.vocab_size,
            "activation_function": HF_ACTIVATION[config.activation], "layer_norm_epsilon": config.layer_norm_epsilon,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **shared_hf_keys(config, dtype)}


GPT2 = register_family(HFFamily(
    name="gpt3", model_types=("gpt2",), hf_architecture="GPT2LMHeadModel", our_config_type="GPT3Config",
    our_arch_type="GPT3ForCausalLM", weights=GPT2_WEIGHTS, sizes=sizes, config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, conditions=CONDITIONS, canonical_name=lambda name: name.removeprefix("transformer."),
    skipped_buffers=(".attn.bias", ".attn.masked_bias")), "gpt2")
