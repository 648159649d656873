"""Progress bars: counts, rate, elapsed and ETA on every long stage, plus cache hits, tokens and
cost where calls are made."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pipeline.llm import CallStats, LLMClient
from pipeline.prices import format_cost
from pipeline.status import compact


def cost_label(stats: CallStats) -> str | None:
    if not stats.calls:
        return None
    return format_cost(stats.cost_usd, stats.unpriced_calls)


def in_flight_label(llm: LLMClient) -> str | None:
    """The adaptive in-flight limit against its ceiling ("limit 4/16"), for clients that send
    calls one by one with more than one in flight; it shrinks on 429s and regrows."""
    limit = llm.limit
    if llm.backend.batched or llm.backend.batch_api or limit.upper <= 1:
        return None
    return f"limit {limit.limit}/{limit.upper}"


class _RateColumn(ProgressColumn):
    """Items per second, with the unit the task was given."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "items")
        cached = task.fields.get("cached", 0)
        text = f"{speed:.2f} {unit}/s" if speed else f"-- {unit}/s"
        if cached:
            text += f" ({cached} cached)"
        tokens = task.fields.get("tokens", 0)
        if tokens:
            text += f" {compact(tokens)} tok out"
        cost = task.fields.get("cost")
        if cost:
            text += f" {cost}"
        for note in ("in_flight", "batch"):
            if task.fields.get(note):
                text += f" {task.fields[note]}"
        return Text(text, style="progress.data.speed")


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
