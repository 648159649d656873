"""Dedup: exact, fuzzy and embedding near-duplicates, one keeper per cluster.

Rows are compared with each other, with the taxonomy's exemplars (a model parroting its few-shot
examples is caught) and with items accepted in earlier rounds; those references always win.
Adds `cluster_id` (the earliest member of the row's connected component, for leakage-free
splits), `dup_of` and `dup_of_text` (the keeper it duplicates), `dup_reason` (exact, fuzzy or
embedding) and `dup_score`. Duplicates are rejected by `dedup` and kept in the checkpoint.
"""

from __future__ import annotations

import polars as pl

from pipeline.dedup.clusters import decide
from pipeline.dedup.fuzzy import fuzzy_matches
from pipeline.dedup.keys import dedup_key
from pipeline.dedup.vectors import similar_pairs
from pipeline.embed import VectorCache
from pipeline.plan import TEMPLATE_SOURCE
from pipeline.taxonomy import DedupSettings, Taxonomy
from pipeline.text import row_id

NAME = "dedup"
#: `source` says what a reference row is (exemplar, earlier_round); `template` whether the
#: template generator wrote it
REFERENCE_SCHEMA = {"id": pl.String, "text": pl.String, "source": pl.String, "template": pl.Boolean}


def exemplar_reference(taxonomy: Taxonomy) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"id": row_id(category.id, text), "text": text, "source": "exemplar", "template": False}
            for category in taxonomy.categories
            for text in category.exemplars
        ],
        schema=REFERENCE_SCHEMA,
    )


def run(
    rows: pl.DataFrame,
    settings: DedupSettings,
    reference: pl.DataFrame,
    vectors: VectorCache | None,
) -> pl.DataFrame:
    """`rows` is one whole round (dedup needs every row at once); `reference` holds the
    exemplars and earlier rounds' accepted items (id, text, source)."""
    live = rows.with_row_index("_row").filter(pl.col("rejected_by").is_null())
    ordered_ids = reference["id"].to_list() + live["id"].to_list()
    ordered_texts = reference["text"].to_list() + live["text"].to_list()
    sources = reference["source"].to_list()
    keys = [dedup_key(text) for text in ordered_texts]

    matches: list[tuple[int, int, str, float]] = []
    first_with_key: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in first_with_key:
            matches.append((first_with_key[key], index, "exact", 1.0))
        else:
            first_with_key[key] = index
    # fuzzy and embedding passes run on one row per distinct key: exact copies are settled
    distinct = list(first_with_key.values())
    distinct_keys = [keys[index] for index in distinct]
    for i, j, score in fuzzy_matches(
        distinct_keys, settings.fuzzy_threshold, settings.num_perm, settings.bands
    ):
        matches.append((distinct[i], distinct[j], "fuzzy", score))
    if settings.embedding_threshold is not None and vectors is not None and len(distinct) > 1:
        matrix = vectors.vectors(
            [ordered_ids[index] for index in distinct], [ordered_texts[index] for index in distinct]
        )
        from_templates = _from_templates(reference, "template") + _from_templates(live, "source")
        for i, j, score in similar_pairs(matrix, _lowest_threshold(settings)):
            both = from_templates[distinct[i]] and from_templates[distinct[j]]
            if score >= _threshold(settings, both):
                matches.append((distinct[i], distinct[j], "embedding", score))

    decisions = decide(len(ordered_ids), matches, always_keep=len(reference))
    n_reference = len(reference)
    columns: dict[str, list] = {
        name: [None] * rows.height
        for name in ("cluster_id", "dup_of", "dup_of_text", "dup_reason", "dup_score")
    }
    rejected_by: list[str | None] = rows["rejected_by"].to_list()
    reasons: list[str | None] = rows["reject_reason"].to_list()
    for offset, position in enumerate(live["_row"].to_list()):
        decision = decisions[n_reference + offset]
        columns["cluster_id"][position] = ordered_ids[decision.cluster]
        if decision.keeper is None:
            continue
        columns["dup_of"][position] = ordered_ids[decision.keeper]
        columns["dup_of_text"][position] = ordered_texts[decision.keeper]
        columns["dup_reason"][position] = decision.how
        columns["dup_score"][position] = decision.score
        rejected_by[position] = NAME
        if decision.keeper < n_reference:
            reasons[position] = f"duplicate_of_{sources[decision.keeper]}:{decision.how}"
        else:
            reasons[position] = f"duplicate:{decision.how}"
    return rows.with_columns(
        pl.Series("cluster_id", columns["cluster_id"], dtype=pl.String),
        pl.Series("dup_of", columns["dup_of"], dtype=pl.String),
        pl.Series("dup_of_text", columns["dup_of_text"], dtype=pl.String),
        pl.Series("dup_reason", columns["dup_reason"], dtype=pl.String),
        pl.Series("dup_score", columns["dup_score"], dtype=pl.Float64),
        pl.Series("rejected_by", rejected_by, dtype=pl.String),
        pl.Series("reject_reason", reasons, dtype=pl.String),
    )


def _threshold(settings: DedupSettings, both_from_templates: bool) -> float:
    """The cosine at which a pair is a duplicate; 2.0 (never) when that pass is off."""
    threshold = (
        settings.template_embedding_threshold
        if both_from_templates
        else settings.embedding_threshold
    )
    return 2.0 if threshold is None else threshold


def _from_templates(rows: pl.DataFrame, column: str) -> list[bool]:
    """Which rows the template generator wrote (none, for rows made before sources were kept)."""
    if column not in rows.columns:
        return [False] * rows.height
    values = rows[column].to_list()
    return [value is True or value == TEMPLATE_SOURCE for value in values]


def _lowest_threshold(settings: DedupSettings) -> float:
    return min(_threshold(settings, False), _threshold(settings, True))
