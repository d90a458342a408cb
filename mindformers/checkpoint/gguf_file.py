"""llama.cpp's GGUF files as a HuggingFace-shaped source: a config.json-like dict, HF-named tensors (dequantized one
at a time when read) and the tokenizer the metadata describes.

The file is read with the `gguf` package (memory-mapped: a tensor's bytes are touched only when it is converted).
llama.cpp's converter permutes the rows of q and k per head (Meta's interleaved rotary pairs); HF checkpoints keep
each head's two rotary halves apart, so those rows are permuted back here, which is what transformers does when it
loads a GGUF.
"""
import os

from mindformers.checkpoint.gguf_quants import dequantize
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

# llama.cpp's tensor names -> HF LlamaForCausalLM's ("{i}" is the layer).
LLAMA_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}
ARCHITECTURES = ("llama",)


def undo_rotary_permutation(rows, heads):
    """Inverse of llama.cpp's per-head reordering of q/k rows (pairs interleaved -> two halves)."""
    head_rows = rows.shape[0] // heads
    return rows.reshape(heads, head_rows // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


class GGUFModel:
    """`metadata` {key: value}, `hf_config` (config.json keys), `tensors` {HF name: TensorInfo of float32}."""

    def __init__(self, path):
        try:
            from gguf import GGUFReader  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise ConfigError(f"--input_path: reading {path} needs the gguf package (pip install gguf)") from None
        self.path = path
        try:
            self.reader = GGUFReader(path)
        except (ValueError, OSError, AssertionError) as error:
            raise ConfigError(f"{path}: not a readable GGUF file ({error})") from None
        self.metadata = {key: field.contents() for key, field in self.reader.fields.items()
                         if not key.startswith("GGUF.")}
        arch = self.metadata.get("general.architecture")
        if arch not in ARCHITECTURES:
            raise ConfigError(f"{path}: general.architecture is {arch!r}; this conversion reads "
                              f"{', '.join(ARCHITECTURES)}")
        self.arch = arch
        self.hf_config = self._hf_config()
        self.tensors = self._tensors()

    def meta(self, key, default=None, required=False):
        value = self.metadata.get(f"{self.arch}.{key}", self.metadata.get(key, default))
        if value is None and required:
            raise ConfigError(f"{self.path}: metadata {self.arch}.{key} is missing")
        return value

    def _hf_config(self):
        heads = int(self.meta("attention.head_count", required=True))
        hidden = int(self.meta("embedding_length", required=True))
        tokens = self.metadata.get("tokenizer.ggml.tokens") or []
        names = {tensor.name for tensor in self.reader.tensors}
        if "rope_freqs.weight" in names:
            raise ConfigError(f"{self.path}: per-frequency rope factors (rope_freqs.weight, Llama 3.1 scaling) are "
                              "not supported in GGUF input; convert the HF folder instead")
        config = {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
            "hidden_size": hidden, "num_hidden_layers": int(self.meta("block_count", required=True)),
            "intermediate_size": int(self.meta("feed_forward_length", required=True)),
            "num_attention_heads": heads,
            "num_key_value_heads": int(self.meta("attention.head_count_kv", heads)),
            "max_position_embeddings": int(self.meta("context_length", 2048)),
            "rms_norm_eps": float(self.meta("attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_theta": float(self.meta("rope.freq_base", 10000.0)),
            "vocab_size": int(self.meta("vocab_size", len(tokens))),
            "tie_word_embeddings": "output.weight" not in names,
            "dtype": "float32",
        }
        if self.meta("rope.scaling.type") == "linear":
            config["rope_scaling"] = {"rope_type": "linear", "factor": float(self.meta("rope.scaling.factor"))}
        for ours, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                          ("pad_token_id", "padding_token_id")):
            if self.metadata.get(f"tokenizer.ggml.{key}") is not None:
                config[ours] = int(self.metadata[f"tokenizer.ggml.{key}"])
        return config

    def _tensors(self):
        layers = self.hf_config["num_hidden_layers"]
        names = {}
        for pattern, hf in LLAMA_TENSORS.items():
            for layer in range(layers) if "{i}" in pattern else [None]:
                names[pattern.format(i=layer)] = hf.format(i=layer)
        heads = {"attn_q": self.hf_config["num_attention_heads"], "attn_k": self.hf_config["num_key_value_heads"]}
        tensors = {}
        for tensor in self.reader.tensors:
            hf_name = names.get(tensor.name)
            if hf_name is None:
                continue
            shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))  # GGML lists the fastest dimension first
            kind = next((k for k in heads if f".{k}." in tensor.name), None)
            tensors[hf_name] = TensorInfo(hf_name, "F32", shape, load=self._loader(tensor, shape, heads.get(kind)))
        return tensors

    def _loader(self, tensor, shape, permuted_heads):
        where = f"{self.path}: {tensor.name}"

        def load():
            values = dequantize(tensor.data, tensor.tensor_type.name, shape, where)
            return undo_rotary_permutation(values, permuted_heads) if permuted_heads else values
        return load


def is_gguf(path):
    return str(path).lower().endswith(".gguf") and os.path.isfile(path)


__all__ = ["GGUFModel", "is_gguf", "undo_rotary_permutation"]
