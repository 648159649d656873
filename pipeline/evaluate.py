"""`synth eval RUN`: what a light classifier learns from a run's corpus, scored the way safety
papers report it (per-class precision, recall and F1, and their support-weighted average).

The classifier is a logistic regression on the run's own sentence embeddings (the vector cache
dedup filled, so the corpus embeds almost for free): seconds on a CPU, enough to compare corpora.
It is trained on the corpus's train split and scored on each `--test` file, or on the corpus's
own test split when none is given. Test files are CSV, JSONL or parquet with `text` and `label`
(`safe`/`unsafe`) and an optional `category`; with categories, a category classifier is scored
too. Every prediction is written to `<run>/eval/`, so the numbers can be checked and dug into.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.embed import VectorCache, make_embedder
from pipeline.errors import UserError
from pipeline.evaluation import ClassScore, per_class_scores, weighted_average
from pipeline.store import write_json_atomic, write_parquet_atomic
from pipeline.text import normalize, row_id

#: the task columns a test file may have, besides `text`
TASKS = ("label", "category")
#: the safety labels a test file may use
LABELS = ("safe", "unsafe")
#: texts embedded per step (one progress step)
EMBED_CHUNK = 256
#: the id namespace of test-file texts in the vector cache (never a category id)
TEST_NAMESPACE = "eval test file"


@dataclass
class TaskReport:
    """One task (safety label or category) on one test set."""

    task: str
    test: str
    classes: list[ClassScore] = field(default_factory=list)
    accuracy: float = 0.0

    @property
    def weighted(self) -> ClassScore:
        return weighted_average(self.classes)

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "test": self.test,
            "accuracy": self.accuracy,
            "classes": [vars(c) for c in [*self.classes, self.weighted]],
        }


def load_test_file(path: Path, categories: set[str]) -> pl.DataFrame:
    """A labelled test file as `text`, `label` and (when given) `category`; every mistake is one
    line naming the file and, where there is one, the line."""
    if not path.is_file():
        raise UserError(f"{path}: no such test file")
    readers: dict[str, Callable[[Path], pl.DataFrame]] = {
        ".csv": pl.read_csv,
        ".jsonl": pl.read_ndjson,
        ".ndjson": pl.read_ndjson,
        ".parquet": pl.read_parquet,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: a test file is .csv, .jsonl or .parquet (got {path.suffix!r})")
    try:
        frame = reader(path)
    except Exception as error:  # polars raises many kinds for a damaged file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot be read as {path.suffix[1:]}: {first}") from None
    missing = [column for column in ("text", "label") if column not in frame.columns]
    if missing:
        raise UserError(
            f"{path}: missing column {missing[0]!r} (it has: {', '.join(frame.columns) or 'none'})"
        )
    if frame.height == 0:
        raise UserError(f"{path}: no rows to score")
    columns = ["text", "label"] + (["category"] if "category" in frame.columns else [])
    frame = frame.select(pl.col(column).cast(pl.String) for column in columns)
    first_line = {".csv": 2, ".parquet": 1}.get(path.suffix.lower(), 1)
    where = "row" if path.suffix.lower() == ".parquet" else "line"
    for index, (text, label) in enumerate(frame.select("text", "label").iter_rows()):
        if text is None or not text.strip():
            raise UserError(f"{path} {where} {index + first_line}: empty text")
        if label not in LABELS:
            raise UserError(
                f"{path} {where} {index + first_line}: label {label!r} is not {' or '.join(LABELS)}"
            )
    if "category" in frame.columns:
        for index, category in enumerate(frame["category"]):
            if category is not None and category not in categories:
                raise UserError(
                    f"{path} {where} {index + first_line}: unknown category {category!r} "
                    f"(the corpus has: {', '.join(sorted(categories))})"
                )
    return frame.with_columns(pl.col("text").map_elements(normalize, return_dtype=pl.String))


def _classifier():
    """Logistic regression, balanced so a small class is not drowned out."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, class_weight="balanced")


@dataclass
class Evaluation:
    """The reports of every task on every test set, and where the predictions went."""

    reports: list[TaskReport]
    predictions: list[Path]
    train_items: int


def evaluate(
    run: Path,
    tests: Sequence[Path],
    embedder_spec: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Train on the corpus's train split, score on each test file (or the test split)."""
    items_path = run / "corpus" / "items.parquet"
    if not items_path.exists():
        raise UserError(f"{run}: no corpus yet (corpus/items.parquet); finish `synth run` first")
    items = pl.read_parquet(items_path)
    train = items.filter(pl.col("split") == "train")
    if train.height == 0 or train["label"].n_unique() < 2:
        raise UserError(f"{run}: the corpus's train split needs both safe and unsafe items")
    categories = set(items["category"].unique().to_list())
    test_sets = [(path.name, load_test_file(path, categories)) for path in tests] or [
        ("corpus test split", items.filter(pl.col("split") == "test"))
    ]
    if test_sets[0][1].height == 0:
        raise UserError(f"{run}: the corpus has no test split; pass --test FILE")
    cache = VectorCache(run / "embeddings", make_embedder(embedder_spec))
    try:
        embed = _embedder(cache, train.height + sum(t.height for _, t in test_sets), on_progress)
        train_vectors = embed(train["id"].to_list(), train["text"].to_list())
        test_vectors = [
            embed([row_id(TEST_NAMESPACE, text) for text in frame["text"]], frame["text"].to_list())
            if name != "corpus test split"
            else embed(frame["id"].to_list(), frame["text"].to_list())
            for name, frame in test_sets
        ]
    finally:
        cache.close()
    models = {}
    for task in TASKS:
        model = _classifier()
        model.fit(train_vectors, train[task].to_list())
        models[task] = model
    out = run / "eval"
    reports, written = [], []
    for (name, frame), vectors in zip(test_sets, test_vectors, strict=True):
        predicted = frame.select("text", *(t for t in TASKS if t in frame.columns))
        for task in TASKS:
            if task not in frame.columns:
                continue
            scored = frame[task].is_not_null()
            guesses = models[task].predict(vectors)
            predicted = predicted.with_columns(pl.Series(f"predicted_{task}", guesses))
            truth = frame[task].filter(scored).to_list()
            said = [str(g) for g, keep in zip(guesses, scored, strict=True) if keep]
            report = TaskReport(task, name, per_class_scores(truth, said, include_predicted=True))
            report.accuracy = sum(t == p for t, p in zip(truth, said, strict=True)) / len(truth)
            reports.append(report)
        path = out / f"{_slug(name)}-predictions.parquet"
        write_parquet_atomic(path, predicted)
        written.append(path)
    write_json_atomic(out / "results.json", [report.as_dict() for report in reports])
    return Evaluation(reports, written, train.height)


def _embedder(
    cache: VectorCache, total: int, on_progress: Callable[[int, int], None] | None
) -> Callable[[list[str], list[str]], np.ndarray]:
    """Embeds in steps through the run's vector cache, reporting (done, total) after each."""
    done = 0

    def embed(ids: list[str], texts: list[str]) -> np.ndarray:
        nonlocal done
        parts = []
        for start in range(0, len(ids), EMBED_CHUNK):
            parts.append(
                cache.vectors(ids[start : start + EMBED_CHUNK], texts[start : start + EMBED_CHUNK])
            )
            done += len(ids[start : start + EMBED_CHUNK])
            if on_progress is not None:
                on_progress(done, total)
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    return embed


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "test"
