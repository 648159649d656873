"""Respond: a safe response for every selected item, following its category's response policy.

Input: the balanced selection. Adds `response`, `response_source` (`template:<category>` or
`llm:<backend>:<model>`) and `response_flags` (repairs the LLM responder needed; see
`pipeline.responders`).
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from pipeline.llm import CallStats
from pipeline.responders import Answer

NAME = "respond"


class Responder(Protocol):
    name: str
    stats: CallStats  # the calls it made (none for templates), for run.json

    def respond(self, rows: list[dict]) -> list[Answer]: ...


def run(rows: pl.DataFrame, responder: Responder) -> pl.DataFrame:
    answers = responder.respond(list(rows.iter_rows(named=True)))
    return rows.with_columns(
        pl.Series("response", [a.text for a in answers], dtype=pl.String),
        pl.Series("response_source", [a.source for a in answers], dtype=pl.String),
        pl.Series("response_flags", [list(a.flags) for a in answers], dtype=pl.List(pl.String)),
    )
