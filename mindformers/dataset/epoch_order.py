"""Which rows a rank reads in an epoch, and in what order: a pure function of (seed, epoch, rank).

Keeping this in numpy (instead of MindSpore's shuffle) makes the order reproducible across runs and
processes, so a resumed run can skip exactly the batches it has already trained on.
"""
import numpy as np


def epoch_permutation(num_rows, seed, epoch, shuffle=True):
    """All row indices in this epoch's order; a new permutation per epoch, the same one for the same seed."""
    if not shuffle:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    return rng.permutation(num_rows).astype(np.int64)


def rows_per_rank(num_rows, rank_size):
    """Every rank gets the same number of rows so data-parallel ranks step in lockstep; the remainder
    (< rank_size rows, different ones each epoch when shuffled) is left out."""
    return num_rows // rank_size


def rank_rows(num_rows, seed, epoch, shuffle, rank_id, rank_size):
    """Rank `rank_id` of `rank_size` takes every rank_size-th row of the epoch permutation: disjoint across
    ranks, together covering all rows but the remainder."""
    order = epoch_permutation(num_rows, seed, epoch, shuffle)
    return order[rank_id::rank_size][:rows_per_rank(num_rows, rank_size)]


def steps_in_epoch(num_rows, batch_size, drop_remainder):
    full, rest = divmod(num_rows, batch_size)
    return full + (1 if rest and not drop_remainder else 0)
