"""Fuzzy candidate pairs: MinHash over character 2-grams, banded LSH, then `fuzz.ratio` re-check.

Character 2-grams (spaces already removed by the key) suit short Korean queries; longer shingles
lose recall on them. A bigram is two code points packed into one integer, so no string hashing is
needed; the permutations are multiply-shift hashes in uint64 arithmetic, one vectorized pass per
permutation over every bigram of every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from rapidfuzz import fuzz

from pipeline.dedup.buckets import pairs_in_buckets


def bigram_codes(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All bigram codes, and the row each belongs to (rows in order, contiguous)."""
    codes: list[int] = []
    owners: list[int] = []
    for row, key in enumerate(keys):
        points = [ord(char) for char in key] or [0]
        grams = [a << 21 | b for a, b in pairwise(points)] or points
        codes.extend(grams)
        owners.extend([row] * len(grams))
    return np.asarray(codes, dtype=np.uint64), np.asarray(owners, dtype=np.int64)


def minhash_signatures(keys: Sequence[str], num_perm: int, seed: int = 0) -> np.ndarray:
    """(rows, num_perm) uint32 MinHash signatures."""
    codes, owners = bigram_codes(keys)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    rng = np.random.default_rng(seed)
    multipliers = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    offsets = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    signatures = np.empty((len(keys), num_perm), dtype=np.uint32)
    shift = np.uint64(32)
    with np.errstate(over="ignore"):
        for column in range(num_perm):
            hashed = (codes * multipliers[column] + offsets[column]) >> shift
            signatures[:, column] = np.minimum.reduceat(hashed, starts).astype(np.uint32)
    return signatures


def candidate_pairs(signatures: np.ndarray, bands: int) -> np.ndarray:
    """(k, 2) row pairs i < j that share all rows of at least one band."""
    rows_per_band = signatures.shape[1] // bands
    rng = np.random.default_rng(1)
    mix = rng.integers(1, 2**63, size=rows_per_band, dtype=np.uint64) | np.uint64(1)
    found = []
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = signatures[:, band * rows_per_band : (band + 1) * rows_per_band]
            band_keys = (block.astype(np.uint64) * mix).sum(axis=1, dtype=np.uint64)
            band_keys ^= np.uint64(band) * np.uint64(0x9E3779B97F4A7C15)
            found.append(pairs_in_buckets(band_keys))
    return _unique_pairs(np.concatenate(found) if found else np.zeros((0, 2), np.int64))


def fuzzy_matches(
    keys: Sequence[str], threshold: float, num_perm: int, bands: int
) -> list[tuple[int, int, float]]:
    """(i, j, ratio/100) for candidate pairs whose `fuzz.ratio` on the keys reaches `threshold`."""
    if len(keys) < 2:
        return []
    pairs = candidate_pairs(minhash_signatures(keys, num_perm), bands)
    matches = []
    for i, j in pairs.tolist():
        score = fuzz.ratio(keys[i], keys[j], score_cutoff=threshold)
        if score:
            matches.append((i, j, score / 100.0))
    return matches


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    return np.unique(pairs, axis=0)
