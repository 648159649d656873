"""Soft refusals: a model declining to write a category's queries in words rather than with a
`content_filter` finish.

A generation call that returns no numbered list and reads like a refusal ("죄송하지만 그런 요청은
도와드릴 수 없습니다", "I can't help with that") is recorded as refused, so `synth status` can count
refusals per category and model and name a category a model will not write. The same phrases
catch a single generated item that is a refusal (the screen stage) and a safe query the
responder refused to answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: phrases a model declines with, in Korean and English; kept to wordings an actual query would
#: hardly contain, since the screen stage rejects any item that matches
REFUSAL = re.compile(
    r"죄송하지만|죄송합니다|도와\s?드릴\s?수\s?(?:없|가\s?없)|도움을?\s?드리기\s?(?:어렵|힘듭)|"
    r"답변(?:을|은|해)?\s?(?:드릴|드리기|할)\s?수\s?없|제공(?:할|해\s?드릴|하기)\s?수\s?없|"
    r"(?:작성|생성)(?:할|해\s?드릴|하기)\s?수\s?없|(?:작성|생성)해\s?드리기\s?어렵|"
    r"(?:요청|부탁)(?:은|에는|에)?\s?(?:응할|따를|따르기|들어\s?드릴)\s?수\s?없|"
    r"I'?m sorry|I am sorry|I can(?:no|')t|I (?:won'?t|will not|am unable|'m unable|must decline)|"
    r"As an AI|I'?m not able to",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """True when the text declines the request."""
    return REFUSAL.search(text) is not None


#: the default of `settings.refusal_warn_share`, for runs that recorded none
REFUSAL_WARN_SHARE = 0.2
#: a category is named only once this many of its calls were refused (one refusal in two calls
#: says little)
MIN_REFUSED_TO_WARN = 2


def refusal_warnings(
    outcomes: Iterable[dict], warn_share: float, prompts_dir: str, run: str
) -> list[str]:
    """One line per (category, generator) whose calls were refused more often than `warn_share`,
    with what to do about it. `outcomes` are rows of `pipeline.tally.generation_outcomes`."""
    lines = []
    for row in outcomes:
        calls, refused = row["calls"], row["refused"]
        if refused < MIN_REFUSED_TO_WARN or refused <= warn_share * calls:
            continue
        lines.append(
            f"{row['generator']} refused {refused} of {calls} calls for {row['category']} "
            f"({refused / calls:.0%}): try another --model, or rephrase "
            f"{prompts_dir}/generate/{row['category']}.j2 (see them: synth inspect {run} "
            f"--stage generate --rejected)"
        )
    return lines
