"""ChatGLM3Tokenizer: ChatGLM3's sentencepiece model with GLM's special tokens, giving the ids of THUDM's
ChatGLMTokenizer (remote code; transformers has no class for it).

Where it differs from the Llama-style sentencepiece tokenizers:
  * nine special tokens follow the model's pieces, in GLM's order: [MASK] [gMASK] [sMASK] sop eop <|system|>
    <|user|> <|assistant|> <|observation|> (ids 64789 .. 64797 for ChatGLM3-6B's 64789 pieces);
  * a text starts with the prefix [gMASK] sop, not a bos token (text_start_ids; add_bos_token switches it, as bos
    for the other families); a chat turn is <|role|> "\\n" content, and the model ends its reply with <|user|> or
    <|observation|> (fschat's `chatglm3` template, or the folder's Jinja one);
  * each piece of text between special tokens is encoded by sentencepiece as the model was trained (its
    normalizer and dummy prefix each time), as THUDM's SPTokenizer calls it, and decoded piece by piece likewise;
  * eos is the model's </s>, padding and unknown its <unk>, padding on the left (what its model expects);
  * special tokens written in the text become their ids, as THUDM's tokenizer does for chat templates: </s> and
    <unk>, the bracketed and role tokens anywhere, `sop` only right after [gMASK] or [sMASK] (where GLM's prompts
    write it; elsewhere it is a common piece of words: THUDM's matches it there too), `eop` never (the model
    writes it); the model's other control pieces (<s>) are text, as there.
"""
import re

from mindformers.models.tokenization_sentencepiece import SentencePieceTokenizer, proto_special_tokens
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

GLM_SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>",
                      "<|observation|>")
PROMPT_PREFIX = ("[gMASK]", "sop")
WORD_LIKE = ("sop", "eop")


@MindFormerRegister.register(MindFormerModuleType.TOKENIZER)
class ChatGLM3Tokenizer(SentencePieceTokenizer):
    """ChatGLM3's tokenizer over its tokenizer.model (or the model folder holding it)."""

    def __init__(self, vocab_file, **kwargs):
        extra = list(kwargs.pop("additional_special_tokens", None) or [])
        specials = list(GLM_SPECIAL_TOKENS) + [token for token in extra if token not in GLM_SPECIAL_TOKENS]
        super().__init__(vocab_file, additional_special_tokens=specials, **kwargs)

    @staticmethod
    def default_settings(proto):
        named = proto_special_tokens(proto)
        return dict(SentencePieceTokenizer.default_settings(proto), bos_token=None, eos_token=named["eos_token"],
                    unk_token=named["unk_token"], pad_token=named["unk_token"], padding_side="left")

    def text_start_ids(self):
        return [self.convert_tokens_to_ids(token) for token in PROMPT_PREFIX]

    def _special_token_regex(self, tokens):
        """Only the tokenizer's special tokens count in text (THUDM's matches its registered ones, not every control
        piece of the model: "<s>" is text there), `sop` only after a mask token, `eop` nowhere."""
        anywhere = sorted(set(self.all_special_tokens) - set(WORD_LIKE), key=len, reverse=True)
        after_mask = [f"(?<={re.escape(mask)})sop" for mask in ("[gMASK]", "[sMASK]")]
        return re.compile("(" + "|".join([re.escape(token) for token in anywhere] + after_mask) + ")")

    def _encode_plain(self, text, at_start):
        return self.sp_model.encode(text)

    def build_inputs_with_special_tokens(self, ids, pair_ids=None):
        """[gMASK] sop (unless add_bos_token is off), the text, and a pair followed by eos, as THUDM's tokenizer
        builds them."""
        prefix = self.text_start_ids() if self.add_bos_token else []
        return prefix + list(ids) + ([] if pair_ids is None else list(pair_ids) + [self.eos_token_id])

    def _decode(self, ids, skip_special_tokens):
        """As THUDM's decodes: skipped tokens dropped first, then sentencepiece decodes the runs of pieces between
        the special tokens that remain (each run losing its dummy-prefix space)."""
        skipped = self._skipped_ids() if skip_special_tokens else set()
        text, pieces = [], []
        for index in ids:
            if index in skipped:
                continue
            if index in self._added_by_id:
                text += [self.sp_model.decode(pieces), self._added_by_id[index]]
                pieces = []
            else:
                pieces.append(index)
        text.append(self.sp_model.decode(pieces))
        return "".join(text)
