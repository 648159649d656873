"""A backend that answers from a script, one answer per call in order.

A fake, because no real model can be made to return a malformed verdict, a refusal or a reply
missing the crisis line on demand; what the tests using it check is how the pipeline handles
such answers (retries with feedback, recorded failures, repaired responses).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.backends.base import Backend, Request, Response


class ScriptedBackend(Backend):
    name = "scripted"
    chat = True

    def __init__(self, answers: list[str], finish_reason: str = "stop") -> None:
        self.answers = list(answers)
        self.finish_reason = finish_reason
        self.requests: list[Request] = []

    @property
    def model(self) -> str:
        return "script"

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        self.requests.extend(requests)
        return [Response(self.answers.pop(0), self.finish_reason) for _ in requests]
