"""Pairs of rows that share a bucket key, without Python loops over rows."""

from __future__ import annotations

import numpy as np

#: above this size a bucket pairs every member with its first member only (a star, not a
#: clique): enough for keep-first clustering, and a degenerate bucket cannot blow up
MAX_CLIQUE = 64


def pairs_in_buckets(bucket_keys: np.ndarray) -> np.ndarray:
    """(k, 2) pairs (i, j), i < j, of rows with equal keys.

    Buckets are handled per size, all buckets of one size in one array operation, so the
    Python loop runs over distinct sizes (at most MAX_CLIQUE), never over buckets."""
    order = np.argsort(bucket_keys, kind="stable")
    sorted_keys = bucket_keys[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    sizes = np.diff(boundaries)
    starts = boundaries[:-1]
    pairs = [np.zeros((0, 2), dtype=np.int64)]
    for size in np.unique(sizes[(sizes > 1) & (sizes <= MAX_CLIQUE)]).tolist():
        group_starts = starts[sizes == size]
        members = np.sort(order[group_starts[:, None] + np.arange(size)], axis=1)
        i, j = np.triu_indices(size, k=1)
        pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], axis=1))
    for start, size in zip(starts[sizes > MAX_CLIQUE], sizes[sizes > MAX_CLIQUE], strict=True):
        members = np.sort(order[start : start + size])
        pairs.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
    return np.concatenate(pairs).astype(np.int64)


def oversized(bucket_keys: np.ndarray) -> np.ndarray:
    """Rows whose bucket has more than MAX_CLIQUE members (paired only as a star above)."""
    order = np.argsort(bucket_keys, kind="stable")
    sorted_keys = bucket_keys[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    sizes = np.diff(boundaries)
    return order[np.repeat(sizes > MAX_CLIQUE, sizes)]
