"""One decoder layer: pre-norm attention and pre-norm feed-forward, each with a residual; parts from the config."""
from mindspore import nn

from mindformers.models.decoder.choices import make_attention, make_feed_forward, make_norm


class DecoderLayer(nn.Cell):
    def __init__(self, config, layer_id, use_fused_kernels=False):
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = make_norm(config, use_fused_kernels)
        self.attention = make_attention(config, use_fused_kernels)
        self.ffn_norm = make_norm(config, use_fused_kernels)
        self.feed_forward = make_feed_forward(config)

    def construct(self, x, attention_mask=None, cache=None):
        """Training, full forwards and generation alike; `cache` is generation's (see Attention.construct)."""
        h = x + self.attention(self.attention_norm(x), attention_mask, cache)
        return h + self.feed_forward(self.ffn_norm(h))
