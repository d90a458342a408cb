"""CodeLlama (7B, 13B, 34B): Llama 2's architecture trained on code, rope theta 1e6 and positions up to 16384;
the 7B and 13B vocabularies add infilling tokens (32016 ids). HF checkpoints are LlamaForCausalLM."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class CodeLlamaConfig(DecoderConfig):
    """Defaults are CodeLlama-34B's."""

    model_type = "codellama"
    defaults = dict(seq_length=4096, max_position_embedding=16384, hidden_size=8192, num_layers=48, num_heads=64,
                    n_kv_heads=8, intermediate_size=22016, vocab_size=32000, rms_norm_eps=1e-5, theta=1000000.0,
                    compute_dtype="bfloat16")


CodeLlamaForCausalLM = causal_lm_class("CodeLlamaForCausalLM", CodeLlamaConfig)
CODELLAMA = register_family(decoder_family("codellama", "CodeLlamaConfig", "CodeLlamaForCausalLM", ("llama",),
                                           "LlamaForCausalLM"))
