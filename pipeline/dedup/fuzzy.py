"""Fuzzy candidate pairs: MinHash over character 2-grams, banded LSH, then `fuzz.ratio` re-check.

Character 2-grams (spaces already removed by the key) suit short Korean queries; longer shingles
lose recall on them. A bigram is two code points packed into one integer, so no string hashing is
needed; the permutations are multiply-shift hashes in uint64 arithmetic, one vectorized pass per
permutation over every bigram of every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rapidfuzz import fuzz, process

from pipeline.dedup.buckets import pairs_in_buckets

#: candidate pairs re-checked per cpdist call (bounds the memory of the key lists)
VERIFY_CHUNK = 1_000_000


def bigram_codes(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All bigram codes, and the row each belongs to (rows in order, contiguous).

    Vectorized over one UTF-32 buffer of all keys: a key of one character contributes that
    character, an empty key a single 0, so every row owns at least one code.
    """
    padded = [key or "\0" for key in keys]
    lengths = np.fromiter((len(key) for key in padded), dtype=np.int64, count=len(padded))
    points = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    # a bigram starts at every position except each key's last one
    is_start = np.ones(len(points), dtype=bool)
    is_start[ends - 1] = False
    positions = np.flatnonzero(is_start)
    codes = points[positions] << np.uint64(21) | points[positions + 1]
    owners = np.repeat(np.arange(len(padded)), lengths - 1)
    single = np.flatnonzero(lengths == 1)
    if single.size:
        codes = np.concatenate([codes, points[starts[single]]])
        owners = np.concatenate([owners, single])
        order = np.argsort(owners, kind="stable")
        codes, owners = codes[order], owners[order]
    return codes, owners


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
    """(i, j, ratio/100) for candidate pairs whose `fuzz.ratio` on the keys reaches `threshold`.

    Candidates are re-checked element-wise in C on every core (`process.cpdist`), so the
    Python-level cost is per match, not per candidate."""
    if len(keys) < 2:
        return []
    pairs = candidate_pairs(minhash_signatures(keys, num_perm), bands)
    if len(pairs) == 0:
        return []
    matches: list[tuple[int, int, float]] = []
    for start in range(0, len(pairs), VERIFY_CHUNK):
        chunk = pairs[start : start + VERIFY_CHUNK]
        scores = process.cpdist(
            [keys[i] for i in chunk[:, 0]],
            [keys[j] for j in chunk[:, 1]],
            scorer=fuzz.ratio,
            score_cutoff=threshold,
            workers=-1,
        )
        hits = np.flatnonzero(scores >= threshold)
        matches.extend((int(chunk[h, 0]), int(chunk[h, 1]), float(scores[h]) / 100.0) for h in hits)
    return matches


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Sorted distinct pairs; packed into one int64 each, which sorts far faster than rows."""
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    packed = np.unique(pairs[:, 0] << np.int64(32) | pairs[:, 1])
    return np.stack([packed >> np.int64(32), packed & np.int64(0xFFFFFFFF)], axis=1)
