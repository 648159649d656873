"""Breadth of a finished run's corpus, and whether its test split measures anything.

    python benchmarks/corpus_breadth.py outputs/demo [--taxonomy taxonomy.yaml]

Prints, per category, how many topics hold at least 3% of its rows; every register, form and
framing value that never occurs; each taxonomy keyword more than 85% on one label; how many
template skeletons and dedup groups cross splits; and the accuracy of a classifier that sees only
the first two and last two words of each query (trained on train, scored on test): a corpus
whose label can be read off its sentence frame scores near 1.0 here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.breadth import (  # noqa: E402
    KEYWORD_SIDE_LIMIT,
    attribute_counts,
    keyword_balance,
    topic_shares,
)
from pipeline.taxonomy import load_taxonomy  # noqa: E402

MIN_TOPIC_SHARE = 0.03


def edge_words(text: str) -> str:
    words = text.split()
    return " ".join(["B:" + w for w in words[:2]] + ["E:" + w for w in words[-2:]])


def edge_word_accuracy(items: pl.DataFrame) -> float:
    """Label accuracy on the test split of a classifier on the first two and last two words."""
    train = items.filter(pl.col("split") == "train")
    test = items.filter(pl.col("split") == "test")
    vectorizer = CountVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False)
    features = vectorizer.fit_transform([edge_words(t) for t in train["text"]])
    model = LogisticRegression(max_iter=2000).fit(features, train["label"].to_list())
    predicted = model.predict(vectorizer.transform([edge_words(t) for t in test["text"]]))
    return float((predicted == test["label"].to_numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--taxonomy", type=Path, default=ROOT / "taxonomy.yaml")
    args = parser.parse_args()
    taxonomy = load_taxonomy(args.taxonomy)
    items = pl.read_parquet(args.run / "corpus" / "items.parquet")
    print(f"{items.height} items in {args.run}")

    shares = topic_shares(items)
    print("\ntopics with >= 3% of their category's rows (goal: >= 8 each)")
    for category in taxonomy.category_ids:
        rows = shares.filter(pl.col("category") == category)
        wide = rows.filter(pl.col("share") >= MIN_TOPIC_SHARE).height
        print(f"  {category:<26} {wide:>3} of {rows.height:>3} topics")

    counts = attribute_counts(items)
    print("\nattribute values never seen (goal: none)")
    for attribute, values in (
        ("register", taxonomy.attributes.registers),
        ("form", taxonomy.attributes.forms),
        ("framing", taxonomy.attributes.framings),
    ):
        seen = set(counts.filter(pl.col("attribute") == attribute)["value"])
        missing = [v.id for v in values if v.id not in seen]
        print(f"  {attribute:<9} {', '.join(missing) or '-'}")
        overall = (
            items.group_by(attribute).len().sort("len", descending=True)
            if attribute in items.columns else None
        )
        if overall is not None:
            print("    " + ", ".join(f"{v}={n}" for v, n in overall.iter_rows()))

    balance = keyword_balance(items, taxonomy)
    over = balance.filter(pl.col("top_share") > KEYWORD_SIDE_LIMIT)
    present = balance.filter((pl.col("safe") + pl.col("unsafe")) > 0)
    print(f"\nkeywords more than {KEYWORD_SIDE_LIMIT:.0%} on one label: {over.height} "
          f"of {present.height} that occur ({balance.height} listed)")
    for row in over.head(30).iter_rows(named=True):
        print(f"  {row['keyword']:<12} {row['category']}/{row['sub_harm']:<20} "
              f"safe {row['safe']:>4} unsafe {row['unsafe']:>4}")

    if "skeleton" in items.columns:
        crossing = (
            items.filter(pl.col("skeleton").is_not_null())
            .group_by("skeleton")
            .agg(pl.col("split").n_unique().alias("splits"))
            .filter(pl.col("splits") > 1)
        )
        print(f"\nskeletons in more than one split: {crossing.height}")
    groups = items.group_by("split_group").agg(pl.col("split").n_unique().alias("splits"))
    print(f"split groups in more than one split: {groups.filter(pl.col('splits') > 1).height}")
    print(f"\nfirst-two/last-two-words classifier, label accuracy on test: "
          f"{edge_word_accuracy(items):.3f} (goal: <= 0.80)")


if __name__ == "__main__":
    main()
