"""`synth status RUN`: where a run stands, counted from its files, as rich tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipeline.callcache import open_batch_jobs
from pipeline.errors import UserError
from pipeline.manifest import CALL_COUNTERS, Manifest, calls_by_stage, stage_key
from pipeline.prices import format_cost
from pipeline.refusals import REFUSAL_WARN_SHARE, refusal_warnings
from pipeline.store import FINAL_ROUND, RunDir
from pipeline.tally import FINAL_STAGES, STAGES, Tally, generation_outcomes, read_plan, tally


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str) -> Table:
    """Borderless, so the tables fit an 80-column terminal."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def compact(count: int) -> str:
    """12345 -> 12.3k: token counts stay narrow enough for an 80-column terminal."""
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 1_000:
        return f"{count / 1_000:.1f}k"
    return str(count)


def _rows_and_rejected(parts: list[Path], stage: str) -> tuple[int, int]:
    """Rows in a stage's parts, and how many of them this stage rejected."""
    if not parts:
        return 0, 0
    counts = (
        pl.scan_parquet(parts)
        .select(pl.len().alias("rows"), (pl.col("rejected_by") == stage).sum().alias("here"))
        .collect()
    )
    return int(counts["rows"][0]), int(counts["here"][0] or 0)


def _rejected_so_far(parts: list[Path]) -> int:
    if not parts:
        return 0
    return int(
        pl.scan_parquet(parts).select(pl.col("rejected_by").is_not_null().sum()).collect().item()
    )


def _stage_row(
    round_label: str, stage: str, status: str, parts: list[Path], record: dict
) -> list[str]:
    """One line of the stages table: counts read from the parts, calls from run.json."""
    rows, rejected = _rows_and_rejected(parts, stage)
    return [
        round_label,
        stage,
        status,
        f"{len(parts)}/{record.get('parts_total', '?')}",
        str(rows),
        str(rejected),
        str(rows - _rejected_so_far(parts)),
        str(record.get("calls", 0)),
        str(record.get("cache_hits", 0)),
        f"{compact(record.get('input_tokens', 0))}/{compact(record.get('output_tokens', 0))}",
    ]


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

    stages = _table("stages")
    columns = ("round", "stage", "status", "parts", "rows", "rejected", "kept", "calls", "hits")
    for column in (*columns, "tokens"):
        left = column in ("stage", "status")
        stages.add_column(column, justify="left" if left else "right", no_wrap=left)
    for round_index in run_dir.rounds():
        plan = read_plan(run_dir, round_index)
        for stage in STAGES:
            record = data.get("stages", {}).get(stage_key(round_index, stage), {})
            parts = run_dir.parts(round_index, stage)
            finished = record.get("status") == "done" and len(parts) == record.get("parts_total")
            status = "done" if finished else "partial" if parts or plan is not None else "pending"
            stages.add_row(*_stage_row(str(round_index), stage, status, parts, record))

    for stage in FINAL_STAGES:
        record = data.get("stages", {}).get(stage_key(FINAL_ROUND, stage), {})
        parts = run_dir.parts(FINAL_ROUND, stage)
        if parts or record:
            status = record.get("status", "partial")
            stages.add_row(*_stage_row("final", stage, status, parts, record))

    done = tally(run_dir, run_dir.rounds())
    outcomes = {row["category"]: row for row in generation_outcomes(run_dir).iter_rows(named=True)}
    categories = _table("categories")
    for column in ("category", "label", "quota", "accepted", "calls", "per call", "refused"):
        categories.add_column(
            column, justify="left" if column in ("category", "label") else "right"
        )
    labels = {c["id"]: c["label"] for c in config.get("taxonomy", {}).get("categories", [])}
    quota_by_category: dict[str, int] = data.get("quota_by_category", {})
    for category, quota in quota_by_category.items():
        accepted = done.accepted_by_category[category]
        calls = done.calls_by_category[category]
        style = "green" if accepted >= quota else "yellow"
        answered = outcomes.get(category)
        categories.add_row(
            category,
            labels.get(category, "?"),
            str(quota),
            Text(str(accepted), style=style),
            str(calls),
            f"{accepted / calls:.2f}" if calls else "-",
            f"{answered['refused']}/{answered['calls']}" if answered else "-",
        )
    total_accepted = sum(min(done.accepted_by_category[c], q) for c, q in quota_by_category.items())
    footer = Text(f"accepted {total_accepted} of {sum(quota_by_category.values())}")
    parts = [header, stages, categories, footer]
    if len(data.get("sources", {})) > 1:
        parts.append(_sources(data["sources"], done))
    warnings = refusal_warnings(
        outcomes.values(),
        data.get("refusal_warn_share", REFUSAL_WARN_SHARE),
        config.get("taxonomy", {}).get("settings", {}).get("prompts_dir", "prompts"),
        str(root),
    )
    parts += [Text(f"warning: {line}", style="yellow") for line in warnings]
    for job, who, submitted in open_batch_jobs(run_dir.calls):
        parts.append(
            Text(
                f"batch job {job} ({who}) submitted {_when(submitted)} is not read back yet: "
                "rerun the same command to poll it",
                style="cyan",
            )
        )
    spend = _spend(data.get("stages", {}), data.get("max_cost_usd"))
    return Group(*parts, _corpus(root, data), spend)


def _sources(shares: dict[str, float], done: Tally) -> Text:
    """A mixed run's yield per generation source: calls planned and items accepted."""
    found = []
    for source, share in shares.items():
        calls = sum(n for (_, s), n in done.calls_by_part.items() if s == source)
        accepted = sum(n for (_, s), n in done.accepted_by_part.items() if s == source)
        per_call = f"{accepted / calls:.2f} per call" if calls else "no calls yet"
        found.append(f"{source} ({share:.0%}): {calls} calls, {accepted} accepted ({per_call})")
    return Text("sources: " + "; ".join(found))


def _corpus(root: Path, data: dict) -> Text:
    """The exported corpus's split sizes and every category that fell short, with the reason."""
    corpus = data.get("corpus")
    if not corpus or not (root / "corpus" / "README.md").exists():
        return Text("corpus: not exported yet (it is written when every round is done)")
    splits = " / ".join(f"{split} {count}" for split, count in corpus["by_split"].items())
    lines = [
        f"corpus: {root / 'corpus'}: {corpus['items']} queries ({splits}), "
        f"{corpus['examples']} examples"
    ]
    for short in corpus.get("short", []):
        lines.append(
            f"  short: {short['category']} {short['selected']} of {short['quota']}: "
            f"{short['reason']}"
        )
    return Text("\n".join(lines), style="yellow" if corpus.get("short") else "green")


def _spend(records: dict[str, dict], cap_usd: float | None = None) -> Text:
    """Calls, tokens and estimated cost over every round, with the cost split by stage, and the
    spending cap when the run has one."""
    by_stage = calls_by_stage(records)
    totals = {key: sum(row[key] for row in by_stage.values()) for key in CALL_COUNTERS}
    cost_by_stage = {stage: row["cost_usd"] for stage, row in by_stage.items()}
    unpriced = int(totals["unpriced_calls"])
    split = ", ".join(
        f"{stage} {format_cost(cost)}" for stage, cost in cost_by_stage.items() if cost
    )
    return Text(
        f"LLM calls {int(totals.get('calls', 0))} ({int(totals.get('cache_hits', 0))} cached, "
        f"{int(totals.get('retries', 0))} retried, {int(totals.get('bad_finishes', 0))} stopped "
        "early), tokens "
        f"{compact(int(totals.get('input_tokens', 0)))} in / "
        f"{compact(int(totals.get('output_tokens', 0)))} out, "
        f"est. cost {format_cost(sum(cost_by_stage.values()), unpriced)}"
        + (f" ({split})" if split else "")
        + (f", cap {format_cost(cap_usd)}" if cap_usd else "")
    )
