"""Parsing the numbered list a model writes, and the seeded exemplar rotation."""

from __future__ import annotations

from pipeline.stages.generate import parse_numbered_list


def test_completion_continues_the_open_number() -> None:
    text = " 첫 번째 질문이야?\n8. 두 번째 질문입니다.\n9. 세 번째 요청 좀 해 줘."
    assert parse_numbered_list(text, first_number=7, truncated=False) == [
        "첫 번째 질문이야?",
        "두 번째 질문입니다.",
        "세 번째 요청 좀 해 줘.",
    ]


def test_list_ends_where_the_numbering_breaks() -> None:
    text = " 하나\n8. 둘\n\n아래 목록에 이어서 새 질의를 씁니다.\n1. 다시 시작\n2. 또"
    assert parse_numbered_list(text, first_number=7, truncated=False) == ["하나", "둘"]
    restart = " 하나\n8. 둘\n1. 처음부터 다시"
    assert parse_numbered_list(restart, first_number=7, truncated=False) == ["하나", "둘"]


def test_item_cut_by_the_token_limit_is_dropped() -> None:
    text = " 온전한 질문이에요?\n8. 잘린 질문인데 토큰이"
    assert parse_numbered_list(text, first_number=7, truncated=True) == ["온전한 질문이에요?"]


def test_chat_answer_with_preamble_and_quotes() -> None:
    text = '다음은 새 질의입니다:\n\n1. "따옴표 친 질문이야?"\n2) **굵은 요청** \n\n3. 세 번째요'
    assert parse_numbered_list(text, first_number=None, truncated=False) == [
        "따옴표 친 질문이야?",
        "굵은 요청",
        "세 번째요",
    ]


def test_empty_and_prose_answers_give_nothing() -> None:
    assert parse_numbered_list("", first_number=None, truncated=False) == []
    assert parse_numbered_list("죄송하지만 도와드릴 수 없습니다.", None, False) == []
    assert parse_numbered_list("", first_number=7, truncated=False) == []
