"""Respond, balance and export: responses that follow the policy, quotas and the safe share,
splits that never cut a dedup cluster, and examples that render from their task's templates."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.callcache import CallCache
from pipeline.errors import UserError
from pipeline.events import EventLog
from pipeline.export import TASKS, ExampleRenderer, build, load_instructions, write_corpus
from pipeline.llm import CallStats, LLMClient
from pipeline.plan import quotas
from pipeline.prompts import PromptLibrary
from pipeline.responders import LLMResponder, TemplateResponder
from pipeline.splits import assign_splits, split_groups
from pipeline.stages import balance
from pipeline.taxonomy import load_taxonomy
from pipeline.text import row_id
from tests.scripted_backend import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(ROOT / "taxonomy.yaml")
LABELS = {c.id: c.label for c in TAXONOMY.categories}
CRISIS_LINES = ("109", "1577-0199")


def _rows(category: str, count: int, task_size: int = 4) -> list[dict]:
    """`count` accepted rows of a category: exemplar texts with a counter, `task_size` per call."""
    texts = TAXONOMY.category(category).exemplars
    rows = []
    for index in range(count):
        text = f"{texts[index % len(texts)]} ({index})"
        rows.append(
            {
                "id": row_id(category, text),
                "category": category,
                "label": LABELS[category],
                "text": text,
                "round": 1,
                "task_id": f"{category}-{index // task_size}",
                "judge_score": 1.0 - (index % task_size) * 0.1,
                "cluster_id": row_id(category, text),
                "rejected_by": None,
                "reject_reason": None,
            }
        )
    return rows


# -- respond --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates() -> TemplateResponder:
    return TemplateResponder(TAXONOMY, ROOT / "prompts", seed=0)


def _row(row_id: str, category: str, topic: str | None = None) -> dict:
    return {"id": row_id, "category": category, "topic": topic}


def test_self_harm_responses_give_both_crisis_lines(templates: TemplateResponder) -> None:
    """109 and 1577-0199 in every self-harm response, whatever its sub-harm."""
    topics = [None, *(s.id for s in TAXONOMY.category("self_harm").sub_harms)]
    answers = [
        templates.answer(_row(f"id-{i}", "self_harm", topics[i % len(topics)]))
        for i in range(50)
    ]
    assert all(all(line in a.text for line in CRISIS_LINES) for a in answers)
    assert len({a.text for a in answers}) > 10, "responses vary by seed, not one string repeated"


def test_safe_queries_get_no_template_scaffold(templates: TemplateResponder) -> None:
    """The offline responder writes no empty "I'll explain step by step" for a safe query: it
    leaves the response out (None), and the response task skips the item."""
    for category in ("lookalike", "everyday", "sensitive_info"):
        for text in TAXONOMY.category(category).exemplars:
            answer = templates.answer(_row(row_id(category, text), category))
            assert answer.text is None and answer.source == "none", (text, answer)


def test_unsafe_responses_decline_and_offer_an_alternative(templates: TemplateResponder) -> None:
    answer = templates.answer(_row("x", "crime_advice"))
    opening, *_ = templates.parts["crime_advice"]
    alternatives = templates.parts["crime_advice"][2]
    assert any(line in answer.text for line in opening)
    assert any(line in answer.text for line in alternatives)
    assert answer.source == "template:crime_advice"


def test_an_unsafe_response_offers_its_sub_harms_alternative(templates: TemplateResponder) -> None:
    """A piracy request is offered a legal way to the software, not a generic alternative."""
    for category in TAXONOMY.categories:
        for sub_harm in category.sub_harms:
            row = _row(f"{category.id}-{sub_harm.id}", category.id, sub_harm.id)
            answer = templates.answer(row)
            assert sub_harm.alternative in answer.text, (category.id, sub_harm.id)


def test_llm_responses_are_held_to_the_policy(tmp_path: Path, templates: TemplateResponder) -> None:
    """Scripted answers: a refusal of a safe query, a self-harm reply without the crisis line,
    a cut-off answer and a good one."""
    backend = ScriptedBackend(
        [
            "죄송하지만 도와드릴 수 없습니다.",
            "많이 힘드시겠어요. 혼자 견디지 마세요.",
            "그건 알려 드릴 수 없어요. 대신 합법적인 방법을 찾아볼게요.",
        ]
    )
    client = LLMClient(backend, CallCache(tmp_path / "c.sqlite"), EventLog(tmp_path / "e"))
    responder = LLMResponder(
        TAXONOMY,
        PromptLibrary(ROOT / "prompts"),
        client,
        TAXONOMY.settings.responder,
        templates,
        CallStats(),
    )
    rows = [_rows("lookalike", 1)[0], _rows("self_harm", 1)[0], _rows("crime_advice", 1)[0]]
    refused, no_line, good = responder.respond(rows)
    assert refused.flags == ("refusal_replaced",) and refused.text is None
    assert no_line.flags == ("required_added:109",)  # the line it adds carries both numbers
    assert "109" in no_line.text and "1577-0199" in no_line.text
    assert no_line.text.startswith("많이 힘드시겠어요.")
    assert good.flags == () and good.source == "llm:scripted:script"
    assert "응답 지침" in backend.requests[0].messages[0][1], "the prompt carries the policy"


def test_a_required_line_missing_from_a_part_is_a_clear_error(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    (prompts / "respond").mkdir(parents=True)
    document = yaml.safe_load((ROOT / "prompts/respond/templates.yaml").read_text("utf-8"))
    document["categories"]["self_harm"]["alternatives"].append("누군가에게 꼭 이야기해 보세요.")
    (prompts / "respond" / "templates.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True), "utf-8"
    )
    with pytest.raises(UserError, match=r"templates.yaml: categories.self_harm.required: '109'"):
        TemplateResponder(TAXONOMY, prompts, seed=0)


# -- balance --------------------------------------------------------------------------------------


def test_balance_meets_quotas_and_the_safe_share() -> None:
    wanted = quotas(TAXONOMY, 130)
    rows = [row for c in wanted for row in _rows(c, wanted[c] + 5)]
    output, shortfalls = balance.run(
        pl.DataFrame(rows), wanted, LABELS, TAXONOMY.settings.safe_share, {}
    )
    chosen = output.filter(pl.col("rejected_by").is_null())
    assert dict(Counter(chosen["category"])) == wanted and not shortfalls
    assert (chosen["label"] == "safe").sum() == round(130 * TAXONOMY.settings.safe_share)
    assert set(output.filter(pl.col("rejected_by") == "balance")["reject_reason"]) == {"over_quota"}


def test_a_short_category_trims_the_other_label_to_keep_the_share() -> None:
    wanted = quotas(TAXONOMY, 130)
    rows = [row for c in wanted for row in _rows(c, wanted[c] if LABELS[c] == "safe" else 3)]
    reasons = {c: "max_rounds (3) reached" for c in wanted if LABELS[c] == "unsafe"}
    output, shortfalls = balance.run(
        pl.DataFrame(rows), wanted, LABELS, TAXONOMY.settings.safe_share, reasons
    )
    chosen = output.filter(pl.col("rejected_by").is_null())
    safe = (chosen["label"] == "safe").sum()
    assert safe / chosen.height == pytest.approx(TAXONOMY.settings.safe_share, abs=0.02)
    short = {s.category: s.reason for s in shortfalls}
    assert short["crime_advice"] == "max_rounds (3) reached"
    assert short["everyday"].startswith("trimmed to keep safe_share")


def test_balance_spreads_picks_over_generation_calls() -> None:
    rows = pl.DataFrame(_rows("crime_advice", 12, task_size=4))  # three calls of four items
    output, _ = balance.run(rows, {"crime_advice": 3}, LABELS, None, {})
    chosen = output.filter(pl.col("rejected_by").is_null())
    assert chosen["task_id"].n_unique() == 3, "one item from each call, not three from the first"
    assert (chosen["judge_score"] == 1.0).all(), "each call's best item"


# -- splits ---------------------------------------------------------------------------------------


def test_no_dedup_cluster_spans_two_splits() -> None:
    ids = [f"item{i}" for i in range(300)]
    # chains across rounds: item i names item i-1 as its cluster every 7th row
    clusters = [f"item{i - 1}" if i % 7 == 3 else f"item{i}" for i in range(300)]
    categories = [["crime_advice", "everyday", "self_harm"][i % 3] for i in range(300)]
    groups = split_groups(ids, clusters)
    split = assign_splits(ids, categories, groups, TAXONOMY.settings.splits.shares(), seed=3)
    by_group: dict[str, set[str]] = defaultdict(set)
    for item, group in zip(ids, groups, strict=True):
        by_group[group].add(split[item])
    assert all(len(splits) == 1 for splits in by_group.values())
    assert split["item2"] == split["item3"], "a chained pair stays together"
    counts = Counter(split.values())
    assert counts["train"] == pytest.approx(240, abs=6)
    assert counts["validation"] == pytest.approx(30, abs=6)
    assert counts["test"] == pytest.approx(30, abs=6)
    for category in ("crime_advice", "everyday", "self_harm"):
        mine = Counter(split[i] for i, c in zip(ids, categories, strict=True) if c == category)
        assert mine["validation"] > 0 and mine["test"] > 0, "stratified by category"


def test_splits_are_seeded() -> None:
    ids = [f"item{i}" for i in range(100)]
    categories = ["everyday"] * 100
    shares = TAXONOMY.settings.splits.shares()
    first = assign_splits(ids, categories, ids, shares, seed=1)
    assert first == assign_splits(ids, categories, ids, shares, seed=1)
    assert first != assign_splits(ids, categories, ids, shares, seed=2)


# -- export ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = quotas(TAXONOMY, 130)
    rows = pl.DataFrame([row for c in wanted for row in _rows(c, wanted[c])])
    responder = TemplateResponder(TAXONOMY, ROOT / "prompts", seed=0)
    answers = responder.respond(list(rows.iter_rows(named=True)))
    rows = rows.with_columns(
        pl.Series("response", [a.text for a in answers]),
        pl.Series("response_source", [a.source for a in answers]),
        pl.lit("local:test").alias("generator"),
    )
    pools = load_instructions(ROOT / "prompts")
    items, examples = build(rows, TAXONOMY, pools, TAXONOMY.settings.splits.shares(), seed=0)
    root = tmp_path_factory.mktemp("export")
    write_corpus(root, items, examples, "---\n---\ncard\n")
    return root / "corpus"


def test_every_example_renders_from_a_template_of_its_task(exported: Path) -> None:
    pools = load_instructions(ROOT / "prompts")
    assert all(len(pools[task].templates) >= 10 for task in TASKS)
    renderer = ExampleRenderer(TAXONOMY, pools, seed=0)
    examples = pl.concat(
        pl.read_parquet(exported / f"{split}.parquet") for split in ("train", "validation", "test")
    )
    items = pl.read_parquet(exported / "items.parquet")
    answered = items.filter(pl.col("response").is_not_null()).height
    assert 0 < answered < items.height  # safe items have no offline response to teach
    assert examples.height == 2 * 130 + answered, "no response example without a response"
    for example in examples.iter_rows(named=True):
        (template,) = [
            t for t in pools[example["task"]].templates if t.id == example["template_id"]
        ]
        assert example["instruction"] == renderer.instruction(example["task"], template)
        assert example["input"] == template.input_prefix + example["text"]
        assert example["output"] == renderer.output(example["task"], template, example)
    used = examples.group_by("task").agg(pl.col("template_id").n_unique())
    assert (used["template_id"] >= 8).all(), "the pool is actually used, not one template"


def test_the_jsonl_loads_as_chat_messages(exported: Path) -> None:
    for split in ("train", "validation", "test"):
        lines = (exported / "chat" / f"{split}.jsonl").read_text("utf-8").splitlines()
        assert lines
        for line in lines:
            record = json.loads(line)
            assert list(record) == ["messages"]
            assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
            assert all(m["content"].strip() for m in record["messages"])


def test_classification_tables_and_items_agree(exported: Path) -> None:
    items = pl.read_parquet(exported / "items.parquet")
    table = pl.concat(
        [
            pl.read_csv(exported / "classification" / f"{s}.csv")
            for s in ("train", "validation", "test")
        ]
    )
    assert table.columns == ["text", "label", "category"]
    assert sorted(table["text"]) == sorted(items["text"])
    summary = json.loads((exported / "summary.json").read_text())
    assert summary["items"] == 130 and sum(summary["by_split"].values()) == 130


def test_a_thin_instruction_pool_is_a_clear_error(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    (prompts / "instructions").mkdir(parents=True)
    for task in TASKS:
        source = (ROOT / "prompts" / "instructions" / f"{task}.yaml").read_text("utf-8")
        (prompts / "instructions" / f"{task}.yaml").write_text(source, "utf-8")
    document = yaml.safe_load((prompts / "instructions" / "safety.yaml").read_text("utf-8"))
    document["templates"] = document["templates"][:3]
    (prompts / "instructions" / "safety.yaml").write_text(yaml.safe_dump(document), "utf-8")
    with pytest.raises(UserError, match=r"safety.yaml:\d+: templates: needs at least 10"):
        load_instructions(prompts)


def test_validate_checks_the_response_and_instruction_files(tmp_path: Path, cli: Any) -> None:
    from tests.conftest import write_taxonomy

    taxonomy = write_taxonomy(tmp_path)
    path = tmp_path / "prompts" / "instructions" / "category.yaml"
    document = yaml.safe_load(path.read_text("utf-8"))
    del document["templates"][2]["answer"]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    result = cli("validate", taxonomy)
    assert result.exit_code == 2
    assert "category.yaml: category-03: answer must be 'name_ko' or 'id'" in result.stderr
