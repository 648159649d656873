"""How a run's corpus transfers to the natural dev set, broken down by the dev set's attributes.

    synth eval RUN --test evals/natural_dev.jsonl       # writes RUN/eval/*-predictions.parquet
    python benchmarks/dev_transfer.py RUN [--test evals/natural_dev.jsonl]

Prints `synth eval`'s safety and category scores per register, framing and form of the dev
queries, then a second opinion: the same train split fitted with a character n-gram model and
with e5 + character n-grams together (scikit-learn defaults, C=1, nothing tuned on the dev set),
so a gain that holds under more than one classifier can be told from one that does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl
import scipy.sparse as sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.embed import make_embedder  # noqa: E402


def breakdown(scored: pl.DataFrame, attribute: str) -> None:
    print(f"\n{attribute:<12} {'n':>4} {'label acc':>9} {'label wF1':>9} {'cat acc':>8}")
    for value, rows in sorted(scored.group_by(attribute), key=lambda kv: kv[0][0]):
        label_f1 = f1_score(rows["label"], rows["predicted_label"], average="weighted")
        label_acc = (rows["label"] == rows["predicted_label"]).mean()
        category_acc = (rows["category"] == rows["predicted_category"]).mean()
        print(f"{value[0]:<12} {rows.height:>4} {label_acc:>9.3f} {label_f1:>9.3f} "
              f"{category_acc:>8.3f}")


def second_opinion(run: Path, test: pl.DataFrame) -> None:
    train = pl.read_parquet(run / "corpus" / "items.parquet").filter(pl.col("split") == "train")
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    train_chars = chars.fit_transform(train["text"].to_list())
    test_chars = chars.transform(test["text"].to_list())
    embedder = make_embedder("e5")
    train_e5 = sparse.csr_matrix(embedder.encode(train["text"].to_list()))
    test_e5 = sparse.csr_matrix(embedder.encode(test["text"].to_list()))
    models = {
        "char 1-3-grams": (train_chars, test_chars),
        "e5 + char n-grams": (
            sparse.hstack([train_e5, train_chars]).tocsr(),
            sparse.hstack([test_e5, test_chars]).tocsr(),
        ),
    }
    print(f"\n{'classifier':<20} {'label wF1':>9} {'category macro F1':>18}")
    for name, (fit_on, score_on) in models.items():
        scores = []
        for task, average in (("label", "weighted"), ("category", "macro")):
            model = LogisticRegression(max_iter=3000).fit(fit_on, train[task].to_list())
            scores.append(f1_score(test[task], model.predict(score_on), average=average))
        print(f"{name:<20} {scores[0]:>9.3f} {scores[1]:>18.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--test", type=Path, default=ROOT / "evals" / "natural_dev.jsonl")
    args = parser.parse_args()
    test = pl.read_ndjson(args.test)
    predictions = pl.read_parquet(args.run / "eval" / f"{args.test.name}-predictions.parquet")
    if predictions.height != test.height:
        sys.exit(f"{args.run}/eval: predictions for {predictions.height} rows, "
                 f"{args.test} has {test.height}: run synth eval with this --test first")
    # the predictions keep the test file's order (their text is normalised)
    scored = test.with_columns(
        predictions["predicted_label"], predictions["predicted_category"]
    )
    label_f1 = f1_score(scored["label"], scored["predicted_label"], average="weighted")
    category_f1 = f1_score(scored["category"], scored["predicted_category"], average="macro")
    print(f"synth eval (e5 + logistic regression): label weighted F1 {label_f1:.3f}, "
          f"category macro F1 {category_f1:.3f}")
    for attribute in ("register", "framing", "form", "label"):
        breakdown(scored, attribute)
    second_opinion(args.run, test)


if __name__ == "__main__":
    main()
