"""A tokenizer-free token estimate, for dry runs and tokens-per-minute limits.

Provider tokenizers differ; a Hangul syllable costs about one token in current BPE vocabularies and
other text about a quarter token per character, so this errs on the high side for Korean prompts.
"""

from __future__ import annotations

import math
import re

_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def estimate_tokens(text: str) -> int:
    hangul = len(_HANGUL.findall(text))
    return math.ceil(hangul + (len(text) - hangul) / 4)
