"""Train/validation/test assignment by dedup cluster, stratified by category, seeded.

Near-duplicates that land in both train and test inflate every score, so whole clusters move
together, and so do all the rows of one template skeleton. Dedup names each row's cluster per
round (the earliest member of its connected component, which may be an earlier round's item or
an exemplar); joining every item with its cluster id (and skeleton) across rounds gives the
groups that must not be split.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from pipeline.plan import derive_seed

SPLITS = ("train", "validation", "test")


def split_groups(
    ids: Sequence[str],
    cluster_ids: Sequence[str | None],
    skeletons: Sequence[str | None] | None = None,
) -> list[str]:
    """A group key per item: connected components over the links item -- its cluster id and
    item -- its template skeleton (the content before its slots were filled: one skeleton in
    many frames and fills would otherwise teach the test split's sentences in train)."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(a: str, b: str) -> None:
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for item, cluster in zip(ids, cluster_ids, strict=True):
        union(item, cluster or item)
    for item, skeleton in zip(ids, skeletons or [None] * len(ids), strict=True):
        if skeleton:
            union(item, f"skeleton {skeleton}")
    return [find(item) for item in ids]


def assign_splits(
    ids: Sequence[str],
    categories: Sequence[str],
    groups: Sequence[str],
    shares: dict[str, float],
    seed: int,
) -> dict[str, str]:
    """Split per item id. Per category, groups in a seeded order (largest first) go to the split
    furthest below its share, so each category is spread like the whole."""
    members: dict[str, list[str]] = defaultdict(list)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for item, category, group in zip(ids, categories, groups, strict=True):
        members[group].append(item)
        votes[group][category] += 1
    by_category: dict[str, list[str]] = defaultdict(list)
    for group in sorted(members):
        by_category[votes[group].most_common(1)[0][0]].append(group)
    assignment: dict[str, str] = {}
    carry = dict.fromkeys(SPLITS, 0.0)
    for category in sorted(by_category):
        category_groups = by_category[category]
        random.Random(derive_seed(seed, "split", category)).shuffle(category_groups)
        # largest first; the sort is stable, so groups of one size keep their shuffled order
        category_groups.sort(key=lambda g: len(members[g]), reverse=True)
        target = _targets(sum(len(members[g]) for g in category_groups), shares, carry)
        filled = dict.fromkeys(SPLITS, 0)
        for group in category_groups:
            split = max(SPLITS, key=lambda s: (target[s] - filled[s], -SPLITS.index(s)))
            filled[split] += len(members[group])
            for item in members[group]:
                assignment[item] = split
    return assignment


def _targets(total: int, shares: dict[str, float], carry: dict[str, float]) -> dict[str, int]:
    """Whole-item targets for one category. Fractions left over are carried across categories,
    so small categories still feed validation and test and the whole corpus keeps its shares."""
    exact = {s: shares.get(s, 0.0) * total for s in SPLITS}
    target = {s: int(exact[s]) for s in SPLITS}
    for s in SPLITS:
        carry[s] += exact[s] - target[s]
    for _ in range(total - sum(target.values())):
        best = max(SPLITS, key=lambda s: (carry[s], -SPLITS.index(s)))
        target[best] += 1
        carry[best] -= 1.0
    return target
