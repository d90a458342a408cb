"""Documents -> token arrays (bos + text + eos), in order, optionally across a pool of worker processes."""
import collections
import multiprocessing
import os

import numpy as np

from mindformers.tools.errors import DataError, MindFormerUserError

CHUNK_DOCUMENTS = 64          # documents per task: enough to amortise the inter-process hop
CHUNK_CHARACTERS = 1 << 18    # ...but a task never carries much more than 256K characters


def load_tokenizer(model_file, flag="--model_file", eos_token=None):
    """The tokenizer of a sentencepiece .model, an HF tokenizer.json or a HF model folder (whose tokenizer_config.json
    etc. give the special tokens). `eos_token` names the end-of-document token when the files name none (or
    another one, e.g. <|endoftext|> of a chat model whose eos is <|im_end|>)."""
    from mindformers.models.auto_tokenizer import tokenizer_class_for, tokenizer_from_path

    if not os.path.exists(model_file):
        raise DataError(f"{flag}: file not found: {model_file} (expected a sentencepiece tokenizer.model, an HF "
                        "tokenizer.json or the model folder holding them)")
    try:
        kind = tokenizer_class_for(model_file)[0]
        tokenizer = tokenizer_from_path(model_file)
    except MindFormerUserError as error:
        raise DataError(f"{flag}: {error}") from None
    except Exception as error:  # sentencepiece / tokenizers raise plain RuntimeErrors on a bad file
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise DataError(f"{flag}: cannot load {model_file} as a {kind} ({reason})") from None
    if eos_token is not None:
        if eos_token not in tokenizer.get_vocab():
            raise DataError(f"--eos_token: {eos_token!r} is not a token of {model_file}")
        tokenizer.eos_token = eos_token
    if tokenizer.eos_token_id is None:
        raise DataError(f"{flag}: {model_file} defines no eos token (needed to mark where documents end); name one "
                        "with --eos_token, e.g. --eos_token '<|endoftext|>'")
    return tokenizer


def document_prefix(tokenizer, add_bos):
    """The ids documents start with: bos (the tokenizer's text_start_ids: ChatGLM3's [gMASK] sop) or nothing, by
    --add_bos / --no-add_bos, else by what the tokenizer does (add_bos_token: Llama, Gemma and ChatGLM3 add it, Qwen
    and Yi do not)."""
    wanted = tokenizer.add_bos_token if add_bos is None else add_bos
    return tokenizer.text_start_ids() if wanted else []


class DocumentEncoder:
    """Turns a list of documents into one int32 array: [bos] doc [eos] for each document, concatenated."""

    def __init__(self, model_file, add_bos=None, eos_token=None):
        self.tokenizer = load_tokenizer(model_file, eos_token=eos_token)
        self.prefix = document_prefix(self.tokenizer, add_bos)
        self.suffix = [self.tokenizer.eos_token_id]

    def encode(self, documents):
        ids = []
        for text in documents:
            ids.extend(self.prefix)
            ids.extend(self.tokenizer.encode(text, add_special_tokens=False))
            ids.extend(self.suffix)
        return np.asarray(ids, dtype=np.int32), len(documents)


_WORKER_ENCODER = None


def _init_worker(model_file, add_bos, eos_token):
    global _WORKER_ENCODER
    _WORKER_ENCODER = DocumentEncoder(model_file, add_bos, eos_token)


def _encode_in_worker(documents):
    return _WORKER_ENCODER.encode(documents)


def chunked(documents):
    chunk, size = [], 0
    for text in documents:
        chunk.append(text)
        size += len(text)
        if len(chunk) >= CHUNK_DOCUMENTS or size >= CHUNK_CHARACTERS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def encode_documents(documents, model_file, add_bos=None, workers=1, eos_token=None):
    """Yield (tokens, document_count) per chunk of `documents`, in input order.

    With workers > 1 the chunks go to a process pool; at most a few chunks per worker are in flight, so
    memory stays flat however large the input (Pool.imap would read the whole input ahead).
    """
    if workers <= 1:
        encoder = DocumentEncoder(model_file, add_bos, eos_token)
        for chunk in chunked(documents):
            yield encoder.encode(chunk)
        return
    # fork: workers start in milliseconds and inherit the loaded modules (spawn would re-import MindSpore)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the pool is the parallelism
    with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker,
                                                   initargs=(model_file, add_bos, eos_token)) as pool:
        pending = collections.deque()
        for chunk in chunked(documents):
            pending.append(pool.apply_async(_encode_in_worker, (chunk,)))
            if len(pending) >= 4 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
