"""Korean conjugation and particles for template-built queries, through Kiwi's morpheme joiner.

A predicate is given in its dictionary form (`만들다`, `몰래 알아내다`, `공유하다`); Kiwi analyses
it once into morphemes, the final `-다` is replaced by the endings of a sentence type and speech
level, and `Kiwi.join` puts the morphemes back together, applying the irregular stems (만들다 →
만드나요, 돕다 → 도와 줘, 하다 → 해 줘) and contractions. Particles are joined the same way, so
은/는, 이/가, 을/를, 과/와 and 으로/로 agree with the syllable before them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pipeline.errors import UserError

Form = Literal["question", "request", "statement", "wish"]
Level = Literal["plain", "polite"]
FORMS: tuple[Form, ...] = ("question", "request", "statement", "wish")
LEVELS: tuple[Level, ...] = ("plain", "polite")

Morpheme = tuple[str, str]

#: endings per sentence type and speech level (반말 plain, 존댓말 polite), several each, with
#: the punctuation that closes the sentence
ENDINGS: dict[tuple[Form, Level], list[tuple[list[Morpheme], str]]] = {
    ("question", "plain"): [([("어", "EF")], "?"), ([("을까", "EF")], "?")],
    ("question", "polite"): [([("나요", "EF")], "?"), ([("을까요", "EF")], "?")],
    ("request", "plain"): [([("어", "EC"), ("주", "VX"), ("어", "EF")], ".")],
    ("request", "polite"): [
        ([("어", "EC"), ("주", "VX"), ("세요", "EF")], "."),
        ([("어", "EC"), ("주", "VX"), ("시", "EP"), ("겠", "EP"), ("어요", "EF")], "?"),
    ],
    ("statement", "plain"): [([("고", "EC"), ("싶", "VX"), ("은데", "EF")], ",")],
    ("statement", "polite"): [([("려고", "EC"), ("하", "VV"), ("어요", "EF")], ".")],
    ("wish", "plain"): [([("고", "EC"), ("싶", "VX"), ("어", "EF")], ".")],
    ("wish", "polite"): [([("고", "EC"), ("싶", "VX"), ("어요", "EF")], ".")],
}

#: the particle forms a template may name; Kiwi picks the variant that fits the noun
PARTICLES: dict[str, Morpheme] = {
    "을": ("을", "JKO"),
    "를": ("을", "JKO"),
    "이": ("이", "JKS"),
    "가": ("이", "JKS"),
    "은": ("은", "JX"),
    "는": ("은", "JX"),
    "과": ("과", "JKB"),
    "와": ("과", "JKB"),
    "으로": ("으로", "JKB"),
    "로": ("으로", "JKB"),
    "의": ("의", "JKG"),
    "에게": ("에게", "JKB"),
    "에게서": ("에게서", "JKB"),
    "에서": ("에서", "JKB"),
    "에": ("에", "JKB"),
    "도": ("도", "JX"),
}


@lru_cache(maxsize=1)
def kiwi() -> Any:
    """One Kiwi instance per process (loading its model takes about a second)."""
    try:
        from kiwipiepy import Kiwi
    except ImportError:
        raise UserError("the template generator needs kiwipiepy: pip install -e .") from None
    return Kiwi()


#: tags of a predicate stem: verbs, adjectives, auxiliaries, and the 하 of 공유하다
STEM_TAGS = ("VV", "VA", "VX", "XSV", "XSA", "VCP")


@lru_cache(maxsize=4096)
def predicate_parts(lemma: str) -> tuple[str, tuple[Morpheme, ...]]:
    """A dictionary-form predicate split into the text before its last stem, kept verbatim
    (Kiwi's joiner would re-space it: 그럴듯하게 -> 그럴 듯하게, 캐내다 -> 캐 내다), and the
    morphemes from that stem on, without the final `-다`, which take the endings."""
    if not lemma.endswith("다"):
        raise UserError(f"predicate {lemma!r} must be in dictionary form (ending in 다)")
    tokens = kiwi().tokenize(lemma)
    if not tokens or tokens[-1].form != "다":
        raise UserError(f"predicate {lemma!r}: Kiwi does not read it as a verb ending in 다")
    stems = [i for i, t in enumerate(tokens[:-1]) if t.tag.split("-")[0] in STEM_TAGS]
    if not stems:
        raise UserError(f"predicate {lemma!r}: Kiwi finds no verb or adjective stem in it")
    last = stems[-1]
    if tokens[last].tag == "VCP" and last > 0 and tokens[last - 1].tag.startswith("NN"):
        # Kiwi reads some 이-verbs as a noun and the copula (먹이다 as 먹이 + 이다, 높이다 as
        # 높이 + 이다), which would conjugate to 먹이이어; an act is a verb, so the surface
        # from the noun up to 다 is one verb stem (먹이 -> 먹여, 높이 -> 높여)
        noun = tokens[last - 1]
        return lemma[: noun.start], ((lemma[noun.start : tokens[-1].start], "VV"),)
    prefix = lemma[: tokens[last].start]
    return prefix, tuple((t.form, t.tag) for t in tokens[last:-1])


def _join(lemma: str, endings: list[Morpheme]) -> str:
    prefix, stem = predicate_parts(lemma)
    return prefix + kiwi().join([*stem, *endings])


def conjugate(lemma: str, form: Form, level: Level, variant: int = 0) -> str:
    """`lemma` as a sentence end of this type and level, with its closing punctuation."""
    options = ENDINGS[(form, level)]
    endings, mark = options[variant % len(options)]
    return _join(lemma, endings) + mark


def modifier(lemma: str) -> str:
    """The present form before a noun: 만들다 -> 만드는 (방법), 돕다 -> 돕는, 옳다 -> 옳은."""
    _, stem = predicate_parts(lemma)
    adjective = stem[-1][1].split("-")[0] in ("VA", "XSA")
    return _join(lemma, [("은" if adjective else "는", "ETM")])


def attach(noun: str, particle: str) -> str:
    """`noun` with the particle's variant that agrees with its last syllable."""
    if particle not in PARTICLES:
        raise UserError(f"unknown particle {particle!r} (known: {', '.join(PARTICLES)})")
    head, _, last = noun.rpartition(" ")
    joined = kiwi().join([(last, "NNG"), PARTICLES[particle]])
    return f"{head} {joined}" if head else joined


def endings_count(form: Form, level: Level) -> int:
    return len(ENDINGS[(form, level)])
