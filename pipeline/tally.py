"""What a run has done, counted from its parquet files, never from a manifest that may lag."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from pipeline.store import RunDir

PLAN_FILE = "plan.parquet"
#: the stages of a round in order; the last one's kept rows are the round's accepted items
STAGES = ("generate", "screen", "dedup", "judge")
#: the stages that run once, over every round's accepted items (in `final/`)
FINAL_STAGES = ("balance", "respond")


@dataclass
class Tally:
    """Per-category counts over a set of finished rounds, also split by generation source."""

    calls_by_category: Counter[str] = field(default_factory=Counter)
    accepted_by_category: Counter[str] = field(default_factory=Counter)
    #: the same counts keyed by (category, source), for planning a mixed run
    calls_by_part: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted_by_part: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted_ids: set[str] = field(default_factory=set)
    #: calls and new accepted items of the latest round counted, per part: its yield per call
    #: is the marginal one, which falls below the cumulative as earlier rounds fill the space
    latest_calls_by_part: Counter[tuple[str, str]] = field(default_factory=Counter)
    latest_accepted_by_part: Counter[tuple[str, str]] = field(default_factory=Counter)

    def latest_yield_by_part(self) -> dict[tuple[str, str], float]:
        """New accepted items per call in the latest round, for parts that made calls in it."""
        return {
            part: self.latest_accepted_by_part[part] / calls
            for part, calls in self.latest_calls_by_part.items()
            if calls
        }


def round_shortfall(
    quota_by_category: dict[str, int], quota_by_part: dict[tuple[str, str], int], done: Tally
) -> dict[tuple[str, str], int]:
    """What the next round must still find, per (category, source), for every category short
    of its quota; empty when every category met its quota (the run is done)."""
    short = {c for c, quota in quota_by_category.items() if quota > done.accepted_by_category[c]}
    return {
        part: quota - done.accepted_by_part[part]
        for part, quota in quota_by_part.items()
        if part[0] in short
    }


def read_plan(run_dir: RunDir, round_index: int) -> pl.DataFrame | None:
    path = run_dir.round_dir(round_index) / PLAN_FILE
    return pl.read_parquet(path) if path.exists() else None


def kept_rows(run_dir: RunDir, round_index: int) -> pl.DataFrame | None:
    """Rows of the round's last stage that no stage rejected."""
    frame = run_dir.read_stage(round_index, STAGES[-1])
    if frame is None:
        return None
    return frame.filter(pl.col("rejected_by").is_null())


def tally(run_dir: RunDir, rounds: list[int]) -> Tally:
    """Calls planned and distinct accepted items per category over `rounds`; an item accepted in
    an earlier round is not counted again when a later round produces it once more."""
    result = Tally()
    for round_index in sorted(rounds):
        latest = round_index == max(rounds)
        plan = read_plan(run_dir, round_index)
        if plan is not None:
            for category, source in plan.select("category", "source").iter_rows():
                result.calls_by_category[category] += 1
                result.calls_by_part[(category, source)] += 1
                if latest:
                    result.latest_calls_by_part[(category, source)] += 1
        kept = kept_rows(run_dir, round_index)
        if kept is None:
            continue
        for row_id, category, source in kept.select("id", "category", "source").iter_rows():
            if row_id not in result.accepted_ids:
                result.accepted_ids.add(row_id)
                result.accepted_by_category[category] += 1
                result.accepted_by_part[(category, source)] += 1
                if latest:
                    result.latest_accepted_by_part[(category, source)] += 1
    return result


#: the columns of `generation_outcomes`
OUTCOME_COLUMNS = ("category", "generator", "calls", "refused", "cut_off", "no_list")


def generation_outcomes(run_dir: RunDir) -> pl.DataFrame:
    """LLM generation calls answered per category and generator, and how many gave no query
    because the model refused (in words or by a content filter), was cut off, or wrote no list.

    Every answered call leaves at least one generate row (a query, or one rejected row saying why
    it gave none), so calls are the distinct task ids among the LLM rows."""
    parts = [part for r in run_dir.rounds() for part in run_dir.parts(r, "generate")]
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(OUTCOME_COLUMNS, pl.String)).cast(
            {column: pl.Int64 for column in OUTCOME_COLUMNS[2:]}
        )
    reason = pl.col("reject_reason")
    failed = pl.col("rejected_by") == "generate"
    return (
        pl.scan_parquet(parts)
        .filter(pl.col("source") == "llm")
        .group_by("category", "generator")
        .agg(
            pl.col("task_id").n_unique().alias("calls"),
            (failed & reason.is_in(["refused", "content_filter"])).sum().alias("refused"),
            (failed & (reason == "cut_off")).sum().alias("cut_off"),
            (failed & (reason == "no_list")).sum().alias("no_list"),
        )
        .sort("category", "generator")
        .collect()
        .cast({column: pl.Int64 for column in OUTCOME_COLUMNS[2:]})
    )
