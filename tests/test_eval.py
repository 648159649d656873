"""`synth eval`: a logistic regression on the run's embeddings, scored per class on labelled
test files, with numbers that agree with scikit-learn's classification_report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sklearn.metrics import classification_report

from pipeline.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def run(template_run: Path) -> Path:
    return template_run


@pytest.fixture(scope="module")
def exemplars(run: Path) -> pl.DataFrame:
    """The taxonomy's own exemplars as a labelled test set (text, label, category)."""
    taxonomy = load_taxonomy(run.parent / "taxonomy.yaml")
    return pl.DataFrame(
        [
            {"text": text, "label": category.label, "category": category.id}
            for category in taxonomy.categories
            for text in category.exemplars
        ]
    )


def _agrees_with_sklearn(report: dict, predictions: pl.DataFrame, task: str) -> None:
    truth = predictions[task].to_list()
    expected = classification_report(
        truth, predictions[f"predicted_{task}"].to_list(), output_dict=True, zero_division=0
    )
    for row in report["classes"]:
        reference = expected[row["label"]]
        for metric, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[metric] == pytest.approx(reference[key], abs=1e-9), (row["label"], metric)
        assert row["support"] == reference["support"]
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    labels = {row["label"] for row in report["classes"]} - {"weighted avg"}
    assert labels == set(expected) - {"accuracy", "macro avg", "weighted avg"}


def test_eval_prints_per_class_scores_that_match_sklearn(
    run: Path, exemplars: pl.DataFrame, tmp_path: Path, cli: Any
) -> None:
    jsonl = tmp_path / "exemplars.jsonl"
    exemplars.write_ndjson(jsonl)
    csv = tmp_path / "labels-only.csv"
    exemplars.select("text", "label").write_csv(csv)
    result = cli("eval", run, "--test", jsonl, "--test", csv)
    assert result.exit_code == 0, result.output
    for title in (
        "exemplars.jsonl: safety (safe/unsafe)",
        "exemplars.jsonl: harm category",
        "labels-only.csv: safety (safe/unsafe)",
    ):
        assert title in result.stdout
    assert "labels-only.csv: harm category" not in result.stdout, "no category column, no task"
    assert "weighted avg" in result.stdout and "unsafe" in result.stdout
    reports = json.loads((run / "eval" / "results.json").read_text())
    assert [(r["test"], r["task"]) for r in reports] == [
        ("exemplars.jsonl", "label"),
        ("exemplars.jsonl", "category"),
        ("labels-only.csv", "label"),
    ]
    predictions = pl.read_parquet(run / "eval" / "exemplars.jsonl-predictions.parquet")
    assert predictions.height == exemplars.height
    _agrees_with_sklearn(reports[0], predictions, "label")
    _agrees_with_sklearn(reports[1], predictions, "category")
    weighted = reports[0]["classes"][-1]
    printed = next(line for line in result.stdout.splitlines() if "weighted avg" in line)
    assert f"{weighted['f1']:.3f}" in printed
    assert weighted["f1"] > 0.6, "a classifier trained on the corpus reads its own exemplars"


def test_without_a_test_file_it_scores_the_corpus_test_split(run: Path, cli: Any) -> None:
    result = cli("eval", run)
    assert result.exit_code == 0, result.output
    assert "corpus test split: safety (safe/unsafe)" in result.stdout
    test_split = pl.read_parquet(run / "corpus" / "items.parquet").filter(pl.col("split") == "test")
    predictions = pl.read_parquet(run / "eval" / "corpus-test-split-predictions.parquet")
    assert predictions.height == test_split.height
    reports = json.loads((run / "eval" / "results.json").read_text())
    _agrees_with_sklearn(reports[0], predictions, "label")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("no-label.csv", "text\n안녕\n", "no-label.csv: missing column 'label' (it has: text)"),
        (
            "bad-label.jsonl",
            '{"text": "첫 줄", "label": "safe"}\n{"text": "둘째 줄", "label": "harmful"}\n',
            "bad-label.jsonl line 2: label 'harmful' is not safe or unsafe",
        ),
        ("empty.csv", "text,label\n", "empty.csv: no rows to score"),
        (
            "bad-category.csv",
            "text,label,category\n질문,unsafe,weapons\n",
            "bad-category.csv line 2: unknown category 'weapons'",
        ),
        ("blank.csv", 'text,label\n"",safe\n', "blank.csv line 2: empty text"),
        ("notes.txt", "text\n", "notes.txt: a test file is .csv, .jsonl or .parquet"),
        ("broken.parquet", "not parquet at all", "broken.parquet: cannot be read as parquet"),
    ],
)
def test_a_bad_test_file_is_one_line(
    run: Path, tmp_path: Path, cli: Any, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = cli("eval", run, "--test", path)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert expected in line
    assert "Traceback" not in result.output


def test_eval_of_a_directory_without_a_corpus_is_one_line(tmp_path: Path, cli: Any) -> None:
    result = cli("eval", tmp_path, "--test", tmp_path / "missing.csv")
    assert result.exit_code == 2
    assert "no corpus yet (corpus/items.parquet); finish `synth run` first" in result.stderr
