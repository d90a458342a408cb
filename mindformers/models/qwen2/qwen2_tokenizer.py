"""Qwen2Tokenizer: Qwen1.5 / Qwen2's byte-level BPE, from vocab.json + merges.txt (the files MindFormers' Qwen
configs name) or from the folder's tokenizer.json, with the ids transformers' Qwen2Tokenizer gives.

What differs from the generic tokenizer.json class: the pipeline is Qwen's own (NFC, Qwen's split pattern with
single digits, byte-level BPE without a prefix space) when only vocab.json + merges.txt are given, its special
tokens <|endoftext|> <|im_start|> <|im_end|> follow the vocabulary, and there is no bos token.
"""
from mindformers.models.tokenization_byte_level import ByteLevelBPETokenizer
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# Like Llama 3's split but digits one by one; contractions, letters, punctuation runs, newlines, spaces.
QWEN2_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                       r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class Qwen2Tokenizer(ByteLevelBPETokenizer):
    """Qwen1.5 / Qwen2 tokenizer. `vocab_file` + `merges_file` (vocab.json, merges.txt), or `vocab_file` /
    `tokenizer_file` naming the tokenizer.json or the model folder (tokenizer.json is used when it is there)."""

    split_pattern = QWEN2_SPLIT_PATTERN
    nfc = True
    appended_special_tokens = QWEN2_SPECIAL_TOKENS

    def default_settings(self):
        defaults = super().default_settings()
        defaults.update(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                        unk_token="<|endoftext|>", add_bos_token=False, add_eos_token=False)
        return defaults

