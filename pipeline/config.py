"""What a run is asked to do, validated before anything is written.

`prepare` loads the taxonomy and every prompt and data file, applies the command line's
overrides, and builds the config snapshot that decides whether a rerun may resume: a mistake in
any input fails here, with one line, before a call is paid for or a file is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from pipeline.backends import require_known_backend
from pipeline.backends.local import available_cores
from pipeline.errors import UserError
from pipeline.export import InstructionPool, load_instructions
from pipeline.plan import LLM_SOURCE, TEMPLATE_SOURCE
from pipeline.prices import PriceTable
from pipeline.prompts import PromptLibrary
from pipeline.responders import TemplateResponder
from pipeline.taxonomy import (
    CONNECTION_FIELDS,
    DedupSettings,
    GeneratorSettings,
    JudgeSettings,
    ResponderSettings,
    Taxonomy,
    load_taxonomy,
)
from pipeline.template_queries import TemplateGenerator

#: the generator that makes no LLM calls: other roles never follow it onto its backend
NO_CALLS_BACKEND = "template"


@dataclass(frozen=True)
class RunOptions:
    """What `synth run` was asked to do."""

    taxonomy_path: Path
    n: int
    out: Path
    seed: int = 0
    backend: str | None = None
    model: str | None = None
    #: connection overrides for the generator (and the LLM judge when it uses the same backend)
    connection: dict[str, Any] = field(default_factory=dict)
    #: from --api-key; handed to the backend only, never to a snapshot or a log
    api_key: str | None = field(default=None, repr=False)
    judge: str | None = None
    judge_backend: str | None = None
    judge_model: str | None = None
    judge_base_url: str | None = None
    responder: str | None = None
    responder_backend: str | None = None
    responder_model: str | None = None
    #: --max-cost: overrides settings.max_cost_usd
    max_cost: float | None = None
    #: --template-share: overrides settings.template_share
    template_share: float | None = None
    fuzzy_threshold: float | None = None
    embedding_threshold: float | None = None
    fresh: bool = False
    #: --batch-api: every LLM role on openai/anthropic goes through the provider's batch API
    batch_api: bool = False
    #: --threads: CPU threads for in-process work (the local model); None: every core
    threads: int | None = None


@dataclass
class Prepared:
    """Everything validated before the run directory is touched."""

    taxonomy: Taxonomy
    prompts: PromptLibrary
    generator: GeneratorSettings
    judge: JudgeSettings
    dedup: DedupSettings
    snapshot: dict[str, Any]
    prices: PriceTable
    responder: ResponderSettings
    templates: TemplateResponder
    instructions: dict[str, InstructionPool]
    #: the template generator, when it has a share (its lexicons are checked up front)
    template_queries: TemplateGenerator | None = None
    #: the spending cap in US dollars (--max-cost or settings.max_cost_usd), None: no cap
    max_cost_usd: float | None = None
    #: share of each category's quota per generation source (`pipeline.plan`), shares > 0 only
    sources: dict[str, float] = field(default_factory=lambda: {LLM_SOURCE: 1.0})
    #: CPU threads for in-process work (the local model, the embedder): --threads, at most the
    #: cores this process may use. Never part of the snapshot: it changes speed, not results
    threads: int = field(default_factory=available_cores)


def prepare(options: RunOptions) -> Prepared:
    """Load and check the taxonomy and every prompt; a mistake fails here, before any output."""
    if options.n < 1:
        raise UserError(f"--n must be at least 1 (got {options.n})")
    if options.threads is not None and options.threads < 1:
        raise UserError(f"--threads must be at least 1 (got {options.threads})")
    taxonomy = load_taxonomy(options.taxonomy_path)
    generator = _validated(
        taxonomy.settings.generator,
        {**_backend_overrides(options.backend, options.model), **options.connection},
    )
    judge_overrides = _backend_overrides(options.judge_backend, options.judge_model)
    defaults = taxonomy.settings
    if (
        options.judge_backend is None
        and options.backend is not None
        and options.backend != NO_CALLS_BACKEND
        and defaults.judge.backend == defaults.generator.backend
    ):
        # the taxonomy's judge follows its generator, so it follows --backend/--model too
        judge_overrides = {
            "backend": generator.backend,
            "model": options.judge_model or generator.model,
        }
    if options.judge is not None:
        judge_overrides["kind"] = options.judge
    if options.judge_base_url is not None:
        judge_overrides["base_url"] = options.judge_base_url
    judge = taxonomy.settings.judge.model_copy(update=judge_overrides)
    if judge.backend == generator.backend and options.judge_base_url is None:
        # one server for both roles unless told otherwise: the generator's connection flags
        # (--base-url, --max-in-flight, ...) apply to the judge too
        judge = judge.model_copy(update=generator.model_dump(include=CONNECTION_FIELDS))
    if judge.kind not in ("offline", "llm"):
        raise UserError(f"--judge must be 'offline' or 'llm' (got {judge.kind!r})")
    responder = _role_settings(
        taxonomy.settings.responder,
        defaults.generator,
        generator,
        options.responder_backend,
        options.responder_model,
        options.backend,
    )
    if options.responder is not None:
        if options.responder not in ("template", "llm"):
            raise UserError(f"--responder must be 'template' or 'llm' (got {options.responder!r})")
        responder = responder.model_copy(update={"kind": options.responder})
    dedup_overrides: dict[str, Any] = {}
    if options.fuzzy_threshold is not None:
        dedup_overrides["fuzzy_threshold"] = options.fuzzy_threshold
    if options.embedding_threshold is not None:
        dedup_overrides["embedding_threshold"] = options.embedding_threshold
    try:
        dedup = DedupSettings.model_validate({**taxonomy.dedup.model_dump(), **dedup_overrides})
    except ValidationError as error:
        first = error.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "dedup"
        raise UserError(f"{flag}: {first['msg']} (got {first.get('input')!r})") from None
    generator, judge, responder = _batch_api(options.batch_api, generator, judge, responder)
    # the LLM judge's backend is built when the judge first runs, after generation is paid
    # for: a misspelt name must fail here, before any call
    require_known_backend(generator.backend, "--backend")
    if judge.kind == "llm":
        require_known_backend(judge.backend, "--judge-backend")
    if responder.kind == "llm":
        require_known_backend(responder.backend, "--responder-backend")
    prompts = PromptLibrary(options.taxonomy_path.parent / taxonomy.settings.prompts_dir)
    problems = prompts.check(
        taxonomy, require_judge=judge.kind == "llm", require_respond=responder.kind == "llm"
    )
    if problems:
        raise UserError(problems[0], details=problems[1:])
    # the offline response templates (also the LLM responder's fallback) and the instruction
    # pools are checked now, so a typo in them fails before any call is paid for
    templates = TemplateResponder(taxonomy, prompts.root, options.seed)
    instructions = load_instructions(prompts.root)
    sources = _sources(generator, taxonomy, options.template_share)
    if options.max_cost is not None and options.max_cost <= 0:
        raise UserError(f"--max-cost must be more than 0 dollars (got {options.max_cost:g})")
    template_queries = (
        TemplateGenerator(taxonomy, prompts.root, options.seed)
        if TEMPLATE_SOURCE in sources
        else None
    )
    # only what changes results decides whether a run may resume: connection settings and
    # prices do not, and no key is ever part of a setting
    snapshot = {
        "n": options.n,
        "seed": options.seed,
        "generator": generator.model_dump(exclude=CONNECTION_FIELDS),
        "judge": judge.model_dump(exclude=CONNECTION_FIELDS),
        "responder": responder.model_dump(exclude=CONNECTION_FIELDS),
        "dedup": dedup.model_dump(),
        "sources": sources,
        "taxonomy": taxonomy.model_dump(
            mode="json",
            exclude={
                "prices": True,
                "settings": {
                    "max_cost_usd": True,
                    "refusal_warn_share": True,
                    "generator": CONNECTION_FIELDS,
                    "judge": CONNECTION_FIELDS,
                    "responder": CONNECTION_FIELDS,
                },
            },
        ),
        "prompts": prompts.fingerprint(),
    }
    return Prepared(
        taxonomy,
        prompts,
        generator,
        judge,
        dedup,
        snapshot,
        PriceTable(taxonomy.prices),
        responder,
        templates,
        instructions,
        template_queries,
        max_cost_usd=(
            options.max_cost if options.max_cost is not None else taxonomy.settings.max_cost_usd
        ),
        sources=sources,
        threads=min(options.threads or available_cores(), available_cores()),
    )


def _sources(
    generator: GeneratorSettings, taxonomy: Taxonomy, template_share: float | None
) -> dict[str, float]:
    """Which generators write the queries, and each one's share of every category's quota."""
    share = taxonomy.settings.template_share if template_share is None else template_share
    if not 0.0 <= share <= 1.0:
        raise UserError(f"--template-share must be between 0 and 1 (got {share:g})")
    if generator.backend == NO_CALLS_BACKEND:
        return {TEMPLATE_SOURCE: 1.0}
    shares = {LLM_SOURCE: round(1.0 - share, 6), TEMPLATE_SOURCE: share}
    return {source: value for source, value in shares.items() if value > 0}


def _role_settings(
    settings: ResponderSettings,
    taxonomy_generator: GeneratorSettings,
    generator: GeneratorSettings,
    backend: str | None,
    model: str | None,
    generator_flag: str | None,
) -> ResponderSettings:
    """An LLM role's settings with its flags; like the judge, a role that the taxonomy puts on
    the generator's backend follows --backend/--model, and shares the generator's connection."""
    if backend is not None:
        settings = settings.model_copy(update={"backend": backend, "model": model})
    elif (
        generator_flag is not None
        and generator_flag != NO_CALLS_BACKEND
        and settings.backend == taxonomy_generator.backend
    ):
        settings = settings.model_copy(
            update={"backend": generator.backend, "model": model or generator.model}
        )
    elif model is not None:
        settings = settings.model_copy(update={"model": model})
    if settings.backend == generator.backend:
        settings = settings.model_copy(update=generator.model_dump(include=CONNECTION_FIELDS))
    return settings


def _validated(settings: GeneratorSettings, overrides: dict[str, Any]) -> GeneratorSettings:
    """Settings with command-line overrides, checked like the taxonomy file's own values."""
    try:
        return GeneratorSettings.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "--backend"
        raise UserError(f"{flag}: {first['msg']} (got {first.get('input')!r})") from None


def _backend_overrides(backend: str | None, model: str | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if backend is not None:
        overrides["backend"] = backend
        overrides["model"] = None  # the taxonomy's model belongs to the taxonomy's backend
    if model is not None:
        overrides["model"] = model
    return overrides


#: backends with a batch API (OpenAI Batch, Anthropic Message Batches)
BATCH_API_BACKENDS = ("openai", "anthropic")

Role = TypeVar("Role", GeneratorSettings, JudgeSettings, ResponderSettings)


def _batch_api(
    wanted: bool, generator: GeneratorSettings, judge: JudgeSettings, responder: ResponderSettings
) -> tuple[GeneratorSettings, JudgeSettings, ResponderSettings]:
    """Turn the batch API on (--batch-api) for every LLM role that has one, and refuse it, from
    the flag or the taxonomy, where the backend has none."""
    roles = [("generator", generator, True), ("judge", judge, judge.kind == "llm")]
    roles.append(("responder", responder, responder.kind == "llm"))
    able = [name for name, role, used in roles if used and role.backend in BATCH_API_BACKENDS]
    if wanted and not able:
        raise UserError(
            f"--batch-api needs an openai or anthropic backend (the generator is "
            f"{generator.backend}); the local, vllm and template backends answer at once"
        )
    for name, role, used in roles:
        if used and role.batch_api and role.backend not in BATCH_API_BACKENDS:
            raise UserError(
                f"settings.{name}.batch_api: the {role.backend} backend has no batch API "
                "(only openai and anthropic do)"
            )

    def on(role: Role, name: str) -> Role:
        return role.model_copy(update={"batch_api": True}) if wanted and name in able else role

    return on(generator, "generator"), on(judge, "judge"), on(responder, "responder")
