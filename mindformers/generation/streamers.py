"""Streamers: generate() hands them the prompt, then each new token; they turn tokens into text as it firms up.

Text is released only up to the last complete piece: a decode that ends in U+FFFD (half of a multi-byte
character) or mid-word could still change, so it waits for the next token; the rest comes out at the end.
"""
import queue
import sys


class TextStreamer:
    """Prints the text of one prompt's continuation as it is generated (skip_prompt: do not print the prompt)."""

    def __init__(self, tokenizer, skip_prompt=False, file=None, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.file = file
        self.decode_kwargs = decode_kwargs
        self._tokens = []
        self._printed = 0
        self._prompt_pending = True

    def put(self, tokens):
        tokens = [int(t) for t in (tokens.tolist() if hasattr(tokens, "tolist") else tokens)]
        if self._prompt_pending:
            self._prompt_pending = False
            if self.skip_prompt:
                return
        self._tokens.extend(tokens)
        text = self.tokenizer.decode(self._tokens, **self.decode_kwargs)
        if text.endswith("\n"):
            ready = text
        elif text.endswith("\ufffd"):
            return
        else:
            ready = text[:text.rfind(" ") + 1]  # up to the last space: the word after it may still grow
        if len(ready) > self._printed:
            self.on_text(ready[self._printed:], stream_end=False)
            self._printed = len(ready)

    def end(self):
        text = self.tokenizer.decode(self._tokens, **self.decode_kwargs) if self._tokens else ""
        self.on_text(text[self._printed:], stream_end=True)
        self._tokens, self._printed, self._prompt_pending = [], 0, True

    def on_text(self, text, stream_end=False):
        print(text, end="\n" if stream_end else "", flush=True, file=self.file or sys.stdout)


class TextIteratorStreamer(TextStreamer):
    """Iterate over text pieces in one thread while generate() runs in another; `timeout` (seconds) bounds each
    wait (queue.Empty when it passes)."""

    _END = object()

    def __init__(self, tokenizer, skip_prompt=False, timeout=None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue = queue.Queue()
        self.timeout = timeout

    def on_text(self, text, stream_end=False):
        if text:
            self.queue.put(text)
        if stream_end:
            self.queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        value = self.queue.get(timeout=self.timeout)
        if value is self._END:
            raise StopIteration
        return value
