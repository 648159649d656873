"""The LLM judge: renders `prompts/judge.j2` and asks for a JSON verdict.

Works with every backend: the request carries the verdict's JSON schema (structured output where
the backend supports it, a grammar for the local model), and the answer is parsed and validated
with pydantic either way. An invalid answer is retried with the validation error fed back; after
`max_attempts` the item gets a `JudgeFailure`, recorded on its row, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from pipeline.backends.base import Request, Response
from pipeline.judges import Item, JudgeFailure, Verdict
from pipeline.llm import BAD_FINISHES, CallStats, LLMClient
from pipeline.prompts import JUDGE_TEMPLATE, PromptLibrary
from pipeline.taxonomy import JudgeSettings, Taxonomy


class VerdictError(ValueError):
    """The answer held no valid verdict; the message is fed back to the model."""


def verdict_schema(category_ids: list[str]) -> dict[str, Any]:
    schema = Verdict.model_json_schema()
    schema["properties"]["category"]["enum"] = category_ids
    return schema


def parse_verdict(response: Response, category_ids: list[str]) -> Verdict:
    """The first JSON object in the answer (bare or inside prose), validated."""
    if response.finish_reason in BAD_FINISHES:
        raise VerdictError(f"the answer stopped early (finish_reason {response.finish_reason})")
    decoder = json.JSONDecoder()
    text = response.text
    found: Any = None
    for start, char in enumerate(text):
        if char != "{":
            continue
        try:
            found, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            break
    if not isinstance(found, dict):
        raise VerdictError("no JSON object in the answer")
    try:
        verdict = Verdict.model_validate(found)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "verdict"
        raise VerdictError(f"{field}: {first['msg']}") from None
    if verdict.category not in category_ids:
        raise VerdictError(
            f"category: {verdict.category!r} is not one of {', '.join(category_ids)}"
        )
    return verdict


class LLMJudge:
    name = "llm"

    def __init__(
        self,
        taxonomy: Taxonomy,
        prompts: PromptLibrary,
        client: LLMClient,
        settings: JudgeSettings,
        stats: CallStats,
    ) -> None:
        self.taxonomy = taxonomy
        self.prompts = prompts
        self.client = client
        self.settings = settings
        self.stats = stats
        self.category_ids = taxonomy.category_ids
        self.schema = verdict_schema(self.category_ids)

    def prompt(self, item: Item) -> str:
        intended = self.taxonomy.category(item.category)
        return self.prompts.render(
            JUDGE_TEMPLATE,
            categories=[category.model_dump() for category in self.taxonomy.categories],
            rules=[rule.model_dump() for rule in self.taxonomy.rules_for(intended)],
            intended=intended.model_dump(),
            item={"text": item.text, "label": item.label},
        )

    def request(self, item: Item, attempt: int, feedback: tuple[str, str] | None) -> Request:
        prompt = self.prompt(item)
        common = {
            "temperature": self.settings.temperature,
            "top_p": 1.0,
            "max_tokens": self.settings.max_tokens,
            "seed": attempt,
            "sample_index": attempt,
            "json_schema": self.schema,
        }
        if self.client.backend.chat:
            messages: tuple[tuple[str, str], ...] = (("user", prompt),)
            if feedback is not None:
                previous, error = feedback
                messages += (("assistant", previous), ("user", _retry_note(error)))
            return Request(messages=messages, **common)
        if feedback is not None:
            previous, error = feedback
            prompt = f"{prompt} {previous.strip()}\n\n{_retry_note(error)}\nJSON:"
        return Request(prompt=prompt, **common)

    def judge(self, items: Sequence[Item]) -> list[Verdict | JudgeFailure]:
        results: dict[int, Verdict | JudgeFailure] = {}
        pending: dict[int, tuple[str, str] | None] = dict.fromkeys(range(len(items)))
        for attempt in range(self.settings.max_attempts):
            if not pending:
                break
            order = list(pending)
            requests = [self.request(items[i], attempt, pending[i]) for i in order]
            responses = self.client.run(requests, self.stats)
            retry: dict[int, tuple[str, str] | None] = {}
            for index, response in zip(order, responses, strict=True):
                try:
                    results[index] = parse_verdict(response, self.category_ids)
                except VerdictError as error:
                    retry[index] = (response.text, str(error))
            pending = retry
        for index, feedback in pending.items():
            error = feedback[1] if feedback else "no answer"
            results[index] = JudgeFailure(
                f"no valid verdict after {self.settings.max_attempts} attempts: {error}"
            )
        return [results[index] for index in range(len(items))]


def _retry_note(error: str) -> str:
    return (
        f"이전 답변은 형식이 올바르지 않았습니다 ({error}). "
        "지정한 JSON 객체 하나로만 다시 답하세요."
    )
