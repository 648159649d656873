"""Quotas from --n and weights, and the calls a round plans."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.plan import (
    LLM_SOURCE,
    TEMPLATE_SOURCE,
    derive_seed,
    plan_round,
    quotas,
    source_quotas,
)
from pipeline.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [1, 13, 200, 5000, 5001])
def test_quotas_sum_to_n_and_respect_the_safe_share(n: int) -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    quota = quotas(taxonomy, n)
    assert sum(quota.values()) == n
    safe = sum(quota[c.id] for c in taxonomy.categories if c.label == "safe")
    assert safe == round(n * taxonomy.settings.safe_share)


def test_quotas_follow_weights_within_a_label() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    quota = quotas(taxonomy, 5000)
    # quotas follow the weights the taxonomy gives (sensitive_info, which holds every unsafe
    # sub-harm's twin, weighs most)
    weights = {c.id: c.weight for c in taxonomy.categories}
    for category in ("lookalike", "sensitive_info"):
        ratio = weights[category] / weights["everyday"]
        assert quota[category] == pytest.approx(ratio * quota["everyday"], abs=1)
    unsafe = [quota[c.id] for c in taxonomy.categories if c.label == "unsafe"]
    assert max(unsafe) - min(unsafe) <= 1


def test_without_safe_share_all_categories_split_by_weight() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    settings = taxonomy.settings.model_copy(update={"safe_share": None})
    taxonomy = taxonomy.model_copy(update={"settings": settings})
    total = sum(c.weight for c in taxonomy.categories)
    quota = quotas(taxonomy, round(total * 10))  # ten items per unit of weight
    assert quota["crime_advice"] == 10
    assert quota["sensitive_info"] == round(taxonomy.category("sensitive_info").weight * 10)


def test_later_rounds_continue_the_call_numbering_and_use_observed_yield() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    part = ("crime_advice", LLM_SOURCE)
    first = plan_round(taxonomy, 1, 0, {part: 10}, {}, {})
    assert first["call_index"].to_list() == list(range(first.height))
    later = plan_round(taxonomy, 2, 0, {part: 10}, {part: first.height}, {part: 5})
    assert later["call_index"].min() == first.height
    assert set(later["seed"]).isdisjoint(set(first["seed"]))
    # a poorer observed yield than the prior asks for more calls for the same shortfall
    assert later.height > first.height


def test_a_falling_yield_in_the_latest_round_plans_from_the_latest_round() -> None:
    """Rounds 1-2 made 100 calls for 200 new items (2 per call) but round 2 alone made 40 calls
    for 20 (0.5 per call): the space is filling, so round 3 plans from the lower yield."""
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    part = ("lookalike", TEMPLATE_SOURCE)
    cumulative = plan_round(taxonomy, 3, 0, {part: 20}, {part: 100}, {part: 200})
    marginal = plan_round(taxonomy, 3, 0, {part: 20}, {part: 100}, {part: 200}, {part: 0.5})
    assert marginal.height == 4 * cumulative.height
    # a latest round that did better than the run so far does not make the plan bolder
    better = plan_round(taxonomy, 3, 0, {part: 20}, {part: 100}, {part: 200}, {part: 4.0})
    assert better.height == cumulative.height


def test_a_mix_splits_each_quota_by_share_and_plans_each_source_on_its_own_yield() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    shares = {LLM_SOURCE: 0.7, TEMPLATE_SOURCE: 0.3}
    split = source_quotas({"crime_advice": 35, "everyday": 11}, shares)
    assert split == {
        ("crime_advice", LLM_SOURCE): 25,  # 24.5 and 10.5: the tie goes to the first source
        ("crime_advice", TEMPLATE_SOURCE): 10,
        ("everyday", LLM_SOURCE): 8,  # 7.7 and 3.3
        ("everyday", TEMPLATE_SOURCE): 3,
    }
    tasks = plan_round(taxonomy, 1, 0, split, {}, {})
    by_source = dict(tasks.group_by("source").len().iter_rows())
    # the template source's prior yield is higher, so a third of the items takes far fewer calls
    assert 0 < by_source[TEMPLATE_SOURCE] < by_source[LLM_SOURCE] / 3
    assert tasks["task_id"].n_unique() == tasks.height
    assert tasks["seed"].n_unique() == tasks.height, "no seed is shared between the sources"
    template_ids = tasks.filter(pl.col("source") == TEMPLATE_SOURCE)["task_id"]
    assert template_ids.str.contains("/t").all()


def test_seeds_are_stable_and_depend_on_every_part() -> None:
    assert derive_seed(0, "generate", "crime_advice", 3) == derive_seed(
        0, "generate", "crime_advice", 3
    )
    assert derive_seed(0, "generate", "crime_advice", 3) != derive_seed(
        1, "generate", "crime_advice", 3
    )
    assert derive_seed(0, "generate", "crime_advice", 3) != derive_seed(
        0, "generate", "crime_advice", 4
    )
