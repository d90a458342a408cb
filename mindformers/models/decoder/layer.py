"""One decoder layer: pre-norm attention and pre-norm feed-forward, each with a residual; parts from the config."""
from mindspore import nn

from mindformers.models.decoder.choices import make_attention, make_feed_forward, make_norm
from mindformers.models.modules.moe import MoEFeedForward


class DecoderLayer(nn.Cell):
    def __init__(self, config, layer_id, use_fused_kernels=False):
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = make_norm(config, use_fused_kernels)
        self.attention = make_attention(config, use_fused_kernels)
        self.ffn_norm = make_norm(config, use_fused_kernels)
        self.feed_forward = make_feed_forward(config, layer_id)
        self.has_experts = isinstance(self.feed_forward, MoEFeedForward)

    def construct(self, x, attention_mask=None, cache=None):
        """Training, full forwards and generation alike; `cache` is generation's (see Attention.construct). A
        mixture-of-experts layer in training returns (output, its router's statistics)."""
        h = x + self.attention(self.attention_norm(x), attention_mask, cache)
        if self.has_experts and self.training:
            out, statistics = self.feed_forward(self.ffn_norm(h))
            return h + out, statistics
        return h + self.feed_forward(self.ffn_norm(h))
