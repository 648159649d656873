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

from pipeline.dedup.buckets import oversized, pairs_in_buckets

#: candidate pairs re-checked per cpdist call (bounds the memory of the key lists)
VERIFY_CHUNK = 1_000_000
#: how many times an oversized LSH bucket is split again (see `_split_oversized`)
SUB_SPLITS = 3
#: merge the packed candidates of several bands once this many are waiting
MERGE_EVERY = 8_000_000


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
    """(k, 2) row pairs i < j that share all rows of at least one band.

    Pairs are kept packed (one int64 each) and merged as they come, so memory follows the
    distinct candidates rather than every band's repeats."""
    rows_per_band = signatures.shape[1] // bands
    rng = np.random.default_rng(1)
    mix = rng.integers(1, 2**63, size=rows_per_band, dtype=np.uint64) | np.uint64(1)
    merged: list[np.ndarray] = []  # each distinct within itself
    pending: list[np.ndarray] = []
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = signatures[:, band * rows_per_band : (band + 1) * rows_per_band]
            band_keys = (block.astype(np.uint64) * mix).sum(axis=1, dtype=np.uint64)
            band_keys ^= np.uint64(band) * np.uint64(0x9E3779B97F4A7C15)
            pending.append(_pack(pairs_in_buckets(band_keys)))
            pending.extend(
                _pack(p) for p in _split_oversized(signatures, band_keys, band, rows_per_band)
            )
            if sum(len(p) for p in pending) > MERGE_EVERY:
                merged.append(_distinct(np.concatenate(pending)))
                pending = []
    distinct = _distinct(np.concatenate([np.zeros(0, np.int64), *merged, *pending]))
    return np.stack([distinct >> np.int64(32), distinct & np.int64(0xFFFFFFFF)], axis=1)


def _split_oversized(
    signatures: np.ndarray, band_keys: np.ndarray, band: int, rows_per_band: int
) -> list[np.ndarray]:
    """Pairs inside buckets too big for a clique (a shared sentence skeleton puts thousands of
    rows in one): the bucket is split again by pairs of signature columns from other bands,
    several times, so near-duplicates (which agree on most columns) meet in some sub-bucket."""
    rows = oversized(band_keys)
    if len(rows) == 0:
        return []
    width = signatures.shape[1]
    found = []
    with np.errstate(over="ignore"):
        for split in range(SUB_SPLITS):
            first = (band * rows_per_band + rows_per_band + 2 * split) % width
            columns = signatures[rows][:, [first, (first + 1) % width]].astype(np.uint64)
            sub_keys = band_keys[rows] * np.uint64(0x100000001B3) ^ (
                columns[:, 0] << np.uint64(32) | columns[:, 1]
            )
            pairs = pairs_in_buckets(sub_keys)
            found.append(np.sort(rows[pairs], axis=1))
    return found


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


def _pack(pairs: np.ndarray) -> np.ndarray:
    """(k, 2) pairs with i < j as one int64 each, which sorts far faster than rows."""
    return pairs[:, 0].astype(np.int64) << np.int64(32) | pairs[:, 1].astype(np.int64)


def _distinct(packed: np.ndarray) -> np.ndarray:
    """Sorted distinct values; by hand, as np.unique's hash-based path is ~10x slower on 10M+."""
    packed = np.sort(packed)
    return packed[np.r_[True, packed[1:] != packed[:-1]]] if len(packed) else packed
