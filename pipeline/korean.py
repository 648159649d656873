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
    "이랑": ("이랑", "JKB"),
    "랑": ("이랑", "JKB"),
    "이나": ("이나", "JX"),
    "나": ("이나", "JX"),
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
STEM_TAGS = ("VV", "VA", "VX", "XSV", "XSA", "VCP", "VCN")


@lru_cache(maxsize=4096)
def predicate_parts(lemma: str) -> tuple[str, tuple[Morpheme, ...]]:
    """A dictionary-form predicate split into the text before its last stem, kept verbatim
    (Kiwi's joiner would re-space it: 그럴듯하게 -> 그럴 듯하게, 캐내다 -> 캐 내다), and the
    morphemes from that stem on, without the final `-다`, which take the endings."""
    if not lemma.endswith("다"):
        raise UserError(f"predicate {lemma!r} must be in dictionary form (ending in 다)")
    tokens = kiwi().tokenize(lemma)
    # a written present (무시한다, 먹는다) reads as its dictionary form would
    if not tokens or tokens[-1].form not in ("다", "\u11ab다", "는다"):
        raise UserError(f"predicate {lemma!r}: Kiwi does not read it as a verb ending in 다")
    stems = [i for i, t in enumerate(tokens[:-1]) if t.tag.split("-")[0] in STEM_TAGS]
    if not stems:
        raise UserError(f"predicate {lemma!r}: Kiwi finds no verb or adjective stem in it")
    last = stems[-1]
    if tokens[last].tag == "VCP" and last > 0 and tokens[last - 1].tag.startswith("NN"):
        noun = tokens[last - 1]
        elided = tokens[last].start == tokens[last].end
        if not (elided and noun.form.endswith("이")):
            # a true copula (유행이다, 다음 주다): the noun joins the stem, so Kiwi contracts
            # 주 + 이야 to 주야 and keeps 유행 + 이야 as 유행이야
            return lemma[: noun.start], ((noun.form, noun.tag), ("이", "VCP"))
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


#: the base speech levels a template frame is written in (registers build on these)
BASE_LEVELS = ("banmal", "jondaetmal", "written")

#: the clause forms a frame names after a content's kind, e.g. `{act.mod}` -> 만드는 (방법);
#: adjectives take 은 / 은지 where verbs take 는 / 는지
CLAUSES: dict[str, list[Morpheme]] = {
    "mod": [("는", "ETM")],
    "fut": [("을", "ETM")],
    "eo": [("어", "EC")],
    "eodo": [("어도", "EC")],
    "eoya": [("어야", "EC")],
    "go": [("고", "EC")],
    "gi": [("기", "ETN")],
    "ryeomyeon": [("으려면", "EC")],
    "ryeogo": [("으려고", "EC")],
    "myeon": [("으면", "EC")],
    "neunji": [("는지", "EC")],
}
_ADJECTIVE_CLAUSES = {"mod": [("은", "ETM")], "neunji": [("은지", "EC")]}


def _is_adjective(stem: tuple[Morpheme, ...]) -> bool:
    """Takes 은 before a noun: adjectives and 싶다, but not 있다 / 없다 (있는, 없는)."""
    form, tag = stem[-1][0], stem[-1][1].split("-")[0]
    if form in ("있", "없") or form.endswith(("있", "없")):
        return False
    return tag in ("VA", "XSA") or (tag == "VX" and form == "싶")


def _takes_adjective_endings(lemma: str, stem: tuple[Morpheme, ...]) -> bool:
    """Adjectives, 아니다, and 않다 after an adjective (어렵지 않다 -> 어렵지 않은, 않다)."""
    if stem[-1][1] in ("VCN", "VCP"):
        return True
    if stem[-1][0] == "않":
        tokens = kiwi().tokenize(lemma)
        before = [t for t in tokens if t.form not in ("지", "않", "다")]
        return bool(before) and (
            before[-1].tag.split("-")[0] in ("VA", "XSA") or before[-1].form == "싶"
        )
    return _is_adjective(stem)


def _is_past(stem: tuple[Morpheme, ...]) -> bool:
    return any(tag == "EP" for _, tag in stem)


def clause(lemma: str, name: str) -> str:
    """`lemma` (dictionary form) as the clause `name` of `CLAUSES`: 구하다 -> 구하는, 구할,
    구해도, 구하려면; `da` leaves it as it is."""
    if name == "da":
        return lemma
    if name not in CLAUSES:
        raise UserError(f"unknown clause form {name!r} (known: da, {', '.join(CLAUSES)})")
    _, stem = predicate_parts(lemma)
    if _takes_adjective_endings(lemma, stem) and name in _ADJECTIVE_CLAUSES:
        return _join(lemma, _ADJECTIVE_CLAUSES[name])
    return _join(lemma, CLAUSES[name])


def sentence_end(lemma: str, level: str) -> str:
    """A dictionary-form sentence closed at a base level, without punctuation: 반말 (급해),
    존댓말 (급해요), written (급하다, 헤어진다 -> 헤어진다, 헤어졌다)."""
    _, stem = predicate_parts(lemma)
    copula = stem[-1][1] in ("VCP", "VCN")
    if stem[-1][1] == "VCP" and level in ("banmal", "jondaetmal"):
        # written by hand: Kiwi joins 거 + 이에요 as 거에요 (거예요), 주 + 이에요 as 주에요
        noun = lemma[:-2] if lemma.endswith("이다") else lemma[:-1]
        hangul = bool(noun) and "가" <= noun[-1] <= "힣"
        final = not hangul or (ord(noun[-1]) - 0xAC00) % 28 != 0
        if level == "banmal":
            return noun + ("이야" if final else "야")
        return noun + ("이에요" if final else "예요")
    if level == "banmal":
        return _join(lemma, [("야" if copula else "어", "EF")])
    if level == "jondaetmal":
        return _join(lemma, [("에요" if copula else "어요", "EF")])
    if level == "written":
        keeps_da = _takes_adjective_endings(lemma, stem) or _is_past(stem) or copula
        if keeps_da or stem[-1][0].endswith(("있", "없")):
            return lemma
        return _join(lemma, [("는다", "EF")])
    raise UserError(f"unknown speech level {level!r} (known: {', '.join(BASE_LEVELS)})")


def quoted(lemma: str) -> str:
    """The written declarative with the quotative 고: 멍청하다 -> 멍청하다고,
    미워하다 -> 미워한다고."""
    _, stem = predicate_parts(lemma)
    if stem[-1][1] in ("VCP", "VCN"):
        return lemma[:-1] + "라고"
    return sentence_end(lemma, "written") + "고"
