"""From matched pairs to decisions: keep-first duplicates and connected-component clusters.

Keep-first guards against chaining: a row is a duplicate only of an earlier *keeper* it matches
directly (A~B and B~C never make C a duplicate of A through B). An exact copy shares its
original's fate: when the original is itself a duplicate of a keeper, so is the copy (it matches
that keeper just as closely). Clusters are the connected components of all matches, so splits
that keep a cluster together keep every near-duplicate together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: when one pair matched in several passes, the strongest evidence names it
PASS_RANK = {"exact": 0, "fuzzy": 1, "embedding": 2}


@dataclass(frozen=True)
class Decision:
    keeper: int | None  # the earlier keeper this row duplicates, None for a keeper
    how: str | None  # exact, fuzzy or embedding
    score: float | None
    cluster: int  # the earliest row of its connected component


def decide(
    n_rows: int, matches: Iterable[tuple[int, int, str, float]], always_keep: int
) -> list[Decision]:
    """Rows are in priority order; the first `always_keep` rows (exemplars and items accepted in
    earlier rounds) are keepers whatever they match."""
    best: dict[tuple[int, int], tuple[str, float]] = {}
    for i, j, how, score in matches:
        pair = (min(i, j), max(i, j))
        if pair[0] == pair[1]:
            continue
        current = best.get(pair)
        if current is None or (PASS_RANK[how], -score) < (PASS_RANK[current[0]], -current[1]):
            best[pair] = (how, score)
    earlier: dict[int, list[tuple[int, str, float]]] = {}
    copy_of: dict[int, int] = {}  # an exact copy -> the earliest row with its text
    parent = list(range(n_rows))
    for (i, j), (how, score) in best.items():
        earlier.setdefault(j, []).append((i, how, score))
        if how == "exact":
            copy_of[j] = min(i, copy_of.get(j, i))
        _union(parent, i, j)
    keeper = [True] * n_rows
    decisions = []
    for row in range(n_rows):
        chosen = None
        if row >= always_keep:
            candidates = sorted(
                (c for c in earlier.get(row, []) if keeper[c[0]]), key=lambda c: c[0]
            )
            chosen = candidates[0] if candidates else None
            original = copy_of.get(row)
            if chosen is None and original is not None and not keeper[original]:
                inherited = decisions[original]
                assert inherited.keeper is not None and inherited.how is not None
                chosen = (inherited.keeper, inherited.how, inherited.score or 0.0)
        keeper[row] = chosen is None
        decisions.append(
            Decision(
                keeper=chosen[0] if chosen else None,
                how=chosen[1] if chosen else None,
                score=chosen[2] if chosen else None,
                cluster=_find(parent, row),
            )
        )
    return decisions


def _find(parent: list[int], row: int) -> int:
    root = row
    while parent[root] != root:
        root = parent[root]
    while parent[row] != root:
        parent[row], row = root, parent[row]
    return root


def _union(parent: list[int], a: int, b: int) -> None:
    root_a, root_b = _find(parent, a), _find(parent, b)
    if root_a != root_b:
        # the earlier row is the root, so a cluster is named after its earliest member
        parent[max(root_a, root_b)] = min(root_a, root_b)
