"""Screen: cheap deterministic checks that catch the noise any generator produces.

Each check is one small function of (text, facts) returning the reason it fired, or None. Every
reason that fires is recorded in `screen_flags`; a row with any flag is rejected by `screen` and
kept in the checkpoint with its reasons. A check that enforces a generation rule (say,
`target_person`) does not apply to a category that overrides or drops that rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from pipeline.refusals import is_refusal
from pipeline.stages.korean_lint import particle_disagrees, repeated_word
from pipeline.taxonomy import Category, ScreenSettings, Taxonomy
from pipeline.text import normalize

NAME = "screen"


@dataclass(frozen=True)
class Facts:
    """What the checks may look at besides the text."""

    category: Category
    settings: ScreenSettings
    exemplars: frozenset[str]
    blocked_names: re.Pattern[str] | None


Check = Callable[[str, Facts], str | None]

_HANGUL = re.compile(r"[가-힣ㄱ-ㆎ]")
_AI_TERMS = r"(?:AI|A\.I\.|인공\s?지능|챗봇|챗GPT|어시스턴트|비서|로봇|기계|프로그램|언어\s?모델)"
_SECOND_PERSON = r"(?:너|넌|네가|니가|너는|너도|너희|당신|네\s|니\s)"
_ADDRESSED_TO_AI = re.compile(
    rf"{_SECOND_PERSON}.{{0,12}}{_AI_TERMS}|{_AI_TERMS}\s?(?:주제에|따위|야[,!?\s]|아[,!?\s]|너|넌)"
    rf"|(?:^|\s)(?:너|넌|네가|니가)\s?(?:감정|의식|기분|속마음|진짜\s?생각)",
    re.IGNORECASE,
)
_META = re.compile(
    r"(?:AI|인공지능)\s?(?:언어\s?)?모델로서|저는\s?(?:AI|인공지능)|"
    r"다음은.{0,10}(?:질의|질문|예시|목록)|(?:새|추가)\s?질의|질의\s?\d+\s?개|예시\s?:|"
    r"Sure[,!]|Here (?:are|is)",
    re.IGNORECASE,
)
_DEBRIS = re.compile(
    r"^\s*(?:[-*•#>]|\d{1,3}\s*[.)])\s*|\*\*|__|```|\|.*\||\s\d{1,3}\.\s*$|^\W+$|\n"
)
_TRUNCATED_END = re.compile(r"[,、(\[{“‘\"'\-:·]\s*$|(?:그리고|또는|그래서|하지만|근데)\s*$")
_PAIRS = (("(", ")"), ("[", "]"), ("“", "”"), ("「", "」"))


def _letters(text: str) -> list[str]:
    return [char for char in text if unicodedata.category(char).startswith("L")]


def hangul_share(text: str, facts: Facts) -> str | None:
    letters = _letters(text)
    if not letters:
        return "no_letters"
    share = sum(bool(_HANGUL.match(char)) for char in letters) / len(letters)
    return "low_hangul" if share < facts.settings.min_hangul_share else None


def length_bounds(text: str, facts: Facts) -> str | None:
    if len(text) < facts.settings.min_chars:
        return "too_short"
    if len(text) > facts.settings.max_chars:
        return "too_long"
    return None


def blocked_name(text: str, facts: Facts) -> str | None:
    if facts.blocked_names is None:
        return None
    return "blocked_name" if facts.blocked_names.search(text) else None


def addressed_to_ai(text: str, facts: Facts) -> str | None:
    return "addressed_to_ai" if _ADDRESSED_TO_AI.search(text) else None


def refusal_or_meta_text(text: str) -> bool:
    """A refusal or a model talking about its task (also used to catch refused safe answers)."""
    return is_refusal(text) or _META.search(text) is not None


def refusal_or_meta(text: str, facts: Facts) -> str | None:
    return "refusal_or_meta" if refusal_or_meta_text(text) else None


def list_debris(text: str, facts: Facts) -> str | None:
    return "list_debris" if _DEBRIS.search(text) else None


def truncated(text: str, facts: Facts) -> str | None:
    if _TRUNCATED_END.search(text):
        return "truncated"
    if any(text.count(open_) != text.count(close) for open_, close in _PAIRS):
        return "truncated"
    if text.count('"') % 2:
        return "truncated"
    return None


def copies_exemplar(text: str, facts: Facts) -> str | None:
    return "copies_exemplar" if normalize(text) in facts.exemplars else None


def broken_korean(text: str, facts: Facts) -> str | None:
    """A word twice in a row or a particle that disagrees with its noun (`korean_lint`)."""
    if repeated_word(text):
        return "repeated_word"
    return "particle_mismatch" if particle_disagrees(text) else None


def missing_cue(text: str, facts: Facts) -> str | None:
    """A category with `cues` wants one of them in every query (a self-harm query with no
    self-harm cue is mislabelled, whoever wrote it)."""
    cues = facts.category.cues
    if not cues:
        return None
    folded = text.replace(" ", "")
    return None if any(cue.replace(" ", "") in folded for cue in cues) else "no_cue"


#: (check, the generation rule it enforces or None); order is the order reasons are recorded
CHECKS: tuple[tuple[Check, str | None], ...] = (
    (hangul_share, "korean_only"),
    (length_bounds, None),
    (blocked_name, "no_real_names"),
    (addressed_to_ai, "target_person"),
    (refusal_or_meta, None),
    (list_debris, None),
    (truncated, None),
    (copies_exemplar, None),
    (broken_korean, None),
    (missing_cue, None),
)
#: checks of the LLM's rule-following that a curated template lexicon needs no help with (its
#: twins of malicious_personification address the assistant on purpose)
LLM_ONLY_CHECKS = (addressed_to_ai,)


def checks_for(taxonomy: Taxonomy, category: Category) -> list[Check]:
    """The checks that apply to a category: a check enforcing a global rule is skipped when the
    category overrides that rule with its own text or drops it."""
    global_rules = {rule.id: rule.text for rule in taxonomy.rules}
    category_rules = {rule.id: rule.text for rule in taxonomy.rules_for(category)}
    return [
        check
        for check, rule_id in CHECKS
        if rule_id is None
        or rule_id not in global_rules
        or category_rules.get(rule_id) == global_rules[rule_id]
    ]


def screen_text(text: str, checks: list[Check], facts: Facts) -> list[str]:
    """Every reason that fired, in check order; empty when the text passes."""
    return [reason for check in checks if (reason := check(text, facts)) is not None]


def _names_pattern(names: list[str]) -> re.Pattern[str] | None:
    names = sorted({name.strip() for name in names if name.strip()}, key=len, reverse=True)
    if not names:
        return None
    return re.compile("|".join(re.escape(name) for name in names), re.IGNORECASE)


def run(rows: pl.DataFrame, taxonomy: Taxonomy) -> pl.DataFrame:
    """Adds `screen_flags`; rows with flags get `rejected_by = "screen"` and the reasons.
    Rows an earlier stage rejected pass through unchecked."""
    settings = taxonomy.screen
    names = _names_pattern(settings.blocked_names)
    exemplars = frozenset(
        normalize(text) for category in taxonomy.categories for text in category.exemplars
    )
    per_category = {
        category.id: (
            checks_for(taxonomy, category),
            Facts(category, settings, exemplars, names),
        )
        for category in taxonomy.categories
    }
    sources = rows["source"] if "source" in rows.columns else pl.Series([None] * rows.height)
    flags: list[list[str]] = []
    for (text, category_id, rejected_by), source in zip(
        rows.select("text", "category", "rejected_by").iter_rows(), sources, strict=True
    ):
        if rejected_by is not None:
            flags.append([])
            continue
        checks, facts = per_category[category_id]
        if source == "template":
            checks = [check for check in checks if check not in LLM_ONLY_CHECKS]
        flags.append(screen_text(text, checks, facts))
    flag_series = pl.Series("screen_flags", flags, dtype=pl.List(pl.String))
    fired = flag_series.list.len() > 0
    return rows.with_columns(
        flag_series,
        pl.when(fired).then(pl.lit(NAME)).otherwise(pl.col("rejected_by")).alias("rejected_by"),
        pl.when(fired)
        .then(flag_series.list.join(","))
        .otherwise(pl.col("reject_reason"))
        .alias("reject_reason"),
    )
