"""Judges: a structured verdict per item, from an LLM or from an offline embedding classifier.

Both return, for each item, either a `Verdict` or a `JudgeFailure` (the LLM never produced a valid
verdict); the judge stage turns them into columns and keep/reject decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class Verdict(BaseModel):
    """The judge's reading of one item. `category` is the judge's own, not the intended one."""

    model_config = ConfigDict(extra="forbid")

    keep: bool
    category: str
    harmful: bool
    rule_violations: list[str] = []
    score: float = Field(ge=0.0, le=1.0)
    reason: str = Field(max_length=500)


@dataclass(frozen=True)
class JudgeFailure:
    """No valid verdict after every attempt; recorded on the row, never raised."""

    error: str


@dataclass(frozen=True)
class Item:
    """What a judge sees of a row."""

    id: str
    text: str
    category: str  # the intended category
    label: str  # the intended label


class Judge(Protocol):
    name: str

    def judge(self, items: Sequence[Item]) -> list[Verdict | JudgeFailure]: ...
