"""Yi (6B, 34B): Llama's architecture with GQA, rope theta 5e6 and a 64000-token sentencepiece vocabulary; its HF
checkpoints are LlamaForCausalLM (model_type llama)."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class YiConfig(DecoderConfig):
    """Defaults are Yi-34B's."""

    model_type = "yi"
    defaults = dict(seq_length=4096, hidden_size=7168, num_layers=60, num_heads=56, n_kv_heads=8,
                    intermediate_size=20480, vocab_size=64000, rms_norm_eps=1e-5, theta=5000000.0,
                    compute_dtype="bfloat16")


YiForCausalLM = causal_lm_class("YiForCausalLM", YiConfig)
YI = register_family(decoder_family("yi", "YiConfig", "YiForCausalLM", ("llama",), "LlamaForCausalLM"))
