"""Pairs of rows that share a bucket key, without Python loops over rows."""

from __future__ import annotations

import numpy as np

#: above this size a bucket pairs every member with its first member only (a star, not a
#: clique): enough for keep-first clustering, and a degenerate bucket cannot blow up
MAX_CLIQUE = 64


def pairs_in_buckets(bucket_keys: np.ndarray) -> np.ndarray:
    """(k, 2) pairs (i, j), i < j, of rows with equal keys."""
    order = np.argsort(bucket_keys, kind="stable")
    sorted_keys = bucket_keys[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    sizes = np.diff(boundaries)
    pairs = []
    for start, size in zip(boundaries[:-1][sizes > 1], sizes[sizes > 1], strict=True):
        members = np.sort(order[start : start + size])
        if size <= MAX_CLIQUE:
            i, j = np.triu_indices(size, k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
        else:
            pairs.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(pairs).astype(np.int64)
