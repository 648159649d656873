"""Quotas from --n and weights, and the calls a round plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.plan import derive_seed, plan_round, quotas
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
    # lookalike weighs 1.5, the other safe categories 1.0
    assert quota["lookalike"] == pytest.approx(1.5 * quota["everyday"], abs=1)
    unsafe = [quota[c.id] for c in taxonomy.categories if c.label == "unsafe"]
    assert max(unsafe) - min(unsafe) <= 1


def test_without_safe_share_all_categories_split_by_weight() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    settings = taxonomy.settings.model_copy(update={"safe_share": None})
    taxonomy = taxonomy.model_copy(update={"settings": settings})
    quota = quotas(taxonomy, 135)  # weights sum to 13.5
    assert quota["lookalike"] == 15 and quota["crime_advice"] == 10


def test_later_rounds_continue_the_call_numbering_and_use_observed_yield() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    first = plan_round(taxonomy, 1, 0, {"crime_advice": 10}, {}, {})
    assert first["call_index"].to_list() == list(range(first.height))
    later = plan_round(
        taxonomy, 2, 0, {"crime_advice": 10}, {"crime_advice": first.height}, {"crime_advice": 5}
    )
    assert later["call_index"].min() == first.height
    assert set(later["seed"]).isdisjoint(set(first["seed"]))
    # a poorer observed yield than the prior asks for more calls for the same shortfall
    assert later.height > first.height


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
