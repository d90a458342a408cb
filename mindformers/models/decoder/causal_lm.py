"""DecoderModel (the stack) and DecoderForCausalLM (the LM head and the training loss), built from a DecoderConfig.

Every family's causal LM is this class with the family's config class (`causal_lm_class`); code outside
mindformers/models asks the model what it needs (`cache_spec`, `decoder_layers`, `default_lora_targets`) instead of
reaching into its layers.
"""
import math
from dataclasses import dataclass

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindformers.core.loss import CrossEntropyLoss
from mindformers.core.loss.head_loss import worth_chunking
from mindformers.core.loss.padding_mask import RealTokenMask
from mindformers.generation.generation_mixin import GenerationMixin
from mindformers.kernels import cpu_linear
from mindformers.models.decoder.choices import make_lm_head, make_norm, use_fused_kernels
from mindformers.models.decoder.config import DecoderConfig
from mindformers.models.decoder.layer import DecoderLayer
from mindformers.models.modules import Embedding
from mindformers.models.modules.deferred_init import draws_in_background
from mindformers.models.modules.index_constants import int_range
from mindformers.models.modules.kv_cache import layer_cache, positions_of
from mindformers.models.modules.layout import parameter_layouts
from mindformers.models.modules.linear import TRANSPOSED_MAX_ROWS
from mindformers.models.modules.moe import RouterBalance, describe_router_metrics
from mindformers.models.modeling_utils import PreTrainedMixin
from mindformers.models.recompute import apply_recompute
from mindformers.parallel.sequence_parallel import GatherFromSequenceParallel, ScatterToSequenceParallel
from mindformers.parallel.tensor_parallel import CopyToModelParallel, GatherFromModelParallel
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def vocab_emb_dp(config):
    """parallel_config.vocab_emb_dp (default True): the embedding table stays whole on every model-parallel rank."""
    return bool((config.parallel_config or {}).get("vocab_emb_dp", True))


@dataclass(frozen=True)
class CacheSpec:
    """What a key/value cache for this model holds: per layer, kv_heads (this rank's) x head_dim per column;
    positions up to max_position; keys older than sliding_window columns (0: none) are never attended to."""

    num_layers: int
    kv_heads: int
    head_dim: int
    dtype: object
    max_position: int
    sliding_window: int


class DecoderModel(nn.Cell):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        fused = use_fused_kernels(config)
        self.tok_embeddings = Embedding(config.vocab_size, config.hidden_size, init_std=config.initializer_range,
                                        param_init_type=config.dtype("embedding_init_type" if config.embedding_init_type
                                                                     else "param_init_type"),
                                        vocab_parallel=not vocab_emb_dp(config))
        # learned_absolute: a table of positions added to the token embeddings (GPT); embedding_norm: a norm
        # right after the embeddings (Bloom's word_embeddings_layernorm).
        self.learned_positions = config.position_kind == "learned_absolute"
        if self.learned_positions:
            self.position_embeddings = Embedding(config.max_position_embedding, config.hidden_size,
                                                 init_std=config.initializer_range,
                                                 param_init_type=config.dtype("param_init_type"), vocab_parallel=False)
        self.use_embedding_norm = config.embedding_norm
        if self.use_embedding_norm:
            self.embedding_norm = make_norm(config, fused)
        self.layers = nn.CellList([DecoderLayer(config, i, fused) for i in range(config.num_layers)])
        self.norm_out = make_norm(config, fused)
        self.sequence_sharded = False
        self.compute_dtype = config.dtype("compute_dtype")
        # Gemma multiplies embeddings by sqrt(hidden_size) rounded to the compute dtype, as its reference code does.
        self.scale_embedding = config.scale_embedding
        self.embedding_scale = Tensor(math.sqrt(config.hidden_size), self.compute_dtype)

    def parallelize(self, groups):
        """Sequence parallelism: the layers and the final norm work on this rank's slice of the sequence; the
        embeddings (computed whole on every rank) are cut after them, the final hidden states joined for the head."""
        self.sequence_sharded = groups.sequence_sharded
        if self.sequence_sharded:
            self.norm_out.on_sequence_shards(groups)
            self.scatter_sequence = ScatterToSequenceParallel(groups)
            self.gather_sequence = GatherFromSequenceParallel(groups)

    def construct(self, input_ids, attention_mask=None, cache=None):
        """Final hidden states (b, s, hidden). Generation passes `cache`, made by KVCache.layer_caches
        (mindformers/models/modules/kv_cache.py): every layer then reads and writes its own key/value tables.
        With mixture-of-experts layers, training returns (hidden states, their routers' statistics stacked)."""
        h = self.embed(input_ids, attention_mask, cache)
        if self.sequence_sharded:
            h = self.scatter_sequence(h)
        index = 0
        statistics = ()
        for layer in self.layers:
            if layer.has_experts and self.training:
                h, layer_statistics = layer(h, attention_mask, layer_cache(cache, index))
                statistics = statistics + (layer_statistics,)
            else:
                h = layer(h, attention_mask, layer_cache(cache, index))
            index += 1
        if statistics:
            return self.norm_out(h), ops.stack(statistics)
        return self.final_hidden(h)

    def final_hidden(self, h):
        """The last layer's output normed, and under sequence parallelism joined into the whole sequence for the
        head (a pipeline's last stage runs this alone)."""
        if self.sequence_sharded:
            return self.gather_sequence(self.norm_out(h))
        return self.norm_out(h)

    def embed(self, input_ids, attention_mask=None, cache=None):
        """The first layer's input (b, s, hidden): token embeddings (scaled, plus learned positions, normed as the
        family does). A pipeline's first stage runs this alone."""
        h = ops.cast(self.tok_embeddings(input_ids), self.compute_dtype)
        if self.scale_embedding:
            h = h * self.embedding_scale
        if self.learned_positions:
            h = h + ops.cast(self.position_embeddings(self.positions(input_ids, attention_mask, cache)),
                             self.compute_dtype)
        if self.use_embedding_norm:
            h = self.embedding_norm(h)
        return h

    def positions(self, input_ids, attention_mask, cache):
        """(b, s) positions of the tokens: a generation step's (counted from each row's first real token), else
        counted from a row's first unmasked token when attention_mask marks left padding, else 0 .. s-1."""
        if cache is not None:
            return positions_of(cache)
        batch, seq = input_ids.shape
        if attention_mask is None:
            return ops.broadcast_to(int_range(0, seq, (1, seq)), (batch, seq))
        return ops.maximum(ops.cumsum(ops.cast(attention_mask, ms.int32), 1) - 1, 0)


class DecoderForCausalLM(PreTrainedMixin, GenerationMixin, nn.Cell):
    """In training, `construct(input_ids[, labels])` returns the mean loss, where input_ids holds seq_length+1
    tokens (inputs are [:-1], targets [1:]) as MindFormers' pretraining data does. With `set_train(False)` it
    returns logits (batch, seq, vocab) for input_ids as given. `model` is the decoder stack, `logits` the head."""

    config_class = DecoderConfig

    def __init__(self, config: DecoderConfig, recompute_config=None):
        super().__init__()
        self.config = config
        with draws_in_background():  # the initial weights draw on every core while the layers build
            self.model = DecoderModel(config)
            if not config.tie_word_embeddings:
                self.lm_head = make_lm_head(config, gather_output=vocab_emb_dp(config))
        # With vocab_emb_dp the lm_head's split outputs (CPU model parallelism) are gathered into whole logits.
        self.vocab_split_logits = self.copies_to_head = False
        self.loss = CrossEntropyLoss()
        self.pad_token_id = config.pad_token_id
        self.real_tokens = RealTokenMask(config.pad_token_id)
        self.ignore_token_id = config.ignore_token_id
        self.tie_word_embeddings = config.tie_word_embeddings
        self.compute_dtype = config.dtype("compute_dtype")
        self.softcap = float(config.final_logit_softcapping or 0.0)
        # the tied head's product: in float32 on CPU oneDNN's sgemm, as Linear's (kernels/cpu_linear.py)
        self.head_matmul = (cpu_linear.CpuLinearProduct() if cpu_linear.available(self.compute_dtype)
                            else ops.MatMul(transpose_b=True))
        # The tied head's (hidden, vocab) copy that generation on CPU attaches while it runs, as it does each
        # Linear's (mindformers/generation/transposed_weights.py): at SmolLM2's 49152 x 576 table the head is the
        # largest matrix a decode step streams, and the (out, in) layout streams at about half the speed.
        self.weight_t = None
        self.transposed_head_matmul = ops.MatMul()
        self.head_weight_trains = True  # False once PET freezes it (trainable_changed)
        # Mixture of experts: the load-balancing loss joins the training loss, weighted by aux_loss_factor.
        self.router_balance = RouterBalance(config.moe.expert_num, config.moe.top_k) if config.moe_layers() else None
        self.aux_loss_factor = config.moe.aux_loss_factor if config.moe else 0.0
        self.returns_step_metrics = self.router_balance is not None  # training returns (loss, metrics)
        apply_recompute(self.model.layers, recompute_config)

    def parallelize(self, groups):
        """CPU model parallelism with the vocabulary split (vocab_emb_dp False): each rank computes the logits of
        its share of the vocabulary (its lm_head outputs, or its rows of the tied embedding) and the loss combines
        the shares (vocab-parallel cross-entropy)."""
        self.vocab_split_logits = groups.model_sharded and not vocab_emb_dp(self.config)
        # The tied head reads the split embedding table: its input's gradient is summed over the group (under
        # sequence parallelism the hidden states arrive through a sequence all-gather, whose backward does that).
        self.copies_to_head = self.tie_word_embeddings and self.vocab_split_logits and not groups.sequence_sharded
        if self.copies_to_head:
            self.copy_to_head = CopyToModelParallel(groups)
        if self.vocab_split_logits:
            self.gather_logits = GatherFromModelParallel(groups)
            self.loss = CrossEntropyLoss(vocab_parallel_groups=groups)

    def head_logits(self, hidden):
        """The logits the loss takes: this rank's share of the vocabulary when vocab_split_logits, else all;
        with final_logit_softcapping c, squashed to c * tanh(logits / c)."""
        if self.tie_word_embeddings:
            batch, seq, width = hidden.shape
            flat = ops.reshape(ops.cast(hidden, self.compute_dtype), (-1, width))
            if self.copies_to_head:
                flat = self.copy_to_head(flat)
            if self.weight_t is not None and flat.shape[0] <= TRANSPOSED_MAX_ROWS:
                logits = self.transposed_head_matmul(flat, ops.cast(self.weight_t, self.compute_dtype))
            else:
                logits = self.head_matmul(flat, ops.cast(self.model.tok_embeddings.embedding_weight,
                                                         self.compute_dtype))
            logits = ops.reshape(logits, (batch, seq, -1))
        else:
            logits = self.lm_head(hidden)
        if self.softcap:
            # tanh(y) = 2 sigmoid(2y) - 1: MindSpore's CPU tanh is an approximation off by ~1e-4 near |y| = 5
            logits = (2.0 * ops.sigmoid(logits * (2.0 / self.softcap)) - 1.0) * self.softcap
        return logits

    def logits(self, hidden):
        """Logits over the whole vocabulary (batch, seq, vocab)."""
        logits = self.head_logits(hidden)
        if self.vocab_split_logits:
            logits = self.gather_logits(logits)
        return logits

    def construct(self, input_ids, labels=None, attention_mask=None):
        """Logits when not training; the loss in training, or with mixture-of-experts layers (loss, metrics):
        the language-model loss plus aux_loss_factor x the load-balancing loss, and the routers' metrics
        (`step_metrics` names them)."""
        if not self.training:
            return ops.cast(self.logits(self.model(input_ids, attention_mask)), ms.float32)
        tokens, targets, mask = self.loss_targets(input_ids, labels)
        if self.router_balance is None:
            return self.head_loss(self.model(tokens), targets, mask)
        hidden, statistics = self.model(tokens)
        balance, metrics = self.router_balance(statistics)
        loss = self.head_loss(hidden, targets, mask)
        return loss + ops.cast(self.aux_loss_factor * balance, loss.dtype), metrics

    def head_loss(self, hidden, targets, mask):
        """The loss of the last hidden states (b, s, hidden): through the head and the loss in chunks of rows when
        the head is one plain product on this rank and its rows fill more than one chunk (CrossEntropyLoss.of_hidden: no
        (tokens, vocab) logits kept), else of head_logits."""
        if self.head_fuses_with_loss() and worth_chunking(hidden.shape[0] * hidden.shape[1]):
            return self.loss.of_hidden(ops.cast(hidden, self.compute_dtype), self.head_weight(), targets, mask)
        return self.loss(self.head_logits(hidden), targets, mask)

    def trainable_changed(self):
        """PET froze weights (mindformers/pet): a frozen head takes the composed head + loss, whose backward
        MindSpore prunes to d_hidden; the chunked cell would compute the head's unused gradient too (one more
        (tokens, vocab, hidden) product per step)."""
        head = self.model.tok_embeddings.embedding_weight if self.tie_word_embeddings else self.lm_head.weight
        self.head_weight_trains = head.requires_grad

    def transposable_weight(self):
        """The (out, in) matrix generation may keep an (in, out) copy of (transposed_weights.py): the tied head's
        embedding table, or None when the head is an lm_head Linear (which has its own)."""
        return self.model.tok_embeddings.embedding_weight if self.tie_word_embeddings else None

    def head_fuses_with_loss(self):
        """Whether the logits are hidden times one whole, trained (vocab, hidden) matrix: no vocabulary split,
        collectives, softcapping or adapter in the head."""
        if self.vocab_split_logits or self.softcap or not self.head_weight_trains:
            return False
        if self.tie_word_embeddings:
            return True
        return self.lm_head.fuses_with_loss and not self.lm_head.column_split and not self.lm_head.has_bias

    def head_weight(self):
        """The (vocab, hidden) matrix of the head in compute_dtype (head_fuses_with_loss)."""
        if self.tie_word_embeddings:
            return ops.cast(self.model.tok_embeddings.embedding_weight, self.compute_dtype)
        return ops.cast(self.lm_head.matmul_weight(), self.compute_dtype)

    def loss_of_hidden(self, hidden, input_ids, labels=None):
        """The training loss from the last decoder layer's output (a pipeline's last stage runs this alone)."""
        _, targets, mask = self.loss_targets(input_ids, labels)
        return self.head_loss(self.model.final_hidden(hidden), targets, mask)

    def target_count(self, input_ids, labels=None):
        """How many targets of the rows count in the loss (float32)."""
        _, _, mask = self.loss_targets(input_ids, labels)
        return ops.sum(ops.cast(mask, ms.float32))

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

    # ---- what code outside the model asks it ---------------------------------------------------------------
    def cache_spec(self):
        """The key/value cache generation preallocates for this model (this rank's heads)."""
        attention = self.model.layers[0].attention
        return CacheSpec(num_layers=len(self.model.layers), kv_heads=attention.n_kv_heads,
                         head_dim=attention.head_dim, dtype=self.model.compute_dtype,
                         max_position=self.config.max_position_embedding - 1,
                         sliding_window=attention.sliding_window)

    def decoder_layers(self):
        """The repeated layers, in order (pipeline stages and recomputation split the model along them)."""
        return self.model.layers

    def default_lora_targets(self):
        """LoRA's target_modules when pet_config names none: the query and value projections (Hu et al.)."""
        return ".*w_qkv" if self.config.qkv_concat else ".*wq|.*wv"

    def parameter_layouts(self):
        return parameter_layouts(self)

    def step_metrics(self, values, micro_batches=1):
        """The metrics a training step returned beside the loss (see construct; summed over the step's
        micro-batches), by name, for the step record."""
        return describe_router_metrics(values, self.config.moe.expert_num, micro_batches)

    def num_parameters(self):
        return sum(p.size for p in self.get_parameters())


def causal_lm_class(name, config_class):
    """The registered causal LM class `name` of a family: the shared DecoderForCausalLM with the family's config
    class, so the YAML's `arch: type: <name>` and `<name>.from_pretrained` build and convert that family."""
    cls = type(name, (DecoderForCausalLM,), {
        "config_class": config_class, "__module__": config_class.__module__,
        "__doc__": f"The shared decoder as a causal LM, configured by {config_class.__name__}."})
    return MindFormerRegister.register(MindFormerModuleType.MODELS)(cls)
