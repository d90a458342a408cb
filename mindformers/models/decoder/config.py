"""DecoderConfig: every choice the shared decoder makes, as MindFormers' YAML `model_config` spells it.

A model family is a subclass that sets `model_type` (the name its HF mapping is registered under) and `defaults`
(its published architecture): the subclass's constructor is the base one with those defaults filled in, so a
family YAML is checked key by key like any other and `FamilyConfig()` is the family's flagship size.
"""
import functools
import inspect
import math

from mindformers.models.decoder.moe_config import read_moe_config
from mindformers.models.modules.dtypes import DTYPES
from mindformers.models.modules.rotary import LLAMA3_SCALING_KEYS
from mindformers.tools.errors import ConfigError

_DTYPE_KEYS = ("compute_dtype", "param_init_type", "layernorm_compute_type", "softmax_compute_type", "rotary_dtype")

# position_embedding_type values (Megatron's names, and HF's "rotary") and the encoding each names.
POSITION_TYPES = {"rope": "rope", "rotary": "rope", "alibi": "alibi", "learned_absolute": "learned_absolute"}

# hidden_act values and the activation each names (HF's names are accepted; Gemma's legacy "gelu" meant tanh).
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_tanh": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


def ffn_hidden_size(hidden_size, multiple_of, ffn_dim_multiplier=None):
    """Meta's rule: 2/3 of 4*hidden, scaled by ffn_dim_multiplier, rounded up to a multiple of multiple_of."""
    size = int(2 * (4 * hidden_size) / 3)
    if ffn_dim_multiplier is not None:
        size = int(ffn_dim_multiplier * size)
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


def _with_defaults(init, defaults, owner):
    """`init` with some keyword defaults replaced; its signature shows them (the YAML key check reads it)."""
    signature = inspect.signature(init)
    unknown = sorted(set(defaults) - set(signature.parameters))
    if unknown:
        raise TypeError(f"{owner}.defaults: {', '.join(unknown)} are not arguments of {init.__qualname__}")
    signature = signature.replace(parameters=[
        param.replace(default=defaults[name]) if name in defaults else param
        for name, param in signature.parameters.items()])

    @functools.wraps(init)
    def family_init(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name, given in bound.arguments.items():
            # a partial dict (say moe_config={"capacity_factor": 1.1}) changes those keys of the family's
            # default, as a YAML section does, instead of replacing it (which would turn Mixtral dense)
            if isinstance(given, dict) and isinstance(defaults.get(name), dict):
                bound.arguments[name] = dict(defaults[name], **given)
        bound.apply_defaults()
        init(*bound.args, **bound.kwargs)

    family_init.__signature__ = signature
    return family_init


class DecoderConfig:
    """Sizes, numerics and architecture choices of a decoder-only LM; defaults are Llama 2 7B's.

    Architecture choices beyond Llama's: q/k/v and output-projection biases (qkv_has_bias, attn_proj_has_bias),
    fused q/k/v and gate/up weights (qkv_concat: `w_qkv`, `w_gate_hidden`), head_dim independent of hidden_size,
    partial_rotary_factor (rotary on the leading fraction of each head), sliding_window, RMSNorm scaling by (1 + w)
    (add_rmsnorm_offset), the gated MLP's activation (hidden_act: silu or gelu_tanh), embeddings scaled by
    sqrt(hidden_size) (scale_embedding), tied or separate LM head, final_logit_softcapping, and a mixture-of-experts
    feed-forward (moe_config, MindFormers' MoEConfig keys: see moe_config.py).

    Beyond the Llama layout: position_embedding_type (rope, alibi: ALiBi's per-head score biases, learned_absolute:
    a table of max_position_embedding positions added to the embeddings), rotary_interleaved (GLM's rotary pairs
    2i, 2i+1 instead of i, i + d/2), normalization (RMSNorm, or LayerNorm with bias and layer_norm_epsilon),
    embedding_norm (a norm right after the embeddings: Bloom), gated_mlp False for the plain w2(act(w1 x)) MLP,
    mlp_has_bias (biases on the MLP's projections) and norm_head (Baichuan2's LM head with unit-norm rows)."""

    model_type = None  # the HF mapping of a family (mindformers/checkpoint/hf_mapping.py); None: no mapping
    defaults = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__ and "__init__" not in cls.__dict__:
            cls.__init__ = _with_defaults(cls.__mro__[1].__init__, cls.defaults, cls.__name__)

    def __init__(self, batch_size=1, seq_length=2048, hidden_size=4096, num_layers=32, num_heads=32,
                 n_kv_heads=None, head_dim=None, max_position_embedding=None, intermediate_size=None,
                 vocab_size=32000, multiple_of=256, ffn_dim_multiplier=None, hidden_act="silu", rms_norm_eps=1e-5,
                 add_rmsnorm_offset=False, scale_embedding=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                 ignore_token_id=-100, theta=10000.0, partial_rotary_factor=1.0, compute_dtype="float16",
                 layernorm_compute_type="float32", softmax_compute_type="float32", rotary_dtype="float32",
                 param_init_type="float32", embedding_init_type=None, qkv_has_bias=False, attn_proj_has_bias=False,
                 qkv_concat=False, use_past=False, use_flash_attention=None, use_fused_rms_norm=None,
                 tie_word_embeddings=False, final_logit_softcapping=None, initializer_range=0.02,
                 scaling_factor=1.0, extend_method="None", offset=0, fine_grain_interleave=1, pp_interleave_num=1,
                 checkpoint_name_or_path="", repetition_penalty=1.0, max_decode_length=1024, max_new_tokens=None,
                 top_k=5, top_p=1.0, do_sample=False, temperature=1.0, num_beams=1, transposed_weights=True,
                 use_rope_slice=False, block_size=16, num_blocks=512, is_dynamic=False, parallel_config=None,
                 moe_config=None, sliding_window=None, model_name=None, pet_config=None, position_embedding_type="rope",
                 rotary_interleaved=False, normalization="RMSNorm", layer_norm_epsilon=1e-5, embedding_norm=False,
                 gated_mlp=True, mlp_has_bias=False, norm_head=False):
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = head_dim
        self.max_position_embedding = max_position_embedding or seq_length
        self.multiple_of = multiple_of
        self.ffn_dim_multiplier = ffn_dim_multiplier
        self.intermediate_size = intermediate_size
        self.vocab_size = vocab_size
        self.hidden_act = hidden_act
        self.rms_norm_eps = rms_norm_eps
        self.add_rmsnorm_offset = add_rmsnorm_offset
        self.scale_embedding = scale_embedding
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.ignore_token_id = ignore_token_id
        self.theta = theta
        self.partial_rotary_factor = partial_rotary_factor
        self.compute_dtype = compute_dtype
        self.layernorm_compute_type = layernorm_compute_type
        self.softmax_compute_type = softmax_compute_type
        self.rotary_dtype = rotary_dtype
        self.param_init_type = param_init_type
        self.embedding_init_type = embedding_init_type
        self.qkv_has_bias = qkv_has_bias
        self.attn_proj_has_bias = attn_proj_has_bias
        self.qkv_concat = qkv_concat
        self.use_past = use_past
        self.use_flash_attention = use_flash_attention
        self.use_fused_rms_norm = use_fused_rms_norm
        self.tie_word_embeddings = tie_word_embeddings
        self.final_logit_softcapping = final_logit_softcapping
        self.initializer_range = initializer_range
        self.scaling_factor = scaling_factor
        self.extend_method = extend_method
        self.offset = offset
        self.fine_grain_interleave = fine_grain_interleave
        self.pp_interleave_num = pp_interleave_num
        self.checkpoint_name_or_path = checkpoint_name_or_path
        self.repetition_penalty = repetition_penalty
        self.max_decode_length = max_decode_length
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.top_p = top_p
        self.do_sample = do_sample
        self.temperature = temperature
        self.num_beams = num_beams
        self.transposed_weights = transposed_weights
        self.use_rope_slice = use_rope_slice
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.is_dynamic = is_dynamic
        self.parallel_config = parallel_config
        self.moe_config = dict(moe_config) if isinstance(moe_config, dict) else moe_config  # MindFormers' keys
        self.sliding_window = sliding_window
        self.model_name = model_name
        self.pet_config = pet_config  # LoRA / prefix tuning, applied to the built network (mindformers.pet)
        self.position_embedding_type = position_embedding_type
        self.rotary_interleaved = rotary_interleaved
        self.normalization = normalization
        self.layer_norm_epsilon = layer_norm_epsilon
        self.embedding_norm = embedding_norm
        self.gated_mlp = gated_mlp
        self.mlp_has_bias = mlp_has_bias
        self.norm_head = norm_head
        self.validate()

    # ---- sizes the layers are built from ---------------------------------------------------------------------
    @property
    def kv_heads(self):
        return self.n_kv_heads or self.num_heads

    @property
    def ffn_size(self):
        if self.intermediate_size:
            return self.intermediate_size
        return ffn_hidden_size(self.hidden_size, self.multiple_of, self.ffn_dim_multiplier)

    @property
    def size_per_head(self):
        """head_dim when given (Gemma's 256), else hidden_size / num_heads."""
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def q_size(self):
        return self.num_heads * self.size_per_head

    @property
    def kv_size(self):
        return self.kv_heads * self.size_per_head

    @property
    def rotary_dim(self):
        """Leading features of each head that rotary embedding rotates (all of them unless partial_rotary_factor)."""
        return int(self.size_per_head * self.partial_rotary_factor)

    @property
    def activation(self):
        return ACTIVATIONS[str(self.hidden_act).lower()]

    @property
    def position_kind(self):
        """position_embedding_type in its canonical spelling: rope, alibi or learned_absolute."""
        return POSITION_TYPES[str(self.position_embedding_type).lower()]

    @property
    def uses_layer_norm(self):
        return str(self.normalization).lower() == "layernorm"

    @property
    def moe(self):
        """The mixture-of-experts settings (moe_config, see moe_config.py), or None for a dense model."""
        return self._moe

    @property
    def expert_ffn_size(self):
        """The width of each expert's gated MLP: moe_intermediate_size when given, else the dense one's."""
        return (self.moe.intermediate_size if self.moe else None) or self.ffn_size

    def moe_layers(self):
        return sum(1 for layer in range(self.num_layers) if self.moe and self.moe.layer_has_experts(layer))

    def matmul_parameters_per_layer(self):
        """Weights one layer multiplies every token by, averaged over the layers: q, k, v and output projections,
        and the MLP (three matrices gated, two plain), or in a mixture-of-experts layer the router and top_k
        experts' gated MLPs."""
        attention = 2 * self.hidden_size * self.q_size + 2 * self.hidden_size * self.kv_size
        dense = (3 if self.gated_mlp else 2) * self.hidden_size * self.ffn_size
        if not self.moe:
            return attention + dense
        sparse = self.hidden_size * self.moe.expert_num + self.moe.top_k * 3 * self.hidden_size * self.expert_ffn_size
        moe_layers = self.moe_layers()
        return attention + (moe_layers * sparse + (self.num_layers - moe_layers) * dense) / self.num_layers

    def mlp_activation_width(self, tokens=None):
        """Per token, the MLP tensors a training step keeps for backward, averaged over the layers: gate, up,
        activated gate, their product (gated); the widened input and its activation (plain). A mixture-of-experts
        layer keeps, per expert slot, its input and output besides a gated MLP's four (expert_num x capacity slots
        for `tokens` tokens of a data-parallel rank, every token a slot of every expert when dropless), the
        gathered expert outputs of each choice and the router's scores."""
        dense = (4 if self.gated_mlp else 2) * self.ffn_size
        if not self.moe:
            return dense
        tokens = tokens or self.seq_length
        slots_per_token = self.moe.expert_num * self.moe.capacity(tokens) / tokens
        sparse = slots_per_token * (2 * self.hidden_size + 4 * self.expert_ffn_size) \
            + self.moe.top_k * self.hidden_size + 3 * self.moe.expert_num
        moe_layers = self.moe_layers()
        return (moe_layers * sparse + (self.num_layers - moe_layers) * dense) / self.num_layers

    def dtype(self, key):
        return DTYPES[getattr(self, key).lower()]

    # ---- validation --------------------------------------------------------------------------------------------
    def validate(self, where="model.model_config"):
        def fail(key, expected):
            raise ConfigError(f"{where}.{key}: expected {expected}, got {getattr(self, key)!r}")

        def positive_int(value):
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        def positive_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

        for key in ("seq_length", "hidden_size", "num_layers", "num_heads", "vocab_size", "multiple_of"):
            if not positive_int(getattr(self, key)):
                fail(key, "a positive integer")
        for key in ("n_kv_heads", "head_dim", "intermediate_size", "sliding_window"):
            if getattr(self, key) is not None and not positive_int(getattr(self, key)):
                fail(key, "a positive integer or null")
        pad = self.pad_token_id
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            fail("pad_token_id", f"a token id below vocab_size ({self.vocab_size}): padding is looked up in the "
                                 f"embedding table")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            fail("num_heads", f"a divisor of hidden_size ({self.hidden_size}), or head_dim set")
        if self.num_heads % self.kv_heads:
            fail("n_kv_heads", f"a divisor of num_heads ({self.num_heads})")
        if str(self.position_embedding_type).lower() not in POSITION_TYPES:
            fail("position_embedding_type", "one of rope, alibi, learned_absolute")
        if str(self.normalization).lower() not in ("rmsnorm", "layernorm"):
            fail("normalization", "RMSNorm or LayerNorm")
        if not positive_number(self.partial_rotary_factor) or self.partial_rotary_factor > 1:
            fail("partial_rotary_factor", "a number in (0, 1]")
        if self.position_kind == "rope" and (self.rotary_dim < 2 or self.rotary_dim % 2):
            key = "partial_rotary_factor" if self.partial_rotary_factor != 1 else "head_dim"
            raise ConfigError(f"{where}.{key}: expected an even number of rotary features per head (head size "
                              f"{self.size_per_head} x partial_rotary_factor {self.partial_rotary_factor} = "
                              f"{self.size_per_head * self.partial_rotary_factor:g})")
        for key in _DTYPE_KEYS:
            value = getattr(self, key)
            if not isinstance(value, str) or value.lower() not in DTYPES:
                fail(key, "one of float32, float16, bfloat16")
        if str(self.hidden_act).lower() not in ACTIVATIONS:
            fail("hidden_act", f"one of {', '.join(ACTIVATIONS)}")
        for key in ("rms_norm_eps", "theta", "layer_norm_epsilon"):
            if not positive_number(getattr(self, key)):
                fail(key, "a positive number")
        if self.final_logit_softcapping is not None and not positive_number(self.final_logit_softcapping):
            fail("final_logit_softcapping", "a positive number or null")
        for key in ("qkv_has_bias", "attn_proj_has_bias", "qkv_concat", "add_rmsnorm_offset", "scale_embedding",
                    "tie_word_embeddings", "rotary_interleaved", "embedding_norm", "gated_mlp", "mlp_has_bias",
                    "norm_head"):
            if not isinstance(getattr(self, key), bool):
                fail(key, "True or False")
        if self.use_flash_attention is not None and not isinstance(self.use_flash_attention, bool):
            fail("use_flash_attention", "True, False or null (null: blockwise attention from long sequences on)")
        if self.norm_head and self.tie_word_embeddings:
            fail("norm_head", "False with tie_word_embeddings (a tied head is the embedding table, which is not "
                              "normalised)")
        self.validate_rope_scaling(where)
        self._moe = read_moe_config(self.moe_config, f"{where}.moe_config", self.num_layers)
        if self._moe and not self.gated_mlp:
            fail("gated_mlp", "True with moe_config (each expert is a gated MLP)")
        if self._moe and self.mlp_has_bias:
            fail("mlp_has_bias", "False with moe_config (the experts' projections have no biases)")

    def validate_rope_scaling(self, where):
        """scaling_factor is a positive number (linear interpolation), or with extend_method LLAMA3 the mapping of
        Llama 3.1's scaling (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)."""
        if str(self.extend_method).upper() == "LLAMA3":
            scaling = self.scaling_factor
            missing = [key for key in LLAMA3_SCALING_KEYS if not isinstance(scaling, dict) or key not in scaling]
            if missing:
                raise ConfigError(f"{where}.scaling_factor: extend_method LLAMA3 expects a mapping with "
                                  f"{', '.join(LLAMA3_SCALING_KEYS)} (missing {', '.join(missing)})")
            values = {key: scaling[key] for key in LLAMA3_SCALING_KEYS}
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in values.values()) \
                    or values["high_freq_factor"] <= values["low_freq_factor"]:
                raise ConfigError(f"{where}.scaling_factor: expected positive numbers with high_freq_factor > "
                                  f"low_freq_factor, got {values}")
            self.scaling_factor = {key: float(value) for key, value in values.items()}
        elif isinstance(self.scaling_factor, bool) or not isinstance(self.scaling_factor, (int, float)) \
                or self.scaling_factor <= 0:
            raise ConfigError(f"{where}.scaling_factor: expected a positive number (or, with extend_method LLAMA3, "
                              f"Llama 3.1's scaling mapping), got {self.scaling_factor!r}")

    # ---- (de)serialising ---------------------------------------------------------------------------------------
    def to_dict(self):
        return {key: value for key, value in vars(self).items()
                if key != "parallel_config" and not key.startswith("_")}

    @classmethod
    def from_dict(cls, values):
        return cls(**values)

    def __repr__(self):
        return f"{type(self).__name__}({self.to_dict()})"


def run_model_arguments(config):
    """What a run config says about the model outside model.model_config, as model-config arguments (keys the
    model_config section sets itself win): parallel_config, and MindFormers' top-level moe_config (checked here, so
    a mistake in it is named moe_config.<key>; a moe_config inside model_config overrides it key by key, see
    run_model_section)."""
    arguments = {"parallel_config": config.get("parallel_config")}
    top = config.get("moe_config")
    if top is not None:
        read_moe_config(top, "moe_config")
        arguments["moe_config"] = top
    return arguments


def run_model_section(config, **changes):
    """model.model_config as the run builds it: with `changes`, and its moe_config (if any) merged over the run's
    top-level one key by key, so a partial moe_config there (say, only capacity_factor) changes those keys of the
    run's mixture of experts instead of replacing it with an expert_num 1 (dense) one."""
    section = dict((config.get("model") or {}).get("model_config") or {}, **changes)
    top, inner = config.get("moe_config"), section.get("moe_config")
    if isinstance(top, dict) and isinstance(inner, dict):
        section["moe_config"] = dict(top, **inner)
    return section


def embedding_scale(config):
    """What embeddings are multiplied by: sqrt(hidden_size) with scale_embedding (Gemma), else 1."""
    return math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
