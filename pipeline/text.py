"""Korean-safe text normalisation and the stable row id.

NFKC folds full-width and compatibility forms; nothing here drops non-ASCII characters (a common
way pipelines silently lose all Hangul).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, whitespace collapsed, trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def row_id(category: str, text: str) -> str:
    """Stable id of a query: the same category and normalized text always give the same id."""
    return hashlib.sha256(f"{category}\x1f{normalize(text)}".encode()).hexdigest()[:16]
