"""Balance: pick the corpus from every round's accepted items, per category quota and label ratio.

Within a category, keepers are chosen for quality and spread: items are grouped by the
generation call that produced them (items of one call are alike), each group ordered by judge
score, and groups are taken round-robin (best group first), so no single call fills a quota.
When a category falls short, the other label's categories are trimmed so the safe share stays as
configured (`settings.safe_share`). In a run that mixes generators, each category's selection is
split between the sources by their shares first (`settings.template_share`), and a source that
fell short is made up from the other. Every accepted row is kept in the output; the ones left out
get `rejected_by = "balance"` and the reason (`over_quota`, `safe_share`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from pipeline.plan import source_quotas

NAME = "balance"


@dataclass
class Shortfall:
    category: str
    quota: int
    selected: int
    reason: str


def accepted_items(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Kept rows of every round's last stage, each item once (its earliest round)."""
    if not frames:
        return pl.DataFrame()
    rows = pl.concat(frames, how="diagonal_relaxed").filter(pl.col("rejected_by").is_null())
    return rows.sort("round").unique("id", keep="first", maintain_order=True)


def spread_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Round-robin over generation calls, best judge score first within and across calls."""
    scored = rows.with_columns(pl.col("judge_score").fill_null(0.0).alias("_score"))
    scored = scored.sort(["task_id", "_score", "id"], descending=[False, True, False])
    scored = scored.with_columns(
        pl.int_range(pl.len()).over("task_id").alias("_rank"),
        pl.col("_score").max().over("task_id").alias("_group_best"),
    )
    return scored.sort(
        ["_rank", "_group_best", "task_id", "_score", "id"],
        descending=[False, True, False, True, False],
    ).drop("_score", "_rank", "_group_best")


def run(
    accepted: pl.DataFrame,
    quota_by_category: dict[str, int],
    labels: dict[str, str],
    safe_share: float | None,
    reasons: dict[str, str],
    shares: dict[str, float] | None = None,
) -> tuple[pl.DataFrame, list[Shortfall]]:
    """`reasons` says why a category may be short (from the runner: rounds and yield);
    `shares` is each generation source's share of a category (None or one source: no split)."""
    take: dict[str, int] = {}
    for category, quota in quota_by_category.items():
        available = accepted.filter(pl.col("category") == category).height
        take[category] = min(quota, available)
    trimmed = _keep_safe_share(take, quota_by_category, labels, safe_share)
    chosen: list[pl.DataFrame] = []
    left: list[pl.DataFrame] = []
    for category in quota_by_category:
        ordered = spread_order(accepted.filter(pl.col("category") == category))
        count = trimmed[category]
        picked, rest = _pick(ordered, count, shares)
        chosen.append(picked)
        reason = "safe_share" if count < take[category] else "over_quota"
        left.append(
            rest.with_columns(
                pl.lit(NAME).alias("rejected_by"), pl.lit(reason).alias("reject_reason")
            )
        )
    shortfalls = []
    for category, quota in quota_by_category.items():
        if trimmed[category] >= quota:
            continue
        if take[category] < quota:
            reason = reasons.get(category, "not enough accepted items")
        else:
            reason = f"trimmed to keep safe_share {safe_share} while the other label fell short"
        shortfalls.append(Shortfall(category, quota, trimmed[category], reason))
    frames = [frame for frame in chosen + left if frame.height]
    output = pl.concat(frames, how="diagonal_relaxed") if frames else accepted.clear()
    return output, shortfalls


def _pick(
    ordered: pl.DataFrame, count: int, shares: dict[str, float] | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first `count` rows in spread order, each source held to its share of `count` when
    it has enough rows; (picked, left out), both still in spread order."""
    if not shares or len(shares) < 2 or "source" not in ordered.columns:
        return ordered.head(count), ordered.slice(count)
    ordered = ordered.with_row_index("_order")
    targets = source_quotas({"": count}, shares)
    first = pl.concat(
        [
            ordered.filter(pl.col("source") == source).head(target)
            for (_, source), target in targets.items()
        ]
    )
    rest = ordered.filter(~pl.col("_order").is_in(first["_order"].implode()))
    fill = count - first.height  # a source short of its share, made up from the others
    picked = pl.concat([first, rest.head(fill)]).sort("_order").drop("_order")
    return picked, rest.slice(fill).drop("_order")


def _keep_safe_share(
    take: dict[str, int],
    quotas: dict[str, int],
    labels: dict[str, str],
    safe_share: float | None,
) -> dict[str, int]:
    """Trim the label that is over its share, each of its categories in proportion to quota."""
    if safe_share is None:
        return dict(take)
    safe = sum(n for c, n in take.items() if labels[c] == "safe")
    unsafe = sum(n for c, n in take.items() if labels[c] == "unsafe")
    if not safe or not unsafe:
        return dict(take)
    if safe / (safe + unsafe) > safe_share + 1e-9:
        over, allowed = "safe", math.floor(unsafe * safe_share / (1 - safe_share))
    elif safe / (safe + unsafe) < safe_share - 1e-9:
        over, allowed = "unsafe", math.floor(safe * (1 - safe_share) / safe_share)
    else:
        return dict(take)
    members = [c for c in take if labels[c] == over]
    current = sum(take[c] for c in members)
    if allowed >= current:
        return dict(take)
    result = dict(take)
    weights = {c: quotas[c] for c in members}
    total = sum(weights.values()) or 1
    shares = {c: min(take[c], allowed * weights[c] / total) for c in members}
    result.update({c: math.floor(shares[c]) for c in members})
    # hand out what flooring left, largest remainder first, never above what is available
    spare = allowed - sum(result[c] for c in members)
    order = sorted(members, key=lambda c: shares[c] - math.floor(shares[c]), reverse=True)
    while spare > 0 and any(result[c] < take[c] for c in order):
        for c in order:
            if spare > 0 and result[c] < take[c]:
                result[c] += 1
                spare -= 1
    return result
