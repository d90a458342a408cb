"""One Llama decoder layer: pre-norm attention and pre-norm SwiGLU, each with a residual."""
from mindspore import nn

from mindformers.models.modules import Attention, RMSNorm, SwiGLUFeedForward


class LlamaDecoderLayer(nn.Cell):
    def __init__(self, config, layer_id, use_fused_kernels=False):
        super().__init__()
        self.layer_id = layer_id
        norm = dict(eps=config.rms_norm_eps, compute_type=config.dtype("layernorm_compute_type"),
                    param_init_type=config.dtype("param_init_type"), use_fused=use_fused_kernels)
        self.attention_norm = RMSNorm(config.hidden_size, **norm)
        self.ffn_norm = RMSNorm(config.hidden_size, **norm)
        self.attention = Attention(
            config.hidden_size, config.num_heads, config.kv_heads, config.max_position_embedding,
            theta=config.theta, compute_dtype=config.dtype("compute_dtype"),
            param_init_type=config.dtype("param_init_type"),
            softmax_compute_type=config.dtype("softmax_compute_type"), rotary_dtype=config.dtype("rotary_dtype"),
            init_std=config.initializer_range, use_flash_attention=config.use_flash_attention and use_fused_kernels,
            sliding_window=config.sliding_window, has_bias=config.qkv_has_bias,
            rope_scaling_factor=config.scaling_factor)
        self.feed_forward = SwiGLUFeedForward(config.hidden_size, config.ffn_size,
                                              compute_dtype=config.dtype("compute_dtype"),
                                              param_init_type=config.dtype("param_init_type"),
                                              init_std=config.initializer_range)

    def construct(self, x, attention_mask=None, cache=None):
        """Training, full forwards and generation alike; `cache` is generation's (see Attention.construct)."""
        h = x + self.attention(self.attention_norm(x), attention_mask, cache)
        return h + self.feed_forward(self.ffn_norm(h))
