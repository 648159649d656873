"""How broad a corpus is, in the terms that decide whether a classifier trained on it transfers:
attribute values per category, topic shares, each taxonomy keyword's split between the labels,
and what each stage took away (skeletons and attribute values no row of them survived).

Pure functions over polars frames: the report, the breadth benchmark and the tests share them.
"""

from __future__ import annotations

import polars as pl

from pipeline.taxonomy import Taxonomy

#: the attributes counted per category (topic is counted by `topic_shares`)
STYLE_ATTRIBUTES = ("register", "form", "framing")
#: a keyword more than this share on one label teaches the label by the word
KEYWORD_SIDE_LIMIT = 0.85


def attribute_counts(corpus: pl.DataFrame) -> pl.DataFrame:
    """category, attribute, value, count, share (of the category's rows), for every value seen."""
    frames = []
    for attribute in STYLE_ATTRIBUTES:
        if attribute not in corpus.columns:
            continue
        frames.append(
            corpus.filter(pl.col(attribute).is_not_null())
            .group_by("category", attribute)
            .len("count")
            .rename({attribute: "value"})
            .with_columns(pl.lit(attribute).alias("attribute"))
        )
    if not frames:
        return pl.DataFrame(
            schema={"category": pl.String, "attribute": pl.String, "value": pl.String,
                    "count": pl.UInt32, "share": pl.Float64}
        )
    counts = pl.concat(frames).with_columns(
        (pl.col("count") / pl.col("count").sum().over("category", "attribute")).alias("share")
    )
    return counts.select("category", "attribute", "value", "count", "share").sort(
        "category", "attribute", "count", descending=[False, False, True]
    )


def topic_key(corpus: pl.DataFrame) -> pl.Expr:
    """A row's topic for breadth: its sub-harm, or for a safe twin the unsafe category it
    mirrors (a twin category holds a few rows of every sub-harm, so those group by category)."""
    if "twin_of" not in corpus.columns:
        return pl.col("topic")
    return pl.when(pl.col("twin_of").is_not_null()).then(
        pl.lit("twin:") + pl.col("twin_of")
    ).otherwise(pl.col("topic"))


def topic_shares(corpus: pl.DataFrame) -> pl.DataFrame:
    """category, topic, count, share: how a category's rows spread over its topics."""
    if "topic" not in corpus.columns:
        return pl.DataFrame(
            schema={"category": pl.String, "topic": pl.String, "count": pl.UInt32,
                    "share": pl.Float64}
        )
    return (
        corpus.filter(pl.col("topic").is_not_null())
        .with_columns(topic_key(corpus).alias("topic"))
        .group_by("category", "topic")
        .len("count")
        .with_columns((pl.col("count") / pl.col("count").sum().over("category")).alias("share"))
        .sort("category", "count", descending=[False, True])
    )


def keyword_balance(corpus: pl.DataFrame, taxonomy: Taxonomy) -> pl.DataFrame:
    """keyword, category, sub_harm, safe, unsafe, top_share (the larger label's share) for
    every keyword of every sub-harm, over the corpus's rows (substring match)."""
    rows = []
    texts = corpus.select("text", "label")
    for category in taxonomy.categories:
        for sub_harm in category.sub_harms:
            for keyword in sub_harm.keywords:
                hits = texts.filter(pl.col("text").str.contains(keyword, literal=True))
                unsafe = hits.filter(pl.col("label") == "unsafe").height
                safe = hits.height - unsafe
                top = max(safe, unsafe) / hits.height if hits.height else 0.0
                rows.append((keyword, category.id, sub_harm.id, safe, unsafe, top))
    return pl.DataFrame(
        rows,
        schema={"keyword": pl.String, "category": pl.String, "sub_harm": pl.String,
                "safe": pl.Int64, "unsafe": pl.Int64, "top_share": pl.Float64},
        orient="row",
    ).sort("top_share", descending=True)


def removed_by_stage(stage_rows: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """stage, what, lost: per stage, how many distinct skeletons and (category, attribute,
    value) triples had rows coming in and none going out."""
    found = []
    for stage, rows in stage_rows.items():
        if rows.is_empty() or "rejected_by" not in rows.columns:
            continue
        arriving = rows.filter(
            pl.col("rejected_by").is_null() | (pl.col("rejected_by") == stage)
        )
        kept = arriving.filter(pl.col("rejected_by").is_null())
        if "skeleton" in rows.columns:
            lost = set(arriving["skeleton"].drop_nulls()) - set(kept["skeleton"].drop_nulls())
            found.append((stage, "skeletons", len(lost)))
        for attribute in (*STYLE_ATTRIBUTES, "topic"):
            if attribute not in rows.columns:
                continue
            before = set(arriving.select("category", attribute).drop_nulls().iter_rows())
            after = set(kept.select("category", attribute).drop_nulls().iter_rows())
            found.append((stage, f"{attribute} values", len(before - after)))
    return pl.DataFrame(
        found, schema={"stage": pl.String, "what": pl.String, "lost": pl.Int64}, orient="row"
    )

