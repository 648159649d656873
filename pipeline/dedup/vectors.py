"""Embedding candidate pairs: cosine similarity of unit vectors above a threshold.

Up to `EXACT_LIMIT` rows, exact blockwise matrix products. Beyond, an inverted file: spherical
k-means with about 4*sqrt(N) lists, each row in its nearest list, and each list compared with one
BLAS product against the rows of its `nprobe` nearest lists; cost grows as N*sqrt(N)/nlist*nprobe,
near-linear for a fixed nprobe.
"""

from __future__ import annotations

import numpy as np

EXACT_LIMIT = 20_000
BLOCK = 2048


def similar_pairs(
    vectors: np.ndarray, threshold: float, nprobe: int = 8, seed: int = 0
) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for i < j with cosine >= threshold."""
    n = len(vectors)
    if n < 2:
        return []
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if n <= EXACT_LIMIT:
        return _exact(vectors, threshold)
    return _bucketed(vectors, threshold, nprobe, seed)


def _exact(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(vectors), BLOCK):
        block = vectors[start : start + BLOCK] @ vectors[start:].T
        rows, cols = np.nonzero(block >= threshold)
        keep = cols > rows  # upper triangle of the full matrix: j > i
        for i, j in zip(rows[keep], cols[keep], strict=True):
            found.append((start + int(i), start + int(j), float(block[i, j])))
    return found


def kmeans(vectors: np.ndarray, n_lists: int, seed: int, iterations: int = 8) -> np.ndarray:
    """Spherical k-means centroids, trained on a sample."""
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), max(n_lists * 40, 10_000))
    sample = vectors[rng.choice(len(vectors), size=sample_size, replace=False)]
    centroids = sample[rng.choice(sample_size, size=n_lists, replace=False)].copy()
    for _ in range(iterations):
        assignment = _nearest(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assignment, sample)
        empty = np.linalg.norm(sums, axis=1) == 0
        sums[empty] = sample[rng.choice(sample_size, size=int(empty.sum()), replace=False)]
        centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return centroids


def _nearest(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    return np.concatenate(
        [
            (vectors[s : s + chunk] @ centroids.T).argmax(axis=1)
            for s in range(0, len(vectors), chunk)
        ]
    )


def _bucketed(
    vectors: np.ndarray, threshold: float, nprobe: int, seed: int
) -> list[tuple[int, int, float]]:
    n_lists = max(2, int(4 * np.sqrt(len(vectors))))
    centroids = kmeans(vectors, n_lists, seed)
    assignment = _nearest(vectors, centroids)
    order = np.argsort(assignment, kind="stable")
    bounds = np.searchsorted(assignment[order], np.arange(n_lists + 1))
    members = [order[bounds[k] : bounds[k + 1]] for k in range(n_lists)]
    probes = np.argsort(-(centroids @ centroids.T), axis=1)[:, : min(nprobe, n_lists)]
    found: dict[tuple[int, int], float] = {}
    for k in range(n_lists):
        left = members[k]
        if len(left) == 0:
            continue
        right = np.concatenate([members[p] for p in probes[k]])
        scores = vectors[left] @ vectors[right].T
        rows, cols = np.nonzero(scores >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = int(left[r]), int(right[c])
            if i < j:
                found[(i, j)] = float(scores[r, c])
            elif j < i:
                found[(j, i)] = float(scores[r, c])
    return [(i, j, score) for (i, j), score in found.items()]
