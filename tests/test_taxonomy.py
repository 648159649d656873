"""The shipped taxonomy and the rules of the taxonomy format."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.taxonomy import MIN_EXEMPLARS, load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
HANGUL = re.compile(r"[가-힣]")

UNSAFE = {
    "crime_advice",
    "privacy_violation",
    "copyright_infringement",
    "hate_discrimination",
    "insult_offense",
    "sexual_minors",
    "self_harm",
    "uncertain_prediction",
    "sensitive_topic",
    "malicious_personification",
}
SAFE = {"everyday", "lookalike", "sensitive_info"}


def test_shipped_taxonomy_has_every_category_of_the_method() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    by_label = {
        label: {c.id for c in taxonomy.categories if c.label == label}
        for label in ("safe", "unsafe")
    }
    assert by_label == {"unsafe": UNSAFE, "safe": SAFE}
    assert {c.group for c in taxonomy.categories} == {"legal", "ethical", "etc", "safe"}


def test_every_category_has_enough_korean_exemplars_in_both_speech_levels() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    for category in taxonomy.categories:
        assert len(category.exemplars) >= MIN_EXEMPLARS, category.id
        assert all(HANGUL.search(text) for text in category.exemplars), category.id
        polite = [t for t in category.exemplars if re.search(r"(요|니다|니까)[.?!]?$", t)]
        plain = [t for t in category.exemplars if t not in polite]
        assert polite and plain, f"{category.id} needs both 존댓말 and 반말 exemplars"


def test_category_rules_inherit_and_override_the_global_rules() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    global_ids = [rule.id for rule in taxonomy.rules]

    crime = taxonomy.rules_for(taxonomy.category("crime_advice"))
    assert [rule.id for rule in crime] == global_ids

    personification = taxonomy.rules_for(taxonomy.category("malicious_personification"))
    assert [rule.id for rule in personification] == global_ids
    target = next(rule for rule in personification if rule.id == "target_person")
    assert "AI 어시스턴트 자신" in target.text

    sexual = taxonomy.rules_for(taxonomy.category("sexual_minors"))
    assert [rule.id for rule in sexual] == [*global_ids, "no_explicit"]
