"""ChatGLM3 (6B): the shared decoder with multi-query attention in 2 groups (2 key/value heads), biases on the
fused q/k/v projection only, GLM's rotary embedding on the first half of each head with its interleaved pairs
(features 2i and 2i+1 rotate together, at the frequencies of a half-head-wide rotary embedding), RMSNorm, a SwiGLU
MLP whose gate and up projections are one matrix, and a separate 65024-row output layer.

HF: ChatGLMModel (model_type chatglm, remote code; THUDM's checkpoints, `transformer.` names). Its
query_key_value holds all q rows, then k's, then v's (as our w_qkv) and dense_h_to_4h the gate rows, then the up rows
(as our w_gate_hidden): with qkv_concat they copy whole, otherwise they are split into wq/wk/wv and w1/w3 on the way
in and fused on the way out. The checkpoints also hold the rotary inverse frequencies
(`transformer.rotary_pos_emb.inv_freq`), a buffer computed from the config: skipped when reading, written back.
"""
import numpy as np

from mindformers.checkpoint.hf_mapping import HFFamily, register_family, row_block, weight
from mindformers.checkpoint.tensor_dtypes import YAML_NAME, canonical
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import CONDITIONS, dtype_settings, hf_value, require, sizes
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# What ChatGLM3's code computes, in our config's terms (set when reading, required when writing).
GLM_ARCHITECTURE = dict(partial_rotary_factor=0.5, rotary_interleaved=True, qkv_has_bias=True)


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class ChatGLM3Config(DecoderConfig):
    """Defaults are ChatGLM3-6B's."""

    model_type = "chatglm"
    defaults = dict(seq_length=8192, hidden_size=4096, num_layers=28, num_heads=32, n_kv_heads=2,
                    intermediate_size=13696, vocab_size=65024, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                    pad_token_id=0, compute_dtype="float16", **GLM_ARCHITECTURE)


ChatGLM3ForCausalLM = causal_lm_class("ChatGLM3ForCausalLM", ChatGLM3Config)

OURS, LAYER = "model.layers.{layer}", "transformer.encoder.layers.{layer}"
QKV, UP = f"{LAYER}.self_attention.query_key_value", f"{LAYER}.mlp.dense_h_to_4h"
INV_FREQ = "transformer.rotary_pos_emb.inv_freq"


def split(ours, hf, shape, when_split, when_fused, blocks, fused_name):
    """Our separate weights, each a row block of the fused HF tensor, or (fused) our one weight holding it whole."""
    entries = [weight(f"{OURS}.{name}", hf, shape, when_split, rows=rows) for name, rows in zip(ours, blocks)]
    return (*entries, weight(f"{OURS}.{fused_name}", hf, shape, when_fused))


Q, K, V = row_block("q"), row_block("kv", ("q",)), row_block("kv", ("q", "kv"))
GATE, UP_ROWS = row_block("ffn"), row_block("ffn", ("ffn",))

GLM_WEIGHTS = (
    weight("model.tok_embeddings.embedding_weight", "transformer.embedding.word_embeddings.weight",
           ("vocab", "hidden")),
    weight(f"{OURS}.attention_norm.weight", f"{LAYER}.input_layernorm.weight", ("hidden",)),
    *split(("attention.wq.weight", "attention.wk.weight", "attention.wv.weight"), f"{QKV}.weight",
           ("qkv", "hidden"), "separate", "fused", (Q, K, V), "attention.w_qkv.weight"),
    *split(("attention.wq.bias", "attention.wk.bias", "attention.wv.bias"), f"{QKV}.bias", ("qkv",),
           "separate_qkv_bias", "fused_qkv_bias", (Q, K, V), "attention.w_qkv.bias"),
    weight(f"{OURS}.attention.wo.weight", f"{LAYER}.self_attention.dense.weight", ("hidden", "q")),
    weight(f"{OURS}.attention.wo.bias", f"{LAYER}.self_attention.dense.bias", ("hidden",), "o_bias"),
    weight(f"{OURS}.ffn_norm.weight", f"{LAYER}.post_attention_layernorm.weight", ("hidden",)),
    *split(("feed_forward.w1.weight", "feed_forward.w3.weight"), f"{UP}.weight", ("gate_up", "hidden"), "separate",
           "fused", (GATE, UP_ROWS), "feed_forward.w_gate_hidden.weight"),
    weight(f"{OURS}.feed_forward.w2.weight", f"{LAYER}.mlp.dense_4h_to_h.weight", ("hidden", "ffn")),
    weight("model.norm_out.weight", "transformer.encoder.final_layernorm.weight", ("hidden",)),
    weight("lm_head.weight", "transformer.output_layer.weight", ("vocab", "hidden"), "untied"),
)

# config.json keys of THUDM's release that describe what the remote code always computes here.
RELEASE_KEYS = {"architectures": ["ChatGLMModel"], "model_type": "chatglm",
                "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                             "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                             "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
                             "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
                             "AutoModelForSequenceClassification": "modeling_chatglm.ChatGLMForSequenceClassification"},
                "add_bias_linear": False, "apply_query_key_layer_scaling": True,
                "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0,
                "attention_softmax_in_fp32": True, "bias_dropout_fusion": True, "fp32_residual_connection": False,
                "hidden_dropout": 0.0, "multi_query_attention": True, "original_rope": True, "post_layer_norm": True,
                "rmsnorm": True, "use_cache": True}
REFUSED = {"apply_residual_connection_post_layernorm": True, "post_layer_norm": False, "rmsnorm": False,
           "add_bias_linear": True}


def config_from_hf(hf, dtype, where="config.json"):
    for key, value in REFUSED.items():
        if key in hf and bool(hf[key]) == value:
            raise ConfigError(f"{where}: {key}: {str(value).lower()} is not supported (expected "
                              f"{str(not value).lower()}, as ChatGLM3 has)")
    heads = hf_value(hf, where, "num_attention_heads")
    hidden = hf_value(hf, where, "hidden_size")
    head_dim = hf_value(hf, where, "kv_channels", default=hidden // heads)
    kwargs = dict(GLM_ARCHITECTURE, hidden_size=hidden, num_heads=heads, num_layers=hf_value(hf, where, "num_layers"),
                  head_dim=None if head_dim * heads == hidden else head_dim,
                  n_kv_heads=hf_value(hf, where, "multi_query_group_num") if hf.get("multi_query_attention") else None,
                  intermediate_size=hf_value(hf, where, "ffn_hidden_size"),
                  vocab_size=hf_value(hf, where, "padded_vocab_size", "vocab_size"),
                  seq_length=hf_value(hf, where, "seq_length", default=8192),
                  rms_norm_eps=float(hf_value(hf, where, "layernorm_epsilon", default=1e-5)),
                  theta=10000.0 * float(hf.get("rope_ratio") or 1.0), qkv_has_bias=bool(hf.get("add_qkv_bias", True)),
                  tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)), **dtype_settings(dtype))
    kwargs.update({key: hf[key] for key in ("eos_token_id", "pad_token_id") if isinstance(hf.get(key), int)})
    return kwargs


def config_to_hf(config, dtype):
    require(config, "ChatGLMModel", dict(
        partial_rotary_factor=0.5, rotary_interleaved=True, position_embedding_type="rope", normalization="RMSNorm",
        gated_mlp=True, hidden_act="silu", attn_proj_has_bias=False, mlp_has_bias=False, add_rmsnorm_offset=False,
        scale_embedding=False, final_logit_softcapping=None, sliding_window=None, embedding_norm=False,
        norm_head=False))
    if config.scaling_factor != 1.0:
        raise ConfigError("model_config.scaling_factor: ChatGLMModel has no rotary scaling (expected 1)")
    name = YAML_NAME[canonical(dtype)]
    hf = dict(RELEASE_KEYS, hidden_size=config.hidden_size, num_layers=config.num_layers,
              num_attention_heads=config.num_heads, kv_channels=config.size_per_head,
              multi_query_attention=config.kv_heads != config.num_heads, multi_query_group_num=config.kv_heads,
              ffn_hidden_size=config.ffn_size, padded_vocab_size=config.vocab_size, seq_length=config.seq_length,
              layernorm_epsilon=config.rms_norm_eps, add_qkv_bias=bool(config.qkv_has_bias),
              tie_word_embeddings=bool(config.tie_word_embeddings), eos_token_id=config.eos_token_id,
              pad_token_id=config.pad_token_id, torch_dtype=name)
    if config.theta != 10000.0:
        hf["rope_ratio"] = config.theta / 10000.0
    return hf


def inverse_frequencies(config):
    """ChatGLM3's stored rotary buffer: 1 / 10000^(2i / d) over the rotated width d (theta includes rope_ratio)."""
    dim = config.rotary_dim
    exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    return {INV_FREQ: (np.float32(1.0) / np.power(np.float32(config.theta), exponents)).astype(np.float32)}


CHATGLM3 = register_family(HFFamily(
    name="chatglm3", model_types=("chatglm",), hf_architecture="ChatGLMModel", our_config_type="ChatGLM3Config",
    our_arch_type="ChatGLM3ForCausalLM", weights=GLM_WEIGHTS, sizes=sizes, config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, conditions=CONDITIONS, buffers=inverse_frequencies), "chatglm", "glm3")
