"""Bloom (7B1, 176B): the shared decoder with ALiBi instead of rotary, LayerNorm with bias (also right after the
embeddings), a plain MLP with tanh-approximated GELU, biases on every projection, and the LM head tied to the
250880-token embedding table.

HF: BloomForCausalLM (model_type bloom). Its fused query_key_value holds each head's q, k and v rows together
(head 0's q, k, v, then head 1's, ...); ours holds q/k/v apart (or, with qkv_concat, all q rows, then k, then v), so
the rows are regrouped both ways. The published checkpoints name their tensors without the `transformer.` prefix
that transformers' save_pretrained adds: both are read, the published names are written.
"""
import numpy as np

from mindformers.checkpoint.hf_mapping import HFFamily, register_family, weight
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import (CONDITIONS, PLAIN_ARCHITECTURE, dtype_settings, hf_value, require,
                                                  require_multi_head, shared_hf_keys, sizes)
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# What BloomForCausalLM computes, in our config's terms (set when reading, required when writing).
BLOOM_ARCHITECTURE = dict(position_embedding_type="alibi", normalization="LayerNorm", embedding_norm=True,
                          gated_mlp=False, mlp_has_bias=True, hidden_act="gelu_tanh", qkv_has_bias=True,
                          attn_proj_has_bias=True)


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class BloomConfig(DecoderConfig):
    """Defaults are Bloom-7B1's."""

    model_type = "bloom"
    defaults = dict(seq_length=2048, hidden_size=4096, num_layers=30, num_heads=32, intermediate_size=16384,
                    vocab_size=250880, layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=1,
                    eos_token_id=2, pad_token_id=3, compute_dtype="float16", **BLOOM_ARCHITECTURE)


BloomForCausalLM = causal_lm_class("BloomForCausalLM", BloomConfig)


def heads_rows(*which):
    """Rows of Bloom's query_key_value holding q (0), k (1) and/or v (2) of every head, in our order: all heads'
    q rows, then all k rows, then all v rows."""
    def rows(size):
        heads, dim = size["heads"], size["head_dim"]
        head_start = np.arange(heads)[:, None] * 3 * dim
        return np.concatenate([(head_start + j * dim + np.arange(dim)[None, :]).reshape(-1) for j in which])
    return rows


OURS, LAYER = "model.layers.{layer}", "h.{layer}"
QKV = f"{LAYER}.self_attention.query_key_value"


def with_bias(ours, hf, shape, when=None, **options):
    """A weight and its bias (HF names ending in .weight and .bias)."""
    return (weight(f"{ours}.weight", f"{hf}.weight", shape, when, **options),
            weight(f"{ours}.bias", f"{hf}.bias", shape[:1], when, rows=options.get("rows")))


BLOOM_WEIGHTS = (
    weight("model.tok_embeddings.embedding_weight", "word_embeddings.weight", ("vocab", "hidden")),
    *with_bias("model.embedding_norm", "word_embeddings_layernorm", ("hidden",)),
    *with_bias(f"{OURS}.attention_norm", f"{LAYER}.input_layernorm", ("hidden",)),
    *with_bias(f"{OURS}.attention.wq", QKV, ("qkv", "hidden"), "separate", rows=heads_rows(0)),
    *with_bias(f"{OURS}.attention.wk", QKV, ("qkv", "hidden"), "separate", rows=heads_rows(1)),
    *with_bias(f"{OURS}.attention.wv", QKV, ("qkv", "hidden"), "separate", rows=heads_rows(2)),
    *with_bias(f"{OURS}.attention.w_qkv", QKV, ("qkv", "hidden"), "fused", rows=heads_rows(0, 1, 2)),
    *with_bias(f"{OURS}.attention.wo", f"{LAYER}.self_attention.dense", ("hidden", "hidden")),
    *with_bias(f"{OURS}.ffn_norm", f"{LAYER}.post_attention_layernorm", ("hidden",)),
    *with_bias(f"{OURS}.feed_forward.w1", f"{LAYER}.mlp.dense_h_to_4h", ("ffn", "hidden")),
    *with_bias(f"{OURS}.feed_forward.w2", f"{LAYER}.mlp.dense_4h_to_h", ("hidden", "ffn")),
    *with_bias("model.norm_out", "ln_f", ("hidden",)),
    weight("lm_head.weight", "lm_head.weight", ("vocab", "hidden"), when="untied"),
)


def config_from_hf(hf, dtype, where="config.json"):
    if hf.get("apply_residual_connection_post_layernorm"):
        raise ConfigError(f"{where}: apply_residual_connection_post_layernorm: true is not supported (expected "
                          f"false, as every published Bloom has)")
    hidden = hf_value(hf, where, "hidden_size", "n_embed")
    kwargs = dict(BLOOM_ARCHITECTURE, hidden_size=hidden, intermediate_size=4 * hidden,
                  num_layers=hf_value(hf, where, "n_layer", "num_hidden_layers"),
                  num_heads=hf_value(hf, where, "n_head", "num_attention_heads"),
                  vocab_size=hf_value(hf, where, "vocab_size"),
                  layer_norm_epsilon=float(hf_value(hf, where, "layer_norm_epsilon", default=1e-5)),
                  tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)), **dtype_settings(dtype))
    kwargs.update({key: hf[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id") if hf.get(key) is not None})
    return kwargs


def config_to_hf(config, dtype):
    require(config, "BloomForCausalLM", dict(BLOOM_ARCHITECTURE, **PLAIN_ARCHITECTURE))
    require_multi_head(config, "BloomForCausalLM")
    if config.ffn_size != 4 * config.hidden_size:
        raise ConfigError(f"model_config.intermediate_size: HF BloomForCausalLM cannot express {config.ffn_size} "
                          f"(expected 4 x hidden_size, {4 * config.hidden_size})")
    return {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "hidden_size": config.hidden_size,
            "n_layer": config.num_layers, "n_head": config.num_heads, "vocab_size": config.vocab_size,
            "layer_norm_epsilon": config.layer_norm_epsilon, "apply_residual_connection_post_layernorm": False,
            "attention_softmax_in_fp32": True, "hidden_dropout": 0.0, "attention_dropout": 0.0,
            "pretraining_tp": 1, "slow_but_exact": False, **shared_hf_keys(config, dtype)}


BLOOM = register_family(HFFamily(
    name="bloom", model_types=("bloom",), hf_architecture="BloomForCausalLM", our_config_type="BloomConfig",
    our_arch_type="BloomForCausalLM", weights=BLOOM_WEIGHTS, sizes=sizes, config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, conditions=CONDITIONS, canonical_name=lambda name: name.removeprefix("transformer.")))
