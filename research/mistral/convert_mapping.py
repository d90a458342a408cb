"""Mistral <-> HuggingFace MistralForCausalLM: Llama's weight names, plus sliding_window in the config."""
from mindformers.checkpoint.hf_mapping import HFFamily, register_family
from mindformers.models.llama.convert_mapping import (CONDITIONS, LLAMA_WEIGHTS, llama_config_from_hf,
                                                      llama_config_to_hf, sizes)


def mistral_config_from_hf(hf, dtype, where="config.json"):
    kwargs = llama_config_from_hf(hf, dtype, where)
    kwargs["sliding_window"] = hf.get("sliding_window")  # null: full causal attention (Mistral v0.2+)
    return kwargs


def mistral_config_to_hf(config, dtype):
    hf = llama_config_to_hf(config, dtype, model_type="mistral", architecture="MistralForCausalLM")
    for key in ("attention_bias", "mlp_bias"):  # HF MistralConfig has neither
        hf.pop(key)
    hf["sliding_window"] = config.sliding_window
    return hf


MISTRAL = register_family(HFFamily(
    name="mistral", model_types=("mistral",), hf_architecture="MistralForCausalLM",
    our_config_type="MistralConfig", our_arch_type="MistralForCausalLM", weights=LLAMA_WEIGHTS, sizes=sizes,
    config_from_hf=mistral_config_from_hf, config_to_hf=mistral_config_to_hf, conditions=CONDITIONS))
