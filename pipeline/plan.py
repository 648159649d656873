"""Quotas from `--n` and the weights, and how many generation calls each round makes.

`--n` counts accepted items in the final corpus. Safe categories share `safe_share` of it and
unsafe ones the rest (or all share by weight when `safe_share` is null); within a share, categories
split by weight with the largest-remainder method so the quotas sum to exactly `--n`. Each round
asks for the shortfall times `oversample`, divided by the yield per call seen so far.
"""

from __future__ import annotations

import hashlib
import math

import polars as pl

from pipeline.taxonomy import Category, Taxonomy

#: accepted items per call assumed before a category has any history, as a share of items_per_call
PRIOR_YIELD_SHARE = 0.3
#: never plan as if a call yields less than this, so a category with zero yield stays bounded
MIN_YIELD_PER_CALL = 0.25

TASK_SCHEMA = {
    "task_id": pl.String,
    "round": pl.Int32,
    "category": pl.String,
    "label": pl.String,
    "call_index": pl.Int32,
    "seed": pl.Int64,
    "n_new": pl.Int32,
}


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from the run seed and a call's coordinates (no Python hash())."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def quotas(taxonomy: Taxonomy, n: int) -> dict[str, int]:
    """Accepted items wanted per category; sums to `n`."""
    share = taxonomy.settings.safe_share
    safe = [c for c in taxonomy.categories if c.label == "safe"]
    unsafe = [c for c in taxonomy.categories if c.label == "unsafe"]
    if share is None or not safe or not unsafe:
        return _split(n, taxonomy.categories)
    n_safe = round(n * share)
    return {**_split(n - n_safe, unsafe), **_split(n_safe, safe)}


def _split(total: int, categories: list[Category]) -> dict[str, int]:
    weight_sum = sum(category.weight for category in categories)
    exact = {c.id: total * c.weight / weight_sum for c in categories}
    floors = {key: math.floor(value) for key, value in exact.items()}
    left = total - sum(floors.values())
    # ties go to the earlier category in the file, so the split is deterministic
    by_remainder = sorted(exact, key=lambda key: -(exact[key] - floors[key]))
    for key in by_remainder[:left]:
        floors[key] += 1
    return {c.id: floors[c.id] for c in categories}


def plan_round(
    taxonomy: Taxonomy,
    round_index: int,
    run_seed: int,
    shortfall_by_category: dict[str, int],
    calls_by_category: dict[str, int],
    accepted_by_category: dict[str, int],
) -> pl.DataFrame:
    """One row per generation call of this round, numbered after the calls of earlier rounds so
    no seed is ever reused."""
    settings = taxonomy.settings
    rows = []
    for category in taxonomy.categories:
        shortfall = shortfall_by_category.get(category.id, 0)
        if shortfall <= 0:
            continue
        calls_before = calls_by_category.get(category.id, 0)
        if calls_before:
            per_call = accepted_by_category.get(category.id, 0) / calls_before
        else:
            per_call = settings.items_per_call * PRIOR_YIELD_SHARE
        per_call = max(per_call, MIN_YIELD_PER_CALL)
        n_calls = math.ceil(shortfall * settings.oversample / per_call)
        n_calls = min(n_calls, settings.max_calls_per_round)
        for offset in range(n_calls):
            call_index = calls_before + offset
            rows.append(
                {
                    "task_id": f"{category.id}/{call_index:05d}",
                    "round": round_index,
                    "category": category.id,
                    "label": category.label,
                    "call_index": call_index,
                    "seed": derive_seed(run_seed, "generate", category.id, call_index),
                    "n_new": settings.items_per_call,
                }
            )
    return pl.DataFrame(rows, schema=TASK_SCHEMA)
