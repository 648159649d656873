"""Per-class precision, recall and F1, the table safety papers report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class_scores(
    truth: Sequence[str], predicted: Sequence[str], include_predicted: bool = False
) -> list[ClassScore]:
    """One score per label that occurs in `truth` (and, with `include_predicted`, in
    `predicted` too, as scikit-learn's classification_report lists them), in sorted order."""
    scores = []
    labels = set(truth) | (set(predicted) if include_predicted else set())
    for label in sorted(labels):
        true_positive = sum(
            t == label and p == label for t, p in zip(truth, predicted, strict=True)
        )
        predicted_count = sum(p == label for p in predicted)
        support = sum(t == label for t in truth)
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(ClassScore(label, precision, recall, f1, support))
    return scores


def macro_f1(scores: Sequence[ClassScore]) -> float:
    return sum(score.f1 for score in scores) / len(scores) if scores else 0.0


def weighted_f1(scores: Sequence[ClassScore]) -> float:
    total = sum(score.support for score in scores)
    return sum(score.f1 * score.support for score in scores) / total if total else 0.0


def weighted_average(scores: Sequence[ClassScore]) -> ClassScore:
    """Precision, recall and F1 each weighted by support: the overall row papers report."""
    total = sum(score.support for score in scores)

    def mean(values: list[float]) -> float:
        if not total:
            return 0.0
        return sum(v * s.support for v, s in zip(values, scores, strict=True)) / total

    return ClassScore(
        "weighted avg",
        mean([s.precision for s in scores]),
        mean([s.recall for s in scores]),
        mean([s.f1 for s in scores]),
        total,
    )
