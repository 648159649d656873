"""Parsing the numbered list a model writes, and the seeded exemplar rotation."""

from __future__ import annotations

from pipeline.backends.base import Response
from pipeline.stages.generate import failed_call_reason, parse_numbered_list


def test_completion_continues_the_open_number() -> None:
    text = " 첫 번째 질문이야?\n8. 두 번째 질문입니다.\n9. 세 번째 요청 좀 해 줘."
    assert parse_numbered_list(text, first_number=7) == [
        "첫 번째 질문이야?",
        "두 번째 질문입니다.",
        "세 번째 요청 좀 해 줘.",
    ]


def test_list_ends_where_the_numbering_breaks() -> None:
    text = " 하나\n8. 둘\n\n아래 목록에 이어서 새 질의를 씁니다.\n1. 다시 시작\n2. 또"
    assert parse_numbered_list(text, first_number=7) == ["하나", "둘"]
    restart = " 하나\n8. 둘\n1. 처음부터 다시"
    assert parse_numbered_list(restart, first_number=7) == ["하나", "둘"]


def test_calls_that_give_no_query_say_why() -> None:
    """A cut-off or filtered answer is a failure even with a list in it; an answer without a
    list is a refusal when it declines in Korean or English, else just no list."""
    listed = "1. 온전한 질문이에요?\n2. 잘린 질문인데 토큰이"
    assert failed_call_reason(Response(listed, "length"), []) == "cut_off"
    assert failed_call_reason(Response(listed, "content_filter"), []) == "content_filter"
    assert failed_call_reason(Response(listed, "stop"), ["온전한 질문이에요?"]) is None
    for refusal in (
        "죄송하지만 그런 질문 목록은 만들어 드릴 수 없어요.",
        "요청하신 내용은 작성해 드리기 어렵습니다. 다른 주제를 골라 주세요.",
        "I'm sorry, but I can't help create that list.",
    ):
        assert failed_call_reason(Response(refusal, "stop"), []) == "refused", refusal
    assert failed_call_reason(Response("목록을 이어서 쓰겠습니다", "stop"), []) == "no_list"
    refused_items = ["죄송하지만 그런 목록은 작성할 수 없습니다."]
    assert failed_call_reason(Response(refused_items[0], "stop"), refused_items) == "refused"


def test_chat_answer_with_preamble_and_quotes() -> None:
    text = '다음은 새 질의입니다:\n\n1. "따옴표 친 질문이야?"\n2) **굵은 요청** \n\n3. 세 번째요'
    assert parse_numbered_list(text, first_number=None) == [
        "따옴표 친 질문이야?",
        "굵은 요청",
        "세 번째요",
    ]


def test_empty_and_prose_answers_give_nothing() -> None:
    assert parse_numbered_list("", first_number=None) == []
    assert parse_numbered_list("죄송하지만 도와드릴 수 없습니다.", None) == []
    assert parse_numbered_list("", first_number=7) == []
