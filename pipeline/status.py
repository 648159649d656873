"""`synth status RUN`: where a run stands, counted from its files, as rich tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipeline.errors import UserError
from pipeline.manifest import Manifest
from pipeline.store import RunDir
from pipeline.tally import STAGES, read_plan, tally


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _rows_in(paths: list[Path]) -> int:
    return sum(pl.scan_parquet(path).select(pl.len()).collect().item() for path in paths)


def render_status(root: Path) -> Group:
    run_dir = RunDir(root)
    manifest = Manifest.load(run_dir.manifest)
    if manifest is None:
        raise UserError(f"{root}: not a run directory (no run.json); pass the --out of a run")
    data = manifest.data
    config = data.get("config", {})
    generator = config.get("generator", {})
    header = Text.assemble(
        ("run ", "bold"),
        str(root),
        "  status ",
        (data.get("status", "?"), "bold cyan"),
        f"  --n {config.get('n')}  seed {config.get('seed')}",
        f"  generator {generator.get('backend')}:{generator.get('model') or 'default'}",
        f"\nstarted {_when(data.get('created_at'))}  updated {_when(data.get('updated_at'))}",
    )

    stages = Table(title="stages", title_justify="left")
    for column in (
        "round",
        "stage",
        "status",
        "parts",
        "rows",
        "calls",
        "cache hits",
        "tokens in/out",
    ):
        stages.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for round_index in run_dir.rounds():
        plan = read_plan(run_dir, round_index)
        for stage in STAGES:
            record = data.get("stages", {}).get(f"round-{round_index:03d}/{stage}", {})
            parts = run_dir.parts(round_index, stage)
            total = record.get("parts_total", "?")
            status = (
                "done"
                if record.get("status") == "done" and len(parts) == total
                else ("partial" if parts or plan is not None else "pending")
            )
            stages.add_row(
                str(round_index),
                stage,
                status,
                f"{len(parts)}/{total}",
                str(_rows_in(parts)),
                str(record.get("calls", 0)),
                str(record.get("cache_hits", 0)),
                f"{record.get('input_tokens', 0)}/{record.get('output_tokens', 0)}",
            )

    done = tally(run_dir, run_dir.rounds())
    categories = Table(title="categories", title_justify="left")
    for column in ("category", "label", "quota", "accepted", "calls", "per call"):
        categories.add_column(
            column, justify="left" if column in ("category", "label") else "right"
        )
    labels = {c["id"]: c["label"] for c in config.get("taxonomy", {}).get("categories", [])}
    quota_by_category: dict[str, int] = data.get("quota_by_category", {})
    for category, quota in quota_by_category.items():
        accepted = done.accepted_by_category[category]
        calls = done.calls_by_category[category]
        style = "green" if accepted >= quota else "yellow"
        categories.add_row(
            category,
            labels.get(category, "?"),
            str(quota),
            Text(str(accepted), style=style),
            str(calls),
            f"{accepted / calls:.2f}" if calls else "-",
        )
    total_accepted = sum(min(done.accepted_by_category[c], q) for c, q in quota_by_category.items())
    footer = Text(f"accepted {total_accepted} of {sum(quota_by_category.values())}")
    return Group(header, stages, categories, footer)
