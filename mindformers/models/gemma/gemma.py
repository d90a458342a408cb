"""Gemma (2B, 7B): the shared decoder with GeGLU (tanh-approximated GELU), RMSNorm scaling by (1 + w), embeddings
multiplied by sqrt(hidden_size), head_dim 256 independent of hidden_size, multi-query attention at 2B, and the LM
head tied to the 256000-token embedding table. HF: GemmaForCausalLM (model_type gemma)."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class GemmaConfig(DecoderConfig):
    """Defaults are Gemma-7B's."""

    model_type = "gemma"
    defaults = dict(seq_length=8192, hidden_size=3072, num_layers=28, num_heads=16, head_dim=256,
                    intermediate_size=24576, vocab_size=256000, rms_norm_eps=1e-6, hidden_act="gelu_tanh",
                    add_rmsnorm_offset=True, scale_embedding=True, tie_word_embeddings=True, bos_token_id=2,
                    eos_token_id=1, pad_token_id=0, compute_dtype="bfloat16")


GemmaForCausalLM = causal_lm_class("GemmaForCausalLM", GemmaConfig)


def legacy_activation_from_hf(hf, kwargs, where):  # pylint: disable=unused-argument
    """Gemma's first releases wrote hidden_act "gelu" but meant the tanh approximation (as transformers reads it)."""
    if kwargs["hidden_act"] == "gelu":
        kwargs["hidden_act"] = "gelu_tanh"


def drop_mlp_bias(config, hf):  # pylint: disable=unused-argument
    hf.pop("mlp_bias")  # HF GemmaConfig has none


GEMMA = register_family(decoder_family(
    "gemma", "GemmaConfig", "GemmaForCausalLM", ("gemma",), "GemmaForCausalLM",
    implied={"add_rmsnorm_offset": True, "scale_embedding": True},
    hf_defaults={"tie_word_embeddings": True, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh"},
    read=legacy_activation_from_hf, write=drop_mlp_bias))
