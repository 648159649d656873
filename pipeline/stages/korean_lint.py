"""Korean lint for generated queries: the mistakes a template fill or a small model makes that
a reader sees at once (a word twice in a row, a particle that disagrees with the noun before it).

Particles are read through Kiwi, so a noun that merely ends in the particle's syllable (마을,
고가) is not mistaken for noun + particle.
"""

from __future__ import annotations

import re

from pipeline.korean import kiwi

_REPEATED_WORD = re.compile(r"(?:^|\s)([가-힣A-Za-z]+)\s+\1(?=$|[\s.,?!])")
#: particle -> whether it is the form that follows a final consonant (받침); 로 also follows ㄹ
_PARTICLES = {"을": True, "를": False, "이랑": True, "랑": False, "과": True, "와": False,
              "은": True, "는": False, "으로": True, "로": False}
_WORD = re.compile(r"[가-힣]+")
_RIEUL = 8


def repeated_word(text: str) -> bool:
    """The same word twice in a row (`좀 좀`, `방법 방법`)."""
    return _REPEATED_WORD.search(text) is not None


def _final_consonant(syllable: str) -> int:
    """The index of a Hangul syllable's final consonant (0: none)."""
    return (ord(syllable) - 0xAC00) % 28


def _agrees(stem_end: str, particle: str) -> bool:
    final = _final_consonant(stem_end)
    if particle == "로":
        return final in (0, _RIEUL)
    if particle == "으로":
        return final not in (0, _RIEUL)
    return bool(final) == _PARTICLES[particle]


def particle_disagrees(text: str) -> bool:
    """A particle whose form does not fit the syllable before it (`아이스을`, `떨를`, `집로`).
    Kiwi decides whether the ending is a particle at all: where it reads the whole word as one
    noun (마을, 고가), the word starts no token at the particle, and nothing is flagged."""
    starts: dict[int, str] | None = None
    for match in _WORD.finditer(text):
        word = match.group(0)
        for particle in sorted(_PARTICLES, key=len, reverse=True):
            if len(word) > len(particle) and word.endswith(particle):
                stem_end = word[-len(particle) - 1]
                if not _agrees(stem_end, particle):
                    if starts is None:
                        starts = {}
                        for token in kiwi().tokenize(text):
                            starts.setdefault(token.start, token.tag)
                    # a particle, or a stray noun Kiwi made of it; never a verb ending (먹는)
                    if starts.get(match.end() - len(particle), "E")[0] in "JN":
                        return True
                break
    return False
