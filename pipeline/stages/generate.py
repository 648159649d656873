"""Generate: render each category's prompt and parse the numbered list the model continues.

Input: one row per planned call (see `pipeline.plan`). Output: one row per parsed query with the
row schema's first columns (id, category, label, text, round, generator, source (`llm` or
`template`), prompt_id, seed) plus where it came from (task_id, call_key, sample_index,
finish_reason).

A call that gave no query is not dropped silently: it leaves one row rejected by `generate` whose
text is the model's own words and whose reason says why (`FAILED_CALL_REASONS`). An answer cut off
at its token limit or stopped by a content filter is never parsed, even when it holds a list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.attributes import ATTRIBUTE_COLUMNS, call_attributes
from pipeline.backends.base import Request, Response
from pipeline.llm import BAD_FINISHES, CallStats, LLMClient
from pipeline.plan import LLM_SOURCE
from pipeline.prompts import PromptLibrary, generation_variables
from pipeline.refusals import is_refusal
from pipeline.taxonomy import GeneratorSettings, Taxonomy
from pipeline.template_queries import TemplateGenerator
from pipeline.text import normalize, row_id

NAME = "generate"

ROW_SCHEMA = {
    "id": pl.String,
    "category": pl.String,
    "label": pl.String,
    "text": pl.String,
    "round": pl.Int32,
    "generator": pl.String,
    "source": pl.String,
    "prompt_id": pl.String,
    "seed": pl.Int64,
    "task_id": pl.String,
    "call_key": pl.String,
    "sample_index": pl.Int32,
    "finish_reason": pl.String,
    # what the query was built to realise (`pipeline.attributes`); skeleton: the template
    # content it came from (null for LLM rows), which splits keep on one side
    "topic": pl.String,
    "twin_of": pl.String,
    "register": pl.String,
    "form": pl.String,
    "framing": pl.String,
    "skeleton": pl.String,
    "rejected_by": pl.String,
    "reject_reason": pl.String,
}

_NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(.*?)\s*$")
_WRAPPING = "\"'“”‘’「」『』*` "
#: a base model continuing the open list stops at the first blank line
COMPLETION_STOP = ("\n\n",)
#: why a call gave no query: a soft refusal in words, a content filter, the token limit, or an
#: answer with no numbered list; `REFUSED_REASONS` are what `synth status` counts as refusals
FAILED_CALL_REASONS = ("refused", "content_filter", "cut_off", "no_list")
REFUSED_REASONS = ("refused", "content_filter")
#: how much of a failed call's answer its row keeps, for `synth inspect`
FAILED_TEXT_CHARS = 300


@dataclass
class GenerateContext:
    """What the stage needs besides its input rows."""

    taxonomy: Taxonomy
    prompts: PromptLibrary
    llm: LLMClient
    sampling: GeneratorSettings
    stats: CallStats = field(default_factory=CallStats)
    on_call: Callable[[Response], None] | None = None


def build_request(
    task: dict,
    taxonomy: Taxonomy,
    prompts: PromptLibrary,
    sampling: GeneratorSettings,
    chat: bool,
) -> tuple[Request, str, int]:
    """The request for one planned call, its prompt id, and the number its open list starts at.

    Depends on the plan row and the settings only, so a dry run builds the very requests (and
    cache keys) a real run would send.
    """
    category = taxonomy.category(task["category"])
    exemplar_count = min(taxonomy.settings.exemplars_per_prompt, len(category.exemplars))
    # the rotating sample is seeded by the call, so a rerun renders the very same prompt
    exemplars = random.Random(task["seed"]).sample(category.exemplars, exemplar_count)
    template = PromptLibrary.generation_template(category)
    chosen = call_attributes(taxonomy, category, task["seed"])
    prompt = prompts.render(
        template, **generation_variables(taxonomy, category, exemplars, task["n_new"], chosen)
    )
    common = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": task["seed"],
    }
    if chat:
        request = Request(messages=(("user", prompt),), **common)
    else:
        request = Request(prompt=prompt, stop=COMPLETION_STOP, **common)
    return request, prompts.prompt_id(template), exemplar_count + 1


def parse_numbered_list(text: str, first_number: int | None) -> list[str]:
    """The queries of one contiguous numbered run.

    With `first_number` (plain completion), `text` continues an open `N.` line; otherwise (chat)
    the first numbered line starts the run and any preamble is skipped. The run ends at the first
    line that breaks the numbering (a restart at 1, prose, a new heading).
    """
    lines = text.splitlines()
    if first_number is not None:
        lines = [f"{first_number}. {lines[0] if lines else ''}", *lines[1:]]
    items: list[str] = []
    expected: int | None = None
    for line in lines:
        if not line.strip():
            if expected is not None and first_number is not None:
                break
            continue
        match = _NUMBERED.match(line)
        if match is None or (expected is not None and int(match.group(1)) != expected):
            if expected is None:
                continue
            break
        expected = int(match.group(1)) + 1
        item = match.group(2).strip(_WRAPPING)
        if item:
            items.append(item)
    return items


def failed_call_reason(response: Response, items: list[str]) -> str | None:
    """Why an answered call gave no usable query, or None when it gave some. A list whose every
    item is a refusal (an instruct model continuing a completion prompt) is a refusal too."""
    if response.finish_reason == "content_filter":
        return "content_filter"
    if response.finish_reason == "length":
        return "cut_off"
    if items and not all(is_refusal(item) for item in items):
        return None
    return "refused" if is_refusal(response.text) else "no_list"


Built = tuple[Request, str, int]


def build_requests(tasks: pl.DataFrame, ctx: GenerateContext) -> list[Built]:
    """The request, prompt id and first list number for each planned call."""
    chat = ctx.llm.backend.chat
    return [
        build_request(task, ctx.taxonomy, ctx.prompts, ctx.sampling, chat)
        for task in tasks.iter_rows(named=True)
    ]


def run(tasks: pl.DataFrame, ctx: GenerateContext) -> pl.DataFrame:
    """One batch of planned calls in, the parsed queries out."""
    built = build_requests(tasks, ctx)
    responses = ctx.llm.run([request for request, _, _ in built], ctx.stats, ctx.on_call)
    return rows(tasks, built, responses, ctx)


def rows(
    tasks: pl.DataFrame,
    built: list[Built],
    responses: list[Response],
    ctx: GenerateContext,
) -> pl.DataFrame:
    """The parsed queries of answered calls, one row each (pure: no call is made here)."""
    found = []
    for task, (request, prompt_id, first_number), response in zip(
        tasks.iter_rows(named=True), built, responses, strict=True
    ):
        category = ctx.taxonomy.category(task["category"])
        attributes = call_attributes(ctx.taxonomy, category, task["seed"]).as_row()
        items = (
            []  # stopped early: a failure, never parsed as a good answer
            if response.finish_reason in BAD_FINISHES
            else parse_numbered_list(
                response.text, first_number=None if ctx.llm.backend.chat else first_number
            )
        )
        key = ctx.llm.key(request)
        reason = failed_call_reason(response, items)
        if reason is not None:
            items = []
            found.append(
                _failed_call_row(task, response, ctx.llm.generator_name, prompt_id, key, reason)
                | attributes
            )
        for sample_index, item in enumerate(items[: task["n_new"]]):
            found.append(
                _row(
                    task,
                    item,
                    sample_index,
                    ctx.llm.generator_name,
                    prompt_id,
                    key,
                    response.finish_reason,
                )
                | attributes
            )
    return pl.DataFrame(found, schema=ROW_SCHEMA)


def _row(
    task: dict,
    item: str,
    sample_index: int,
    generator: str,
    prompt_id: str,
    call_key: str | None,
    finish_reason: str,
) -> dict:
    """One generated query with where it came from, in the row schema."""
    text = normalize(item)
    return {
        "id": row_id(task["category"], text),
        "category": task["category"],
        "label": task["label"],
        "text": text,
        "round": task["round"],
        "generator": generator,
        "source": task.get("source") or LLM_SOURCE,
        "prompt_id": prompt_id,
        "seed": task["seed"],
        "task_id": task["task_id"],
        "call_key": call_key,
        "sample_index": sample_index,
        "finish_reason": finish_reason,
        **dict.fromkeys((*ATTRIBUTE_COLUMNS, "skeleton")),
        "rejected_by": None,
        "reject_reason": None,
    }


def _failed_call_row(
    task: dict, response: Response, generator: str, prompt_id: str, call_key: str, reason: str
) -> dict:
    """One rejected row standing for a call that gave no query; its id cannot collide with a
    query's, since it hashes the task id rather than a text."""
    row = _row(
        task,
        response.text[:FAILED_TEXT_CHARS],
        -1,
        generator,
        prompt_id,
        call_key,
        response.finish_reason,
    )
    row.update(
        id=row_id(task["category"], f"failed call {task['task_id']}"),
        rejected_by=NAME,
        reject_reason=reason,
    )
    return row


def from_templates(
    tasks: pl.DataFrame, queries: TemplateGenerator, prompt_ids: dict[str, str]
) -> pl.DataFrame:
    """One batch of planned calls answered by the template generator instead of a model: each
    task's call index and seed pick its `n_new` queries, so a rerun writes the very same rows."""
    generator = f"{queries.name}:{queries.model}"
    found = [
        _row(task, item.text, index, generator, prompt_ids[task["category"]], None, "template")
        | {name: getattr(item, name) for name in (*ATTRIBUTE_COLUMNS, "skeleton")}
        for task in tasks.iter_rows(named=True)
        for index, item in enumerate(
            queries.queries(task["category"], task["call_index"], task["seed"], task["n_new"])
        )
    ]
    return pl.DataFrame(found, schema=ROW_SCHEMA)
