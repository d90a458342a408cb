"""CodeLlamaTokenizer: Llama's sentencepiece tokenizer plus CodeLlama's fill-in-the-middle prompt, with the ids
transformers' CodeLlamaTokenizer gives.

Infilling asks for the code between a prefix and a suffix. The prompt is
    [bos] ▁<PRE> {" " + prefix} ▁<SUF> {suffix} ▁<MID>          (suffix_first: [bos] ▁<PRE> ▁<SUF> {suffix} ▁<MID> {" " + prefix})
and the model writes the middle, then ▁<EOT>. Pass the suffix as `suffix=`, or write <FILL_ME> where the middle
goes: tokenizer("def f(x):\n    <FILL_ME>\n    return y"). The prefix and suffix are encoded as continuations
(no dummy prefix of their own: the prefix's leading space is the one written above).
"""
from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
from mindformers.models.tokenization_utils import BatchEncoding
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

INFILL_TOKENS = ("prefix_token", "middle_token", "suffix_token", "eot_token", "fill_token")


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class CodeLlamaTokenizer(LlamaTokenizer):
    """CodeLlama tokenizer over its sentencepiece model (or the model folder holding tokenizer.model)."""

    def __init__(self, vocab_file, prefix_token="\u2581<PRE>", middle_token="\u2581<MID>",
                 suffix_token="\u2581<SUF>", eot_token="\u2581<EOT>", fill_token="<FILL_ME>", **kwargs):
        self.prefix_token, self.middle_token, self.suffix_token = prefix_token, middle_token, suffix_token
        self.eot_token, self.fill_token = eot_token, fill_token
        extra = list(kwargs.pop("additional_special_tokens", None) or [])
        extra += [token for token in (prefix_token, middle_token, suffix_token, eot_token, fill_token)
                  if token is not None and token not in extra]
        super().__init__(vocab_file, additional_special_tokens=extra, **kwargs)

    def _token_id(self, name):
        token = getattr(self, name)
        return None if token is None else self.convert_tokens_to_ids(token)

    prefix_id = property(lambda self: self._token_id("prefix_token"))
    middle_id = property(lambda self: self._token_id("middle_token"))
    suffix_id = property(lambda self: self._token_id("suffix_token"))
    eot_id = property(lambda self: self._token_id("eot_token"))

    def split_fill(self, text, suffix):
        """(prefix, suffix): `suffix` as given, else the text split at its <FILL_ME>, else (text, None)."""
        if suffix is None and self.fill_token and isinstance(text, str) and self.fill_token in text:
            if text.count(self.fill_token) > 1:
                raise ConfigError(f"infilling: expected one {self.fill_token} in the text, found "
                                  f"{text.count(self.fill_token)}")
            text, suffix = text.split(self.fill_token)
        return text, (suffix or None)

    def infill_ids(self, prefix, suffix, suffix_first=False, add_special_tokens=True):
        """The fill-in-the-middle prompt's ids (see the module docstring)."""
        if None in (self.prefix_id, self.middle_id, self.suffix_id):
            raise ConfigError("infilling: this tokenizer has no prefix/middle/suffix tokens")
        before = self.encode_continuation(" " + prefix)
        after = self.encode_continuation(suffix)
        bos = [self.bos_token_id] if add_special_tokens and self.add_bos_token and self.bos_token else []
        eos = [self.eos_token_id] if add_special_tokens and self.add_eos_token and self.eos_token else []
        if suffix_first:
            return bos + [self.prefix_id, self.suffix_id] + after + [self.middle_id] + before + eos
        return bos + [self.prefix_id] + before + [self.suffix_id] + after + [self.middle_id] + eos

    def encode(self, text, text_pair=None, add_special_tokens=True, suffix=None, suffix_first=False, **kwargs):
        prefix, suffix = self.split_fill(text, suffix)
        if suffix is None:
            return super().encode(prefix, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)
        return self.infill_ids(prefix, suffix, suffix_first, add_special_tokens)

    def __call__(self, text, text_pair=None, suffix=None, suffix_first=False, add_special_tokens=True, **kwargs):
        texts = list(text) if isinstance(text, (list, tuple)) else [text]
        suffixes = list(suffix) if isinstance(suffix, (list, tuple)) else [suffix] * len(texts)
        split = [self.split_fill(t, s) for t, s in zip(texts, suffixes)]
        if all(s is None for _, s in split):
            return super().__call__(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)
        rows = [self.infill_ids(p, s, suffix_first, add_special_tokens) if s is not None
                else super(CodeLlamaTokenizer, self).encode(p, add_special_tokens=add_special_tokens)
                for p, s in split]
        encoded = BatchEncoding(input_ids=rows, attention_mask=[[1] * len(row) for row in rows])
        encoded = self.pad(encoded, padding=kwargs.get("padding", False), max_length=kwargs.get("max_length"))
        return self._finish(encoded, isinstance(text, (list, tuple)), kwargs.get("return_tensors"))
