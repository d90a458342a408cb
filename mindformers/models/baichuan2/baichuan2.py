"""Baichuan2 (7B, 13B): Llama's layer with q, k and v in one projection (W_pack) and NormHead, an LM head whose rows
are normalised to unit length before use; 7B positions with rotary embedding, 13B with ALiBi. A 125696-token
sentencepiece vocabulary.

HF: BaichuanForCausalLM (model_type baichuan, remote code), Llama's tensor names but W_pack (q, k, v rows one after
another) for q_proj/k_proj/v_proj: split into wq/wk/wv on the way in (or kept whole as w_qkv with qkv_concat) and
fused on the way out. The two sizes ship different remote code under the same config keys; the 7B config
has max_position_embeddings (its rotary table) and the 13B config only model_max_length, which is how the position
encoding is told apart when reading, and what is written.
"""
from mindformers.checkpoint.hf_mapping import register_family, row_block, weight
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import ATTN, DECODER_WEIGHTS, LAYER, QKV, decoder_family
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class Baichuan2Config(DecoderConfig):
    """Defaults are Baichuan2-7B's (Baichuan2-13B: hidden 5120, 40 layers and heads, ffn 13696, ALiBi)."""

    model_type = "baichuan"
    defaults = dict(seq_length=4096, hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008,
                    vocab_size=125696, rms_norm_eps=1e-6, norm_head=True, bos_token_id=1, eos_token_id=2,
                    pad_token_id=0, compute_dtype="bfloat16")


Baichuan2ForCausalLM = causal_lm_class("Baichuan2ForCausalLM", Baichuan2Config)

W_PACK = f"{ATTN}.W_pack.weight"
PACKED = (
    weight(f"{LAYER}.attention.wq.weight", W_PACK, ("qkv", "hidden"), "separate", rows=row_block("q")),
    weight(f"{LAYER}.attention.wk.weight", W_PACK, ("qkv", "hidden"), "separate", rows=row_block("kv", ("q",))),
    weight(f"{LAYER}.attention.wv.weight", W_PACK, ("qkv", "hidden"), "separate",
           rows=row_block("kv", ("q", "kv"))),
    weight(f"{LAYER}.attention.w_qkv.weight", W_PACK, ("qkv", "hidden"), "fused"),
)


def packed_weights():
    """The Llama-layout table with W_pack where q_proj/k_proj/v_proj were."""
    table = []
    for entry in DECODER_WEIGHTS:
        if any(name.startswith(QKV) for name in entry.hf):
            table.extend(part for part in PACKED if part not in table)
        else:
            table.append(entry)
    return tuple(table)


RELEASE_KEYS = {"tokenizer_class": "BaichuanTokenizer", "z_loss_weight": 0,
                "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig",
                             "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"}}


def positions_from_hf(hf, kwargs, where):  # pylint: disable=unused-argument
    rotary = hf.get("max_position_embeddings") is not None
    kwargs["position_embedding_type"] = "rope" if rotary else "alibi"
    kwargs["seq_length"] = hf.get("model_max_length") or hf.get("max_position_embeddings") or 4096


def release_config(config, hf):
    """config.json as Baichuan2's releases write it (its remote code reads these keys and hard-codes the rest)."""
    if config.kv_heads != config.num_heads or config.theta != 10000.0 or config.scaling_factor != 1.0:
        raise ConfigError("model_config: HF BaichuanForCausalLM has one key/value head per query head and rotary "
                          "theta 10000 without scaling (expected n_kv_heads null, theta 10000, scaling_factor 1)")
    for key in ("num_key_value_heads", "head_dim", "attention_bias", "mlp_bias", "rope_parameters", "rope_theta",
                "max_position_embeddings"):
        hf.pop(key)
    hf.update(RELEASE_KEYS, model_max_length=config.seq_length, initializer_range=config.initializer_range,
              use_cache=True)
    if config.position_kind == "rope":
        hf["max_position_embeddings"] = config.max_position_embedding


BAICHUAN2 = register_family(decoder_family(
    "baichuan2", "Baichuan2Config", "Baichuan2ForCausalLM", ("baichuan",), "BaichuanForCausalLM",
    implied={"norm_head": True, "qkv_has_bias": False, "attn_proj_has_bias": False},
    expresses=("position_embedding_type",), read=positions_from_hf, write=release_config,
    weights=packed_weights()), "baichuan")
