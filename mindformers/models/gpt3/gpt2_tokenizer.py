"""GPT2Tokenizer: GPT-2's byte-level BPE from vocab.json + merges.txt (what Megatron's and ModelLink's GPT-3 read as
gpt2-vocab.json and gpt2-merges.txt) or from a folder's tokenizer.json, with the ids transformers' GPT2Tokenizer
gives: GPT-2's split pattern (contractions, letter, digit and punctuation runs with their leading space), no
normalization, and <|endoftext|> as bos, eos and unk (no bos added)."""
from mindformers.models.tokenization_byte_level import ByteLevelBPETokenizer
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

GPT2_SPLIT_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
ENDOFTEXT = "<|endoftext|>"


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class GPT2Tokenizer(ByteLevelBPETokenizer):
    """GPT-2 / GPT-3 tokenizer. `vocab_file` + `merges_file` (vocab.json, merges.txt), or `vocab_file` /
    `tokenizer_file` naming the tokenizer.json or the model folder (tokenizer.json is used when it is there)."""

    split_pattern = GPT2_SPLIT_PATTERN
    appended_special_tokens = (ENDOFTEXT,)

    def default_settings(self):
        defaults = super().default_settings()
        defaults.update(bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT, pad_token=None,
                        add_bos_token=False, add_eos_token=False)
        return defaults
