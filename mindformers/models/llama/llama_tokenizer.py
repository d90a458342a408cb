"""LlamaTokenizer: a sentencepiece .model (Llama 1/2) with the ids transformers' LlamaTokenizer gives.

The sentencepiece machinery is family-neutral and lives in mindformers.models.tokenization_sentencepiece; the
other sentencepiece families whose transformers class is LlamaTokenizer or GemmaTokenizer (Gemma, InternLM, Yi,
Baichuan, ...) use this class too: what differs between them (special tokens, add_bos_token, legacy, the dummy
prefix) is read from the model and its folder or set in processor.tokenizer.
"""
from mindformers.models.tokenization_sentencepiece import (  # noqa: F401  (names importable from here as before)
    BYTE_PIECE, SPIECE_UNDERLINE, SentencePieceTokenizer, load_sentencepiece)
from mindformers.models.tokenizer_folder import resolve_tokenizer_file  # noqa: F401
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class LlamaTokenizer(SentencePieceTokenizer):
    """Llama 1/2 tokenizer over a sentencepiece BPE model (byte fallback, no normalization); `vocab_file` is the
    tokenizer.model or the model folder holding it."""
