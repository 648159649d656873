"""`synth inspect RUN`: a stage's rows as rich tables, filtered, grouped by why they were rejected.

Reads every round's parts of the stage, so what is shown is what is on disk.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipeline.errors import UserError
from pipeline.store import FINAL_ROUND, RunDir
from pipeline.tally import FINAL_STAGES, STAGES

#: extra columns worth seeing per stage, when present
STAGE_COLUMNS = {
    "screen": ["screen_flags"],
    "dedup": ["dup_of_text", "dup_score"],
    "judge": ["judge_score", "judge_reason"],
    "balance": ["judge_score"],
    "respond": ["response"],
}
HEADERS = {
    "judge_score": "score",
    "judge_reason": "judge says",
    "screen_flags": "flags",
    "dup_of_text": "duplicate of (keeper)",
    "dup_score": "score",
}


def load_stage(root: Path, stage: str) -> pl.DataFrame:
    run_dir = RunDir(root)
    if not run_dir.manifest.exists():
        raise UserError(f"{root}: not a run directory (no run.json); pass the --out of a run")
    if stage not in (*STAGES, *FINAL_STAGES):
        known = ", ".join(STAGES + FINAL_STAGES)
        raise UserError(f"--stage: unknown stage {stage!r} (stages: {known})")
    rounds = [FINAL_ROUND] if stage in FINAL_STAGES else run_dir.rounds()
    frames = [
        frame
        for round_index in rounds
        if (frame := run_dir.read_stage(round_index, stage)) is not None
    ]
    if not frames:
        raise UserError(f"{root}: stage {stage!r} has no finished parts yet")
    return pl.concat(frames, how="diagonal_relaxed")


def select_rows(
    rows: pl.DataFrame,
    stage: str,
    rejected: bool,
    kept: bool,
    category: str | None,
    reason: str | None,
) -> pl.DataFrame:
    if rejected:
        rows = rows.filter(pl.col("rejected_by") == stage)
    if kept:
        rows = rows.filter(pl.col("rejected_by").is_null())
    if category is not None:
        rows = rows.filter(pl.col("category") == category)
    if reason is not None:
        rows = rows.filter(pl.col("reject_reason").fill_null("").str.contains(reason, literal=True))
    return rows


def render_groups(rows: pl.DataFrame, stage: str, limit: int) -> Group:
    """One table per reason (kept rows under 'kept', earlier stages' rejections under theirs),
    largest group first, with `limit` example rows each."""
    grouped = rows.with_columns(
        pl.when(pl.col("rejected_by").is_null())
        .then(pl.lit("kept"))
        .when(pl.col("rejected_by") == stage)
        .then(pl.col("reject_reason"))
        .otherwise(pl.format("rejected earlier by {}", pl.col("rejected_by")))
        .alias("_group")
    )
    extra = [column for column in STAGE_COLUMNS.get(stage, []) if column in rows.columns]
    counts = grouped.group_by("_group").len().sort(["len", "_group"], descending=[True, False])
    parts: list[Table | Text] = [Text(f"{stage}: {rows.height} rows", style="bold")]
    for group, count in counts.iter_rows():
        table = Table(
            title=f"{group} ({count})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        table.add_column("rnd", no_wrap=True)
        table.add_column("category", max_width=16, overflow="fold")
        table.add_column("text", ratio=3, overflow="fold")
        for column in extra:
            wide = column in ("dup_of_text", "judge_reason")
            table.add_column(HEADERS.get(column, column), ratio=3 if wide else 1, overflow="fold")
        examples = grouped.filter(pl.col("_group") == group).sort("round", "id").head(limit)
        for row in examples.select("round", "category", "text", *extra).iter_rows():
            table.add_row(*(_cell(value) for value in row))
        if count > limit:
            table.caption = f"... and {count - limit} more (raise --limit)"
        parts.append(table)
    return Group(*parts)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)
