"""The template generator: the shipped lexicons load, draw reproducible, distinct, well-formed
Korean queries, and run through the whole pipeline with no model call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.errors import UserError
from pipeline.korean import clause, kiwi, predicate_parts
from pipeline.stages.korean_lint import particle_disagrees, repeated_word
from pipeline.taxonomy import load_taxonomy
from pipeline.template_queries import TemplateGenerator, _stand_in
from tests.conftest import write_taxonomy

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(ROOT / "taxonomy.yaml")


@pytest.fixture(scope="module")
def generator() -> TemplateGenerator:
    return TemplateGenerator(TAXONOMY, ROOT / "prompts")


def _sample(generator: TemplateGenerator, category: str, calls: int = 6) -> list:
    return [
        item
        for call in range(calls)
        for item in generator.queries(category, call_index=call, seed=call, count=20)
    ]


def test_every_unsafe_sub_harm_is_a_topic_with_a_twin(generator: TemplateGenerator) -> None:
    """The taxonomy's sub-harms are what the lexicons deal: each one is a topic of its category,
    and its safe twin is dealt by the twin category, so its words reach both labels."""
    twin_category = TAXONOMY.settings.twin_category
    twins = {
        (item.twin_of, item.topic)
        for item in _sample(generator, twin_category, calls=40)
        if item.twin_of
    }
    for category in TAXONOMY.categories:
        if category.label != "unsafe":
            continue
        assert len(category.sub_harms) >= 10, category.id
        topics = set(generator.topics(category.id))
        for sub_harm in category.sub_harms:
            assert sub_harm.id in topics, (category.id, sub_harm.id)
        assert {t for c, t in twins if c == category.id} or category.id == (
            "malicious_personification"
        ), category.id


def test_queries_are_seeded_distinct_and_attributed(generator: TemplateGenerator) -> None:
    first = generator.queries("crime_advice", call_index=3, seed=5, count=20)
    assert first == generator.queries("crime_advice", call_index=3, seed=5, count=20)
    assert first != generator.queries("crime_advice", call_index=3, seed=6, count=20)
    assert len({item.text for item in first}) == 20
    for item in first:
        assert item.topic in generator.topics("crime_advice")
        assert item.skeleton.startswith(f"crime_advice/{item.topic}/")
        assert item.twin_of is None


def test_topics_are_dealt_in_turn(generator: TemplateGenerator) -> None:
    """Each call walks the topics round-robin, so no sub-harm crowds out the others."""
    topics = generator.topics("crime_advice")
    items = generator.queries("crime_advice", call_index=0, seed=1, count=len(topics) * 3)
    counts = {topic: sum(item.topic == topic for item in items) for topic in topics}
    assert min(counts.values()) >= 2, counts


def test_every_attribute_value_reaches_both_labels(generator: TemplateGenerator) -> None:
    """Registers, forms and framings are drawn for safe and unsafe queries alike: no style may
    tell the label."""
    by_label: dict[str, dict[str, set[str]]] = {"safe": {}, "unsafe": {}}
    for category in TAXONOMY.categories:
        for item in _sample(generator, category.id):
            seen = by_label[category.label]
            for name in ("register", "form", "framing"):
                seen.setdefault(name, set()).add(getattr(item, name))
    for label, seen in by_label.items():
        assert seen["register"] == {v.id for v in TAXONOMY.attributes.registers}, label
        assert seen["form"] == {v.id for v in TAXONOMY.attributes.forms}, label
        assert seen["framing"] == {v.id for v in TAXONOMY.attributes.framings}, label


def test_sampled_queries_are_well_formed_korean(generator: TemplateGenerator) -> None:
    """Kiwi reads every word of queries in the base registers (no unknown morpheme, no loose
    jamo), and no query of any register trips the screen's Korean lint."""
    for index, category in enumerate(TAXONOMY.category_ids * 20):
        item = generator.query(category, seed=index)
        assert not repeated_word(item.text), item
        assert not particle_disagrees(item.text), item
        if item.register in ("banmal", "jondaetmal", "written"):
            text = item.text
            assert not any("\u3131" <= ch <= "\u318e" for ch in text), item
            assert all(token.tag != "UN" for token in kiwi().tokenize(text)), item
            assert text[-1] in ".?", item


def test_every_shipped_content_conjugates_as_a_verb(generator: TemplateGenerator) -> None:
    """Every act and task of every lexicon, in every clause form the frames use, reads back
    through Kiwi as a verb: a stem Kiwi took for a noun and 이다 would come out as 먹이이어."""
    for category, topics in generator._topics.items():
        for _, _, entries, slots in topics:
            for entry in entries:
                if entry.kind not in ("act", "task"):
                    continue
                text = _stand_in(entry.text, slots)
                prefix, _ = predicate_parts(text)
                for form in ("mod", "eo", "eodo", "ryeomyeon"):
                    joined = clause(text, form)
                    tags = [t.tag for t in kiwi().tokenize(joined) if t.start >= len(prefix)]
                    assert "VCP" not in tags, (category, entry.text, joined)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{food:을} 만들다", r"topic \w+: act\[\d+\]: '\{food:을\} 만들다' uses slot 'food'"),
        ("{thing:께서} 만들다", r"unknown particle '께서'"),
        ("맛있는 요리", r"dictionary form"),
    ],
)
def test_a_bad_content_names_the_file_and_topic(
    tmp_path: Path, content: str, message: str
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    path = prompts / "templates" / "everyday.yaml"
    document = yaml.safe_load(path.read_text("utf-8"))
    topic = document["topics"][0]
    topic.setdefault("slots", {})["thing"] = ["국수"]
    topic.setdefault("act", []).append(content)
    path.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    with pytest.raises(UserError, match=r"everyday.yaml: .*" + message):
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
