"""PreTrainedTokenizerFast: an HF tokenizer.json (byte-level BPE of Llama 3 / Qwen / Aquila2, or a converted
sentencepiece model) through the `tokenizers` library, with the ids transformers gives on the same folder.

The text goes through the file's own normalizer, pre-tokenizer and model. Special tokens, add_bos_token /
add_eos_token, added tokens and the chat template come from the arguments, else from the model folder's files
(tokenizer_config.json, special_tokens_map.json, chat_template.jinja, generation_config.json; see tokenizer_folder),
else from the file itself: bos/eos are what its post-processor puts around a text, and are added when it does.
"""
import json
import os

from mindformers.models.tokenization_utils import MindFormerTokenizer
from mindformers.models.tokenizer_folder import (UNSET, folder_settings, merge_settings, resolve_tokenizer_file,
                                                 template_special_tokens)
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>")
EOS_CANDIDATES = ("<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>")
UNK_CANDIDATES = ("<unk>",)


def load_tokenizer_json(path):
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # the Rust loader raises a plain Exception for bad JSON or schema
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = "; a sentencepiece .model goes with LlamaTokenizer" if path.endswith(".model") else ""
        raise DataError(f"{path}: not a valid tokenizer.json ({reason}){hint}") from None
    # Truncation/padding saved in the file would fight ours; HF's fast tokenizers also clear them.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def post_processor_specials(tokenizer):
    """(bos, eos) the backend's post-processor puts around a single text (None for each it does not)."""
    processor = tokenizer.post_processor
    if processor is None:
        return None, None
    return template_special_tokens({"post_processor": json.loads(processor.__getstate__())})


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class PreTrainedTokenizerFast(MindFormerTokenizer):
    """A tokenizer over an HF tokenizer.json. `tokenizer_file` (or `vocab_file`, which the CLI's --vocab_file
    fills) is the file or the model folder holding it."""

    tokenizer_file_names = ("tokenizer.json",)

    def __init__(self, tokenizer_file=None, vocab_file=None, bos_token=UNSET, eos_token=UNSET, unk_token=UNSET,
                 pad_token=UNSET, add_bos_token=UNSET, add_eos_token=UNSET, padding_side=UNSET,
                 additional_special_tokens=UNSET, chat_template=UNSET, **kwargs):
        self._tokenizer, self.tokenizer_file = self._load_backend(tokenizer_file or vocab_file, kwargs)
        self.vocab_file = self.tokenizer_file
        found = folder_settings(os.path.dirname(os.path.abspath(self.tokenizer_file)))
        added = found.pop("added_tokens", {})
        self._add_declared_tokens(added)
        defaults = self.default_settings()
        for name, index in found.pop("generation_ids", {}).items():
            token = self._tokenizer.id_to_token(index)
            if token is not None:
                defaults[name] = token
        explicit = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                        add_bos_token=add_bos_token, add_eos_token=add_eos_token, padding_side=padding_side,
                        additional_special_tokens=additional_special_tokens, chat_template=chat_template, **kwargs)
        settings = merge_settings(explicit, found, defaults)
        for key in ("legacy", "add_prefix_space"):  # the file's own pipeline already says
            settings.pop(key, None)
        super().__init__(**settings)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        missing = [t for t in self.all_special_tokens if t not in vocab]
        if missing:  # like HF: a special token the file lacks becomes a new id after the vocab
            self._tokenizer.add_special_tokens(missing)

    def _load_backend(self, path, kwargs):
        """(tokenizers.Tokenizer, the file it came from); a subclass may build it from other files."""
        path = resolve_tokenizer_file(path, self.tokenizer_file_names, "tokenizer")
        return load_tokenizer_json(path), path

    def default_settings(self):
        """What applies when neither the arguments nor the folder's files say: what the file itself implies."""
        template_bos, template_eos = post_processor_specials(self._tokenizer)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        return dict(bos_token=template_bos or next((t for t in BOS_CANDIDATES if t in vocab), None),
                    eos_token=template_eos or next((t for t in EOS_CANDIDATES if t in vocab), None),
                    unk_token=next((t for t in UNK_CANDIDATES if t in vocab), None), pad_token=None,
                    add_bos_token=template_bos is not None, add_eos_token=template_eos is not None,
                    padding_side="right")

    def _add_declared_tokens(self, added):
        """tokenizer_config.json's added_tokens_decoder entries the file lacks, at the ids it declares."""
        from tokenizers import AddedToken

        for index, (content, special) in sorted(added.items()):
            known = self._tokenizer.token_to_id(content) if content else None
            if known is not None and known != index:
                raise DataError(f"{self.tokenizer_file}: added token {content!r} is declared with id {index} but "
                                f"the vocabulary has it as {known}")
            if not content or known is not None:
                continue
            if index != self._tokenizer.get_vocab_size(with_added_tokens=True):
                raise DataError(f"{self.tokenizer_file}: added token {content!r} is declared with id {index} but "
                                f"the next free id is {self._tokenizer.get_vocab_size(with_added_tokens=True)}")
            token = AddedToken(content, special=special, normalized=not special)
            (self._tokenizer.add_special_tokens if special else self._tokenizer.add_tokens)([token])

    @property
    def backend_tokenizer(self):
        return self._tokenizer

    @property
    def vocab_size(self):
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self):
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self):
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def _convert_token_to_id(self, token):
        index = self._tokenizer.token_to_id(token)
        if index is None and self.unk_token is not None and token != self.unk_token:
            return self.unk_token_id
        return index

    def _convert_id_to_token(self, index):
        token = self._tokenizer.id_to_token(index)
        if token is None:
            raise IndexError(f"token id {index} is out of range for {self.tokenizer_file} ({len(self)} tokens)")
        return token

    def _encode_text(self, text):
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _skipped_ids(self):
        added = self._tokenizer.get_added_tokens_decoder()
        return set(self.all_special_ids) | {i for i, token in added.items() if token.special}

    def _decode(self, ids, skip_special_tokens):
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_string(self, tokens):
        return self._tokenizer.decoder.decode(tokens) if self._tokenizer.decoder else "".join(tokens)
