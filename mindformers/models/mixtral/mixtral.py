"""Mixtral (8x7B): the shared decoder with a mixture-of-experts feed-forward in every layer (8 SwiGLU experts, the
top 2 per token, their router probabilities renormalised), GQA, rope theta 1e6 and positions up to 32768.
HF: MixtralForCausalLM (model_type mixtral), one tensor per expert (block_sparse_moe.experts.N.w1/w2/w3) and the
router (block_sparse_moe.gate); ours stacks each layer's experts into one weight per projection, under
MindFormers' names (feed_forward.ffn.w1/w2/w3, feed_forward.router.dense)."""
from mindformers.checkpoint.hf_mapping import register_family, stacked, weight
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import DECODER_WEIGHTS, LAYER, decoder_family
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# Mixtral-8x7B-v0.1 as released: transformers computes every routed token (dropless); aux loss coefficient 0.02.
MIXTRAL_MOE = {"expert_num": 8, "num_experts_chosen": 2, "capacity_factor": -1.0, "aux_loss_factor": 0.02,
               "routing_policy": "TopkRouterV2", "norm_topk_prob": True, "router_dense_type": "float32"}


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class MixtralConfig(DecoderConfig):
    """Defaults are Mixtral-8x7B's (HF Mixtral-8x7B-v0.1)."""

    model_type = "mixtral"
    defaults = dict(seq_length=32768, hidden_size=4096, num_layers=32, num_heads=32, n_kv_heads=8,
                    intermediate_size=14336, vocab_size=32000, rms_norm_eps=1e-5, theta=1000000.0,
                    compute_dtype="bfloat16", moe_config=MIXTRAL_MOE)


MixtralForCausalLM = causal_lm_class("MixtralForCausalLM", MixtralConfig)

MOE = f"{LAYER}.block_sparse_moe"
EXPERT_WEIGHTS = (
    weight(f"{LAYER}.feed_forward.router.dense.weight", f"{MOE}.gate.weight", ("experts", "hidden")),
    stacked(f"{LAYER}.feed_forward.ffn.w1.weight", f"{MOE}.experts.{{expert}}.w1.weight", ("ffn", "hidden"),
            "experts"),
    stacked(f"{LAYER}.feed_forward.ffn.w3.weight", f"{MOE}.experts.{{expert}}.w3.weight", ("ffn", "hidden"),
            "experts"),
    stacked(f"{LAYER}.feed_forward.ffn.w2.weight", f"{MOE}.experts.{{expert}}.w2.weight", ("hidden", "ffn"),
            "experts"),
)


def experts_from_hf(hf, kwargs, where):
    """HF's expert keys as a moe_config; transformers routes every token (dropless) and has no router noise here."""
    if hf.get("router_jitter_noise"):
        raise ConfigError(f"{where}: router_jitter_noise {hf['router_jitter_noise']} is not implemented here "
                          f"(expected 0)")
    kwargs["sliding_window"] = hf.get("sliding_window")
    kwargs["moe_config"] = dict(MIXTRAL_MOE, expert_num=hf.get("num_local_experts", 8),
                                num_experts_chosen=hf.get("num_experts_per_tok", 2),
                                aux_loss_factor=hf.get("router_aux_loss_coef", 0.001))


def experts_to_hf(config, hf):
    """The moe_config HF Mixtral can say: every layer sparse, experts as wide as intermediate_size, top-k
    probabilities renormalised and unscaled. Capacity is not part of the HF model (transformers is dropless)."""
    moe = config.moe
    if moe is None:
        raise ConfigError("model_config.moe_config: HF MixtralForCausalLM is a mixture of experts (expected a "
                          "moe_config with expert_num > 1)")
    required = {"first_k_dense_replace": (moe.first_k_dense_replace, 0), "norm_topk_prob": (moe.norm_topk_prob, True),
                "routed_scaling_factor": (moe.routed_scaling_factor, 1.0),
                "moe_intermediate_size": (config.expert_ffn_size, config.ffn_size)}
    for key, (value, expected) in required.items():
        if value != expected:
            raise ConfigError(f"model_config.moe_config.{key}: HF MixtralForCausalLM cannot express {value!r} "
                              f"(expected {expected!r})")
    for key in ("attention_bias", "mlp_bias"):  # HF MixtralConfig has neither
        hf.pop(key)
    hf.update(sliding_window=config.sliding_window, num_local_experts=moe.expert_num,
              num_experts_per_tok=moe.top_k, router_aux_loss_coef=moe.aux_loss_factor, router_jitter_noise=0.0,
              output_router_logits=False)


MIXTRAL = register_family(decoder_family(
    "mixtral", "MixtralConfig", "MixtralForCausalLM", ("mixtral",), "MixtralForCausalLM",
    implied={"qkv_has_bias": False, "attn_proj_has_bias": False}, expresses=("sliding_window", "moe_config"),
    read=experts_from_hf, write=experts_to_hf, weights=DECODER_WEIGHTS + EXPERT_WEIGHTS))
