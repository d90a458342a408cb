"""Mistral (7B): the shared decoder with GQA and sliding-window attention over 4096 tokens (none from v0.2 on),
rope theta 1e6 and positions up to 32768. HF: MistralForCausalLM (model_type mistral)."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class MistralConfig(DecoderConfig):
    """Defaults are Mistral-7B-32K's (ModelLink's Mistral-7B-32K, HF Mistral-7B-Instruct-v0.2 sizes)."""

    model_type = "mistral"
    defaults = dict(seq_length=32768, hidden_size=4096, num_layers=32, num_heads=32, n_kv_heads=8,
                    intermediate_size=14336, vocab_size=32000, rms_norm_eps=1e-5, theta=1000000.0,
                    sliding_window=4096, compute_dtype="bfloat16")


MistralForCausalLM = causal_lm_class("MistralForCausalLM", MistralConfig)


def sliding_window_from_hf(hf, kwargs, where):  # pylint: disable=unused-argument
    kwargs["sliding_window"] = hf.get("sliding_window")  # null: full causal attention (Mistral v0.2+)


def sliding_window_to_hf(config, hf):
    for key in ("attention_bias", "mlp_bias"):  # HF MistralConfig has neither
        hf.pop(key)
    hf["sliding_window"] = config.sliding_window


MISTRAL = register_family(decoder_family(
    "mistral", "MistralConfig", "MistralForCausalLM", ("mistral",), "MistralForCausalLM",
    implied={"qkv_has_bias": False, "attn_proj_has_bias": False}, expresses=("sliding_window",),
    read=sliding_window_from_hf, write=sliding_window_to_hf))
