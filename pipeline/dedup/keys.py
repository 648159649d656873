"""The exact-match key: NFKC, lower case, whitespace and punctuation removed.

Hangul survives (`\\w` matches it); nothing here assumes ASCII.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
