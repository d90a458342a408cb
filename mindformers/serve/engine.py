"""Dynamic batching of generation requests.

Requests wait in a queue. One engine thread takes the first and gathers company for it, then continues up to
`max_batch_size` of them in one `generate_rows` call: one batched step per new token for all of them, each request
with its own sampling options, stop strings and budget. A batch is filled up to a power of two with finished rows,
so graph mode compiles a few batch shapes rather than one per count. Each request's tokens are handed back through
its own queue as they come, so replies stream while the batch runs. Requests that arrive during a batch wait for
the next one.

Gathering: clients whose replies came in one batch tend to send their next requests together, but those arrive
spread over the time the API server and the controller take to pass them on. So the engine waits (at most
`max_wait_seconds` after the first) until as many requests as the last batch held have come, and after that only
as long as more keep coming within `gather_seconds` of each other (a burst): a lone client waits gather_seconds.
"""
import logging
import queue
import threading
import time

import numpy as np

from mindformers.generation.row_decoding import DecodingRow

logger = logging.getLogger("mindformers")

_END = object()


class GenerationRequest:
    """One prompt to continue. Iterate `tokens()` (in another thread) for its tokens as they come; `row` holds the
    result (row.generated, row.finish_reason) once they are all out."""

    def __init__(self, prompt_ids, budget, config):
        self.row = DecodingRow(prompt_ids, budget, config, np.random.default_rng(config.seed), self._arrived)
        self._events = queue.Queue()
        self.error = None

    def _arrived(self, token):
        self._events.put(token)

    def finish(self, error=None):
        self.error = error
        self._events.put(_END)

    def cancel(self):
        """The client has gone: the row stops at the next step (or is skipped if it has not started)."""
        self.row.cancel()

    def tokens(self):
        while True:
            event = self._events.get()
            if event is _END:
                if self.error is not None:
                    raise RuntimeError(f"generation failed: {self.error}") from self.error
                return
            yield event


def batch_buckets(max_batch_size):
    """Batch sizes a batch is filled up to: powers of two below max_batch_size, and max_batch_size."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


class BatchingEngine:
    def __init__(self, model, tokenizer, max_batch_size=8, gather_seconds=0.02, max_wait_seconds=0.25):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size = max_batch_size
        self.buckets = batch_buckets(max_batch_size)
        self.gather_seconds = gather_seconds
        self.max_wait_seconds = max_wait_seconds
        self.expected = 1  # requests the last batch held: about as many are likely on their way back
        self.waiting = queue.Queue()
        self.batch_sizes = []  # requests per batch run so far (the benchmark and tests read it)
        self.running = []
        self._thread = threading.Thread(target=self._serve, name="generation-engine", daemon=True)
        self._thread.start()

    def submit(self, request):
        self.waiting.put(request)
        return request

    def stop(self):
        """Cancel the running batch (it ends at its next step), refuse what waits, end the thread."""
        for request in self.running:
            request.cancel()
        self.waiting.put(None)
        self._thread.join(timeout=60)

    def _next_batch(self):
        """The requests to run now (None: stop): the first to arrive and the company gathered for it."""
        batch = [self.waiting.get()]
        deadline = time.monotonic() + self.max_wait_seconds
        while batch[-1] is not None and len(batch) < self.max_batch_size:
            left = deadline - time.monotonic()
            wait = left if len(batch) < self.expected else min(left, self.gather_seconds)
            try:
                batch.append(self.waiting.get(timeout=wait) if wait > 0 else self.waiting.get_nowait())
            except queue.Empty:
                break
        if batch[-1] is None:
            for request in batch[:-1]:
                request.finish(RuntimeError("the server is stopping"))
            return None
        return batch

    def _serve(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [request for request in batch if not request.row.done]  # not cancelled while waiting
            for request in batch:
                if request.row.done:
                    request.finish()
            if live:
                self._run(live)

    def _run(self, batch):
        rows = [request.row for request in batch]
        size = next(b for b in self.buckets if b >= len(rows))
        fillers = [DecodingRow(rows[0].prompt, 1, rows[0].config) for _ in range(size - len(rows))]
        for filler in fillers:
            filler.cancel()  # done from the start: the step computes it, nothing reads it
        start = time.perf_counter()
        self.running = batch
        try:
            self.model.generate_rows(rows + fillers, self.tokenizer)
        except Exception as error:  # pylint: disable=broad-except  (the server outlives one failed batch)
            logger.exception("a batch of %d request(s) failed", len(batch))
            for request in batch:
                request.finish(error)
            return
        finally:
            self.running = []
        self.batch_sizes.append(len(batch))
        self.expected = len(batch)
        logger.info("batch of %d request(s) (as %d rows): %d tokens in %.2f s", len(batch), size,
                    sum(len(row.generated) for row in rows), time.perf_counter() - start)
        for request in batch:
            request.finish()
