"""The decoder's parts, each picked from the model config: the one place a family's architecture choices become
layers. A new kind of norm, position encoding, MLP or attention is a new branch here and a config field, never a
copied layer or model class."""
import mindspore as ms

from mindformers.models.modules.attention import Attention
from mindformers.models.modules.mlp import GatedFeedForward
from mindformers.models.modules.moe import MoEFeedForward
from mindformers.models.modules.norm import RMSNorm
from mindformers.models.modules.rotary import RotaryEmbedding


def fused_kernels_available():
    """Fused Ascend kernels (RmsNorm, FlashAttentionScore) are used only where MindSpore has them."""
    return ms.get_context("device_target") == "Ascend"


def use_fused_kernels(config):
    """model_config.use_fused_rms_norm, or when unset, whether the device has the fused kernels."""
    return fused_kernels_available() if config.use_fused_rms_norm is None else config.use_fused_rms_norm


def make_norm(config, fused):
    """RMSNorm over hidden_size, scaling by w or, with add_rmsnorm_offset, by (1 + w)."""
    return RMSNorm(config.hidden_size, eps=config.rms_norm_eps, compute_type=config.dtype("layernorm_compute_type"),
                   param_init_type=config.dtype("param_init_type"), use_fused=fused,
                   unit_offset=config.add_rmsnorm_offset)


def make_position(config):
    """The position encoding attention applies to queries and keys: rotary (theta, scaling, partial rotary)."""
    return RotaryEmbedding(config.size_per_head, config.max_position_embedding, config.theta,
                           config.dtype("rotary_dtype"), config.scaling_factor, config.rotary_dim)


def make_attention(config, fused):
    return Attention(
        config.hidden_size, config.num_heads, config.kv_heads, config.max_position_embedding,
        compute_dtype=config.dtype("compute_dtype"), param_init_type=config.dtype("param_init_type"),
        softmax_compute_type=config.dtype("softmax_compute_type"), init_std=config.initializer_range,
        use_flash_attention=config.use_flash_attention and fused, sliding_window=config.sliding_window,
        has_bias=config.qkv_has_bias, out_bias=config.attn_proj_has_bias, head_dim=config.size_per_head,
        qkv_concat=config.qkv_concat, position=make_position(config))


def make_feed_forward(config, layer_id=0):
    """The gated MLP: SwiGLU (hidden_act silu) or GeGLU (gelu_tanh), gate/up fused with qkv_concat; with moe_config
    (past its first_k_dense_replace layers) a mixture of experts, each that gated MLP (gate/up kept apart)."""
    numerics = dict(compute_dtype=config.dtype("compute_dtype"), param_init_type=config.dtype("param_init_type"),
                    init_std=config.initializer_range)
    if config.moe and config.moe.layer_has_experts(layer_id):
        return MoEFeedForward(config.hidden_size, config.expert_ffn_size, config.moe, activation=config.activation,
                              **numerics)
    return GatedFeedForward(config.hidden_size, config.ffn_size, activation=config.activation,
                            fused=config.qkv_concat, **numerics)
