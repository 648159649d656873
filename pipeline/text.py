"""Korean-safe text normalisation and the stable row id.

NFKC folds full-width and compatibility forms; nothing here drops non-ASCII characters (a common
way pipelines silently lose all Hangul). NFKC also turns the jamo a keyboard types on their own
(ㅋㅋ, ㅠㅠ, ㄹㅇ: compatibility jamo) into conjoining jamo that no user ever sends, so those are
turned back.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACES = re.compile(r"\s+")
#: conjoining jamo (what NFKC makes of a lone ㅋ) -> the compatibility jamo people type
_TYPED_JAMO = {
    ord(unicodedata.normalize("NFKC", chr(code))): chr(code)
    for code in range(0x3131, 0x318F)
    if len(unicodedata.normalize("NFKC", chr(code))) == 1
}


def normalize(text: str) -> str:
    """NFKC (typed jamo kept as typed), whitespace collapsed, trimmed."""
    folded = unicodedata.normalize("NFKC", text).translate(_TYPED_JAMO)
    return _SPACES.sub(" ", folded).strip()


def row_id(category: str, text: str) -> str:
    """Stable id of a query: the same category and normalized text always give the same id."""
    return hashlib.sha256(f"{category}\x1f{normalize(text)}".encode()).hexdigest()[:16]
