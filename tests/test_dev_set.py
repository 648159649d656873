"""The natural dev set (`evals/natural_dev.jsonl`) is the yardstick `synth eval` reports on, so it
must stay apart from everything that generates: no 8-character span of a dev query may occur in a
taxonomy exemplar or in any content of the template lexicons (slot words, acts, tasks, asks,
says, backstories, coded words). The shared frames are grammar (알려 주세요, 수 있을까요) and are
not content, so they are not compared."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import yaml

from pipeline.taxonomy import load_taxonomy
from pipeline.template_queries import TEMPLATES_DIR

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT / "evals" / "natural_dev.jsonl"
SPAN = 8
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_NOT_WORD = re.compile(r"[\W_]+")


def _dev_rows() -> list[dict]:
    return [json.loads(line) for line in DEV_SET.read_text("utf-8").splitlines() if line.strip()]


def _spans(text: str) -> set[str]:
    """8-character windows over the letters and digits only: spacing and punctuation differ
    between a lexicon's dictionary form and a typed query without changing what is said."""
    text = _NOT_WORD.sub("", text)
    return {text[i : i + SPAN] for i in range(len(text) - SPAN + 1)}


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(key) + _strings(value)]
    return []


def _generation_spans() -> dict[str, str]:
    """Every 8-character span of generation content, with where it comes from."""
    found: dict[str, str] = {}
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    for category in taxonomy.categories:
        for text in category.exemplars:
            for span in _spans(text):
                found.setdefault(span, f"exemplar of {category.id}")
    for path in sorted((ROOT / "prompts" / TEMPLATES_DIR).glob("[!_]*.yaml")):
        document = yaml.safe_load(path.read_text("utf-8"))
        for text in _strings(document):
            for piece in _PLACEHOLDER.split(text):
                for span in _spans(piece):
                    found.setdefault(span, path.name)
    return found


def test_the_dev_set_is_big_and_broad_enough() -> None:
    rows = _dev_rows()
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    labels = {c.id: c.label for c in taxonomy.categories}
    assert len(rows) >= 650
    assert len({row["text"] for row in rows}) == len(rows)
    per_category = Counter(row["category"] for row in rows)
    for category, label in labels.items():
        if label == "unsafe":
            assert per_category[category] >= 30, category
    assert sum(row["label"] == "safe" for row in rows) >= 300
    for row in rows:
        assert labels[row["category"]] == row["label"], row["id"]
    for name, values in (
        ("register", taxonomy.attributes.registers),
        ("form", taxonomy.attributes.forms),
        ("framing", taxonomy.attributes.framings),
    ):
        assert {row[name] for row in rows} == {value.id for value in values}, name


def test_no_dev_query_shares_an_8_character_span_with_generation_inputs() -> None:
    generation = _generation_spans()
    shared = [
        (row["id"], span, generation[span])
        for row in _dev_rows()
        for span in sorted(_spans(row["text"]))
        if span in generation
    ]
    assert not shared, shared[:20]
