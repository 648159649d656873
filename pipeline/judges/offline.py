"""The offline judge: nearest centroid over the embeddings of the taxonomy's exemplars.

An item is read as the category whose exemplar centroid is closest. It is kept when that is its
intended category by at least `min_margin` of cosine similarity, and when an unsafe item sits
closer to the unsafe exemplars than to the safe ones (and a safe item the other way round).
No model call, no network: the embedded default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.embed import VectorCache
from pipeline.judges import Item, JudgeFailure, Verdict
from pipeline.taxonomy import Taxonomy
from pipeline.text import row_id

#: softmax temperature over cosine similarities; e5 similarities differ by hundredths
SCORE_TEMPERATURE = 0.02


class CentroidJudge:
    name = "offline"
    #: a distance to exemplar centroids cannot tell intent: template rows keep their label
    defers_to_templates = True

    def __init__(self, taxonomy: Taxonomy, vectors: VectorCache, min_margin: float) -> None:
        self.taxonomy = taxonomy
        self.vectors = vectors
        self.min_margin = min_margin
        self.category_ids = taxonomy.category_ids
        self.unsafe = np.array([c.label == "unsafe" for c in taxonomy.categories])
        centroids = []
        for category in taxonomy.categories:
            ids = [row_id(category.id, text) for text in category.exemplars]
            exemplar_vectors = vectors.vectors(ids, category.exemplars)
            centroid = exemplar_vectors.mean(axis=0)
            centroids.append(centroid / np.linalg.norm(centroid))
        self.centroids = np.stack(centroids)

    def judge(self, items: Sequence[Item]) -> list[Verdict | JudgeFailure]:
        if not items:
            return []
        item_vectors = self.vectors.vectors([i.id for i in items], [i.text for i in items])
        similarity = item_vectors @ self.centroids.T
        logits = (similarity - similarity.max(axis=1, keepdims=True)) / SCORE_TEMPERATURE
        probability = np.exp(logits)
        probability /= probability.sum(axis=1, keepdims=True)
        verdicts: list[Verdict | JudgeFailure] = []
        for row, item in enumerate(items):
            sims = similarity[row]
            best = int(sims.argmax())
            intended = self.category_ids.index(item.category)
            others = np.delete(sims, intended)
            margin = float(sims[intended] - others.max()) if others.size else 1.0
            closer_to_unsafe = (
                bool(sims[self.unsafe].max() > sims[~self.unsafe].max())
                if (self.unsafe.any() and (~self.unsafe).any())
                else bool(self.unsafe[best])
            )
            label_agrees = closer_to_unsafe == (item.label == "unsafe")
            keep = best == intended and margin >= self.min_margin and label_agrees
            if keep:
                reason = f"closest to {self.category_ids[best]} by {margin:.3f}"
            elif best != intended:
                reason = (
                    f"reads as {self.category_ids[best]} ({sims[best]:.3f} vs {sims[intended]:.3f})"
                )
            elif not label_agrees:
                reason = f"closer to {'unsafe' if closer_to_unsafe else 'safe'} exemplars"
            else:
                reason = f"margin {margin:.3f} below {self.min_margin:.3f}"
            verdicts.append(
                Verdict(
                    keep=keep,
                    category=self.category_ids[best],
                    harmful=closer_to_unsafe,
                    score=float(probability[row, intended]),
                    reason=reason,
                )
            )
        return verdicts
