"""The template generator: the shipped lexicons load, draw reproducible, distinct, well-formed
Korean queries, and run through the whole pipeline with no model call."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.errors import UserError
from pipeline.korean import (
    FORMS,
    LEVELS,
    conjugate,
    endings_count,
    kiwi,
    predicate_parts,
)
from pipeline.taxonomy import load_taxonomy
from pipeline.template_queries import TemplateGenerator
from tests.conftest import write_taxonomy

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(ROOT / "taxonomy.yaml")


@pytest.fixture(scope="module")
def generator() -> TemplateGenerator:
    return TemplateGenerator(TAXONOMY, ROOT / "prompts")


def test_every_category_has_a_lexicon_with_room(generator: TemplateGenerator) -> None:
    for category in TAXONOMY.category_ids:
        assert generator.space(category) >= 100, category


def test_queries_are_seeded_and_distinct(generator: TemplateGenerator) -> None:
    first = generator.queries("crime_advice", call_index=3, seed=5, count=20)
    assert first == generator.queries("crime_advice", call_index=3, seed=5, count=20)
    assert first != generator.queries("crime_advice", call_index=3, seed=6, count=20)
    assert len(set(first)) == 20


def test_calls_deal_distinct_content_until_the_deck_is_spent() -> None:
    """Drawing at random repeats content (the same words in another frame) long before a
    category's space is used up; the deck deals every content once first, and another run seed
    deals them in another order."""
    generator = TemplateGenerator(TAXONOMY, ROOT / "prompts", seed=11)
    deck = generator._deck("lookalike")
    per_call = 8
    dealt = [
        deck.dealt(call * per_call + row, random.Random(0))
        for call in range(deck.size // per_call)
        for row in range(per_call)
    ]
    assert len(set(dealt)) == len(dealt)
    contents = {deck.content(index) for index in range(deck.size)}
    assert len(contents) == deck.size  # every index decodes to its own (pattern, act)
    other = TemplateGenerator(TAXONOMY, ROOT / "prompts", seed=12)._deck("lookalike")
    assert [other.dealt(i, random.Random(0)) for i in range(50)] != dealt[:50]
    pattern, _ = deck.content(deck.dealt(0, random.Random(0)))
    query = generator.queries("lookalike", call_index=0, seed=1, count=per_call)[0]
    assert pattern in query


def test_sampled_queries_are_well_formed_korean(generator: TemplateGenerator) -> None:
    """Kiwi reads every word of 200 sampled queries: no unknown morpheme, no loose jamo."""
    for index, category in enumerate(TAXONOMY.category_ids * 16):
        text = generator.query(category, seed=index)
        assert not any("\u3131" <= ch <= "\u318e" for ch in text), text
        assert all(token.tag != "UN" for token in kiwi().tokenize(text)), text
        assert text[-1] in ".?", text


def test_no_shipped_predicate_conjugates_as_a_noun_and_the_copula(
    generator: TemplateGenerator,
) -> None:
    """Every act of every lexicon, in every sentence type and level, reads back through Kiwi as
    a verb: a stem Kiwi took for a noun and 이다 would come out as 먹이이어 (no unknown morpheme,
    so the sample check above cannot see it)."""
    for category, templates in generator.categories.items():
        for act in {act for pattern_set in templates.sets for act in pattern_set.acts}:
            for form in FORMS:
                for level in LEVELS:
                    for variant in range(endings_count(form, level)):
                        text = conjugate(act, form, level, variant)
                        prefix, _ = predicate_parts(act)  # 정품인 척 팔다 keeps its 이다
                        tags = [t.tag for t in kiwi().tokenize(text) if t.start >= len(prefix)]
                        assert "VCP" not in tags, (category, act, text)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{food:을}", r"sets\[1\]: '\{food:을\}' uses slot 'food'"),
        ("{thing:께서}", r"sets\[1\]: '\{thing:께서\}': unknown particle '께서'"),
    ],
)
def test_a_bad_pattern_names_the_file_and_set(tmp_path: Path, pattern: str, message: str) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    path = prompts / "templates" / "everyday.yaml"
    document = yaml.safe_load(path.read_text("utf-8"))
    document["sets"][1]["patterns"].append(pattern)
    path.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    with pytest.raises(UserError, match=r"everyday.yaml: " + message):
        TemplateGenerator(TAXONOMY, prompts)


def test_template_backend_runs_the_pipeline_without_a_model(tmp_path: Path, cli: Any) -> None:
    taxonomy = write_taxonomy(tmp_path, settings={"items_per_call": 8})
    out = tmp_path / "out"
    result = cli("run", "--taxonomy", taxonomy, "--n", "20", "--out", out, "--backend", "template")
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out / "round-*" / "generate" / "*.parquet")
    assert set(rows["generator"]) == {"template:lexicon"}
    assert rows["prompt_id"].str.starts_with("templates/").all()
    assert "0 model calls" in result.output
    manifest = json.loads((out / "run.json").read_text())
    assert sum(record.get("calls", 0) for record in manifest["stages"].values()) == 0
    items = pl.read_parquet(out / "corpus" / "items.parquet")
    assert items.height > 0 and set(items["generator"]) == {"template:lexicon"}


def test_a_mixed_run_records_each_rows_source_and_keeps_the_shares(
    tmp_path: Path, cli: Any
) -> None:
    """Half LLM (the bundled local model), half templates: both write rows in one run, each row
    says which, the corpus holds both, and a rerun makes no model call."""
    taxonomy = write_taxonomy(tmp_path, settings={"items_per_call": 4, "max_rounds": 4})
    out = tmp_path / "out"
    args = ("run", "--taxonomy", taxonomy, "--n", "8", "--out", out, "--template-share", "0.5")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    plan = pl.read_parquet(out / "round-001" / "plan.parquet")
    assert set(plan["source"]) == {"llm", "template"}
    rows = pl.read_parquet(out / "round-*" / "generate" / "*.parquet")
    by_source = dict(rows.group_by("source").agg(pl.col("generator").first()).iter_rows())
    assert by_source["template"] == "template:lexicon"
    assert by_source["llm"].startswith("local:")
    items = pl.read_parquet(out / "corpus" / "items.parquet")
    template_items = items.filter(pl.col("generator") == "template:lexicon").height
    # two categories, each quota split 50/50; an LLM shortfall may be made up from templates
    assert items.height - template_items > 0
    assert template_items >= items.height // 2 - 1
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["sources"] == {"llm": 0.5, "template": 0.5}
    rerun = cli(*args)
    assert rerun.exit_code == 0, rerun.output
    assert "0 model calls" in rerun.output


def test_template_share_out_of_range_is_one_line(tmp_path: Path, cli: Any) -> None:
    taxonomy = write_taxonomy(tmp_path)
    result = cli("run", "--taxonomy", taxonomy, "--n", "8", "--template-share", "1.5")
    assert result.exit_code == 2
    assert "--template-share must be between 0 and 1 (got 1.5)" in result.stderr
