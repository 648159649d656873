"""The runner: plans quotas, runs rounds of stages, checkpoints every batch, resumes, reports.

It is the only module that knows about the run directory's layout and rounds; what a run is
asked to do is validated first (`pipeline.config`), and its LLM roles come from `pipeline.roles`.
Resuming needs no saved queue: a rerun replans each round deterministically from the finished
parts of earlier rounds, skips parts already on disk, and replays cached calls for free.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID

from pipeline import export
from pipeline.backends import Response, make_backend
from pipeline.card import render_card
from pipeline.config import Prepared, RunOptions, prepare
from pipeline.errors import UserError
from pipeline.events import EventLog
from pipeline.flow import Budget
from pipeline.llm import CallStats, LLMClient, counting_calls
from pipeline.lock import RunLock
from pipeline.manifest import Manifest, snapshot_hash
from pipeline.plan import LLM_SOURCE, TEMPLATE_SOURCE, Part, plan_round, quotas, source_quotas
from pipeline.progress import cost_label, in_flight_label, make_progress
from pipeline.recovery import EMBEDDINGS_DIR, Recovery
from pipeline.refusals import refusal_warnings
from pipeline.report import write_report
from pipeline.roles import Clients, JudgeParts, VectorCaches, make_responder
from pipeline.splits import SPLITS
from pipeline.stages import balance, generate, screen
from pipeline.stages import dedup as dedup_stage
from pipeline.stages import judge as judge_stage
from pipeline.stages import respond as respond_stage
from pipeline.stages.respond import Responder
from pipeline.store import FINAL_DIR, FINAL_ROUND, ROUND_PATTERN, RunDir, write_parquet_atomic
from pipeline.tally import (
    PLAN_FILE,
    Tally,
    generation_outcomes,
    kept_rows,
    read_plan,
    round_shortfall,
    tally,
)
from pipeline.taxonomy import CONNECTION_FIELDS, BackendSettings, Taxonomy

#: rows per checkpoint part for the stages after generate
ROWS_PER_BATCH = 1000
#: planned calls per part when the template generator answers them (no model, so large parts)
TEMPLATE_TASKS_PER_BATCH = 200
#: what `--fresh` may delete: only the run's own artefacts, never anything else in --out
RUN_ARTEFACTS = (
    "run.json",
    "calls.sqlite",
    "calls.sqlite-wal",
    "calls.sqlite-shm",
    "events.jsonl",
    "report.html",
    "corpus",
    "corpus.partial",
    "corpus.old",
    "embeddings",
    FINAL_DIR,
)


@dataclass
class CategoryOutcome:
    category: str
    quota: int
    accepted: int
    calls: int
    reason: str | None = None  # why a category fell short, None when it met its quota

    @property
    def short(self) -> bool:
        return self.accepted < self.quota


@dataclass
class RunSummary:
    out: Path
    rounds: int
    outcomes: list[CategoryOutcome] = field(default_factory=list)
    stats: CallStats = field(default_factory=CallStats)
    #: categories the generator refused to write too often, with a hint each
    refusal_warnings: list[str] = field(default_factory=list)
    #: the run's report.html
    report: Path | None = None


def run(options: RunOptions, console: Console | None = None) -> RunSummary:
    """Run (or resume) the whole job; returns per-category outcomes."""
    console = console or Console(stderr=True, emoji=False)
    prepared = prepare(options)
    backend = make_backend(prepared.generator, options.api_key, threads=prepared.threads)
    run_dir = RunDir(options.out)
    _refuse_foreign_directory(run_dir)
    run_dir.create()
    with RunLock(run_dir.lock):
        if options.fresh:
            _clear(run_dir)
        recovery = Recovery()
        recovery.checkpoints(run_dir)
        manifest = recovery.manifest(run_dir, prepared.snapshot)
        cache = recovery.call_cache(run_dir, manifest)
        for warning in recovery.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        manifest.data["connection"] = {
            "generator": prepared.generator.model_dump(include=CONNECTION_FIELDS),
            "judge": prepared.judge.model_dump(include=CONNECTION_FIELDS),
        }
        events = EventLog(run_dir.events)
        for warning in recovery.warnings:
            events.write("recovered", warning=warning)
        vector_caches = VectorCaches(run_dir.root / EMBEDDINGS_DIR, prepared.threads)
        # spend of earlier sessions of this run counts against the cap
        spent_before = sum(
            record.get("cost_usd", 0.0) for record in manifest.data.get("stages", {}).values()
        )
        manifest.data["max_cost_usd"] = prepared.max_cost_usd
        manifest.data["refusal_warn_share"] = prepared.taxonomy.settings.refusal_warn_share
        llm = LLMClient(
            backend, cache, events, prepared.prices, Budget(prepared.max_cost_usd, spent_before)
        )
        clients = Clients(prepared, llm, options.api_key)
        try:
            judge_parts = JudgeParts(prepared, clients, vector_caches)
            responder = make_responder(prepared, clients)
            return _run_rounds(
                options,
                prepared,
                run_dir,
                manifest,
                llm,
                judge_parts,
                responder,
                vector_caches,
                console,
            )
        except KeyboardInterrupt:
            manifest.data["status"] = "interrupted"
            manifest.save()
            events.write("interrupted")
            raise
        finally:
            clients.close()
            llm.close()
            backend.close()
            vector_caches.close()
            cache.close()
            events.close()


def _run_rounds(
    options: RunOptions,
    prepared: Prepared,
    run_dir: RunDir,
    manifest: Manifest,
    llm: LLMClient,
    judge_parts: JudgeParts,
    responder: Responder,
    vector_caches: VectorCaches,
    console: Console,
) -> RunSummary:
    taxonomy = prepared.taxonomy
    quota_by_category = quotas(taxonomy, options.n)
    quota_by_part = source_quotas(quota_by_category, prepared.sources)
    manifest.data["quota_by_category"] = quota_by_category
    manifest.data["sources"] = prepared.sources
    manifest.data["status"] = "running"
    manifest.save()
    llm.events.write("run_started", out=str(options.out), n=options.n, generator=llm.generator_name)
    summary = RunSummary(out=options.out, rounds=0)
    with make_progress(console) as progress:
        for round_index in range(1, taxonomy.settings.max_rounds + 1):
            done = tally(run_dir, list(range(1, round_index)))
            shortfall = round_shortfall(quota_by_category, quota_by_part, done)
            if not shortfall:
                break
            tasks = _load_or_plan(run_dir, taxonomy, round_index, options.seed, shortfall, done)
            summary.rounds = round_index
            ctx = generate.GenerateContext(
                taxonomy=taxonomy, prompts=prepared.prompts, llm=llm, sampling=prepared.generator
            )
            _run_generation(run_dir, manifest, round_index, tasks, prepared, ctx, progress)
            _run_row_stage(
                run_dir,
                manifest,
                round_index,
                screen.NAME,
                generate.NAME,
                lambda rows: screen.run(rows, taxonomy),
                progress,
            )
            dedup_record = manifest.stage(round_index, dedup_stage.NAME)
            _run_row_stage(
                run_dir,
                manifest,
                round_index,
                dedup_stage.NAME,
                screen.NAME,
                lambda rows, record=dedup_record, r=round_index: vector_caches.counting(
                    record,
                    lambda: dedup_stage.run(
                        rows,
                        prepared.dedup,
                        _dedup_reference(run_dir, taxonomy, r),
                        vector_caches.get(prepared.dedup.embedder)
                        if prepared.dedup.embedding_threshold is not None
                        else None,
                    ),
                ),
                progress,
                whole_round=True,
            )
            judge_record = manifest.stage(round_index, judge_stage.NAME)
            _run_row_stage(
                run_dir,
                manifest,
                round_index,
                judge_stage.NAME,
                dedup_stage.NAME,
                lambda rows, record=judge_record: vector_caches.counting(
                    record, lambda: judge_parts.run(rows, record)
                ),
                progress,
            )
            summary.stats.merge(ctx.stats)
    summary.stats.merge(judge_parts.stats)  # LLM-judge calls, summed over every round
    final = tally(run_dir, run_dir.rounds())
    outcomes = generation_outcomes(run_dir)
    refused = dict(zip(outcomes["category"], outcomes["refused"], strict=True))
    for category, quota in quota_by_category.items():
        outcome = CategoryOutcome(
            category=category,
            quota=quota,
            accepted=min(final.accepted_by_category[category], quota),
            calls=final.calls_by_category[category],
        )
        if outcome.short:
            calls = max(outcome.calls, 1)
            outcome.reason = (
                f"max_rounds ({taxonomy.settings.max_rounds}) reached: "
                f"{final.accepted_by_category[category]} accepted from {outcome.calls} calls "
                f"({final.accepted_by_category[category] / calls:.2f} per call"
                + (f", {refused[category]} refused" if refused.get(category) else "")
                + ")"
            )
        summary.outcomes.append(outcome)
    with make_progress(console) as progress:
        shortfalls = _build_corpus(
            options, prepared, run_dir, manifest, responder, summary, progress, llm.generator_name
        )
    short = {shortfall.category: shortfall for shortfall in shortfalls}
    for outcome in summary.outcomes:
        selected = short[outcome.category].selected if outcome.category in short else outcome.quota
        outcome.accepted = selected
        outcome.reason = short[outcome.category].reason if outcome.category in short else None
    summary.refusal_warnings = refusal_warnings(
        outcomes.iter_rows(named=True),
        taxonomy.settings.refusal_warn_share,
        taxonomy.settings.prompts_dir,
        str(options.out),
    )
    manifest.data["status"] = "done"
    manifest.data["outcomes"] = [vars(outcome) for outcome in summary.outcomes]
    manifest.save()
    try:
        summary.report = write_report(options.out)
    except Exception as error:  # the corpus is written; a report that fails must not hide it
        llm.events.write("report_failed", error=repr(error))
        console.print(
            f"[yellow]warning:[/] report.html was not written ({error}); the corpus is complete. "
            f"Try `synth report {options.out}`.",
            soft_wrap=True,
        )
    llm.events.write(
        "run_finished",
        accepted=sum(outcome.accepted for outcome in summary.outcomes),
        short=[outcome.category for outcome in summary.outcomes if outcome.short],
    )
    return summary


def _build_corpus(
    options: RunOptions,
    prepared: Prepared,
    run_dir: RunDir,
    manifest: Manifest,
    responder: Responder,
    summary: RunSummary,
    progress: Progress,
    generator_name: str,
) -> list[balance.Shortfall]:
    """Balance every round's accepted items, respond to the selection (checkpointed, cached),
    and export `corpus/`. Cheap to redo, so a rerun of a finished run rebuilds the same corpus."""
    taxonomy = prepared.taxonomy
    rounds = [run_dir.read_stage(r, judge_stage.NAME) for r in run_dir.rounds()]
    accepted = balance.accepted_items([frame for frame in rounds if frame is not None])
    balanced, shortfalls = balance.run(
        accepted,
        dict(manifest.data["quota_by_category"]),
        {c.id: c.label for c in taxonomy.categories},
        taxonomy.settings.safe_share,
        {o.category: o.reason for o in summary.outcomes if o.reason},
        prepared.sources,
    )
    write_parquet_atomic(run_dir.part_path(FINAL_ROUND, balance.NAME, 0), balanced)
    record = manifest.stage(FINAL_ROUND, balance.NAME)
    record.update(status="done", parts_total=1, parts_done=1, rows_in=accepted.height)
    selected = balanced.filter(pl.col("rejected_by").is_null())
    _drop_stale_parts(run_dir, manifest, respond_stage.NAME, selected)
    stats = responder.stats
    respond_record = manifest.stage(FINAL_ROUND, respond_stage.NAME)
    bar = progress.add_task("respond", total=selected.height, unit="rows")
    _run_batches(
        run_dir,
        manifest,
        FINAL_ROUND,
        respond_stage.NAME,
        selected,
        ROWS_PER_BATCH,
        lambda rows: counting_calls(
            respond_record, stats, lambda: respond_stage.run(rows, responder)
        ),
        progress,
        bar,
    )
    summary.stats.merge(stats)
    responded = run_dir.read_stage(FINAL_ROUND, respond_stage.NAME)
    assert responded is not None
    bar = progress.add_task("export", total=responded.height, unit="rows")
    items, examples = export.build(
        responded, taxonomy, prepared.instructions, taxonomy.settings.splits.shares(), options.seed
    )
    config = manifest.data.get("config", {})
    card = render_card(
        items,
        examples,
        _models(prepared, generator_name),
        snapshot_hash(config.get("taxonomy", {})),
        manifest.data["config_hash"],
        shortfalls,
        dict(manifest.data["quota_by_category"]),
    )
    export.write_corpus(run_dir.root, items, examples, card)
    progress.update(bar, completed=responded.height)
    manifest.data["corpus"] = {
        "items": items.height,
        "examples": examples.height,
        "by_split": {s: int((items["split"] == s).sum()) for s in SPLITS},
        "short": [vars(shortfall) for shortfall in shortfalls],
    }
    manifest.save()
    return shortfalls


def _drop_stale_parts(run_dir: RunDir, manifest: Manifest, stage: str, rows: pl.DataFrame) -> None:
    """Parts answer a particular selection; if it changed, start the stage over (the call
    cache still replays every answer already paid for)."""
    digest = hashlib.sha256("\n".join(rows["id"].to_list()).encode()).hexdigest()[:16]
    record = manifest.stage(FINAL_ROUND, stage)
    if record.get("selection") != digest:
        shutil.rmtree(run_dir.stage_dir(FINAL_ROUND, stage), ignore_errors=True)
        record.clear()
        record["selection"] = digest
        manifest.save()


def _models(prepared: Prepared, generator_name: str) -> dict[str, str]:
    """`backend:model` of each role, for the dataset card."""

    def name(settings: BackendSettings) -> str:
        return f"{settings.backend}:{settings.model or 'default'}"

    judge = prepared.judge
    responder = prepared.responder
    return {
        "generator": generator_name,
        "judge": name(judge) if judge.kind == "llm" else f"offline centroid ({judge.embedder})",
        "responder": name(responder) if responder.kind == "llm" else "offline templates",
    }


def _load_or_plan(
    run_dir: RunDir,
    taxonomy: Taxonomy,
    round_index: int,
    seed: int,
    shortfall: dict[Part, int],
    done: Tally,
) -> pl.DataFrame:
    """A round's plan is written once and reused on resume, so its calls never change."""
    existing = read_plan(run_dir, round_index)
    if existing is not None:
        return existing
    tasks = plan_round(
        taxonomy,
        round_index,
        seed,
        shortfall,
        dict(done.calls_by_part),
        dict(done.accepted_by_part),
        done.latest_yield_by_part(),
    )
    write_parquet_atomic(run_dir.round_dir(round_index) / PLAN_FILE, tasks)
    return tasks


def _run_generation(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    tasks: pl.DataFrame,
    prepared: Prepared,
    ctx: generate.GenerateContext,
    progress: Progress,
) -> None:
    """A round's generate stage: the LLM's planned calls in the first parts, the template
    generator's after them, so a mixed round checkpoints both sources in one stage."""
    llm_tasks = tasks.filter(pl.col("source") == LLM_SOURCE)
    template_tasks = tasks.filter(pl.col("source") == TEMPLATE_SOURCE)
    llm_parts = math.ceil(llm_tasks.height / ctx.taxonomy.settings.calls_per_batch)
    template_parts = math.ceil(template_tasks.height / TEMPLATE_TASKS_PER_BATCH)
    record = manifest.stage(round_index, generate.NAME)
    record.update(
        status="running", parts_total=max(1, llm_parts + template_parts), rows_in=tasks.height
    )
    manifest.save()
    if llm_tasks.height:
        _run_generate(run_dir, manifest, round_index, llm_tasks, ctx, progress, record)
    if template_tasks.height or not llm_tasks.height:
        _run_templates(
            run_dir, manifest, round_index, template_tasks, prepared, progress, record, llm_parts
        )
    _finish_stage(run_dir, manifest, round_index, generate.NAME, record)


def _parts_done(run_dir: RunDir, round_index: int, stage: str) -> int:
    return len(list(run_dir.stage_dir(round_index, stage).glob("part-*.parquet")))


def _run_templates(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    tasks: pl.DataFrame,
    prepared: Prepared,
    progress: Progress,
    record: dict[str, Any],
    first_part: int,
) -> None:
    """Generation by the template generator: no calls, so parts are as large as the row stages'.
    Its parts are numbered from `first_part`, after the LLM's."""
    queries = prepared.template_queries
    assert queries is not None
    fingerprint = prepared.prompts.fingerprint()
    prompt_ids = {
        c.id: f"templates/{c.id}.yaml@{fingerprint.get(f'templates/{c.id}.yaml', '?')}"
        for c in prepared.taxonomy.categories
    }
    bar = progress.add_task(
        f"round {round_index} {generate.NAME} (templates)", total=tasks.height, unit="calls"
    )
    _write_parts(
        run_dir,
        manifest,
        round_index,
        generate.NAME,
        tasks,
        TEMPLATE_TASKS_PER_BATCH,
        lambda batch: generate.from_templates(batch, queries, prompt_ids),
        progress,
        bar,
        first_part,
    )


def _run_generate(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    tasks: pl.DataFrame,
    ctx: generate.GenerateContext,
    progress: Progress,
    record: dict[str, Any],
) -> None:
    """Generation calls, checkpointed in parts of `calls_per_batch` calls.

    Every missing call starts at once under the backend's in-flight limit, so an API backend stays
    saturated across part boundaries; parts are still written in order, each as soon as its own
    calls are answered. The bar counts calls as they finish, with tokens and cost.
    """
    batch_size = ctx.taxonomy.settings.calls_per_batch
    n_parts = max(1, math.ceil(tasks.height / batch_size))
    bar = progress.add_task(
        f"round {round_index} {generate.NAME}",
        total=tasks.height,
        unit="calls",
        cached=0,
        tokens=0,
        cost=None,
        in_flight=in_flight_label(ctx.llm),
    )
    counted = {key: record.get(key, 0) for key in ctx.stats.as_dict()}
    at_start = ctx.stats.as_dict()

    def advance(response: Response) -> None:
        fields = progress.tasks[bar].fields
        progress.update(
            bar,
            advance=1,
            cached=fields["cached"] + int(response.cached),
            tokens=fields["tokens"] + (0 if response.cached else response.output_tokens),
            cost=cost_label(ctx.stats),
            in_flight=in_flight_label(ctx.llm),
        )

    def note_calls() -> None:
        for key, value in ctx.stats.as_dict().items():
            record[key] = counted[key] + value - at_start[key]

    batches = [tasks.slice(index * batch_size, batch_size) for index in range(n_parts)]
    missing = [
        i for i in range(n_parts) if not run_dir.part_path(round_index, generate.NAME, i).exists()
    ]
    for index in range(n_parts):
        if index not in missing:
            progress.advance(bar, batches[index].height)

    async def stream() -> None:
        built = {index: generate.build_requests(batches[index], ctx) for index in missing}
        requests = [request for index in missing for request, _, _ in built[index]]
        started = ctx.llm.start(requests, ctx.stats, advance)
        answers = iter(started)
        pending = {index: [next(answers) for _ in built[index]] for index in missing}
        try:
            for index in missing:
                responses = await asyncio.gather(*pending.pop(index))
                rows = generate.rows(batches[index], built[index], responses, ctx)
                write_parquet_atomic(run_dir.part_path(round_index, generate.NAME, index), rows)
                note_calls()
                record["parts_done"] = _parts_done(run_dir, round_index, generate.NAME)
                manifest.save()
        finally:
            if ctx.llm.budget.exhausted:
                # stopped by the budget: calls already sent are paid for, so they finish and are
                # cached (the rest fail at once, unsent)
                await asyncio.gather(*started, return_exceptions=True)
            # on an error or Ctrl-C, calls not yet answered must not go on in the background
            for answer in started:
                asyncio.ensure_future(answer).cancel()

    if missing:
        ctx.llm.on_status = lambda text: progress.update(bar, batch=text)
        try:
            ctx.llm.run_async(stream())
        finally:
            ctx.llm.on_status = None
    note_calls()
    progress.update(bar, completed=tasks.height)


def _finish_stage(
    run_dir: RunDir, manifest: Manifest, round_index: int, stage: str, record: dict[str, Any]
) -> None:
    """Record a finished stage's counts, read back from its parts."""
    output = run_dir.read_stage(round_index, stage)
    assert output is not None
    record.update(
        status="done",
        parts_done=record.get("parts_total", 1),
        rows=output.height,
        kept=output.filter(pl.col("rejected_by").is_null()).height,
        rejected_here=output.filter(pl.col("rejected_by") == stage).height,
    )
    manifest.save()


def _dedup_reference(run_dir: RunDir, taxonomy: Taxonomy, round_index: int) -> pl.DataFrame:
    """Exemplars, then items accepted in earlier rounds: what this round's rows must not repeat."""
    frames = [dedup_stage.exemplar_reference(taxonomy)]
    for earlier in range(1, round_index):
        kept = kept_rows(run_dir, earlier)
        if kept is not None and kept.height:
            frames.append(
                kept.select(
                    "id",
                    "text",
                    pl.lit("earlier_round").alias("source"),
                    (pl.col("source") == TEMPLATE_SOURCE).alias("template"),
                )
            )
    return pl.concat(frames, how="vertical_relaxed")


def _run_row_stage(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    stage: str,
    previous_stage: str,
    process: Callable[[pl.DataFrame], pl.DataFrame],
    progress: Progress,
    whole_round: bool = False,
) -> None:
    """A stage over the previous stage's rows of this round, in batches of `ROWS_PER_BATCH`,
    or all at once for a stage that must see the whole round (dedup)."""
    rows = run_dir.read_stage(round_index, previous_stage)
    if rows is None:
        raise RuntimeError(f"round {round_index}: {stage} ran before {previous_stage} finished")
    bar = progress.add_task(f"round {round_index} {stage}", total=rows.height, unit="rows")
    _run_batches(
        run_dir,
        manifest,
        round_index,
        stage,
        rows,
        max(rows.height, 1) if whole_round else ROWS_PER_BATCH,
        process,
        progress,
        bar,
    )


def _run_batches(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    stage: str,
    inputs: pl.DataFrame,
    batch_size: int,
    process: Callable[[pl.DataFrame], pl.DataFrame],
    progress: Progress,
    bar: TaskID,
) -> None:
    """The checkpoint loop every stage shares: batch `i` of the inputs becomes part `i`, written
    atomically; a part already on disk is skipped, so a rerun redoes only the batch in flight.
    An empty input still writes one (empty) part, so a finished stage is visible on disk."""
    n_parts = max(1, math.ceil(inputs.height / batch_size))
    record = manifest.stage(round_index, stage)
    record.update(status="running", parts_total=n_parts, rows_in=inputs.height)
    manifest.save()
    _write_parts(run_dir, manifest, round_index, stage, inputs, batch_size, process, progress, bar)
    _finish_stage(run_dir, manifest, round_index, stage, record)
    progress.update(bar, completed=inputs.height)


def _write_parts(
    run_dir: RunDir,
    manifest: Manifest,
    round_index: int,
    stage: str,
    inputs: pl.DataFrame,
    batch_size: int,
    process: Callable[[pl.DataFrame], pl.DataFrame],
    progress: Progress,
    bar: TaskID,
    first_part: int = 0,
) -> None:
    """Batch `i` of the inputs becomes part `first_part + i`, unless it is already on disk."""
    record = manifest.stage(round_index, stage)
    for index in range(max(1, math.ceil(inputs.height / batch_size))):
        path = run_dir.part_path(round_index, stage, first_part + index)
        batch = inputs.slice(index * batch_size, batch_size)
        if not path.exists():
            write_parquet_atomic(path, process(batch))
            record["parts_done"] = _parts_done(run_dir, round_index, stage)
            manifest.save()
        progress.advance(bar, batch.height)


def _refuse_foreign_directory(run_dir: RunDir) -> None:
    """Never write run files into (or --fresh) a directory that holds something else."""
    root = run_dir.root
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a directory; choose another --out")
    if not root.is_dir() or run_dir.manifest.exists():
        return
    ours = set(RUN_ARTEFACTS)
    foreign = [
        path.name
        for path in root.iterdir()
        if path.name not in ours
        and not path.name.startswith(".")
        and not ROUND_PATTERN.match(path.name)
    ]
    if foreign:
        raise UserError(
            f"{root}: directory is not empty and holds no run.json; choose a new or empty --out"
        )


def _clear(run_dir: RunDir) -> None:
    for name in RUN_ARTEFACTS:
        path = run_dir.root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for round_index in run_dir.rounds():
        shutil.rmtree(run_dir.round_dir(round_index))
