"""SentencePieceTokenizer: a sentencepiece .model (Llama 1/2, Gemma, InternLM, Yi, CodeLlama, ...) with the ids
transformers gives on the same model and folder.

transformers' sentencepiece families (LlamaTokenizer, GemmaTokenizer, CodeLlamaTokenizer) do not run
sentencepiece: they take the BPE pieces and apply their own pipeline, which differs from calling sentencepiece on
the raw string in three ways; we follow it, so data tokenized here matches models and tools on the HF side:
  * the model's normalizer (NFKC, collapsing runs of spaces, ...) is not applied: text is split on spaces as it
    is. Without this a model trained with sentencepiece's default normalizer (remove_extra_whitespaces) would
    lose its dummy-prefix space at the start ("The for" -> "T he" instead of "▁The");
  * the dummy-prefix "▁" is added only at the start of the text, and only when the text does not already start
    with a space (sentencepiece adds it always); legacy=True adds it after special tokens too;
  * special tokens written in the text ("a</s>b") become their ids.
A unigram model (sentencepiece's default type, which those classes cannot represent) is encoded by sentencepiece
as trained, normalizer included, as transformers' generic sentencepiece conversion does.

Settings come from the arguments, else from the model folder's files (tokenizer_config.json, ...; see
tokenizer_folder), else from the model itself (its unk/bos/eos/pad pieces and dummy-prefix flag).
"""
import os
import re

from mindformers.models.tokenization_utils import MindFormerTokenizer
from mindformers.models.tokenizer_folder import (UNSET, folder_settings, merge_settings, read_json,
                                                 resolve_tokenizer_file, template_special_tokens)
from mindformers.tools.errors import DataError

SPIECE_UNDERLINE = "\u2581"
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
BPE_MODEL_TYPE = 2  # sentencepiece_model.proto: UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4
USER_DEFINED_PIECE = 4  # ModelProto.SentencePiece.Type: pieces always kept whole, as written in the text


def load_sentencepiece(path):
    """(processor as trained, processor for encoding, the model proto).

    The encoding processor never adds the dummy prefix (we add it) and, for BPE models, applies no normalizer.
    """
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
    bare_proto = sentencepiece_model_pb2.ModelProto()
    bare_proto.CopyFrom(proto)
    normalizer = bare_proto.normalizer_spec
    normalizer.add_dummy_prefix = False
    if proto.trainer_spec.model_type == BPE_MODEL_TYPE:
        normalizer.name = "identity"
        normalizer.precompiled_charsmap = b""
        normalizer.remove_extra_whitespaces = False
        normalizer.escape_whitespaces = True
    bare = spm.SentencePieceProcessor(model_proto=bare_proto.SerializeToString())
    return plain, bare, proto


def proto_special_tokens(proto):
    """{'unk_token': '<unk>', 'bos_token': '<s>', ...} as the model was trained (ids < 0 mean 'none')."""
    spec = proto.trainer_spec
    named = {}
    for key, index, piece in (("unk_token", spec.unk_id, spec.unk_piece), ("bos_token", spec.bos_id, spec.bos_piece),
                              ("eos_token", spec.eos_id, spec.eos_piece), ("pad_token", spec.pad_id, spec.pad_piece)):
        named[key] = proto.pieces[index].piece if 0 <= index < len(proto.pieces) else None
        if named[key] is None and index >= 0:
            named[key] = piece or None
    return named


def folder_tokenizer_json(folder):
    """What the folder's tokenizer.json (if any) says that transformers keeps only there since version 5: whether
    bos/eos are added (its post-processor) and the added tokens with their special flags."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        return {}
    content = read_json(path)
    bos, eos = template_special_tokens(content)
    added = {item["id"]: (item.get("content"), bool(item.get("special"))) for item in content.get("added_tokens") or []
             if isinstance(item, dict) and isinstance(item.get("id"), int)}
    return {"add_bos_token": bos is not None, "add_eos_token": eos is not None, "added_tokens": added}


class SentencePieceTokenizer(MindFormerTokenizer):
    """A tokenizer over a sentencepiece model; `vocab_file` is the .model or the folder holding tokenizer.model."""

    vocab_file_names = ("tokenizer.model",)

    def __init__(self, vocab_file, unk_token=UNSET, bos_token=UNSET, eos_token=UNSET, pad_token=UNSET,
                 add_bos_token=UNSET, add_eos_token=UNSET, legacy=UNSET, add_prefix_space=UNSET,
                 additional_special_tokens=UNSET, chat_template=UNSET, padding_side=UNSET, **kwargs):
        self.vocab_file = resolve_tokenizer_file(vocab_file, self.vocab_file_names, "tokenizer")
        self.sp_model, self._bare_sp, proto = load_sentencepiece(self.vocab_file)
        self._follows_normalizer = proto.trainer_spec.model_type != BPE_MODEL_TYPE
        folder = os.path.dirname(os.path.abspath(self.vocab_file))
        found = folder_settings(folder)
        from_json = folder_tokenizer_json(folder)
        added = {**from_json.pop("added_tokens", {}), **found.pop("added_tokens", {})}
        defaults = self.default_settings(proto)
        defaults.update(from_json)
        for name, index in found.pop("generation_ids", {}).items():
            if 0 <= index < self.sp_model.get_piece_size():
                defaults[name] = self.sp_model.id_to_piece(index)
        explicit = dict(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                        add_bos_token=add_bos_token, add_eos_token=add_eos_token, legacy=legacy,
                        add_prefix_space=add_prefix_space, additional_special_tokens=additional_special_tokens,
                        chat_template=chat_template, padding_side=padding_side, **kwargs)
        settings = merge_settings(explicit, found, defaults)
        self.legacy = bool(settings.pop("legacy"))
        self.add_prefix_space = bool(settings.pop("add_prefix_space"))
        super().__init__(**settings)
        self._index_special_tokens(added, proto)

    @staticmethod
    def default_settings(proto):
        """What applies when neither the arguments nor the folder's files say: the model's own pieces and flags."""
        return dict(proto_special_tokens(proto), add_bos_token=True, add_eos_token=False, legacy=False,
                    padding_side="right", add_prefix_space=proto.normalizer_spec.add_dummy_prefix)

    def _index_special_tokens(self, added, proto):
        """Ids for the tokens matched in text: control pieces, user-defined pieces, special and added tokens."""
        size = self.sp_model.get_piece_size()
        pieces = {self.sp_model.id_to_piece(i): i for i in range(size)
                  if self.sp_model.is_control(i) or self.sp_model.is_unknown(i)}
        user_defined = {piece.piece for piece in proto.pieces if piece.type == USER_DEFINED_PIECE}
        self._special_in_vocab = dict(pieces)
        self._added, self._special_added, self._plain_added = {}, set(), set()
        for index, (content, special) in sorted(added.items()):
            if not content:
                continue
            if index >= size or self.sp_model.id_to_piece(index) != content:
                self._added[content] = index  # beyond the model's pieces, or renaming one (as HF allows)
            (self._special_added if special else self._plain_added).add(content)
        next_id = max([size - 1] + list(self._added.values())) + 1
        for token in self.all_special_tokens:  # a special token the model lacks gets the next id, as in HF
            if token not in self._added and self._piece_id(token) is None:
                self._added[token] = next_id
                next_id += 1
        self._added_by_id = {index: content for content, index in self._added.items()}
        matched = set(pieces) | user_defined | set(self._added) | set(self._special_added)
        matched |= set(self.all_special_tokens)
        self._split_re = self._special_token_regex(matched) if matched else None

    def _special_token_regex(self, tokens):
        """The regex that finds `tokens` written in text (a family may narrow where some of them count)."""
        # Longest first so '<s>' never wins over a longer token that starts with it.
        return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")

    def _piece_id(self, token):
        index = self.sp_model.piece_to_id(token)
        return index if self.sp_model.id_to_piece(index) == token else None

    @property
    def vocab_size(self):
        return self.sp_model.get_piece_size()

    def __len__(self):
        return max([self.sp_model.get_piece_size() - 1] + list(self._added_by_id)) + 1

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

    def _encode_text(self, text, at_start=True):
        parts = self._split_re.split(text) if self._split_re else [text]
        ids, offset = [], 0 if at_start else 1
        for index, part in enumerate(parts):
            if index % 2 == 1:  # a special or added token written in the text
                ids.append(self._convert_token_to_id(part))
            elif part:
                ids.extend(self._encode_plain(part, at_start=offset == 0))
            offset += len(part)
        return ids

    def _encode_plain(self, text, at_start):
        with_prefix = self.add_prefix_space and (at_start or self.legacy)
        if self._follows_normalizer:  # sentencepiece as trained: it adds the prefix after normalizing
            return (self.sp_model if with_prefix else self._bare_sp).encode(text)
        prefix = with_prefix and text[0] not in (" ", SPIECE_UNDERLINE)
        return self._bare_sp.encode((" " if prefix else "") + text)

    def encode_continuation(self, text):
        return self._encode_text(text, at_start=False)

    def _skipped_ids(self):
        """What decode(skip_special_tokens=True) drops: special tokens and control pieces, but not tokens the
        folder declares as plain added tokens (user-defined pieces such as <|im_start|>), as transformers 5 does."""
        special = set(self.all_special_tokens) - self._plain_added | self._special_added
        return {self._convert_token_to_id(token) for token in special} | set(self._special_in_vocab.values())

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
