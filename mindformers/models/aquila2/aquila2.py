"""Aquila2 (7B, 34B): Llama's architecture (GQA at 34B) with a 100008-token byte-level BPE vocabulary. Its HF
checkpoints (model_type aquila, remote code) use Llama's tensor names; they are written back as HF
LlamaForCausalLM, which transformers loads without remote code."""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder import DecoderConfig, causal_lm_class
from mindformers.models.decoder.hf_layout import decoder_family
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class Aquila2Config(DecoderConfig):
    """Defaults are Aquila2-7B's."""

    model_type = "aquila2"
    defaults = dict(seq_length=2048, hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008,
                    vocab_size=100008, rms_norm_eps=1e-5, bos_token_id=100006, eos_token_id=100007,
                    pad_token_id=0, compute_dtype="float16")


Aquila2ForCausalLM = causal_lm_class("Aquila2ForCausalLM", Aquila2Config)
AQUILA2 = register_family(decoder_family("aquila2", "Aquila2Config", "Aquila2ForCausalLM", ("aquila", "llama"),
                                         "LlamaForCausalLM", write_model_type="llama"), "aquila")
