"""LlamaTokenizer: a sentencepiece .model (Llama 1/2), with the ids transformers' LlamaTokenizer gives.

transformers 5.x (legacy=False, its default) differs from calling sentencepiece on the raw string
in two ways, and we follow it so data tokenized here matches models and tools on the HF side:
  * the dummy-prefix space is added only at the start of the text, and only when the text does not
    already start with a space (sentencepiece always adds it);
  * special tokens written in the text ("a</s>b") become their ids, and the text after them gets no
    prefix space. legacy=True adds the prefix after special tokens too.
"""
import os
import re

from mindformers.models.tokenization_utils import MindFormerTokenizer
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

SPIECE_UNDERLINE = "\u2581"
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def resolve_tokenizer_file(path, names, kind):
    """A file path, or a directory holding one of `names`; DataError names what is missing."""
    if not path:
        raise DataError(f"no {kind} file given (expected a path to {' or '.join(names)})")
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in names:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise DataError(f"{path}: directory holds no {' or '.join(names)}")
    if not os.path.isfile(path):
        raise DataError(f"{kind} file not found: {path}")
    return path


def load_sentencepiece(path):
    """Two processors on one model: as trained, and without the dummy prefix (we add it ourselves)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    try:
        with open(path, "rb") as stream:
            proto = sentencepiece_model_pb2.ModelProto.FromString(stream.read())
        plain = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    except Exception as error:  # protobuf and sentencepiece raise several unrelated types on bad bytes
        raise DataError(f"{path}: not a valid sentencepiece model ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    if plain.get_piece_size() == 0:
        raise DataError(f"{path}: not a valid sentencepiece model (no pieces)")
    add_dummy_prefix = proto.normalizer_spec.add_dummy_prefix
    proto.normalizer_spec.add_dummy_prefix = False
    bare = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return plain, bare, add_dummy_prefix


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class LlamaTokenizer(MindFormerTokenizer):
    """Llama 1/2 tokenizer over a sentencepiece BPE model (byte fallback, no normalization)."""

    def __init__(self, vocab_file, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token=None,
                 add_bos_token=True, add_eos_token=False, padding_side="right", legacy=False,
                 add_prefix_space=None, additional_special_tokens=None, **kwargs):
        self.vocab_file = resolve_tokenizer_file(vocab_file, ("tokenizer.model",), "tokenizer")
        self.sp_model, self._bare_sp, dummy_prefix = load_sentencepiece(self.vocab_file)
        self.legacy = bool(legacy)
        self.add_prefix_space = dummy_prefix if add_prefix_space is None else bool(add_prefix_space)
        super().__init__(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                         additional_special_tokens=additional_special_tokens, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, padding_side=padding_side, **kwargs)
        size = self.sp_model.get_piece_size()
        # Control pieces (<s>, </s>) and <unk> are matched in text like HF's special added tokens.
        self._special_in_vocab = {self.sp_model.id_to_piece(i): i for i in range(size)
                                  if self.sp_model.is_control(i) or self.sp_model.is_unknown(i)}
        # Special tokens the model lacks (e.g. pad_token '<pad>') get new ids after the pieces, as in HF.
        self._added = {}
        for token in self.all_special_tokens:
            if self.sp_model.piece_to_id(token) == self.sp_model.unk_id() and token != self._unk_piece():
                self._added.setdefault(token, size + len(self._added))
        self._added_by_id = {i: t for t, i in self._added.items()}
        matched = set(self._special_in_vocab) | set(self.all_special_tokens)
        # Longest first so '<s>' never wins over a longer token that starts with it.
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in sorted(matched, key=len, reverse=True))
                                    + ")") if matched else None

    def _unk_piece(self):
        return self.sp_model.id_to_piece(self.sp_model.unk_id())

    @property
    def vocab_size(self):
        return self.sp_model.get_piece_size()

    def __len__(self):
        return self.sp_model.get_piece_size() + len(self._added)

    def get_vocab(self):
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.sp_model.get_piece_size())}
        vocab.update(self._added)
        return vocab

    def _convert_token_to_id(self, token):
        if token in self._added:
            return self._added[token]
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index):
        if index in self._added_by_id:
            return self._added_by_id[index]
        if not 0 <= index < self.sp_model.get_piece_size():
            raise IndexError(f"token id {index} is out of range for {self.vocab_file} ({len(self)} tokens)")
        return self.sp_model.id_to_piece(index)

    def _encode_text(self, text):
        parts = self._split_re.split(text) if self._split_re else [text]
        ids, offset = [], 0
        for index, part in enumerate(parts):
            if index % 2 == 1:  # a special token written in the text
                ids.append(self._convert_token_to_id(part))
            elif part:
                ids.extend(self._encode_plain(part, at_start=offset == 0))
            offset += len(part)
        return ids

    def _encode_plain(self, text, at_start):
        prefix = self.add_prefix_space and (at_start or self.legacy) and text[0] not in (" ", SPIECE_UNDERLINE)
        return self._bare_sp.encode((" " if prefix else "") + text)

    def _skipped_ids(self):
        return set(self.all_special_ids) | set(self._special_in_vocab.values())

    def _decode(self, ids, skip_special_tokens):
        """What HF's decoder chain does: '▁' -> ' ', byte pieces -> UTF-8, drop one leading space."""
        skipped = self._skipped_ids() if skip_special_tokens else ()
        chunks, pending = [], bytearray()
        pending_count = 0

        def flush():
            nonlocal pending, pending_count
            if pending_count:
                try:
                    chunks.append(bytes(pending).decode("utf-8"))
                except UnicodeDecodeError:  # like the byte-fallback decoder: one U+FFFD per byte piece
                    chunks.append("\ufffd" * pending_count)
            pending, pending_count = bytearray(), 0

        for index in ids:
            if index in skipped:
                continue
            piece = self._convert_id_to_token(index)
            byte = BYTE_PIECE.match(piece)
            if byte:
                pending.append(int(byte.group(1), 16))
                pending_count += 1
                continue
            flush()
            chunks.append(piece.replace(SPIECE_UNDERLINE, " "))
        flush()
        text = "".join(chunks)
        if self.add_prefix_space and text.startswith(" "):
            text = text[1:]
        return text

    def convert_tokens_to_string(self, tokens):
        return self._decode(self.convert_tokens_to_ids(tokens), skip_special_tokens=False)

    def __getstate__(self):
        # SentencePieceProcessor objects do not pickle; data pipelines in worker processes need to.
        state = dict(self.__dict__)
        for key in ("sp_model", "_bare_sp"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.sp_model, self._bare_sp, _ = load_sentencepiece(self.vocab_file)
