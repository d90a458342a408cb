"""Beam search bookkeeping on the host (numpy): which beams live on, which hypotheses are finished.

Semantics follow the usual (HF transformers) beam search, so its results can be checked against theirs: each step
keeps the best 2*num_beams (more with several eos ids) continuations over all beams of a prompt; a continuation that
ends (eos, stop string or length limit) and ranks among the first num_beams becomes a finished hypothesis scored
sum_logprobs / generated_length ** length_penalty; the best num_beams others live on. A prompt is done once no
running beam can beat its worst finished hypothesis (judged at the current length).
"""
import numpy as np

NEG = -1.0e9


class BeamSearch:
    def __init__(self, batch, num_beams, num_eos, length_penalty=1.0, early_stopping=False):
        self.batch, self.num_beams = batch, num_beams
        self.keep = max(2, 1 + num_eos) * num_beams
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.scores = np.zeros((batch, num_beams), np.float32)
        self.scores[:, 1:] = NEG  # all beams start equal: only the first may expand at step one
        self.tokens = [[[] for _ in range(num_beams)] for _ in range(batch)]
        self.finished = [[] for _ in range(batch)]  # (score, tokens), best first, at most num_beams
        self.improvable = np.ones(batch, bool)
        self.all_ended = False

    def step(self, log_probs, ends):
        """log_probs (batch*num_beams, vocab); ends(item, tokens) says whether a continuation stops there.
        Returns the source row (batch*num_beams,) each new beam continues from, and its new token."""
        vocab = log_probs.shape[-1]
        totals = log_probs.reshape(self.batch, self.num_beams, vocab) + self.scores[:, :, None]
        totals = totals.reshape(self.batch, -1)
        sources = np.zeros((self.batch, self.num_beams), np.int64)
        new_tokens = np.zeros((self.batch, self.num_beams), np.int64)
        any_continues = False
        for item in range(self.batch):
            top = np.argpartition(-totals[item], self.keep - 1)[:self.keep]
            top = top[np.argsort(-totals[item][top], kind="stable")]
            beams, tokens, scores = top // vocab, top % vocab, totals[item][top]
            candidates = [self.tokens[item][b] + [int(t)] for b, t in zip(beams, tokens)]
            ended = np.array([ends(item, c) for c in candidates])
            any_continues |= not ended.all()
            self._finish(item, candidates, scores, ended)
            live = np.argsort(-(scores + ended * NEG), kind="stable")[:self.num_beams]
            sources[item] = item * self.num_beams + beams[live]
            new_tokens[item] = tokens[live]
            self.scores[item] = scores[live] + ended[live] * NEG
            self.tokens[item] = [candidates[i] for i in live]
            self._update_improvable(item, len(candidates[0]))
        self.all_ended = not any_continues
        return sources.reshape(-1), new_tokens.reshape(-1)

    def _finish(self, item, candidates, scores, ended):
        if not self.improvable[item] or (self.early_stopping and len(self.finished[item]) == self.num_beams):
            return
        for rank in range(self.num_beams):
            if ended[rank]:
                score = float(scores[rank]) / (len(candidates[rank]) ** self.length_penalty)
                self.finished[item].append((score, candidates[rank]))
        self.finished[item].sort(key=lambda pair: -pair[0])
        del self.finished[item][self.num_beams:]

    def _update_improvable(self, item, generated):
        if len(self.finished[item]) < self.num_beams:
            return
        best_running = self.scores[item][0] / (generated ** self.length_penalty)
        self.improvable[item] &= bool(best_running > self.finished[item][-1][0])

    @property
    def done(self):
        full = all(len(f) == self.num_beams for f in self.finished)
        return self.all_ended or not self.improvable.any() or (self.early_stopping and full)

    def best(self, item):
        """The generated tokens of the best finished hypothesis (the best running beam if none finished)."""
        return self.finished[item][0][1] if self.finished[item] else self.tokens[item][0]
