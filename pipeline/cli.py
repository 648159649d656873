"""The `synth` command (typer + rich). Every user mistake is one `error:` line and exit code 2."""

from __future__ import annotations

import errno
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline import __version__
from pipeline.errors import SynthWarning, UserError

if TYPE_CHECKING:
    from pipeline.config import RunOptions

app = typer.Typer(
    name="synth",
    help=(
        "Build training data for Korean safety classifiers: an LLM writes harmful and contrasting "
        "safe Korean queries per taxonomy category; every stage checkpoints to parquet, and "
        "rerunning the same command resumes where it stopped."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# emoji off: rich would turn a path and line like `taxonomy.yaml:100:` into an emoji
err_console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def print_error(line: str) -> None:
    """One `error:` line, never wrapped (a wrapped line would read as several errors)."""
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def print_warning(line: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


@contextmanager
def warning_lines() -> Iterator[None]:
    """Show each `SynthWarning` raised meanwhile as one `warning:` line, not as Python's
    `file:line: SynthWarning` with a source line; other warnings show as they would."""
    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, SynthWarning):
            print_warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `UserError` into one red line and exit 2; Ctrl-C into a resume hint and exit 130.
    A `SynthWarning` meanwhile is one yellow line."""
    try:
        with warning_lines():
            yield
    except UserError as error:
        print_error(error.one_line())
        raise typer.Exit(EXIT_USER_ERROR) from None
    except OSError as error:
        line = storage_problem(error)
        if line is None:
            raise
        print_error(line)
        raise typer.Exit(EXIT_USER_ERROR) from None


#: what a full, read-only or forbidden disk raises: the user's to fix, not a bug
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def storage_problem(error: OSError) -> str | None:
    """One line for a write the disk refused, or None for any other error (a bug: traceback).
    Every finished part is already on disk, so the fix is to free space and rerun."""
    advice = "free space or fix permissions there, then rerun the same command to resume"
    if error.errno not in STORAGE_ERRNOS:
        return None
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error} while writing; {advice}"


def _default_out(taxonomy: Path, n: int, seed: int) -> Path:
    return Path("outputs") / f"{taxonomy.stem}-n{n}-seed{seed}"


@app.command()
def run(
    taxonomy: Annotated[
        Path, typer.Option("--taxonomy", "-t", help="Taxonomy YAML (categories, rules, exemplars).")
    ] = Path("taxonomy.yaml"),
    n: Annotated[
        int, typer.Option("--n", "-n", help="Accepted items wanted in the final corpus.")
    ] = 5000,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run directory. Default: outputs/<taxonomy>-n<N>-seed<S>. Rerun to resume.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for planning, exemplar rotation and sampling.")
    ] = 0,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Generator backend: local, openai, anthropic, vllm or template (no model) "
            "(default: the taxonomy's, normally 'local')."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model for the backend; for 'local', a path to a GGUF file."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible server for --backend openai (vLLM serve, llama.cpp, Ollama)."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key; better set OPENAI_API_KEY or ANTHROPIC_API_KEY. Never written to disk.",
            show_default=False,
        ),
    ] = None,
    chat: Annotated[
        bool | None,
        typer.Option(
            "--chat/--completions",
            help="Chat messages or plain completions (base models). Default: the backend's.",
            show_default=False,
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(help="API requests in flight at once (default 16).")
    ] = None,
    rpm: Annotated[
        float | None, typer.Option(help="Client-side requests-per-minute limit.")
    ] = None,
    tpm: Annotated[float | None, typer.Option(help="Client-side tokens-per-minute limit.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before an API request is retried (default 120).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Judge: 'offline' (exemplar-centroid classifier, the default) or 'llm'.",
        ),
    ] = None,
    judge_backend: Annotated[
        str | None, typer.Option(help="Backend of the LLM judge (default: the taxonomy's).")
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="Model of the LLM judge; may be stronger than the generator.")
    ] = None,
    judge_base_url: Annotated[
        str | None, typer.Option(help="Server of the LLM judge when it differs from --base-url.")
    ] = None,
    responder: Annotated[
        str | None,
        typer.Option(
            help="Safe responses: 'template' (offline policy templates, the default) or 'llm' "
            "(prompts/respond.j2)."
        ),
    ] = None,
    responder_backend: Annotated[
        str | None, typer.Option(help="Backend of the LLM responder (default: the generator's).")
    ] = None,
    responder_model: Annotated[str | None, typer.Option(help="Model of the LLM responder.")] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            help="Stop before any call that could take the run's estimated spend past this many "
            "US dollars (prices: in the taxonomy); rerun with a higher cap to continue."
        ),
    ] = None,
    template_share: Annotated[
        float | None,
        typer.Option(
            help="Share (0-1) of every category's queries written by the template generator, "
            "the rest by --backend; e.g. 0.3 for a 70/30 mix (default: the taxonomy's, 0)."
        ),
    ] = None,
    fuzzy_threshold: Annotated[
        float | None,
        typer.Option(help="Dedup: fuzz.ratio (0-100) at which two queries are duplicates."),
    ] = None,
    embedding_threshold: Annotated[
        float | None,
        typer.Option(help="Dedup: cosine (0-1) at which two queries are duplicates."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads for the in-process local model and the e5 embedder; more than the "
            "cores this process may use are never used (default: those cores). Changes speed, "
            "not results.",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete this run's outputs and start over.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the planned calls, tokens and cost estimate; call nothing, write nothing.",
        ),
    ] = False,
    batch_api: Annotated[
        bool,
        typer.Option(
            "--batch-api",
            help="Send the openai/anthropic calls through the provider's batch API: half price, "
            "answers within 24 h; a restarted run polls its submitted jobs instead of resending.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Start a run on a paid API without asking (batch jobs); its estimate is still "
            "printed. Without it a paid run asks in a terminal and refuses to start elsewhere.",
        ),
    ] = False,
) -> None:
    """Generate, checkpoint and (on rerun) resume a corpus run.

    Example: synth run --taxonomy taxonomy.yaml --n 200 --out outputs/demo
    """
    from pipeline.config import RunOptions
    from pipeline.prices import format_cost
    from pipeline.runner import run as run_pipeline

    out = out or _default_out(taxonomy, n, seed)
    connection = {
        "base_url": base_url,
        "chat": chat,
        "max_in_flight": max_in_flight,
        "requests_per_minute": rpm,
        "tokens_per_minute": tpm,
        "timeout_s": timeout,
    }
    options = RunOptions(
        taxonomy_path=taxonomy,
        n=n,
        out=out,
        seed=seed,
        backend=backend,
        model=model,
        connection={key: value for key, value in connection.items() if value is not None},
        api_key=api_key,
        judge=judge,
        judge_backend=judge_backend,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        responder=responder,
        responder_backend=responder_backend,
        responder_model=responder_model,
        max_cost=max_cost,
        template_share=template_share,
        fuzzy_threshold=fuzzy_threshold,
        embedding_threshold=embedding_threshold,
        fresh=fresh,
        batch_api=batch_api,
        threads=threads,
    )
    if dry_run:
        from pipeline.dryrun import dry_run as estimate
        from pipeline.dryrun import render_dry_run

        with user_errors():
            out_console.print(render_dry_run(estimate(options)))
        return
    with user_errors():
        _confirm_paid_run(options, yes)
        try:
            summary = run_pipeline(options, console=err_console)
        except KeyboardInterrupt:
            err_console.print(
                f"\n[yellow]interrupted.[/] Finished parts are saved in {escape(str(out))}; "
                "rerun the same command to resume.",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    table = Table(title=f"run {out}", title_justify="left")
    for column in ("category", "quota", "accepted", "calls", "note"):
        table.add_column(
            column, justify="right" if column in ("quota", "accepted", "calls") else "left"
        )
    for outcome in summary.outcomes:
        table.add_row(
            outcome.category,
            str(outcome.quota),
            str(outcome.accepted),
            str(outcome.calls),
            f"[yellow]short: {outcome.reason}[/]" if outcome.short else "",
        )
    out_console.print(table)
    for line in summary.refusal_warnings:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    accepted = sum(outcome.accepted for outcome in summary.outcomes)
    wanted = sum(outcome.quota for outcome in summary.outcomes)
    stats = summary.stats
    out_console.print(
        f"accepted {accepted} of {wanted}; {stats.calls} model calls "
        f"({stats.input_tokens:,} tokens in, {stats.output_tokens:,} out, "
        f"est. {format_cost(stats.cost_usd, stats.unpriced_calls)}), "
        f"{stats.cache_hits} replayed from the cache, {stats.retries} retried. "
        f"`synth status {out}` shows more; report: {summary.report}",
        soft_wrap=True,
    )


def _interactive() -> bool:
    """Whether someone can answer a question (a terminal on stdin)."""
    return sys.stdin.isatty()


def _confirm_paid_run(options: RunOptions, yes: bool) -> None:
    """Before a run that a provider bills, print what it will still send and may cost; start it
    on --yes or a 'y' typed in a terminal, and refuse elsewhere (a batch job without --yes)."""
    from pipeline.config import prepare
    from pipeline.dryrun import dry_run, paid_roles, render_dry_run
    from pipeline.prices import format_cost

    prepared = prepare(options)
    paid = paid_roles(prepared, options.api_key)
    if not paid:
        return
    plan = dry_run(options, prepared)
    if not plan.calls:
        return  # everything it needs is in the call cache
    err_console.print(render_dry_run(plan, dry=False))
    if yes:
        return
    cost = "cost unknown" if plan.cost_usd is None else f"<= {format_cost(plan.cost_usd)}"
    if not _interactive():
        raise UserError(
            f"this run calls a paid API ({'; '.join(paid)}; {plan.calls} calls, {cost}): pass "
            "--yes to start it without asking, or run it in a terminal to confirm"
        )
    if not typer.confirm(f"Start this run ({cost})?", default=False, err=True):
        err_console.print("not started; nothing was called or written.")
        raise typer.Exit(1)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (the --out of synth run).")],
) -> None:
    """Show a run's per-stage and per-category counts, read from its parquet files."""
    from pipeline.status import render_status

    with user_errors():
        out_console.print(render_status(run_dir))


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (the --out of synth run).")],
    stage: Annotated[
        str,
        typer.Option(help="Stage to show: generate, screen, dedup, judge, balance or respond."),
    ] = "judge",
    rejected: Annotated[
        bool, typer.Option("--rejected", help="Only rows this stage rejected.")
    ] = False,
    kept: Annotated[bool, typer.Option("--kept", help="Only rows still kept.")] = False,
    category: Annotated[str | None, typer.Option(help="Only this category id.")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Only rows whose reject reason contains this text.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Example rows shown per group.")] = 10,
) -> None:
    """Browse a stage's rows, grouped by reject reason, e.g. --stage judge --rejected."""
    from pipeline.inspect_rows import load_stage, render_groups, select_rows

    with user_errors():
        if rejected and kept:
            raise UserError("--rejected and --kept exclude each other; pass one")
        rows = select_rows(load_stage(run_dir, stage), stage, rejected, kept, category, reason)
        out_console.print(render_groups(rows, stage, limit))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (the --out of synth run).")],
) -> None:
    """Write RUN/report.html: yield, rejections, duplicates, lengths, diversity, style, refusals
    and cost, with figures, in one self-contained page (also written at the end of every run)."""
    from pipeline.manifest import Manifest
    from pipeline.report import write_report
    from pipeline.store import RunDir

    with user_errors():
        if Manifest.load(RunDir(run_dir).manifest) is None:
            raise UserError(f"{run_dir}: not a run directory (no run.json); pass a run's --out")
        with err_console.status("drawing the report"):
            path = write_report(run_dir)
    out_console.print(f"wrote {path}", soft_wrap=True)


@app.command("eval")
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with an exported corpus.")],
    test: Annotated[
        list[Path] | None,
        typer.Option(
            "--test",
            help="Labelled test file (.csv, .jsonl or .parquet; columns text, label safe/unsafe, "
            "optional category). Repeat for several. Default: the corpus's own test split.",
        ),
    ] = None,
    embedder: Annotated[
        str, typer.Option(help="Sentence embedder: e5 (offline default) or st:<name-or-path>.")
    ] = "e5",
) -> None:
    """Train a logistic regression on the run's corpus embeddings and print per-class
    precision, recall and F1 on each test set (predictions go to RUN/eval/)."""
    from rich.progress import Progress, TaskID

    from pipeline.evaluate import evaluate
    from pipeline.progress import make_progress

    with user_errors():
        progress: Progress
        with make_progress(err_console) as progress:
            bars: list[TaskID] = []

            def on_progress(done: int, total: int) -> None:
                # the bar appears with the first text embedded, so a bad test file is one line
                if not bars:
                    bars.append(progress.add_task("embed", total=total, unit="texts"))
                progress.update(bars[0], completed=done, total=total)

            result = evaluate(run_dir, test or [], embedder, on_progress)
    out_console.print(f"trained on {result.train_items} train-split items of {run_dir}")
    for report in result.reports:
        title = "safety (safe/unsafe)" if report.task == "label" else "harm category"
        table = Table(title=f"{report.test}: {title}", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for score in [*report.classes, report.weighted]:
            table.add_row(
                score.label,
                f"{score.precision:.3f}",
                f"{score.recall:.3f}",
                f"{score.f1:.3f}",
                str(score.support),
                style="bold" if score.label == "weighted avg" else None,
            )
        table.caption = f"accuracy {report.accuracy:.3f}"
        out_console.print(table)
    paths = ", ".join(str(path) for path in result.predictions)
    out_console.print(f"predictions: {paths}; scores: {run_dir / 'eval' / 'results.json'}")


@app.command()
def validate(
    taxonomy: Annotated[Path, typer.Argument(help="Taxonomy YAML to check.")] = Path(
        "taxonomy.yaml"
    ),
) -> None:
    """Check a taxonomy file and that every prompt file renders; lists every problem found."""
    from pipeline.export import load_instructions
    from pipeline.prompts import PromptLibrary
    from pipeline.responders import TemplateResponder
    from pipeline.taxonomy import load_taxonomy

    with user_errors():
        try:
            loaded = load_taxonomy(taxonomy)
        except UserError as error:
            for line in error.details:
                print_error(line)
            raise
        prompts = PromptLibrary(taxonomy.parent / loaded.settings.prompts_dir)
        problems = prompts.check(loaded)
        for check in (
            lambda: TemplateResponder(loaded, prompts.root, seed=0),
            lambda: load_instructions(prompts.root),
        ):
            try:
                check()
            except UserError as error:
                problems += [error.message, *error.details]
        if problems:
            for line in problems[1:]:
                print_error(line)
            raise UserError(problems[0])
    out_console.print(
        f"[green]ok[/] {taxonomy}: {len(loaded.categories)} categories "
        f"({sum(c.label == 'unsafe' for c in loaded.categories)} unsafe, "
        f"{sum(c.label == 'safe' for c in loaded.categories)} safe), "
        f"{sum(len(c.exemplars) for c in loaded.categories)} exemplars, all prompts render, "
        "response and instruction templates check out"
    )


def _version(value: bool) -> None:
    if value:
        print(f"synth {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Korean safety-classifier data pipeline."""


if __name__ == "__main__":
    sys.exit(app())
