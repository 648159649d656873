"""Conjugation and particles on the stems that break naive string rules: 받침 or not,
ㄹ-irregular (만들다), ㅂ-irregular (돕다), ㄷ- and ㅅ-irregular (듣다, 짓다), 하다-verbs, 이-verbs
Kiwi takes for a noun and the copula (먹이다), and multi-word predicates."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.korean import (
    FORMS,
    LEVELS,
    attach,
    clause,
    conjugate,
    endings_count,
    kiwi,
    modifier,
    sentence_end,
)


@pytest.mark.parametrize(
    ("lemma", "form", "level", "expected"),
    [
        ("만들다", "question", "polite", "만드나요?"),
        ("만들다", "question", "plain", "만들어?"),
        ("만들다", "request", "plain", "만들어 줘."),
        ("돕다", "request", "plain", "도와 줘."),
        ("돕다", "request", "polite", "도와 주세요."),
        ("돕다", "question", "polite", "돕나요?"),
        ("받다", "question", "plain", "받아?"),
        ("받다", "wish", "polite", "받고 싶어요."),
        ("하다", "request", "plain", "해 줘."),
        ("공유하다", "request", "polite", "공유해 주세요."),
        ("듣다", "request", "polite", "들어 주세요."),
        ("짓다", "statement", "polite", "지으려고 해요."),
        ("숨기다", "request", "plain", "숨겨 줘."),
        ("몰래 알아내다", "wish", "plain", "몰래 알아내고 싶어."),
        # Kiwi reads these as a noun and the copula (먹이 + 이다); they are verbs
        ("먹이다", "question", "plain", "먹여?"),
        ("높이다", "request", "polite", "높여 주세요."),
        ("약을 먹이다", "statement", "polite", "약을 먹이려고 해요."),
    ],
)
def test_conjugation_on_tricky_stems(lemma: str, form: str, level: str, expected: str) -> None:
    assert conjugate(lemma, form, level) == expected  # type: ignore[arg-type]


def test_second_endings_are_used_and_correct() -> None:
    assert conjugate("만들다", "question", "plain", variant=1) == "만들까?"
    assert conjugate("돕다", "question", "polite", variant=1) == "도울까요?"
    assert conjugate("받다", "question", "polite", variant=1) == "받을까요?"


def test_modifiers_before_a_noun() -> None:
    assert [modifier(v) for v in ("만들다", "돕다", "받다", "하다")] == [
        "만드는",
        "돕는",
        "받는",
        "하는",
    ]


@pytest.mark.parametrize(
    ("noun", "particle", "expected"),
    [
        ("사과", "을", "사과를"),
        ("책", "를", "책을"),
        ("친구", "이", "친구가"),
        ("방법", "가", "방법이"),
        ("선생님", "는", "선생님은"),
        ("회사", "은", "회사는"),
        ("학교", "으로", "학교로"),
        ("집", "로", "집으로"),
        ("서울", "으로", "서울로"),
        ("동생", "와", "동생과"),
        ("엄마", "과", "엄마와"),
        ("옆집 사람", "의", "옆집 사람의"),
    ],
)
def test_particles_agree_with_the_last_syllable(noun: str, particle: str, expected: str) -> None:
    assert attach(noun, particle) == expected


def test_every_form_and_level_is_well_formed_hangul() -> None:
    """No jamo left over, no doubled particle or ending, across every ending of every form."""
    lemmas = ("만들다", "돕다", "받다", "하다", "듣다", "짓다", "숨기다", "빼돌리다", "추적하다")
    for lemma in lemmas:
        for form in FORMS:
            for level in LEVELS:
                for variant in range(endings_count(form, level)):
                    text = conjugate(lemma, form, level, variant)
                    assert not any("\u3131" <= ch <= "\u318e" for ch in text), text
                    tokens = kiwi().tokenize(text)
                    assert all(t.tag != "UN" for t in tokens), text


def test_a_lemma_not_in_dictionary_form_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="dictionary form"):
        conjugate("만들어", "request", "plain")
    with pytest.raises(UserError, match="unknown particle"):
        attach("사과", "를를")


@pytest.mark.parametrize(
    ("lemma", "name", "expected"),
    [
        ("필로폰을 구하다", "mod", "필로폰을 구하는"),
        ("만들다", "fut", "만들"),
        ("돕다", "eodo", "도와도"),
        ("듣다", "ryeomyeon", "들으려면"),
        ("급하다", "neunji", "급한지"),
        ("없애 버리고 싶다", "mod", "없애 버리고 싶은"),
        ("어렵지 않다", "mod", "어렵지 않은"),
        ("재미없다", "mod", "재미없는"),
        ("먹이다", "eo", "먹여"),
    ],
)
def test_clause_forms_on_tricky_stems(lemma: str, name: str, expected: str) -> None:
    assert clause(lemma, name) == expected


@pytest.mark.parametrize(
    ("lemma", "banmal", "jondaetmal", "written"),
    [
        ("돈이 너무 급하다", "돈이 너무 급해", "돈이 너무 급해요", "돈이 너무 급하다"),
        ("나를 계속 무시한다", "나를 계속 무시해", "나를 계속 무시해요", "나를 계속 무시한다"),
        ("어제 헤어졌다", "어제 헤어졌어", "어제 헤어졌어요", "어제 헤어졌다"),
        ("맛있다", "맛있어", "맛있어요", "맛있다"),
        ("끝낼 거다", "끝낼 거야", "끝낼 거예요", "끝낼 거다"),
        ("요즘 유행이다", "요즘 유행이야", "요즘 유행이에요", "요즘 유행이다"),
        ("그건 아니다", "그건 아니야", "그건 아니에요", "그건 아니다"),
    ],
)
def test_sentences_close_at_each_base_level(
    lemma: str, banmal: str, jondaetmal: str, written: str
) -> None:
    """Backstory and say sentences are written once, in dictionary form, and closed at the
    query's level: 반말, 존댓말 (거예요, not 거에요) and the written 다-style."""
    assert [sentence_end(lemma, level) for level in ("banmal", "jondaetmal", "written")] == [
        banmal,
        jondaetmal,
        written,
    ]
