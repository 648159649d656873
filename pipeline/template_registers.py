"""How people type: a rendered query rewritten into a register (slang, typos, no punctuation,
emoticons, English words), after conjugation, so every register reaches both labels alike.

`prompts/templates/_registers.yaml` holds the tables (which base level each register starts from,
word swaps, tails); this module only applies them. Every rewrite is driven by the caller's seeded
`random.Random`, so a rerun writes the same text.
"""

from __future__ import annotations

import random
import re

from pydantic import Field

from pipeline.korean import attach
from pipeline.taxonomy import StrictModel

#: registers that are a base level themselves; the rest rewrite text written at a base level
BASE_REGISTERS = ("banmal", "jondaetmal", "written")
#: registers this module knows how to write (a taxonomy may weight or drop them, not add)
KNOWN_REGISTERS = (*BASE_REGISTERS, "slang", "typo", "no_punct", "emoticon", "code_switch")

#: particles a swap re-attaches, longest first (으로 before 로); only before a space or the end,
#: so a word that merely starts with the syllable is left alone
_PARTICLE_AFTER = r"(이랑|으로|을|를|이|가|은|는|과|와|로|랑)?(?=[\s.,?!~]|$)"
_NO_PARTICLE_AFTER = r"()(?=[\s.,?!~]|$)"
_END_PUNCTUATION = re.compile(r"[.!?~,]+$")
_PUNCTUATION = re.compile(r"[.!?~,\"'“”‘’]")


class RegisterTables(StrictModel):
    """The word tables of `_registers.yaml`."""

    #: the base levels a register starts from (it picks one per query)
    base: dict[str, list[str]] = Field(default_factory=dict)
    #: internet slang: a word or phrase -> what people type instead
    slang: dict[str, list[str]] = Field(default_factory=dict)
    #: added at the end of a slang query when no swap applied
    slang_tails: list[str] = Field(default_factory=list)
    #: common misspellings: correct -> misspelt
    typo: dict[str, list[str]] = Field(default_factory=dict)
    #: share of spaces a typo query drops
    dropped_spaces: float = Field(0.5, ge=0.0, le=1.0)
    emoticons: list[str] = Field(default_factory=list)
    #: Korean word -> English word people mix in
    english: dict[str, list[str]] = Field(default_factory=dict)
    #: added when no English swap applied
    english_tails: list[str] = Field(default_factory=list)


def base_level(register: str, tables: RegisterTables, rng: random.Random) -> str:
    """The base level a query of `register` is rendered in before the rewrite."""
    if register in BASE_REGISTERS:
        return register
    return rng.choice(tables.base.get(register) or ["banmal", "jondaetmal"])


def rewrite(text: str, register: str, tables: RegisterTables, rng: random.Random) -> str:
    """`text` (rendered at its base level) as people type it in `register`."""
    if register in BASE_REGISTERS:
        return text
    if register == "slang":
        swapped = _swap(text, tables.slang, rng, at_most=3)
        if swapped == text and tables.slang_tails:
            swapped = f"{_END_PUNCTUATION.sub('', text)} {rng.choice(tables.slang_tails)}"
        return swapped
    if register == "typo":
        return _drop_spaces(_swap(text, tables.typo, rng, at_most=2), tables.dropped_spaces, rng)
    if register == "no_punct":
        return " ".join(_PUNCTUATION.sub(" ", text).split())
    if register == "emoticon":
        mark = rng.choice(tables.emoticons)
        if rng.random() < 0.7:
            return f"{_END_PUNCTUATION.sub('', text)} {mark}"
        return f"{text} {mark}"
    if register == "code_switch":
        # an English word takes no Korean particle the code could make agree (way을, tip를):
        # swap only where none follows
        swapped = _swap(text, tables.english, rng, at_most=2, before_particle=False)
        if swapped == text and tables.english_tails:
            swapped = f"{_END_PUNCTUATION.sub('', text)} {rng.choice(tables.english_tails)}"
        return swapped
    raise ValueError(f"unknown register {register!r}")


def _swap(
    text: str,
    table: dict[str, list[str]],
    rng: random.Random,
    at_most: int,
    before_particle: bool = True,
) -> str:
    """Up to `at_most` of the table's words that occur in `text`, each replaced (first
    occurrence) by one of its variants, a particle right after it made to agree (비밀번호를 ->
    비번을); longer words first, so a phrase beats its parts."""
    present = [word for word in sorted(table, key=len, reverse=True) if word in text]
    rng.shuffle(present)
    for word in present[:at_most]:
        if word in text:  # an earlier, longer swap may have taken it
            text = swap_word(text, word, rng.choice(table[word]), before_particle)
    return text


def swap_word(text: str, word: str, variant: str, before_particle: bool = True) -> str:
    """`word`'s first occurrence in `text` replaced by `variant`; a particle right after it
    takes the form that agrees with the variant (with `before_particle` False, only an
    occurrence with no particle after it is replaced)."""

    def replace(match: re.Match[str]) -> str:
        particle = match.group(1)
        return attach(variant, particle) if particle and variant[-1:].isalpha() else (
            variant + (particle or "")
        )

    after = _PARTICLE_AFTER if before_particle else _NO_PARTICLE_AFTER
    return re.sub(re.escape(word) + after, replace, text, count=1)


def _drop_spaces(text: str, share: float, rng: random.Random) -> str:
    parts = text.split(" ")
    joined = parts[0]
    for part in parts[1:]:
        joined += part if rng.random() < share else " " + part
    return joined
