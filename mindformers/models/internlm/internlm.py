"""InternLM (7B): Llama's architecture with biases on the q, k, v and output projections and a 103168-token
sentencepiece vocabulary. Its HF checkpoints (model_type internlm, remote code) use Llama's tensor names; they are
written back as HF LlamaForCausalLM with attention_bias, which transformers loads without remote code."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class InternLMConfig(DecoderConfig):
    """Defaults are InternLM-7B's."""

    model_type = "internlm"
    defaults = dict(seq_length=2048, hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008,
                    vocab_size=103168, rms_norm_eps=1e-6, qkv_has_bias=True, attn_proj_has_bias=True,
                    compute_dtype="bfloat16")


InternLMForCausalLM = causal_lm_class("InternLMForCausalLM", InternLMConfig)


def internlm_keys_from_hf(hf, kwargs, where):  # pylint: disable=unused-argument
    """InternLM's own config.json: one `bias` flag for all four projections, the rotary base under `rotary`
    (its "dynamic" type only differs from plain rotary beyond max_position_embeddings)."""
    if "bias" in hf:
        kwargs["qkv_has_bias"] = kwargs["attn_proj_has_bias"] = bool(hf["bias"])
    if isinstance(hf.get("rotary"), dict) and "base" in hf["rotary"]:
        kwargs["theta"] = float(hf["rotary"]["base"])


INTERNLM = register_family(decoder_family(
    "internlm", "InternLMConfig", "InternLMForCausalLM", ("internlm", "llama"), "LlamaForCausalLM",
    write_model_type="llama", read=internlm_keys_from_hf))
