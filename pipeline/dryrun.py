"""`synth run --dry-run`: the calls a run would make and what they would cost, without calling.

It renders the very requests the next round would send (so their cache keys are exact), counts
how many the run directory's call cache already holds, and estimates tokens without a tokenizer
(`pipeline.tokens`). Output tokens are bounded by `max_tokens`, so the cost is an upper bound.

The next round is round 1 for a new run. For a run that stopped part-way it is the first round
not finished: its saved plan when it has one, else the plan the runner would make from the
yield observed so far, so the estimate of a resumed run is what it would really still send.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipeline.backends import Backend, Request, make_backend
from pipeline.callcache import CallCache, call_key
from pipeline.config import Prepared, RunOptions, prepare
from pipeline.judges import Item
from pipeline.judges.llm import LLMJudge
from pipeline.llm import BATCH_PRICE_FACTOR, CallStats, request_tokens
from pipeline.manifest import Manifest, stage_key
from pipeline.plan import LLM_SOURCE, plan_round, quotas, source_quotas
from pipeline.prices import format_cost
from pipeline.responders import LLMResponder
from pipeline.stages import generate
from pipeline.store import RunDir
from pipeline.tally import read_plan, round_shortfall, tally
from pipeline.taxonomy import Category


@dataclass
class RoleEstimate:
    """Calls, cache hits and tokens for one LLM role (generator or judge)."""

    backend: str
    model: str
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    cost_usd: float | None = 0.0
    #: answered through the provider's batch API, at its price
    batch_api: bool = False
    by_category: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))


@dataclass
class DryRun:
    quota_by_category: dict[str, int]
    generator: RoleEstimate
    judge: RoleEstimate | None
    max_rounds: int
    responder: RoleEstimate | None = None
    #: the round estimated (the first one not finished), or None when every quota is met
    round_index: int | None = 1

    @property
    def roles(self) -> list[tuple[str, RoleEstimate]]:
        found = [
            ("generator", self.generator),
            ("judge", self.judge),
            ("responder", self.responder),
        ]
        return [(name, estimate) for name, estimate in found if estimate is not None]

    @property
    def calls(self) -> int:
        """Calls not in the cache yet, over every role."""
        return sum(estimate.calls for _, estimate in self.roles)

    @property
    def cost_usd(self) -> float | None:
        costs = [estimate.cost_usd for _, estimate in self.roles]
        return None if any(cost is None for cost in costs) else sum(c or 0.0 for c in costs)


def dry_run(options: RunOptions, prepared: Prepared | None = None) -> DryRun:
    """Estimate the next round's calls; touches no file and no network."""
    prepared = prepared or prepare(options)
    generator_backend = make_backend(prepared.generator, check=False)
    quota_by_category = quotas(prepared.taxonomy, options.n)
    run_dir = RunDir(options.out)
    round_index, tasks = next_round(run_dir, prepared, options, quota_by_category)
    cached = _cached_keys(run_dir)
    generator = RoleEstimate(
        generator_backend.name, generator_backend.model, batch_api=generator_backend.batch_api
    )
    # the template generator answers its share of the plan without any call
    llm_tasks = tasks.filter(pl.col("source") == LLM_SOURCE)
    for task in llm_tasks.iter_rows(named=True):
        request, _, _ = generate.build_request(
            task,
            prepared.taxonomy,
            prepared.prompts,
            prepared.generator,
            generator_backend.chat,
        )
        key = call_key(generator_backend.name, generator_backend.model, request)
        if key in cached:
            generator.cached += 1
            continue
        generator.calls += 1
        generator.input_tokens += request_tokens(request)
        generator.max_output_tokens += request.max_tokens
        generator.by_category[task["category"]][0] += 1
        generator.by_category[task["category"]][1] += request_tokens(request)
    generator.cost_usd = _cost(prepared, generator)
    judge = None
    if prepared.judge.kind == "llm":
        items = int(tasks["n_new"].sum()) if tasks.height else 0
        judge = _judge_estimate(prepared, items)
    responder = None
    if prepared.responder.kind == "llm" and not _finished(run_dir):
        responder = _responder_estimate(prepared, options.n)
    return DryRun(
        quota_by_category,
        generator,
        judge,
        prepared.taxonomy.settings.max_rounds,
        responder,
        round_index,
    )


#: backends billed per token by a provider
PAID_BACKENDS = ("openai", "anthropic")


def paid_roles(prepared: Prepared, api_key: str | None = None) -> list[str]:
    """The LLM roles of a run that a provider bills: an API backend on a priced model, or on the
    provider's own endpoint (no --base-url) even when the model has no price. A local
    OpenAI-compatible server (--base-url, unpriced model) costs nothing and asks nothing. Each
    paid role's key is checked here, so a missing key is the error, before any estimate."""
    roles = [("generator", prepared.generator)]
    roles += [("judge", prepared.judge)] if prepared.judge.kind == "llm" else []
    roles += [("responder", prepared.responder)] if prepared.responder.kind == "llm" else []
    paid = []
    for name, settings in roles:
        if settings.backend not in PAID_BACKENDS:
            continue
        backend = make_backend(settings, api_key)
        if settings.base_url is None or prepared.prices.per_million(backend.name, backend.model):
            paid.append(f"{name} {backend.name}:{backend.model}")
    return paid


def next_round(
    run_dir: RunDir, prepared: Prepared, options: RunOptions, quota_by_category: dict[str, int]
) -> tuple[int | None, pl.DataFrame]:
    """The first round a run would still work on, and its planned calls; (None, no calls) when
    every category already met its quota or no round is left."""
    manifest = Manifest.load(run_dir.manifest)
    records = manifest.data.get("stages", {}) if manifest is not None else {}
    quota_by_part = source_quotas(quota_by_category, prepared.sources)
    for round_index in range(1, prepared.taxonomy.settings.max_rounds + 1):
        done = tally(run_dir, list(range(1, round_index)))
        shortfall = round_shortfall(quota_by_category, quota_by_part, done)
        if not shortfall:
            break
        if records.get(stage_key(round_index, "judge"), {}).get("status") == "done":
            continue
        tasks = read_plan(run_dir, round_index)
        if tasks is None:
            tasks = plan_round(
                prepared.taxonomy,
                round_index,
                options.seed,
                shortfall,
                dict(done.calls_by_part),
                dict(done.accepted_by_part),
                done.latest_yield_by_part(),
            )
        return round_index, tasks
    return None, plan_round(prepared.taxonomy, 1, options.seed, {}, {}, {})


def _finished(run_dir: RunDir) -> bool:
    """True for a run that already exported its corpus: a rerun only rebuilds it from cache."""
    manifest = Manifest.load(run_dir.manifest)
    return manifest is not None and manifest.data.get("status") == "done"


def _cached_keys(run_dir: RunDir) -> set[str]:
    if not run_dir.calls.exists():
        return set()
    cache = CallCache(run_dir.calls)
    try:
        return cache.keys()
    finally:
        cache.close()


def _judge_estimate(prepared: Prepared, items: int) -> RoleEstimate:
    """One judge call per generated item (more only when a verdict must be retried)."""
    backend = make_backend(prepared.judge, check=False)
    judge = LLMJudge(
        prepared.taxonomy,
        prepared.prompts,
        _NoClient(backend),  # type: ignore[arg-type]
        prepared.judge,
        CallStats(),
    )
    return _role_estimate(
        prepared,
        backend,
        items,
        prepared.judge.max_tokens,
        lambda c: judge.request(Item("-", c.exemplars[0], c.id, c.label), 0, None),
    )


def _responder_estimate(prepared: Prepared, n: int) -> RoleEstimate:
    """One responder call per item of the final corpus (`--n`), after the last round."""
    backend = make_backend(prepared.responder, check=False)
    responder = LLMResponder(
        prepared.taxonomy,
        prepared.prompts,
        _NoClient(backend),  # type: ignore[arg-type]
        prepared.responder,
        prepared.templates,
        CallStats(),
    )
    return _role_estimate(
        prepared,
        backend,
        n,
        prepared.responder.max_tokens,
        lambda c: responder.request(
            {"id": c.id, "category": c.id, "label": c.label, "text": c.exemplars[0]}
        ),
    )


def _role_estimate(
    prepared: Prepared,
    backend: Backend,
    calls: int,
    max_tokens: int,
    request_for: Callable[[Category], Request],
) -> RoleEstimate:
    """`calls` calls whose prompt size is the average over one exemplar per category."""
    sizes = [request_tokens(request_for(c)) for c in prepared.taxonomy.categories]
    estimate = RoleEstimate(backend.name, backend.model, calls=calls, batch_api=backend.batch_api)
    estimate.input_tokens = calls * sum(sizes) // max(len(sizes), 1)
    estimate.max_output_tokens = calls * max_tokens
    estimate.cost_usd = _cost(prepared, estimate)
    return estimate


class _NoClient:
    """Stands in for an LLM client where only the request's shape is needed."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend


def _cost(prepared: Prepared, estimate: RoleEstimate) -> float | None:
    cost = prepared.prices.cost(
        estimate.backend, estimate.model, estimate.input_tokens, estimate.max_output_tokens
    )
    factor = BATCH_PRICE_FACTOR if estimate.batch_api else 1.0
    return None if cost is None else cost * factor


def render_dry_run(plan: DryRun, dry: bool = True) -> Group:
    """The estimate as a per-category table and a few summary lines (`dry`: said to be a dry
    run that called and wrote nothing; else shown before a paid run asks to start)."""
    generator = plan.generator
    which = f"round {plan.round_index}" if plan.round_index else "no round left"
    title = f"{which}: generation calls" + (" (dry run)" if dry else " (estimate)")
    table = Table(title=title, title_justify="left")
    for column in ("category", "quota", "calls", "input tokens (est.)"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, quota in plan.quota_by_category.items():
        calls, tokens = generator.by_category.get(category, [0, 0])
        table.add_row(category, str(quota), str(calls), f"{tokens:,}")
    later = plan.max_rounds - (plan.round_index or plan.max_rounds)
    lines = [
        *(_role_line(name, estimate) for name, estimate in plan.roles),
        f"estimated cost of {which} (and the responses): {_cost_text(plan.cost_usd)} "
        "(output tokens counted at max_tokens, so an upper bound)",
        f"top-up rounds (up to {later} more) add calls only for categories still short of quota."
        if later
        else "every category met its quota or no round is left; only the corpus is rebuilt."
        if plan.round_index is None
        else "this is the last round.",
    ]
    if dry:
        lines.append("Nothing was called or written.")
    return Group(table, *(Text(line) for line in lines))


def _role_line(role: str, estimate: RoleEstimate) -> str:
    cached = f", {estimate.cached} already cached" if estimate.cached else ""
    cached += " (batch API, half price)" if estimate.batch_api else ""
    return (
        f"{role} {estimate.backend}:{estimate.model}: {estimate.calls} calls{cached}, "
        f"~{estimate.input_tokens:,} input tokens, at most {estimate.max_output_tokens:,} output "
        f"tokens, {_cost_text(estimate.cost_usd)}"
    )


def _cost_text(cost: float | None) -> str:
    if cost is None:
        return "cost unknown (model not in the taxonomy's prices)"
    return f"<= {format_cost(cost)}"
