"""The two compiled steps of generation for a Llama-layout causal LM: prefill (a whole prompt) and decode (one
token per row against the KV cache).

They wrap the model with auto_prefix=False so its parameter names (and so checkpoint loading) stay as they are,
and they mirror LlamaDecoderLayer (pre-norm attention, pre-norm SwiGLU, residuals) with the cached attention of
mindformers/models/modules/kv_cache.py. Only the selected column goes through the LM head: at vocab 32000 the
head is the largest matmul of a prefill.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.kv_cache import decode_attention, prefill_attention, rotary_at


class _StepBase(nn.Cell):
    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.lm = model

    def embed(self, input_ids):
        body = self.lm.model
        return ops.cast(body.tok_embeddings(input_ids), body.compute_dtype)

    def head(self, hidden):
        return ops.cast(self.lm.logits(self.lm.model.norm_out(hidden)), ms.float32)


class PrefillStep(_StepBase):
    """(input_ids, positions (b, s), blocked (b, 1, s, s), select (1,)) -> logits (b, vocab) of column `select`,
    and the keys and values of every layer (k0, v0, k1, v1, ...), each (b, kv_heads, s, head_dim)."""

    def construct(self, input_ids, positions, blocked, select):
        h = self.embed(input_ids)
        caches = ()
        for layer in self.lm.model.layers:
            cos, sin = rotary_at(layer.attention.rotary, positions)
            out, key, value = prefill_attention(layer.attention, layer.attention_norm(h), cos, sin, blocked)
            h = h + out
            h = h + layer.feed_forward(layer.ffn_norm(h))
            caches = caches + (key, value)
        last = ops.gather(h, select, 1)
        return ops.reshape(self.head(last), (h.shape[0], -1)), caches


class DecodeStep(_StepBase):
    """(input_ids (b, 1), positions (b, 1), blocked (b, 1, 1, L), one_hot (1, 1, L, 1), caches) -> logits
    (b, vocab) and the caches with the new column written."""

    def construct(self, input_ids, positions, blocked, one_hot, caches):
        h = self.embed(input_ids)
        new_caches = ()
        index = 0
        for layer in self.lm.model.layers:
            cos, sin = rotary_at(layer.attention.rotary, positions)
            out, key, value = decode_attention(layer.attention, layer.attention_norm(h), cos, sin, blocked,
                                               caches[index], caches[index + 1], one_hot)
            h = h + out
            h = h + layer.feed_forward(layer.ffn_norm(h))
            new_caches = new_caches + (key, value)
            index += 2
        return ops.reshape(self.head(h), (h.shape[0], -1)), new_caches
