"""Fuzzy candidate pairs: MinHash over character 2-grams, banded LSH, then `fuzz.ratio` re-check.

Character 2-grams (spaces already removed by the key) suit short Korean queries; longer shingles
lose recall on them. A bigram is two code points packed into one integer, so no string hashing is
needed; the permutations are multiply-shift hashes in uint64 arithmetic, one vectorized pass per
permutation over every bigram of every row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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
    """(rows, num_perm) uint32 MinHash signatures.

    One vectorized pass per permutation; numpy releases the GIL inside them, so the passes run
    on every core from a thread pool (each writes its own column)."""
    codes, owners = bigram_codes(keys)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    rng = np.random.default_rng(seed)
    multipliers = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    offsets = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    signatures = np.empty((len(keys), num_perm), dtype=np.uint32)
    shift = np.uint64(32)

    def permute(column: int) -> None:
        with np.errstate(over="ignore"):
            hashed = (codes * multipliers[column] + offsets[column]) >> shift
            signatures[:, column] = np.minimum.reduceat(hashed, starts).astype(np.uint32)

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(permute, range(num_perm)))
    return signatures


def candidate_pairs(signatures: np.ndarray, bands: int) -> np.ndarray:
    """Row pairs i < j that share all rows of at least one band, sorted and distinct, each
    packed in one int64 (i << 32 | j; `unpack` splits them).

    Pairs stay packed (half the memory of (k, 2) rows, and they sort far faster) and are merged
    as they come, so memory follows the distinct candidates rather than every band's repeats.
    Bands are bucketed on every core from a thread pool (argsort releases the GIL)."""
    rows_per_band = signatures.shape[1] // bands
    rng = np.random.default_rng(1)
    mix = rng.integers(1, 2**63, size=rows_per_band, dtype=np.uint64) | np.uint64(1)

    def band_pairs(band: int) -> list[np.ndarray]:
        block = signatures[:, band * rows_per_band : (band + 1) * rows_per_band]
        with np.errstate(over="ignore"):
            band_keys = (block.astype(np.uint64) * mix).sum(axis=1, dtype=np.uint64)
            band_keys ^= np.uint64(band) * np.uint64(0x9E3779B97F4A7C15)
        found = [_pack(pairs_in_buckets(band_keys))]
        found += [_pack(p) for p in _split_oversized(signatures, band_keys, band, rows_per_band)]
        return found

    merged: list[np.ndarray] = []  # each distinct within itself
    pending: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for found in pool.map(band_pairs, range(bands)):
            pending.extend(found)
            if sum(len(p) for p in pending) > MERGE_EVERY:
                merged.append(_distinct(pending))
    parts = [np.zeros(0, np.int64), *merged, *pending]
    merged.clear()
    pending.clear()
    return _distinct(parts)


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j) row indexes of packed candidate pairs."""
    return packed >> np.int64(32), packed & np.int64(0xFFFFFFFF)


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

    Candidates are re-checked element-wise in C on every core (`process.cpdist`); their strings
    are gathered by numpy object-array indexing, ~8x faster than a list comprehension, which
    matters at tens of millions of candidates. The Python-level cost is per match."""
    if len(keys) < 2:
        return []
    packed = candidate_pairs(minhash_signatures(keys, num_perm), bands)
    texts = np.array(keys, dtype=object)
    matches: list[tuple[int, int, float]] = []
    for start in range(0, len(packed), VERIFY_CHUNK):
        first, second = unpack(packed[start : start + VERIFY_CHUNK])
        scores = process.cpdist(
            texts[first],
            texts[second],
            scorer=fuzz.ratio,
            score_cutoff=threshold,
            workers=-1,
        )
        hits = np.flatnonzero(scores >= threshold)
        matches.extend(
            zip(
                first[hits].tolist(),
                second[hits].tolist(),
                (scores[hits].astype(np.float64) / 100.0).tolist(),
                strict=True,
            )
        )
    return matches


def _workers() -> int:
    return os.cpu_count() or 1


def _pack(pairs: np.ndarray) -> np.ndarray:
    """(k, 2) pairs with i < j as one int64 each, which sorts far faster than rows."""
    return pairs[:, 0].astype(np.int64) << np.int64(32) | pairs[:, 1].astype(np.int64)


def _distinct(parts: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct values of `parts`, which it empties: the arrays are let go as soon as
    they are joined and the join is sorted in place, so the peak is twice the candidates, not
    four times (at 1M template-dense rows that is 2 GB). Repeats are dropped by hand, as
    np.unique's hash-based path is ~10x slower on 10M+ values."""
    packed = np.concatenate(parts)
    parts.clear()
    packed.sort()
    return packed[np.r_[True, packed[1:] != packed[:-1]]] if len(packed) else packed
