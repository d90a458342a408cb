"""LlamaTokenizerFast: an HF tokenizer.json (Llama 3 byte-level BPE, or a converted Llama 2) via `tokenizers`.

The tokenizer.json machinery is family-neutral and lives in mindformers.models.tokenization_fast; every family
that ships a tokenizer.json (Llama 3, Aquila2, Gemma's and Yi's converted files, ...) can use this class.
"""
from mindformers.models.tokenization_fast import (  # noqa: F401  (names importable from here as before)
    BOS_CANDIDATES, EOS_CANDIDATES, PreTrainedTokenizerFast, load_tokenizer_json, post_processor_specials)
from mindformers.models.tokenizer_folder import resolve_tokenizer_file  # noqa: F401
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class LlamaTokenizerFast(PreTrainedTokenizerFast):
    """Llama tokenizer over an HF tokenizer.json. `vocab_file` is accepted for the same file (the CLI's
    --vocab_file fills that key); a directory holding tokenizer.json works too."""
