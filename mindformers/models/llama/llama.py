"""LlamaModel (the decoder stack) and LlamaForCausalLM (plus the LM head and the training loss)."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.core.loss import CrossEntropyLoss
from mindformers.core.loss.padding_mask import RealTokenMask
from mindformers.generation.generation_mixin import GenerationMixin
from mindformers.models.llama.llama_config import LlamaConfig
from mindformers.models.llama.llama_transformer import LlamaDecoderLayer
from mindformers.models.modules import Embedding, Linear, RMSNorm
from mindformers.models.modules.kv_cache import layer_cache
from mindformers.models.modules.layout import parameter_layouts
from mindformers.models.modeling_utils import PreTrainedMixin
from mindformers.models.recompute import apply_recompute
from mindformers.parallel.groups import current_groups
from mindformers.parallel.tensor_parallel import CopyToModelParallel, GatherFromModelParallel
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def fused_kernels_available():
    """Fused Ascend kernels (RmsNorm, FlashAttentionScore) are used only where MindSpore has them."""
    return ms.get_context("device_target") == "Ascend"


def vocab_emb_dp(config):
    """parallel_config.vocab_emb_dp (default True): the embedding table stays whole on every model-parallel rank."""
    return bool((config.parallel_config or {}).get("vocab_emb_dp", True))


class LlamaModel(nn.Cell):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        fused = fused_kernels_available() if config.use_fused_rms_norm is None else config.use_fused_rms_norm
        self.tok_embeddings = Embedding(config.vocab_size, config.hidden_size, init_std=config.initializer_range,
                                        param_init_type=config.dtype("embedding_init_type" if config.embedding_init_type
                                                                     else "param_init_type"),
                                        vocab_parallel=not vocab_emb_dp(config))
        self.layers = nn.CellList([LlamaDecoderLayer(config, i, fused) for i in range(config.num_layers)])
        self.norm_out = RMSNorm(config.hidden_size, eps=config.rms_norm_eps,
                                compute_type=config.dtype("layernorm_compute_type"),
                                param_init_type=config.dtype("param_init_type"), use_fused=fused)
        self.compute_dtype = config.dtype("compute_dtype")

    def construct(self, input_ids, attention_mask=None, cache=None):
        """Final hidden states (b, s, hidden). Generation passes `cache`, made by KVCache.layer_caches
        (mindformers/models/modules/kv_cache.py): every layer then reads and writes its own key/value tables."""
        h = ops.cast(self.tok_embeddings(input_ids), self.compute_dtype)
        index = 0
        for layer in self.layers:
            h = layer(h, attention_mask, layer_cache(cache, index))
            index += 1
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
        groups = current_groups()
        # CPU model parallelism with the vocabulary split (vocab_emb_dp False): each rank computes the logits of its
        # share of the vocabulary and the loss combines the shares (vocab-parallel cross-entropy). With vocab_emb_dp
        # the lm_head is still split (as on Ascend) but its outputs are gathered into whole logits.
        self.vocab_split_logits = groups.model_sharded and not vocab_emb_dp(config)
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, parallel="column",
                                  init_std=config.initializer_range, compute_dtype=config.dtype("compute_dtype"),
                                  param_init_type=config.dtype("param_init_type"),
                                  gather_output=not self.vocab_split_logits)
        elif self.vocab_split_logits:
            self.copy_to_head = CopyToModelParallel(groups)  # the tied head reads the split embedding table
        if self.vocab_split_logits:
            self.gather_logits = GatherFromModelParallel(groups)
        self.loss = CrossEntropyLoss(vocab_parallel=self.vocab_split_logits)
        self.pad_token_id = config.pad_token_id
        self.real_tokens = RealTokenMask(config.pad_token_id)
        self.ignore_token_id = config.ignore_token_id
        self.tie_word_embeddings = config.tie_word_embeddings
        self.compute_dtype = config.dtype("compute_dtype")
        self.head_matmul = ops.MatMul(transpose_b=True)
        apply_recompute(self.model.layers, recompute_config)

    def head_logits(self, hidden):
        """The logits the loss takes: this rank's share of the vocabulary when vocab_split_logits, else all."""
        if self.tie_word_embeddings:
            batch, seq, width = hidden.shape
            flat = ops.reshape(ops.cast(hidden, self.compute_dtype), (-1, width))
            if self.vocab_split_logits:
                flat = self.copy_to_head(flat)
            weight = ops.cast(self.model.tok_embeddings.embedding_weight, self.compute_dtype)
            return ops.reshape(self.head_matmul(flat, weight), (batch, seq, -1))
        return self.lm_head(hidden)

    def logits(self, hidden):
        """Logits over the whole vocabulary (batch, seq, vocab)."""
        logits = self.head_logits(hidden)
        if self.vocab_split_logits:
            logits = self.gather_logits(logits)
        return logits

    def construct(self, input_ids, labels=None, attention_mask=None):
        if not self.training:
            return ops.cast(self.logits(self.model(input_ids, attention_mask)), ms.float32)
        tokens, targets, mask = self.loss_targets(input_ids, labels)
        logits = self.head_logits(self.model(tokens))
        return self.loss(logits, targets, mask)

    def loss_targets(self, input_ids, labels=None):
        """(tokens, targets, mask) of rows of seq_length+1 ids: the model reads tokens, predicts targets, and a
        target counts where mask is True (not ignore_token_id, and its input is not padding: not in the run of
        pad_token_id that ends the row, so an eos equal to the pad id inside a packed row still counts). Training
        and the perplexity evaluation both use this one definition."""
        tokens = input_ids[:, :-1]
        if labels is None:
            targets = input_ids[:, 1:]
        else:
            targets = labels[:, 1:]
        mask = ops.logical_and(ops.ne(targets, self.ignore_token_id), self.real_tokens(input_ids)[:, :-1])
        return tokens, targets, mask

    def parameter_layouts(self):
        return parameter_layouts(self)

    def num_parameters(self):
        return sum(p.size for p in self.get_parameters())
