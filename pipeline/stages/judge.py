"""Judge: a verdict per screened item; kept when it agrees with the intended category and label.

Adds `judge_keep`, `judge_category`, `judge_harmful`, `judge_score`, `judge_reason`,
`judge_rule_violations`. A row is rejected by `judge` when the verdict says drop, reads the item
as another category or label, or no valid verdict came back (`judge_failed`); rows an earlier
stage rejected pass through without a verdict.
"""

from __future__ import annotations

import polars as pl

from pipeline.judges import Item, Judge, JudgeFailure, Verdict

NAME = "judge"

VERDICT_SCHEMA = {
    "judge_keep": pl.Boolean,
    "judge_category": pl.String,
    "judge_harmful": pl.Boolean,
    "judge_score": pl.Float64,
    "judge_reason": pl.String,
    "judge_rule_violations": pl.List(pl.String),
}


def rejection(item: Item, outcome: Verdict | JudgeFailure) -> str | None:
    """Why the judge rejects an item, or None to keep it."""
    if isinstance(outcome, JudgeFailure):
        return "judge_failed"
    if outcome.category != item.category:
        return f"off_category:{outcome.category}"
    if outcome.harmful != (item.label == "unsafe"):
        return "label_mismatch"
    if not outcome.keep:
        return "judge_drop"
    return None


def run(rows: pl.DataFrame, judge: Judge) -> pl.DataFrame:
    """Template rows are labelled by construction; a judge that cannot read intent (the offline
    centroid judge: `defers_to_templates`) records its reading of them but rejects none, since
    rejecting what sits far from the exemplars would narrow the corpus toward them."""
    pending = rows.with_row_index("_row").filter(pl.col("rejected_by").is_null())
    defers = getattr(judge, "defers_to_templates", False) and "source" in rows.columns
    from_templates = (
        set(pending.filter(pl.col("source") == "template")["_row"].to_list()) if defers else set()
    )
    items = [
        Item(id=row_id, text=text, category=category, label=label)
        for row_id, text, category, label in pending.select(
            "id", "text", "category", "label"
        ).iter_rows()
    ]
    outcomes = judge.judge(items)
    columns: dict[str, list] = {name: [None] * rows.height for name in VERDICT_SCHEMA}
    rejected_by: list[str | None] = rows["rejected_by"].to_list()
    reasons: list[str | None] = rows["reject_reason"].to_list()
    for position, item, outcome in zip(pending["_row"], items, outcomes, strict=True):
        if isinstance(outcome, Verdict):
            columns["judge_keep"][position] = outcome.keep
            columns["judge_category"][position] = outcome.category
            columns["judge_harmful"][position] = outcome.harmful
            columns["judge_score"][position] = outcome.score
            columns["judge_reason"][position] = outcome.reason
            columns["judge_rule_violations"][position] = outcome.rule_violations
        else:
            columns["judge_keep"][position] = False
            columns["judge_reason"][position] = outcome.error
        why = rejection(item, outcome)
        if why is not None and position in from_templates:
            columns["judge_keep"][position] = True
            columns["judge_reason"][position] = f"template label kept ({why})"
            why = None
        if why is not None:
            rejected_by[position] = NAME
            reasons[position] = why
    return rows.with_columns(
        *(
            pl.Series(name, values, dtype=dtype)
            for (name, dtype), values in zip(VERDICT_SCHEMA.items(), columns.values(), strict=True)
        ),
        pl.Series("rejected_by", rejected_by, dtype=pl.String),
        pl.Series("reject_reason", reasons, dtype=pl.String),
    )
