"""LlamaModel (the decoder stack) and LlamaForCausalLM (plus the LM head and the training loss)."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.core.loss import CrossEntropyLoss
from mindformers.generation.generation_mixin import GenerationMixin
from mindformers.models.llama.llama_config import LlamaConfig
from mindformers.models.llama.llama_transformer import LlamaDecoderLayer
from mindformers.models.modules import Embedding, Linear, RMSNorm
from mindformers.models.modules.layout import parameter_layouts
from mindformers.models.modeling_utils import PreTrainedMixin
from mindformers.models.recompute import apply_recompute
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def fused_kernels_available():
    """Fused Ascend kernels (RmsNorm, FlashAttentionScore) are used only where MindSpore has them."""
    return ms.get_context("device_target") == "Ascend"


class LlamaModel(nn.Cell):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        fused = fused_kernels_available() if config.use_fused_rms_norm is None else config.use_fused_rms_norm
        vocab_emb_dp = getattr(config.parallel_config, "vocab_emb_dp", True) if config.parallel_config else True
        self.tok_embeddings = Embedding(config.vocab_size, config.hidden_size, init_std=config.initializer_range,
                                        param_init_type=config.dtype("embedding_init_type" if config.embedding_init_type
                                                                     else "param_init_type"),
                                        vocab_parallel=not vocab_emb_dp)
        self.layers = nn.CellList([LlamaDecoderLayer(config, i, fused) for i in range(config.num_layers)])
        self.norm_out = RMSNorm(config.hidden_size, eps=config.rms_norm_eps,
                                compute_type=config.dtype("layernorm_compute_type"),
                                param_init_type=config.dtype("param_init_type"), use_fused=fused)
        self.compute_dtype = config.dtype("compute_dtype")

    def construct(self, input_ids, attention_mask=None):
        h = ops.cast(self.tok_embeddings(input_ids), self.compute_dtype)
        for layer in self.layers:
            h = layer(h, attention_mask)
        return self.norm_out(h)


@MindFormerRegister.register(MindFormerModuleType.MODELS)
class LlamaForCausalLM(PreTrainedMixin, GenerationMixin, nn.Cell):
    """In training, `construct(input_ids[, labels])` returns the mean loss, where input_ids holds seq_length+1
    tokens (inputs are [:-1], targets [1:]) as MindFormers' pretraining data does. With `set_train(False)` it
    returns logits (batch, seq, vocab) for input_ids as given."""

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig, recompute_config=None):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, parallel="column",
                                  init_std=config.initializer_range, compute_dtype=config.dtype("compute_dtype"),
                                  param_init_type=config.dtype("param_init_type"))
        self.loss = CrossEntropyLoss()
        self.pad_token_id = config.pad_token_id
        self.ignore_token_id = config.ignore_token_id
        self.tie_word_embeddings = config.tie_word_embeddings
        self.compute_dtype = config.dtype("compute_dtype")
        self.head_matmul = ops.MatMul(transpose_b=True)
        apply_recompute(self.model.layers, recompute_config)

    def logits(self, hidden):
        if self.tie_word_embeddings:
            batch, seq, width = hidden.shape
            flat = ops.reshape(ops.cast(hidden, self.compute_dtype), (-1, width))
            weight = ops.cast(self.model.tok_embeddings.embedding_weight, self.compute_dtype)
            return ops.reshape(self.head_matmul(flat, weight), (batch, seq, -1))
        return self.lm_head(hidden)

    def construct(self, input_ids, labels=None, attention_mask=None):
        if not self.training:
            return ops.cast(self.logits(self.model(input_ids, attention_mask)), ms.float32)
        tokens = input_ids[:, :-1]
        if labels is None:
            targets = input_ids[:, 1:]
        else:
            targets = labels[:, 1:]
        mask = ops.logical_and(ops.ne(targets, self.ignore_token_id), ops.ne(tokens, self.pad_token_id))
        logits = self.logits(self.model(tokens))
        return self.loss(logits, targets, mask)

    def parameter_layouts(self):
        return parameter_layouts(self)

    def num_parameters(self):
        return sum(p.size for p in self.get_parameters())
