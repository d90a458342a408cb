"""Byte-level BPE tokenizers read from their original files, vocab.json + merges.txt (GPT-2's layout, which Qwen and
Megatron's GPT keep), or from a folder's tokenizer.json when it has one.

A family says what its files leave out: the split pattern that cuts text into words before BPE, whether text is
NFC-normalized first, and the special tokens that follow the vocabulary when vocab.json does not hold them.
"""
import os

from mindformers.models.tokenization_fast import PreTrainedTokenizerFast
from mindformers.models.tokenizer_folder import UNSET, read_json, resolve_tokenizer_file
from mindformers.tools.errors import DataError


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


class ByteLevelBPETokenizer(PreTrainedTokenizerFast):
    """`vocab_file` + `merges_file` (vocab.json, merges.txt), or `vocab_file` / `tokenizer_file` naming the
    tokenizer.json or the model folder (tokenizer.json is used when it is there). Subclasses set the family's
    `split_pattern`, `nfc` and `appended_special_tokens`."""

    split_pattern = None
    nfc = False
    appended_special_tokens = ()  # special tokens vocab.json lacks, in the order they follow it

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
        return byte_level_bpe(vocab_path, merges_path, self.split_pattern, self.nfc), vocab_path

    def _add_declared_tokens(self, added):
        """vocab.json may lack the special tokens: they follow it as the folder's tokenizer_config.json declares,
        else in the family's order."""
        if getattr(self, "_from_vocab_files", False) and not added:
            from tokenizers import AddedToken  # pylint: disable=import-outside-toplevel
            vocab = self._tokenizer.get_vocab(with_added_tokens=True)
            size = self._tokenizer.get_vocab_size(with_added_tokens=True)
            missing = [token for token in self.appended_special_tokens if token not in vocab]
            added = {size + offset: (token, True) for offset, token in enumerate(missing)}
            # those vocab.json holds (GPT-2's <|endoftext|>) keep their id and are matched whole in text
            self._tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                                for token in self.appended_special_tokens if token in vocab])
        super()._add_declared_tokens(added)
