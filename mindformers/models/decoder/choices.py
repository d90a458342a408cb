"""The decoder's parts, each picked from the model config: the one place a family's architecture choices become
layers. A new kind of norm, position encoding, MLP or attention is a new branch here and a config field, never a
copied layer or model class."""
import mindspore as ms

from mindformers.kernels import cpu_attention
from mindformers.models.modules.attention import Attention
from mindformers.models.modules.linear import Linear, NormHead
from mindformers.models.modules.mlp import FeedForward, GatedFeedForward
from mindformers.models.modules.moe import MoEFeedForward
from mindformers.models.modules.norm import LayerNorm, RMSNorm
from mindformers.models.modules.positions import AlibiPosition, AttentionPosition
from mindformers.models.modules.rotary import RotaryEmbedding


def fused_kernels_available():
    """Fused Ascend kernels (RmsNorm, FlashAttentionScore) are used only where MindSpore has them."""
    return ms.get_context("device_target") == "Ascend"


def use_fused_kernels(config):
    """model_config.use_fused_rms_norm, or when unset, whether the device has the fused kernels."""
    return fused_kernels_available() if config.use_fused_rms_norm is None else config.use_fused_rms_norm


def make_norm(config, fused):
    """RMSNorm over hidden_size, scaling by w or, with add_rmsnorm_offset, by (1 + w); or (normalization
    LayerNorm) LayerNorm with weight and bias."""
    if config.uses_layer_norm:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon,
                         compute_type=config.dtype("layernorm_compute_type"),
                         param_init_type=config.dtype("param_init_type"))
    return RMSNorm(config.hidden_size, eps=config.rms_norm_eps, compute_type=config.dtype("layernorm_compute_type"),
                   param_init_type=config.dtype("param_init_type"), use_fused=fused,
                   unit_offset=config.add_rmsnorm_offset)


def make_position(config):
    """The position encoding inside attention: rotary on queries and keys (theta, scaling, partial rotary, GLM's
    interleaved pairs), ALiBi's score biases, or none (learned absolute positions are added to the embeddings)."""
    kind = config.position_kind
    if kind == "alibi":
        return AlibiPosition(config.num_heads)
    if kind == "learned_absolute":
        return AttentionPosition()
    return RotaryEmbedding(config.size_per_head, config.max_position_embedding, config.theta,
                           config.dtype("rotary_dtype"), config.scaling_factor, config.rotary_dim,
                           interleaved=config.rotary_interleaved)


# Blockwise attention's default from this many positions on (training's seq_length) on the composed primitives
# (blockwise_attention.py): below it the exact path's (seq, seq) scores are small and it compiles faster; at and
# above it blockwise is faster as well as smaller (benchmarks/long_sequence.py).
BLOCKWISE_MIN_SEQ = 2048
# The same where the fused CPU kernel serves it (float32 on CPU, kernels/cpu_attention.py): it compiles nothing, and
# from here on it beats the exact path's (seq, seq) scores (graph-mode step of the 8-layer benchmark model at seq 256:
# 0.78-0.79 s against 0.81-0.90 s, two runs each).
FUSED_CPU_MIN_SEQ = 256


def use_blockwise_attention(config, fused):
    """model_config.use_flash_attention: False keeps the exact attention; True takes Ascend's fused kernel where
    there is one, and elsewhere blockwise attention once seq_length reaches FUSED_CPU_MIN_SEQ when the fused CPU
    kernel serves it, else BLOCKWISE_MIN_SEQ; unset (None) the same without Ascend's fused kernel."""
    if config.use_flash_attention is False or (config.use_flash_attention and fused):
        return False
    if config.seq_length >= BLOCKWISE_MIN_SEQ:
        return True
    return config.seq_length >= FUSED_CPU_MIN_SEQ and cpu_attention.available(
        config.dtype("compute_dtype"), config.dtype("softmax_compute_type"))


def make_attention(config, fused):
    return Attention(
        config.hidden_size, config.num_heads, config.kv_heads, config.max_position_embedding,
        compute_dtype=config.dtype("compute_dtype"), param_init_type=config.dtype("param_init_type"),
        softmax_compute_type=config.dtype("softmax_compute_type"), init_std=config.initializer_range,
        use_flash_attention=config.use_flash_attention and fused, sliding_window=config.sliding_window,
        has_bias=config.qkv_has_bias, out_bias=config.attn_proj_has_bias, head_dim=config.size_per_head,
        qkv_concat=config.qkv_concat, position=make_position(config),
        blockwise=use_blockwise_attention(config, fused))


def make_feed_forward(config, layer_id=0):
    """The gated MLP: SwiGLU (hidden_act silu) or GeGLU (gelu_tanh), gate/up fused with qkv_concat; or with
    gated_mlp False the plain one (GELU: Bloom, GPT). mlp_has_bias puts biases on its projections. With moe_config
    (past its first_k_dense_replace layers) a mixture of experts, each that gated MLP (gate/up kept apart, no
    biases: the config refuses the other choices with experts)."""
    numerics = dict(compute_dtype=config.dtype("compute_dtype"), param_init_type=config.dtype("param_init_type"),
                    init_std=config.initializer_range)
    if config.moe and config.moe.layer_has_experts(layer_id):
        return MoEFeedForward(config.hidden_size, config.expert_ffn_size, config.moe, activation=config.activation,
                              **numerics)
    common = dict(numerics, activation=config.activation, has_bias=config.mlp_has_bias)
    if not config.gated_mlp:
        return FeedForward(config.hidden_size, config.ffn_size, **common)
    return GatedFeedForward(config.hidden_size, config.ffn_size, fused=config.qkv_concat, **common)


def make_lm_head(config, gather_output):
    """The untied LM head (vocab rows split over model parallel): a Linear, or with norm_head Baichuan2's
    NormHead."""
    head = NormHead if config.norm_head else Linear
    return head(config.hidden_size, config.vocab_size, parallel="column", init_std=config.initializer_range,
                compute_dtype=config.dtype("compute_dtype"), param_init_type=config.dtype("param_init_type"),
                gather_output=gather_output)
