"""What `report.html` shows, as plain tables computed from a run's files (its parquet parts,
run.json, the corpus and the vector cache), so the report and the notebook read the same numbers.

Counting follows the rest of the tool: from the parquet files, never from a manifest that may
lag; run.json is read only for what it alone holds (tokens and cost per stage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.breadth import attribute_counts, keyword_balance, removed_by_stage, topic_shares
from pipeline.manifest import Manifest, calls_by_stage
from pipeline.store import FINAL_ROUND, RunDir
from pipeline.tally import STAGES, generation_outcomes
from pipeline.taxonomy import Taxonomy

#: the stages of the yield funnel, in order, and what each step's kept rows are called
FUNNEL = (
    ("generate", "generated"),
    ("screen", "screened"),
    ("dedup", "deduped"),
    ("judge", "judged"),
)
#: pairs of items per category compared for the mean embedding distance
DISTANCE_SAMPLE = 300

_QUESTION = re.compile(r"(?:\?|까요?|나요|가요|니|냐|는지|ㄴ가|을까|는가|죠|지요)[.!?]*$")
_REQUEST = re.compile(
    r"(?:주세요|줘요?|주라|주십시오|세요|십시오|해라|하라|봐|봐요|자|합시다|해 줘|해줘)[.!]*$"
)
_POLITE = re.compile(r"(?:요|니다|니까|십시오|세요|시오)[.!?]*$")


def sentence_type(text: str) -> str:
    """question, request or statement, read off the sentence's ending (a heuristic)."""
    end = text.strip()
    if _QUESTION.search(end):
        return "question"
    if _REQUEST.search(end):
        return "request"
    return "statement"


def speech_level(text: str) -> str:
    """존댓말 (polite endings: -요, -니다, -세요, -십시오) or 반말, read off the ending."""
    return "존댓말" if _POLITE.search(text.strip()) else "반말"


@dataclass
class ReportData:
    """Every table of the report."""

    run: Path
    manifest: dict
    funnel: pl.DataFrame  # category, label, generated, screened, deduped, judged, selected
    rejections: pl.DataFrame  # stage, reason, rows, examples
    duplicates: pl.DataFrame  # dup_reason, dup_score, cluster_size per duplicate row
    cluster_sizes: pl.DataFrame  # cluster_id, size
    corpus: pl.DataFrame  # the exported items (text, label, category, split, ...)
    diversity: pl.DataFrame  # category, items, distinct_1, distinct_2, mean_distance
    style: pl.DataFrame  # category, sentence_type, speech_level, items
    refusals: pl.DataFrame  # category, generator, calls, refused, cut_off, no_list
    spend: pl.DataFrame  # stage, calls, cache_hits, input_tokens, output_tokens, cost_usd
    attributes: pl.DataFrame  # category, attribute, value, count, share
    topics: pl.DataFrame  # category, topic, count, share
    keywords: pl.DataFrame  # keyword, category, sub_harm, safe, unsafe, top_share
    removed: pl.DataFrame  # stage, what, lost (skeletons and attribute values)


def collect(run: Path, embed_vectors: bool = True) -> ReportData:
    """Read everything the report shows from a run directory."""
    run_dir = RunDir(run)
    manifest = Manifest.load(run_dir.manifest)
    data = manifest.data if manifest is not None else {}
    stage_rows = {stage: _stage_rows(run_dir, stage) for stage in STAGES}
    corpus_path = run / "corpus" / "items.parquet"
    corpus = pl.read_parquet(corpus_path) if corpus_path.exists() else pl.DataFrame()
    dedup = stage_rows["dedup"]
    return ReportData(
        run=run,
        manifest=data,
        funnel=_funnel(stage_rows, corpus, data),
        rejections=_rejections(stage_rows, run_dir),
        duplicates=_duplicates(dedup),
        cluster_sizes=_cluster_sizes(dedup),
        corpus=corpus,
        diversity=_diversity(corpus, run, embed_vectors),
        style=_style(corpus),
        refusals=generation_outcomes(run_dir),
        spend=_spend(data),
        attributes=attribute_counts(corpus) if corpus.height else attribute_counts(pl.DataFrame()),
        topics=topic_shares(corpus) if corpus.height else topic_shares(pl.DataFrame()),
        keywords=_keywords(corpus, data),
        removed=removed_by_stage({s: stage_rows[s] for s in ("screen", "dedup", "judge")}),
    )


def _keywords(corpus: pl.DataFrame, data: dict) -> pl.DataFrame:
    """Each taxonomy keyword's rows per label, from the taxonomy the run was made with."""
    snapshot = data.get("config", {}).get("taxonomy")
    if not snapshot or not corpus.height:
        return keyword_balance(pl.DataFrame({"text": [], "label": []}), _empty_taxonomy())
    try:
        taxonomy = Taxonomy.model_validate(snapshot)
    except ValueError:  # a run made before sub-harms were part of the taxonomy
        return keyword_balance(pl.DataFrame({"text": [], "label": []}), _empty_taxonomy())
    return keyword_balance(corpus, taxonomy)


def _empty_taxonomy() -> Taxonomy:
    return Taxonomy.model_construct(categories=[])


def _stage_rows(run_dir: RunDir, stage: str) -> pl.DataFrame:
    frames = [
        frame for r in run_dir.rounds() if (frame := run_dir.read_stage(r, stage)) is not None
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _kept_by_category(rows: pl.DataFrame) -> dict[str, int]:
    if rows.is_empty():
        return {}
    kept = rows.filter(pl.col("rejected_by").is_null())
    return dict(kept.group_by("category").len().iter_rows())


def _funnel(stage_rows: dict[str, pl.DataFrame], corpus: pl.DataFrame, data: dict) -> pl.DataFrame:
    """Per category, how many queries each stage kept, then how many the corpus selected."""
    labels = {
        c["id"]: c["label"]
        for c in data.get("config", {}).get("taxonomy", {}).get("categories", [])
    }
    counts = {name: _kept_by_category(stage_rows[stage]) for stage, name in FUNNEL}
    selected = dict(corpus.group_by("category").len().iter_rows()) if corpus.height else {}
    categories = list(data.get("quota_by_category", {})) or sorted(labels)
    return pl.DataFrame(
        [
            {
                "category": category,
                "label": labels.get(category, "?"),
                "quota": data.get("quota_by_category", {}).get(category, 0),
                **{name: counts[name].get(category, 0) for _, name in FUNNEL},
                "selected": selected.get(category, 0),
            }
            for category in categories
        ],
        schema={
            "category": pl.String,
            "label": pl.String,
            "quota": pl.Int64,
            **{name: pl.Int64 for _, name in FUNNEL},
            "selected": pl.Int64,
        },
    )


def _rejections(stage_rows: dict[str, pl.DataFrame], run_dir: RunDir) -> pl.DataFrame:
    """Rows each stage rejected, by reason, with up to three example texts."""
    frames = [(stage, rows) for stage, rows in stage_rows.items() if not rows.is_empty()]
    balance = run_dir.read_stage(FINAL_ROUND, "balance")
    if balance is not None:
        frames.append(("balance", balance))
    schema = {"stage": pl.String, "reason": pl.String, "rows": pl.Int64, "examples": pl.String}
    found = []
    for stage, frame in frames:
        rejected = frame.filter(pl.col("rejected_by") == stage)
        if rejected.is_empty():
            continue
        # a reason may carry a detail after a colon (off_category:everyday): grouped by its head
        grouped = (
            rejected.with_columns(pl.col("reject_reason").str.split(":").list.first().alias("why"))
            .group_by("why")
            .agg(pl.len().alias("rows"), pl.col("text").head(3).alias("texts"))
            .sort("rows", descending=True)
        )
        for why, rows, texts in grouped.iter_rows():
            examples = " / ".join(str(t)[:80] for t in texts)
            found.append({"stage": stage, "reason": why, "rows": rows, "examples": examples})
    return pl.DataFrame(found, schema=schema)


def _duplicates(dedup: pl.DataFrame) -> pl.DataFrame:
    if dedup.is_empty() or "dup_reason" not in dedup.columns:
        return pl.DataFrame(schema={"dup_reason": pl.String, "dup_score": pl.Float64})
    return dedup.filter(pl.col("dup_reason").is_not_null()).select(
        "dup_reason", pl.col("dup_score").cast(pl.Float64)
    )


def _cluster_sizes(dedup: pl.DataFrame) -> pl.DataFrame:
    if dedup.is_empty() or "cluster_id" not in dedup.columns:
        return pl.DataFrame(schema={"cluster_id": pl.String, "size": pl.Int64})
    return (
        dedup.filter(pl.col("cluster_id").is_not_null())
        .group_by("cluster_id")
        .agg(pl.len().cast(pl.Int64).alias("size"))
    )


def distinct_n(token_lists: list[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of a set of texts (1.0: no n-gram repeats)."""
    grams = [tuple(tokens[i : i + n]) for tokens in token_lists for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _diversity(corpus: pl.DataFrame, run: Path, embed_vectors: bool) -> pl.DataFrame:
    """Per category: distinct-1/2 over Kiwi morphemes and the mean pairwise cosine distance of
    its items' embeddings (the run's vector cache)."""
    schema = {
        "category": pl.String,
        "items": pl.Int64,
        "distinct_1": pl.Float64,
        "distinct_2": pl.Float64,
        "mean_distance": pl.Float64,
    }
    if corpus.is_empty():
        return pl.DataFrame(schema=schema)
    from pipeline.korean import kiwi

    analyzer = kiwi()
    cache = None
    if embed_vectors:
        from pipeline.embed import VectorCache, make_embedder

        cache = VectorCache(run / "embeddings", make_embedder("e5"))
    found = []
    try:
        for (category,), group in corpus.group_by("category", maintain_order=True):
            texts = group["text"].to_list()
            tokens = [[token.form for token in analyzer.tokenize(text)] for text in texts]
            distance = None
            if cache is not None and len(texts) > 1:
                sample = group.head(DISTANCE_SAMPLE)
                vectors = cache.vectors(sample["id"].to_list(), sample["text"].to_list())
                similarity = vectors @ vectors.T
                pairs = len(sample) * (len(sample) - 1)
                distance = float(1 - (similarity.sum() - np.trace(similarity)) / pairs)
            found.append(
                {
                    "category": str(category),
                    "items": len(texts),
                    "distinct_1": distinct_n(tokens, 1),
                    "distinct_2": distinct_n(tokens, 2),
                    "mean_distance": distance,
                }
            )
    finally:
        if cache is not None:
            cache.close()
    return pl.DataFrame(found, schema=schema).sort("category")


def _style(corpus: pl.DataFrame) -> pl.DataFrame:
    schema = {
        "category": pl.String,
        "sentence_type": pl.String,
        "speech_level": pl.String,
        "items": pl.Int64,
    }
    if corpus.is_empty():
        return pl.DataFrame(schema=schema)
    return (
        corpus.select(
            "category",
            pl.col("text")
            .map_elements(sentence_type, return_dtype=pl.String)
            .alias("sentence_type"),
            pl.col("text").map_elements(speech_level, return_dtype=pl.String).alias("speech_level"),
        )
        .group_by("category", "sentence_type", "speech_level")
        .agg(pl.len().cast(pl.Int64).alias("items"))
        .sort("category", "sentence_type", "speech_level")
    )


def _spend(data: dict) -> pl.DataFrame:
    """Calls, tokens and estimated cost per stage (summed over rounds), from run.json."""
    keys = ("calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd")
    totals = calls_by_stage(data.get("stages", {}))
    return pl.DataFrame(
        [{"stage": stage, **{key: row[key] for key in keys}} for stage, row in totals.items()],
        schema={
            "stage": pl.String,
            "calls": pl.Int64,
            "cache_hits": pl.Int64,
            "input_tokens": pl.Int64,
            "output_tokens": pl.Int64,
            "cost_usd": pl.Float64,
        },
    )
