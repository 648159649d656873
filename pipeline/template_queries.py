"""The template generator: queries from lexicons x patterns x sentence frames, no model.

Each category's `prompts/templates/<id>.yaml` holds word lists (`slots`) and sets of patterns
paired with predicates (`acts`); `prompts/templates/_frames.yaml` says how a filled pattern and a
conjugated predicate make a question, a request, a statement or a wish, in 반말 or 존댓말.
Conjugation and particles go through Kiwi (`pipeline.korean`), so irregular stems and particle
agreement come out right. Each category's contents are dealt from a deck shuffled by the run seed,
one stretch per planned call, so calls do not repeat one another; a call's rows are fully
determined by the run seed, its call index and its own seed, so a rerun regenerates them exactly.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.errors import UserError
from pipeline.korean import FORMS, LEVELS, attach, conjugate, endings_count, modifier
from pipeline.plan import derive_seed
from pipeline.taxonomy import StrictModel, Taxonomy
from pipeline.yamlfile import load_yaml_model

TEMPLATES_DIR = "templates"
FRAMES_FILE = "_frames.yaml"
_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")
#: a category with more contents than this draws them at random rather than from a shuffled
#: deck (`_Deck`), so the deck's order never costs more than 32 MB
DECK_LIMIT = 1 << 22


class Frames(StrictModel):
    """Frame strings per sentence type, per speech level."""

    question: dict[str, list[str]] = Field(default_factory=dict)
    request: dict[str, list[str]] = Field(default_factory=dict)
    statement: dict[str, list[str]] = Field(default_factory=dict)
    wish: dict[str, list[str]] = Field(default_factory=dict)


class PatternSet(StrictModel):
    patterns: list[str] = Field(min_length=1)
    acts: list[str] = Field(min_length=1)


class CategoryTemplates(StrictModel):
    slots: dict[str, list[str]] = Field(default_factory=dict)
    sets: list[PatternSet] = Field(min_length=1)
    frames: Frames | None = None


class TemplateGenerator:
    """Every category's lexicon, checked once; `queries` draws seeded samples."""

    name = "template"
    model = "lexicon"

    def __init__(self, taxonomy: Taxonomy, prompts_root: Path, seed: int = 0) -> None:
        #: the run seed: it shuffles each category's deck, so two seeds deal different content
        self.seed = seed
        self._decks: dict[str, _Deck] = {}
        root = prompts_root / TEMPLATES_DIR
        defaults = load_yaml_model(root / FRAMES_FILE, Frames)
        self.categories: dict[str, CategoryTemplates] = {}
        self.frames: dict[str, Frames] = {}
        missing = [c.id for c in taxonomy.categories if not (root / f"{c.id}.yaml").exists()]
        if missing:
            raise UserError(
                f"{root}: no template file for {', '.join(missing)} "
                f"(add {missing[0]}.yaml, or use another --backend)"
            )
        for category in taxonomy.categories:
            path = root / f"{category.id}.yaml"
            templates = load_yaml_model(path, CategoryTemplates)
            self.categories[category.id] = templates
            self.frames[category.id] = _merge(defaults, templates.frames)
            self._check(path, templates, self.frames[category.id])
            for form in FORMS:
                for level in LEVELS:
                    if not getattr(self.frames[category.id], form).get(level):
                        raise UserError(f"{root / FRAMES_FILE}: {form}.{level}: no frame")

    @staticmethod
    def _check(path: Path, templates: CategoryTemplates, frames: Frames) -> None:
        texts = [
            (f"sets[{index}]", pattern)
            for index, pattern_set in enumerate(templates.sets)
            for pattern in pattern_set.patterns
        ]
        texts += [
            (f"frames.{form}.{level}", frame)
            for form, levels in frames.model_dump().items()
            for level, options in levels.items()
            for frame in options
        ]
        for where, text in texts:
            for slot, particle in _SLOT.findall(text):
                if where.startswith("frames") and slot in FRAME_FIELDS:
                    continue
                if not templates.slots.get(slot):
                    raise UserError(
                        f"{path}: {where}: {text!r} uses slot {slot!r}, which has no words "
                        "under slots"
                    )
                if particle:
                    try:
                        attach("가", particle)  # an unknown particle fails here, by name
                    except UserError as error:
                        raise UserError(f"{path}: {where}: {text!r}: {error}") from None
        for index, pattern_set in enumerate(templates.sets):
            for act in pattern_set.acts:
                try:
                    conjugate(act, "request", "polite")  # not a dictionary-form verb fails here
                except UserError as error:
                    raise UserError(f"{path}: sets[{index}].acts: {error}") from None

    def query(self, category: str, seed: int) -> str:
        """One query of random content, fully determined by `seed`."""
        rng = random.Random(seed)
        deck = self._deck(category)
        return self._render(category, deck.content(rng.randrange(deck.size)), rng)

    def queries(self, category: str, call_index: int, seed: int, count: int) -> list[str]:
        """The `count` queries of one planned call: content dealt from the category's shuffled
        deck at this call's place in it, so no two calls of a run say the same thing until every
        content has been used once; frame, speech level and ending are drawn from `seed`.
        Distinct within the call (fewer only when the category's whole space is that small)."""
        rng = random.Random(seed)
        deck = self._deck(category)
        found: list[str] = []
        seen: set[str] = set()
        for position in range(call_index * count, call_index * count + count * 20):
            text = self._render(category, deck.content(deck.dealt(position, rng)), rng)
            if text not in seen:
                seen.add(text)
                found.append(text)
                if len(found) == count:
                    break
        return found

    def _deck(self, category: str) -> _Deck:
        if category not in self._decks:
            self._decks[category] = _Deck(
                self.categories[category], derive_seed(self.seed, "template deck", category)
            )
        return self._decks[category]

    def _render(self, category: str, content: tuple[str, str], rng: random.Random) -> str:
        """A filled pattern and its predicate, in a frame, type, level and ending from `rng`."""
        pattern, act = content
        templates = self.categories[category]
        form = rng.choice(FORMS)
        level = rng.choice(LEVELS)
        frame = rng.choice(getattr(self.frames[category], form)[level])
        frame = _fill(frame, lambda slot: rng.choice(templates.slots[slot]))
        conjugated = conjugate(act, form, level, rng.randrange(endings_count(form, level)))
        text = frame.format(pattern=pattern, act=conjugated, act_mod=modifier(act))
        return " ".join(text.split())

    def space(self, category: str) -> int:
        """How many distinct (pattern fill, act, frame, ending) combinations a category has."""
        templates = self.categories[category]
        frames = self.frames[category]
        endings = sum(
            _combinations(frame, templates.slots) * endings_count(form, level)
            for form in FORMS
            for level in LEVELS
            for frame in getattr(frames, form)[level]
        )
        total = 0
        for pattern_set in templates.sets:
            fills = 0
            for pattern in pattern_set.patterns:
                fills += _combinations(pattern, templates.slots)
            total += fills * len(pattern_set.acts)
        return total * endings


#: placeholders a frame fills from the sentence itself rather than from the slots
FRAME_FIELDS = ("pattern", "act", "act_mod")


def _slot_names(text: str) -> list[str]:
    """The slots `text` fills, in placeholder order (frame fields excluded)."""
    return [slot for slot, _ in _SLOT.findall(text) if slot not in FRAME_FIELDS]


def _combinations(text: str, slots: dict[str, list[str]]) -> int:
    """How many ways the slot placeholders in `text` can be filled."""
    return math.prod(len(slots[slot]) for slot in _slot_names(text))


def _fill(text: str, word_for: Callable[[str], str]) -> str:
    """Slot placeholders replaced, in order, by `word_for(slot)` (with agreeing particles);
    frame fields kept."""

    def word(match: re.Match[str]) -> str:
        if match.group(1) in FRAME_FIELDS:
            return match.group(0)
        chosen = word_for(match.group(1))
        return attach(chosen, match.group(2)) if match.group(2) else chosen

    return _SLOT.sub(word, text)


class _Deck:
    """Every content of one category (a pattern with its slot words, and one predicate), by
    index, in one seeded order.

    Drawing content at random repeats it long before the space is used up (a category with
    1000 contents repeats one within about 40 draws), and each repeat is a near-duplicate that
    dedup throws away after it has been embedded; dealing from a shuffled deck does not repeat
    until the deck is spent. Content is decoded from its index (mixed radix over the slots'
    word lists and the acts), so only the order is held in memory, and above `DECK_LIMIT`
    contents not even that: draws are then random, and repeats rare anyway.
    """

    def __init__(self, templates: CategoryTemplates, seed: int) -> None:
        #: (first index, pattern, its slots in placeholder order, acts) per pattern
        self.segments: list[tuple[int, str, list[str], list[str]]] = []
        self.slots = templates.slots
        start = 0
        for pattern_set in templates.sets:
            for pattern in pattern_set.patterns:
                self.segments.append((start, pattern, _slot_names(pattern), pattern_set.acts))
                start += _combinations(pattern, templates.slots) * len(pattern_set.acts)
        self.size = start
        self.starts = [segment[0] for segment in self.segments]
        self.order = (
            np.random.default_rng(seed).permutation(self.size) if self.size <= DECK_LIMIT else None
        )

    def dealt(self, position: int, rng: random.Random) -> int:
        """The content index at `position` of the deal (laps round when the deck is spent)."""
        if self.order is None:
            return rng.randrange(self.size)
        return int(self.order[position % self.size])

    def content(self, index: int) -> tuple[str, str]:
        """The filled pattern and the predicate (dictionary form) of content `index`."""
        start, pattern, slot_names, acts = self.segments[
            bisect.bisect_right(self.starts, index) - 1
        ]
        rest, act_index = divmod(index - start, len(acts))
        words: list[str] = []
        for slot in slot_names:
            rest, word_index = divmod(rest, len(self.slots[slot]))
            words.append(self.slots[slot][word_index])
        chosen = iter(words)
        return _fill(pattern, lambda _slot: next(chosen)), acts[act_index]


def _merge(defaults: Frames, own: Frames | None) -> Frames:
    if own is None:
        return defaults
    merged = defaults.model_dump()
    for form, levels in own.model_dump().items():
        merged[form] = {**merged[form], **levels}
    return Frames.model_validate(merged)
