"""Quotas from `--n` and the weights, and how many generation calls each round makes.

`--n` counts accepted items in the final corpus. Safe categories share `safe_share` of it and
unsafe ones the rest (or all share by weight when `safe_share` is null); within a share, categories
split by weight with the largest-remainder method so the quotas sum to exactly `--n`. Each round
asks for the shortfall times `oversample` (after round 1 plus a few items, so a small shortfall is
not left to one or two calls), divided by the yield per call: the lower of the run's so far and
the latest round's.

A run may mix generators (`settings.template_share`): each category's quota is split between the
sources by share, and each source is planned against its own part with its own yield, so a
cheap, high-yield source never crowds out the other.
"""

from __future__ import annotations

import hashlib
import math

import polars as pl

from pipeline.taxonomy import Category, Taxonomy

#: the generation sources a plan row can name: the configured LLM generator, or the lexicon
#: templates (`pipeline.template_queries`)
LLM_SOURCE = "llm"
TEMPLATE_SOURCE = "template"
#: accepted items per call assumed before a category and source have any history, as a share of
#: items_per_call: a small LLM's lists lose many items to screen, dedup and judge; template
#: queries lose few (measured on `--backend template` runs, see benchmarks/RESULTS.md)
PRIOR_YIELD_SHARE = {LLM_SOURCE: 0.3, TEMPLATE_SOURCE: 0.75}
#: never plan as if a call yields less than this, so a category with zero yield stays bounded
MIN_YIELD_PER_CALL = 0.25
#: items planned beyond `shortfall x oversample` in a top-up round: a category one or two items
#: short would otherwise get one or two calls, which come back empty often enough to end a run
#: short (measured on `--backend template` runs, see benchmarks/RESULTS.md)
SHORTFALL_MARGIN = 4

TASK_SCHEMA = {
    "task_id": pl.String,
    "round": pl.Int32,
    "category": pl.String,
    "label": pl.String,
    "call_index": pl.Int32,
    "seed": pl.Int64,
    "n_new": pl.Int32,
    "source": pl.String,
}

#: a (category id, source) pair: the unit a round is planned for
Part = tuple[str, str]


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


def source_quotas(quota_by_category: dict[str, int], shares: dict[str, float]) -> dict[Part, int]:
    """Each category's quota split between the sources by share (largest remainder, so the
    parts sum to the category's quota; ties go to the first source listed)."""
    result: dict[Part, int] = {}
    for category, quota in quota_by_category.items():
        exact = {source: quota * share for source, share in shares.items()}
        floors = {source: math.floor(value) for source, value in exact.items()}
        left = quota - sum(floors.values())
        for source in sorted(exact, key=lambda key: -(exact[key] - floors[key]))[:left]:
            floors[source] += 1
        result.update({(category, source): count for source, count in floors.items()})
    return result


def plan_round(
    taxonomy: Taxonomy,
    round_index: int,
    run_seed: int,
    shortfall: dict[Part, int],
    calls_before_by_part: dict[Part, int],
    accepted_by_part: dict[Part, int],
    latest_yield_by_part: dict[Part, float] | None = None,
) -> pl.DataFrame:
    """One row per generation call of this round, numbered after the calls of earlier rounds so
    no seed is ever reused. Keys are (category, source); LLM calls keep the plain
    `<category>/<n>` task ids and seeds, template calls get their own (`<category>/t<n>`).

    The yield per call is the lower of the whole run's and the latest round's: new items get
    rarer as earlier rounds fill a category's space (most of all for the template lexicons), so
    a plan from the cumulative yield alone falls short again, a round at a time."""
    settings = taxonomy.settings
    rows = []
    for category in taxonomy.categories:
        for source in (LLM_SOURCE, TEMPLATE_SOURCE):
            missing = shortfall.get((category.id, source), 0)
            if missing <= 0:
                continue
            calls_before = calls_before_by_part.get((category.id, source), 0)
            if calls_before:
                per_call = accepted_by_part.get((category.id, source), 0) / calls_before
                latest = (latest_yield_by_part or {}).get((category.id, source))
                if latest is not None:
                    per_call = min(per_call, latest)
            else:
                per_call = settings.items_per_call * PRIOR_YIELD_SHARE[source]
            per_call = max(per_call, MIN_YIELD_PER_CALL)
            # round 1 plans from the prior; a margin helps only a top-up of a few items
            margin = SHORTFALL_MARGIN if calls_before else 0
            n_calls = math.ceil((missing * settings.oversample + margin) / per_call)
            n_calls = min(n_calls, settings.max_calls_per_round)
            marker = "" if source == LLM_SOURCE else "t"
            for offset in range(n_calls):
                call_index = calls_before + offset
                rows.append(
                    {
                        "task_id": f"{category.id}/{marker}{call_index:05d}",
                        "round": round_index,
                        "category": category.id,
                        "label": category.label,
                        "call_index": call_index,
                        "seed": derive_seed(run_seed, "generate", category.id, call_index)
                        if source == LLM_SOURCE
                        else derive_seed(run_seed, source, category.id, call_index),
                        "n_new": settings.items_per_call,
                        "source": source,
                    }
                )
    return pl.DataFrame(rows, schema=TASK_SCHEMA)
