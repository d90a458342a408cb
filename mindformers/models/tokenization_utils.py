"""The tokenizer base class: the HF-compatible call/encode/decode/pad API shared by every tokenizer.

Subclasses only say how one piece of text becomes ids and back (the hooks at the bottom of
`MindFormerTokenizer`); special tokens, truncation, padding and tensor conversion live here once.
"""
import abc

import numpy as np

from mindformers.tools.errors import ConfigError

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
PADDING_CHOICES = (False, True, "longest", "max_length", "do_not_pad")
TRUNCATION_CHOICES = (False, True, "longest_first", "only_first", "only_second", "do_not_truncate")


class BatchEncoding(dict):
    """The dict a tokenizer call returns; keys are also attributes (`enc.input_ids`) as in HF."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def check_tokenizer_fits_model(tokenizer, vocab_size, where):
    """Every id the tokenizer can emit must index the model's embedding table."""
    n = len(tokenizer)
    if vocab_size < n:
        raise ConfigError(f"{where}: the tokenizer has {n} tokens but model.model_config.vocab_size is "
                          f"{vocab_size}; expected vocab_size >= {n}")


def _to_id_list(ids):
    """Accept what users pass to decode: an int, a list, a NumPy array or a MindSpore Tensor."""
    if hasattr(ids, "asnumpy"):
        ids = ids.asnumpy()
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    return [int(i) for i in ids]


class MindFormerTokenizer(abc.ABC):
    """Base of all tokenizers: HF-style `__call__`, encode, decode, padding and truncation."""

    model_input_names = ("input_ids", "attention_mask")

    def __init__(self, bos_token=None, eos_token=None, unk_token=None, pad_token=None,
                 additional_special_tokens=None, add_bos_token=True, add_eos_token=False,
                 padding_side="right", truncation_side="right", model_max_length=None, chat_template=None,
                 **kwargs):
        # Config files carry keys meant for other tokenizer implementations; they must not break the build.
        self.init_kwargs = dict(kwargs)
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.additional_special_tokens = list(additional_special_tokens or [])
        self.add_bos_token = bool(add_bos_token)
        self.add_eos_token = bool(add_eos_token)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = model_max_length
        # A Jinja template (or {name: template}) from the model folder's tokenizer_config.json / chat_template.jinja.
        self.chat_template = chat_template

    # ---- sides (validated so a typo fails where it is made) -------------------------------------------------
    @property
    def padding_side(self):
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side):
        if side not in ("right", "left"):
            raise ConfigError(f"padding_side: expected 'right' or 'left', got {side!r}")
        self._padding_side = side

    @property
    def truncation_side(self):
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side):
        if side not in ("right", "left"):
            raise ConfigError(f"truncation_side: expected 'right' or 'left', got {side!r}")
        self._truncation_side = side

    # ---- special tokens -------------------------------------------------------------------------------------
    def _token_id_or_none(self, token):
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def bos_token_id(self):
        return self._token_id_or_none(self.bos_token)

    @property
    def eos_token_id(self):
        return self._token_id_or_none(self.eos_token)

    @property
    def unk_token_id(self):
        return self._token_id_or_none(self.unk_token)

    @property
    def pad_token_id(self):
        return self._token_id_or_none(self.pad_token)

    def text_start_ids(self):
        """The ids that open a text of the model: its bos, when it has one (ChatGLM3: [gMASK] sop). Preprocessing,
        chat prompts and SQuAD rows start texts with these."""
        return [self.bos_token_id] if self.bos_token is not None else []

    @property
    def special_tokens_map(self):
        named = {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES if getattr(self, name) is not None}
        if self.additional_special_tokens:
            named["additional_special_tokens"] = list(self.additional_special_tokens)
        return named

    @property
    def all_special_tokens(self):
        tokens = [getattr(self, name) for name in SPECIAL_TOKEN_NAMES] + self.additional_special_tokens
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self):
        return [self.convert_tokens_to_ids(token) for token in self.all_special_tokens]

    def __len__(self):
        return self.vocab_size

    # ---- token <-> id -----------------------------------------------------------------------------------------
    def tokenize(self, text):
        """The tokens of `text`, without bos/eos."""
        return self.convert_ids_to_tokens(self._encode_text(text))

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self._convert_token_to_id(tokens)
        return [self._convert_token_to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        single = isinstance(ids, (int, np.integer))
        ids = _to_id_list(ids)
        if skip_special_tokens:
            special = self._skipped_ids()
            ids = [i for i in ids if i not in special]
        tokens = [self._convert_id_to_token(i) for i in ids]
        return tokens[0] if single and tokens else tokens

    def _skipped_ids(self):
        return set(self.all_special_ids)

    # ---- encoding ---------------------------------------------------------------------------------------------
    def build_inputs_with_special_tokens(self, ids, pair_ids=None):
        """bos/eos around each sequence, as Llama's templates do (pair: bos A eos bos B eos)."""
        def wrap(seq):
            return (([self.bos_token_id] if self.add_bos_token and self.bos_token is not None else []) + list(seq)
                    + ([self.eos_token_id] if self.add_eos_token and self.eos_token is not None else []))

        return wrap(ids) if pair_ids is None else wrap(ids) + wrap(pair_ids)

    def num_special_tokens_to_add(self, pair=False):
        return len(self.build_inputs_with_special_tokens([], [] if pair else None))

    def encode(self, text, text_pair=None, add_special_tokens=True, truncation=False, max_length=None, **kwargs):
        """The ids of one text (or pair), as a plain list."""
        return self._encode_one(text, text_pair, add_special_tokens, truncation, max_length)

    def _encode_one(self, text, text_pair, add_special_tokens, truncation, max_length):
        ids = self._encode_text(self._check_text(text))
        pair = None if text_pair is None else self._encode_text(self._check_text(text_pair))
        limit = self._truncation_limit(truncation, max_length)
        if limit is not None:
            room = limit - (self.num_special_tokens_to_add(pair is not None) if add_special_tokens else 0)
            ids, pair = self._truncate(ids, pair, max(room, 0), truncation)
        if add_special_tokens:
            return self.build_inputs_with_special_tokens(ids, pair)
        return ids + (pair or [])

    @staticmethod
    def _check_text(text):
        if not isinstance(text, str):
            raise TypeError(f"expected text as str, got {type(text).__name__}")
        return text

    def _truncation_limit(self, truncation, max_length):
        if truncation not in TRUNCATION_CHOICES:
            raise ValueError(f"truncation: expected one of {TRUNCATION_CHOICES}, got {truncation!r}")
        if truncation in (False, "do_not_truncate"):
            return None
        return max_length if max_length is not None else self.model_max_length

    def _truncate(self, ids, pair, room, strategy):
        """Cut the content (not the special tokens) down to `room` ids on `truncation_side`."""
        def cut(seq, n):
            if n <= 0:
                return seq
            return seq[:len(seq) - n] if self.truncation_side == "right" else seq[n:]

        excess = len(ids) + len(pair or []) - room
        if excess <= 0:
            return ids, pair
        if pair is None or strategy == "only_first":
            return cut(ids, excess), pair
        if strategy == "only_second":
            return ids, cut(pair, excess)
        # longest_first: trim the longer sequence first, one id at a time in effect.
        first, second = len(ids), len(pair)
        for _ in range(excess):
            if first > second:
                first -= 1
            else:
                second -= 1
        return cut(ids, len(ids) - first), cut(pair, len(pair) - second)

    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=False,
                 max_length=None, return_tensors=None, return_attention_mask=True, pad_to_multiple_of=None,
                 **kwargs):
        """Tokenize one text or a batch into {'input_ids', 'attention_mask'} like HF tokenizers do."""
        batched = isinstance(text, (list, tuple))
        texts = list(text) if batched else [text]
        if text_pair is None:
            pairs = [None] * len(texts)
        else:
            pairs = list(text_pair) if isinstance(text_pair, (list, tuple)) else [text_pair]
            if len(pairs) != len(texts):
                raise ValueError(f"text_pair: expected {len(texts)} pairs, got {len(pairs)}")
        rows = [self._encode_one(t, p, add_special_tokens, truncation, max_length) for t, p in zip(texts, pairs)]
        encoded = BatchEncoding(input_ids=rows)
        if return_attention_mask:
            encoded["attention_mask"] = [[1] * len(row) for row in rows]
        encoded = self.pad(encoded, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                           return_attention_mask=return_attention_mask)
        return self._finish(encoded, batched, return_tensors)

    def pad(self, encoded, padding=True, max_length=None, pad_to_multiple_of=None, return_attention_mask=True,
            return_tensors=None):
        """Pad a batch {'input_ids': [[...], ...]} on `padding_side` with pad_token_id (mask 0)."""
        if padding not in PADDING_CHOICES:
            raise ValueError(f"padding: expected one of {PADDING_CHOICES}, got {padding!r}")
        encoded = BatchEncoding(encoded)
        rows = [list(row) for row in encoded["input_ids"]]
        if padding in (False, "do_not_pad") or not rows:
            return encoded if return_tensors is None else self._finish(encoded, True, return_tensors)
        if padding == "max_length":
            target = max_length if max_length is not None else self.model_max_length
            if target is None:
                raise ValueError("padding='max_length' needs max_length")
        else:
            target = max(len(row) for row in rows)
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        if any(len(row) < target for row in rows) and self.pad_token_id is None:
            raise ConfigError("pad_token: padding needs a pad token but the tokenizer has none "
                              "(set processor.tokenizer.pad_token, e.g. to the unk or a reserved token)")
        masks = encoded.get("attention_mask") or [[1] * len(row) for row in rows]
        out_ids, out_mask = [], []
        for row, mask in zip(rows, masks):
            n = max(target - len(row), 0)
            if self.padding_side == "right":
                out_ids.append(row + [self.pad_token_id] * n)
                out_mask.append(list(mask) + [0] * n)
            else:
                out_ids.append([self.pad_token_id] * n + row)
                out_mask.append([0] * n + list(mask))
        encoded["input_ids"] = out_ids
        if return_attention_mask:
            encoded["attention_mask"] = out_mask
        return encoded if return_tensors is None else self._finish(encoded, True, return_tensors)

    @staticmethod
    def _finish(encoded, batched, return_tensors):
        """Lists for one text are flat; tensors are always [batch, length] as in HF."""
        if return_tensors is None:
            if not batched:
                for key in list(encoded):
                    encoded[key] = encoded[key][0]
            return encoded
        if return_tensors not in ("np", "ms"):
            raise ValueError(f"return_tensors: expected None, 'np' or 'ms', got {return_tensors!r}")
        for key in list(encoded):
            rows = encoded[key]
            if len({len(row) for row in rows}) > 1:
                raise ValueError("return_tensors needs rows of one length: pass padding=True or 'max_length'")
            array = np.array(rows, dtype=np.int64).reshape(len(rows), -1)
            if return_tensors == "ms":
                from mindspore import Tensor  # imported late so pure tokenization does not start MindSpore
                # int32 is what MindSpore's embedding gather and the Llama network take.
                array = Tensor(array.astype(np.int32))
            encoded[key] = array
        return encoded

    # ---- decoding ---------------------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens=False, **kwargs):
        # clean_up_tokenization_spaces (in kwargs or a folder's tokenizer_config.json) is not applied: it is meant
        # for WordPiece and would remove real spaces before punctuation, so transformers 5 ignores it for BPE too.
        return self._decode(_to_id_list(ids), skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens=False, **kwargs):
        if hasattr(sequences, "asnumpy"):
            sequences = sequences.asnumpy()
        return [self.decode(seq, skip_special_tokens=skip_special_tokens) for seq in sequences]

    # ---- chat templates ---------------------------------------------------------------------------------------
    def get_chat_template(self, chat_template=None):
        """The Jinja source to render: `chat_template` (a template, or the name of one of the folder's templates),
        else the tokenizer's own."""
        own = self.chat_template
        if isinstance(own, dict):
            if chat_template in own:
                return own[chat_template]
            if chat_template is None:
                if "default" not in own:
                    raise ConfigError(f"chat_template: the tokenizer has templates {sorted(own)} and none is named "
                                      "'default'; pass chat_template=<name>")
                return own["default"]
        if chat_template is not None:
            return chat_template
        if not own:
            raise ConfigError("chat_template: the tokenizer has none (no chat_template in its tokenizer_config.json "
                              "or chat_template.jinja); pass chat_template=... or use an fschat template")
        return own

    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt=False,
                            continue_final_message=False, tokenize=True, return_dict=False, tools=None,
                            documents=None, **kwargs):
        """The chat rendered with the model's Jinja template (text), or its ids as transformers gives them (the
        template writes bos and the other control tokens itself, so none are added here); return_dict gives
        {'input_ids', 'attention_mask'}. Extra keyword arguments are template variables."""
        from mindformers.models.chat_template import render_chat  # jinja2 is imported only by chat users
        variables = {**self.special_tokens_map, **kwargs}
        text = render_chat(self.get_chat_template(chat_template), conversation,
                           add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message,
                           tools=tools, documents=documents, **variables)
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        return BatchEncoding(input_ids=ids, attention_mask=[1] * len(ids)) if return_dict else ids

    def encode_continuation(self, text):
        """Ids of `text` as they come out when it follows other text (no start-of-text treatment such as
        sentencepiece's dummy prefix): encoded behind a special token whose id is then dropped."""
        for token in self.all_special_tokens:
            lead = self.convert_tokens_to_ids(token)
            ids = self.encode(token + text, add_special_tokens=False)
            if ids and ids[0] == lead:
                return ids[1:]
        return self.encode(text, add_special_tokens=False)

    # ---- hooks a tokenizer implements -----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def vocab_size(self):
        """How many ids the vocabulary has."""

    @abc.abstractmethod
    def get_vocab(self):
        """Token -> id for the whole vocabulary."""

    @abc.abstractmethod
    def _encode_text(self, text):
        """Ids of `text` without bos/eos; special tokens written in the text map to their ids."""

    @abc.abstractmethod
    def _convert_token_to_id(self, token):
        """The id of one token (the unknown token's id for tokens outside the vocabulary)."""

    @abc.abstractmethod
    def _convert_id_to_token(self, index):
        """The token of one id."""

    @abc.abstractmethod
    def _decode(self, ids, skip_special_tokens):
        """Text of `ids`, leaving out special tokens when asked."""
