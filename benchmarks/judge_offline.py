"""The offline judge (and the screen before it) on the labelled set in tests/data/judge_eval.yaml.

Prints per-category precision, recall and F1 of the judge's category reading on the positives,
macro F1, how many positives the screen and judge keep, how many negatives they reject, and
items per second (embedding included, vectors not cached). Usage:

    python benchmarks/judge_offline.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

from pipeline.embed import VectorCache, make_embedder
from pipeline.evaluation import macro_f1, per_class_scores, weighted_f1
from pipeline.judges.offline import CentroidJudge
from pipeline.stages import judge as judge_stage
from pipeline.stages import screen
from pipeline.taxonomy import load_taxonomy
from pipeline.text import row_id

ROOT = Path(__file__).resolve().parents[1]


def eval_rows(taxonomy_labels: dict[str, str]) -> pl.DataFrame:
    data = yaml.safe_load((ROOT / "tests" / "data" / "judge_eval.yaml").read_text("utf-8"))
    rows = [
        {"text": text, "category": category, "truth": category, "why": "positive"}
        for category, texts in data["positives"].items()
        for text in texts
    ] + [
        {"text": n["text"], "category": n["intended"], "truth": None, "why": n["why"]}
        for n in data["negatives"]
    ]
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.struct("category", "text")
        .map_elements(lambda r: row_id(r["category"], r["text"]), return_dtype=pl.String)
        .alias("id"),
        pl.col("category").replace_strict(taxonomy_labels).alias("label"),
        pl.lit(None, dtype=pl.String).alias("rejected_by"),
        pl.lit(None, dtype=pl.String).alias("reject_reason"),
    )


def main() -> None:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    rows = eval_rows({c.id: c.label for c in taxonomy.categories})
    with tempfile.TemporaryDirectory() as scratch:
        vectors = VectorCache(Path(scratch), make_embedder(taxonomy.settings.judge.embedder))
        started = time.perf_counter()
        judge = CentroidJudge(taxonomy, vectors, taxonomy.settings.judge.min_margin)
        setup = time.perf_counter() - started
        started = time.perf_counter()
        judged = judge_stage.run(screen.run(rows, taxonomy), judge)
        elapsed = time.perf_counter() - started
        vectors.close()

    positives = judged.filter(pl.col("why") == "positive")
    scores = per_class_scores(positives["truth"].to_list(), positives["judge_category"].to_list())
    print(f"{'category':<28}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>5}")
    for score in scores:
        print(
            f"{score.label:<28}{score.precision:>10.3f}{score.recall:>8.3f}{score.f1:>8.3f}"
            f"{score.support:>5}"
        )
    print(f"{'macro avg':<28}{'':>10}{'':>8}{macro_f1(scores):>8.3f}{len(positives):>5}")
    print(f"{'weighted avg':<28}{'':>10}{'':>8}{weighted_f1(scores):>8.3f}{len(positives):>5}")
    kept = positives.filter(pl.col("rejected_by").is_null()).height
    print(f"positives kept by screen+judge: {kept}/{len(positives)}")
    negatives = judged.filter(pl.col("why") != "positive")
    for why, group in negatives.group_by("why", maintain_order=True):
        by_stage = group["rejected_by"].fill_null("kept").value_counts(sort=True)
        caught = group.filter(pl.col("rejected_by").is_not_null()).height
        detail = ", ".join(f"{stage} {count}" for stage, count in by_stage.iter_rows())
        print(f"negatives {why[0]}: rejected {caught}/{len(group)} ({detail})")
    print(
        f"exemplar centroids: {setup:.1f}s; screen+judge: {len(rows) / elapsed:.1f} items/s "
        f"({len(rows)} items in {elapsed:.1f}s, embedding included)"
    )


if __name__ == "__main__":
    main()
