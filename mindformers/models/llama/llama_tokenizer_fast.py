"""LlamaTokenizerFast: an HF tokenizer.json (Llama 3 byte-level BPE, or a converted Llama 2) via `tokenizers`.

Ids are what transformers' PreTrainedTokenizerFast / AutoTokenizer give on the same file: the text
goes through the file's own normalizer, pre-tokenizer and model; bos/eos follow the file's
post-processor unless add_bos_token / add_eos_token say otherwise.
"""
import json

from mindformers.models.llama.llama_tokenizer import resolve_tokenizer_file
from mindformers.models.tokenization_utils import MindFormerTokenizer
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

BOS_CANDIDATES = ("<|begin_of_text|>", "<s>")
EOS_CANDIDATES = ("<|end_of_text|>", "</s>")


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


def template_special_tokens(tokenizer):
    """(bos, eos) the file's TemplateProcessing puts around a single sequence, or None for each."""
    processor = json.loads(tokenizer.to_str()).get("post_processor") or {}
    candidates = [processor] + list(processor.get("processors") or [])
    for item in candidates:
        if item.get("type") == "TemplateProcessing":
            single = item.get("single") or []
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
            return first, last
    return None, None


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class LlamaTokenizerFast(MindFormerTokenizer):
    """Llama tokenizer over an HF tokenizer.json. `vocab_file` is accepted for the same file (the CLI's
    --vocab_file fills that key); a directory holding tokenizer.json works too."""

    def __init__(self, tokenizer_file=None, vocab_file=None, bos_token=None, eos_token=None, unk_token=None,
                 pad_token=None, add_bos_token=None, add_eos_token=None, padding_side="right",
                 additional_special_tokens=None, **kwargs):
        self.tokenizer_file = resolve_tokenizer_file(tokenizer_file or vocab_file, ("tokenizer.json",), "tokenizer")
        self.vocab_file = self.tokenizer_file
        self._tokenizer = load_tokenizer_json(self.tokenizer_file)
        template_bos, template_eos = template_special_tokens(self._tokenizer)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        bos_token = bos_token or template_bos or next((t for t in BOS_CANDIDATES if t in vocab), None)
        eos_token = eos_token or template_eos or next((t for t in EOS_CANDIDATES if t in vocab), None)
        if unk_token is None and "<unk>" in vocab:
            unk_token = "<unk>"
        # Unset flags mean "as the file does", which is what HF's fast tokenizer does with it.
        add_bos_token = template_bos is not None if add_bos_token is None else add_bos_token
        add_eos_token = template_eos is not None if add_eos_token is None else add_eos_token
        super().__init__(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                         additional_special_tokens=additional_special_tokens, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, padding_side=padding_side, **kwargs)
        missing = [t for t in self.all_special_tokens if t not in vocab]
        if missing:  # like HF: a special token the file lacks becomes a new id after the vocab
            self._tokenizer.add_special_tokens(missing)

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
