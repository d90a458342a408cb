"""The text of one reply as its tokens arrive, in the form FastChat's API server streams: the whole text so far,
growing only at its end.

The text is what the tokens add to the prompt's text (decoded after the prompt's last few tokens, so a leading
space a tokenizer folds into the first token survives, as in predict), without eos and the template's stop ids.
It is released only once it can no longer change: not while it ends in half a character (U+FFFD), not while the
last token is a byte piece (sentencepiece's byte fallback, `<0x01>`: a byte that decodes alone may turn into U+FFFD
once the next bytes join its run), not the beginning of a stop string, and nothing from a stop string on (OpenAI's
`stop`: the reply ends before it).
A chat reply drops the whitespace its template puts between the assistant's role tag and the reply.
"""
import re

from mindformers.trainer.predict import continuation

CONTEXT_TOKENS = 8  # prompt tokens decoded with the reply: enough for any tokenizer's joining of pieces
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # byte fallback's pieces (sentencepiece, HF llama-style tokenizers)


def cut_at_stop(text, stops):
    """`text` up to the earliest stop string in it, and whether one was found."""
    cut = min((position for position in (text.find(stop) for stop in stops) if position != -1), default=-1)
    return (text, False) if cut == -1 else (text[:cut], True)


def held_back(text, stops):
    """How many characters at the end of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class ReplyText:
    def __init__(self, tokenizer, prompt_ids, stops=(), skip_ids=(), chat=False):
        self.tokenizer = tokenizer
        self.context = list(prompt_ids[-CONTEXT_TOKENS:])
        self.stops = [stop for stop in stops if stop]
        self.skip_ids = frozenset(skip_ids)  # eos and the template's stop ids: they end the reply, they are not text
        self.chat = chat
        self.tokens = []
        self.released = ""

    def keep(self, token):
        """Take a token without working out the text (a reply that is not streamed)."""
        self.tokens.append(token)

    def add(self, token):
        """Take a token; returns the text released so far when it grew, else None."""
        self.tokens.append(token)
        if BYTE_PIECE.fullmatch(str(self.tokenizer.convert_ids_to_tokens(int(token)))):
            return None  # its run of bytes may still decode differently
        text, stopped = cut_at_stop(self._decoded(), self.stops)
        if not stopped:
            text = text.rstrip("\ufffd")
            text = text[:len(text) - held_back(text, self.stops)]
        if len(text) > len(self.released) and text.startswith(self.released):
            self.released = text
            return text
        return None

    def final(self):
        """The whole reply, up to (not including) a stop string."""
        self.released = cut_at_stop(self._decoded(), self.stops)[0]
        return self.released

    def _decoded(self):
        kept = [t for t in self.tokens if t not in self.skip_ids]
        text = continuation(self.tokenizer, self.context, self.context + kept)
        return text.lstrip() if self.chat else text
