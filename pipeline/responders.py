"""Who writes the safe response to each kept query: policy templates offline, or an LLM.

The template responder answers unsafe queries only: it joins one line from each part of the
category's policy (opening, reason, alternative, closing), chosen with a seed from the row id, so
responses vary while staying reproducible, and offers the row's sub-harm `alternative` from the
taxonomy where it has one (a piracy request gets free or licensed software, not a library card).
A safe query gets no template response (`response` is null and the response task leaves it
out): a scaffold with no content would teach a model to answer with nothing; the LLM responder
writes real answers. The LLM responder renders
`prompts/respond.j2` and then holds the answer to the same policy: a refusal of a safe query is
replaced (the corpus must not teach over-refusal), text a category requires (the crisis line for
self-harm) is added when missing, and a failed answer falls back to the template; each such
repair is named in `response_flags`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from pipeline.backends.base import Request
from pipeline.errors import UserError
from pipeline.llm import BAD_FINISHES, CallStats, LLMClient
from pipeline.plan import derive_seed
from pipeline.prompts import RESPOND_TEMPLATE, PromptLibrary
from pipeline.stages.screen import refusal_or_meta_text
from pipeline.taxonomy import Category, ResponderSettings, StrictModel, Taxonomy
from pipeline.yamlfile import load_yaml_model

TEMPLATES_FILE = "respond/templates.yaml"
#: the parts a response is built from, in order, per label
PARTS = {
    "unsafe": ("openings", "reasons", "alternatives", "closings"),
    "safe": ("openings", "bodies", "closings"),
}


class PolicyLines(StrictModel):
    """Lines for one label or category; a category's lists replace its label's defaults."""

    openings: list[str] | None = None
    reasons: list[str] | None = None
    alternatives: list[str] | None = None
    bodies: list[str] | None = None
    closings: list[str] | None = None
    required: list[str] = Field(default_factory=list)


class ResponseTemplates(StrictModel):
    unsafe: PolicyLines
    safe: PolicyLines
    categories: dict[str, PolicyLines] = Field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    text: str | None
    source: str
    flags: tuple[str, ...] = ()


class TemplateResponder:
    """Offline responses from `prompts/respond/templates.yaml`."""

    name = "template"

    def __init__(self, taxonomy: Taxonomy, prompts_root: Path, seed: int) -> None:
        self.path = prompts_root / TEMPLATES_FILE
        self.stats = CallStats()  # templates make no calls; kept for the runner's counters
        templates = load_yaml_model(self.path, ResponseTemplates)
        self.seed = seed
        unknown = sorted(set(templates.categories) - set(taxonomy.category_ids))
        if unknown:
            raise UserError(
                f"{self.path}: categories.{unknown[0]}: no such category in the taxonomy "
                "(remove the entry or fix its id)"
            )
        self.parts = {c.id: self._resolve(templates, c) for c in taxonomy.categories}
        self.required = {
            c.id: templates.categories.get(c.id, PolicyLines()).required
            for c in taxonomy.categories
        }
        self.names = {c.id: c.name_ko for c in taxonomy.categories}
        self.labels = {c.id: c.label for c in taxonomy.categories}
        #: (category, sub-harm) -> the alternative it offers
        self.alternatives = {
            (c.id, s.id): s.alternative
            for c in taxonomy.categories
            for s in c.sub_harms
            if s.alternative
        }
        for category_id, required in self.required.items():
            for text in required:
                if not any(
                    all(text in line for line in lines) for lines in self.parts[category_id]
                ):
                    raise UserError(
                        f"{self.path}: categories.{category_id}.required: {text!r} must appear in "
                        "every line of at least one part, so every response contains it"
                    )

    def _resolve(self, templates: ResponseTemplates, category: Category) -> list[list[str]]:
        default = templates.unsafe if category.label == "unsafe" else templates.safe
        own = templates.categories.get(category.id, PolicyLines())
        parts = []
        for part in PARTS[category.label]:
            lines = getattr(own, part) or getattr(default, part)
            if not lines:
                raise UserError(
                    f"{self.path}: {category.label}.{part}: needs at least one line "
                    f"(used by category {category.id})"
                )
            parts.append(lines)
        return parts

    def answer(self, row: dict) -> Answer:
        """The policy response to an unsafe row; for a safe row, none (text None)."""
        category = row["category"]
        if self.labels[category] == "safe":
            return Answer(None, "none")
        rng = random.Random(derive_seed(self.seed, "respond", row["id"]))
        lines = [rng.choice(options) for options in self.parts[category]]
        alternative = self.alternatives.get((category, row.get("topic")))
        if alternative:
            part = PARTS["unsafe"].index("alternatives")
            if self.required[category]:
                lines.insert(part + 1, alternative)  # keep the line that carries the required
            else:
                lines[part] = alternative
        text = " ".join(line.format(name=self.names[category]) for line in lines if line.strip())
        return Answer(text, f"template:{category}")

    def respond(self, rows: Sequence[dict]) -> list[Answer]:
        return [self.answer(row) for row in rows]


class LLMResponder:
    """Responses from an LLM, held to the category's policy (see the module docstring)."""

    name = "llm"

    def __init__(
        self,
        taxonomy: Taxonomy,
        prompts: PromptLibrary,
        client: LLMClient,
        settings: ResponderSettings,
        fallback: TemplateResponder,
        stats: CallStats,
    ) -> None:
        self.taxonomy = taxonomy
        self.prompts = prompts
        self.client = client
        self.settings = settings
        self.fallback = fallback
        self.stats = stats

    def request(self, row: dict) -> Request:
        category = self.taxonomy.category(row["category"])
        prompt = self.prompts.render(
            RESPOND_TEMPLATE,
            category=category.model_dump(),
            item={"text": row["text"], "label": row["label"]},
        )
        common = {
            "temperature": self.settings.temperature,
            "top_p": self.settings.top_p,
            "max_tokens": self.settings.max_tokens,
            "seed": derive_seed("respond", row["id"]),
        }
        if self.client.backend.chat:
            return Request(messages=(("user", prompt),), **common)
        return Request(prompt=prompt, stop=("\n\n\n",), **common)

    def respond(self, rows: Sequence[dict]) -> list[Answer]:
        responses = self.client.run([self.request(row) for row in rows], self.stats)
        answers = []
        for row, response in zip(rows, responses, strict=True):
            text = response.text.strip()
            source = f"llm:{self.client.generator_name}"
            fallback = self.fallback.answer(row)
            if response.finish_reason in BAD_FINISHES or not text:
                answers.append(
                    Answer(fallback.text, fallback.source, (f"fallback:{response.finish_reason}",))
                )
                continue
            if row["label"] == "safe" and refusal_or_meta_text(text):
                answers.append(Answer(fallback.text, fallback.source, ("refusal_replaced",)))
                continue
            flags: list[str] = []
            for required in self.fallback.required[row["category"]]:
                if required not in text:
                    carrier = next(
                        line
                        for lines in self.fallback.parts[row["category"]]
                        if all(required in candidate for candidate in lines)
                        for line in lines[:1]
                    )
                    text = f"{text} {carrier}"
                    flags.append(f"required_added:{required}")
            answers.append(Answer(text, source, tuple(flags)))
        return answers
