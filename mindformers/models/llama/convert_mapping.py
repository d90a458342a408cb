"""Llama <-> HuggingFace LlamaForCausalLM (Llama 1/2/3, 3.1 rope scaling; attention_bias for q/k/v/o together).

GQA: wk/wv hold n_kv_heads * head_dim rows, exactly HF's k_proj/v_proj. Tied embeddings: neither side has an
lm_head tensor. Meta's original consolidated.*.pth checkpoints interleave rotary pairs and are not an input here.
"""
from mindformers.checkpoint.hf_mapping import register_family
from mindformers.models.decoder.hf_layout import decoder_family

LLAMA = register_family(decoder_family("llama", "LlamaConfig", "LlamaForCausalLM", ("llama",), "LlamaForCausalLM"),
                        "llama2", "llama3")
