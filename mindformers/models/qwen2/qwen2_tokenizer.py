"""Qwen2Tokenizer: Qwen1.5 / Qwen2's byte-level BPE, from vocab.json + merges.txt (the files MindFormers' Qwen
configs name) or from the folder's tokenizer.json, with the ids transformers' Qwen2Tokenizer gives.

What differs from the generic tokenizer.json class: the pipeline is Qwen's own (NFC, Qwen's split pattern with
single digits, byte-level BPE without a prefix space) when only vocab.json + merges.txt are given, its special
tokens <|endoftext|> <|im_start|> <|im_end|> follow the vocabulary, and there is no bos token.
"""
import os

from mindformers.models.tokenization_fast import PreTrainedTokenizerFast
from mindformers.models.tokenizer_folder import UNSET, read_json, resolve_tokenizer_file
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# Like Llama 3's split but digits one by one; contractions, letters, punctuation runs, newlines, spaces.
QWEN2_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                       r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def read_merges(path):
    """merges.txt: one 'left right' pair per line after an optional '#version' header."""
    merges = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            line = line.rstrip("\n")
            if not line or (number == 1 and line.startswith("#version")):
                continue
            pair = line.split(" ")
            if len(pair) != 2:
                raise DataError(f"{path}: line {number}: expected two tokens separated by one space, got {line!r}")
            merges.append(tuple(pair))
    return merges


def byte_level_bpe(vocab_path, merges_path, split_pattern, nfc=True):
    """A tokenizers.Tokenizer for a GPT-2 style byte-level BPE: optional NFC, a regex split, byte-level alphabet."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = read_json(vocab_path)
    if not all(isinstance(index, int) for index in vocab.values()):
        raise DataError(f"{vocab_path}: expected a JSON object of token -> integer id")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=read_merges(merges_path), unk_token=None,
                                     continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                                     byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC() if nfc else None
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class Qwen2Tokenizer(PreTrainedTokenizerFast):
    """Qwen1.5 / Qwen2 tokenizer. `vocab_file` + `merges_file` (vocab.json, merges.txt), or `vocab_file` /
    `tokenizer_file` naming the tokenizer.json or the model folder (tokenizer.json is used when it is there)."""

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, unk_token=UNSET, bos_token=UNSET,
                 eos_token=UNSET, pad_token=UNSET, **kwargs):
        self.merges_file = merges_file
        super().__init__(tokenizer_file=tokenizer_file, vocab_file=vocab_file, unk_token=unk_token,
                         bos_token=bos_token, eos_token=eos_token, pad_token=pad_token, **kwargs)

    def _load_backend(self, path, kwargs):
        merges = self.merges_file
        if not merges and path and os.path.isdir(path) and not os.path.isfile(os.path.join(path, "tokenizer.json")):
            merges = os.path.join(path, "merges.txt")
        if not merges:
            return super()._load_backend(path, kwargs)
        vocab_path = resolve_tokenizer_file(path, ("vocab.json",), "vocab")
        merges_path = resolve_tokenizer_file(merges, ("merges.txt",), "merges")
        self._from_vocab_files = True
        return byte_level_bpe(vocab_path, merges_path, QWEN2_SPLIT_PATTERN), vocab_path

    def _add_declared_tokens(self, added):
        """vocab.json holds no special tokens: they follow it as the folder's tokenizer_config.json declares, else
        in Qwen's order (<|endoftext|> <|im_start|> <|im_end|>)."""
        if getattr(self, "_from_vocab_files", False) and not added:
            size = self._tokenizer.get_vocab_size(with_added_tokens=True)
            added = {size + offset: (token, True) for offset, token in enumerate(QWEN2_SPECIAL_TOKENS)}
        super()._add_declared_tokens(added)

    def default_settings(self):
        defaults = super().default_settings()
        defaults.update(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                        unk_token="<|endoftext|>", add_bos_token=False, add_eos_token=False)
        return defaults

