"""LlamaConfig: the sizes and numerics of a Llama-family model, as MindFormers' YAML `model_config` spells them."""
from mindformers.models.modules.dtypes import DTYPES
from mindformers.models.modules.rotary import LLAMA3_SCALING_KEYS
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

_DTYPE_KEYS = ("compute_dtype", "param_init_type", "layernorm_compute_type", "softmax_compute_type", "rotary_dtype")


def ffn_hidden_size(hidden_size, multiple_of, ffn_dim_multiplier=None):
    """Meta's rule: 2/3 of 4*hidden, scaled by ffn_dim_multiplier, rounded up to a multiple of multiple_of."""
    size = int(2 * (4 * hidden_size) / 3)
    if ffn_dim_multiplier is not None:
        size = int(ffn_dim_multiplier * size)
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class LlamaConfig:
    """Llama 2 (MHA) and Llama 3 (GQA, theta 500000, vocab 128256) alike; defaults are Llama 2 7B's."""

    model_type = "llama"

    def __init__(self, batch_size=1, seq_length=2048, hidden_size=4096, num_layers=32, num_heads=32,
                 n_kv_heads=None, max_position_embedding=None, intermediate_size=None, vocab_size=32000,
                 multiple_of=256, ffn_dim_multiplier=None, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                 pad_token_id=0, ignore_token_id=-100, theta=10000.0, compute_dtype="float16",
                 layernorm_compute_type="float32", softmax_compute_type="float32", rotary_dtype="float32",
                 param_init_type="float32", embedding_init_type=None, qkv_has_bias=False, qkv_concat=False,
                 use_past=False, use_flash_attention=False, use_fused_rms_norm=None, tie_word_embeddings=False,
                 initializer_range=0.02, scaling_factor=1.0, extend_method="None", offset=0,
                 fine_grain_interleave=1, pp_interleave_num=1, checkpoint_name_or_path="", repetition_penalty=1.0,
                 max_decode_length=1024, max_new_tokens=None, top_k=5, top_p=1.0, do_sample=False,
                 temperature=1.0, num_beams=1, use_rope_slice=False, block_size=16, num_blocks=512,
                 is_dynamic=False, parallel_config=None, moe_config=None, sliding_window=None, model_name=None,
                 pet_config=None):
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.n_kv_heads = n_kv_heads
        self.max_position_embedding = max_position_embedding or seq_length
        self.multiple_of = multiple_of
        self.ffn_dim_multiplier = ffn_dim_multiplier
        self.intermediate_size = intermediate_size
        self.vocab_size = vocab_size
        self.rms_norm_eps = rms_norm_eps
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.ignore_token_id = ignore_token_id
        self.theta = theta
        self.compute_dtype = compute_dtype
        self.layernorm_compute_type = layernorm_compute_type
        self.softmax_compute_type = softmax_compute_type
        self.rotary_dtype = rotary_dtype
        self.param_init_type = param_init_type
        self.embedding_init_type = embedding_init_type
        self.qkv_has_bias = qkv_has_bias
        self.qkv_concat = qkv_concat
        self.use_past = use_past
        self.use_flash_attention = use_flash_attention
        self.use_fused_rms_norm = use_fused_rms_norm
        self.tie_word_embeddings = tie_word_embeddings
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
        self.use_rope_slice = use_rope_slice
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.is_dynamic = is_dynamic
        self.parallel_config = parallel_config
        self.moe_config = moe_config
        self.sliding_window = sliding_window
        self.model_name = model_name
        self.pet_config = pet_config  # LoRA / prefix tuning, applied to the built network (mindformers.pet)
        self.validate()

    @property
    def kv_heads(self):
        return self.n_kv_heads or self.num_heads

    @property
    def ffn_size(self):
        if self.intermediate_size:
            return self.intermediate_size
        return ffn_hidden_size(self.hidden_size, self.multiple_of, self.ffn_dim_multiplier)

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads

    def dtype(self, key):
        return DTYPES[getattr(self, key).lower()]

    def validate(self, where="model.model_config"):
        def fail(key, expected):
            raise ConfigError(f"{where}.{key}: expected {expected}, got {getattr(self, key)!r}")

        for key in ("seq_length", "hidden_size", "num_layers", "num_heads", "vocab_size", "multiple_of"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(key, "a positive integer")
        if self.n_kv_heads is not None and (not isinstance(self.n_kv_heads, int) or self.n_kv_heads < 1):
            fail("n_kv_heads", "a positive integer or null")
        if self.hidden_size % self.num_heads:
            fail("num_heads", f"a divisor of hidden_size ({self.hidden_size})")
        if self.num_heads % self.kv_heads:
            fail("n_kv_heads", f"a divisor of num_heads ({self.num_heads})")
        if self.head_dim % 2:
            fail("num_heads", f"a head size hidden_size/num_heads that is even (rotary), got {self.head_dim}")
        if self.intermediate_size is not None and (not isinstance(self.intermediate_size, int)
                                                   or self.intermediate_size < 1):
            fail("intermediate_size", "a positive integer or null")
        for key in _DTYPE_KEYS:
            value = getattr(self, key)
            if not isinstance(value, str) or value.lower() not in DTYPES:
                fail(key, "one of float32, float16, bfloat16")
        if not isinstance(self.rms_norm_eps, (int, float)) or self.rms_norm_eps <= 0:
            fail("rms_norm_eps", "a positive number")
        if not isinstance(self.theta, (int, float)) or self.theta <= 0:
            fail("theta", "a positive number")
        self.validate_rope_scaling(where)

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

    def to_dict(self):
        return {key: value for key, value in vars(self).items() if key != "parallel_config"}

    @classmethod
    def from_dict(cls, values):
        return cls(**values)

    def __repr__(self):
        return f"{type(self).__name__}({self.to_dict()})"

