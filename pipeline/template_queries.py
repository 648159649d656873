"""The template generator: queries from lexicons x patterns x sentence frames, no model.

Each category's `prompts/templates/<id>.yaml` holds word lists (`slots`) and sets of patterns
paired with predicates (`acts`); `prompts/templates/_frames.yaml` says how a filled pattern and a
conjugated predicate make a question, a request, a statement or a wish, in 반말 or 존댓말.
Conjugation and particles go through Kiwi (`pipeline.korean`), so irregular stems and particle
agreement come out right. A query is fully determined by its seed, so a rerun regenerates the
very same rows.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from pydantic import Field

from pipeline.errors import UserError
from pipeline.korean import FORMS, LEVELS, attach, conjugate, endings_count, modifier
from pipeline.taxonomy import StrictModel, Taxonomy
from pipeline.yamlfile import load_yaml_model

TEMPLATES_DIR = "templates"
FRAMES_FILE = "_frames.yaml"
_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")


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

    def __init__(self, taxonomy: Taxonomy, prompts_root: Path) -> None:
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
                    attach("가", particle)  # an unknown particle fails here, by name
        for index, pattern_set in enumerate(templates.sets):
            for act in pattern_set.acts:
                try:
                    conjugate(act, "request", "polite")  # not a dictionary-form verb fails here
                except UserError as error:
                    raise UserError(f"{path}: sets[{index}].acts: {error}") from None

    def query(self, category: str, seed: int) -> str:
        """One query, fully determined by `seed`."""
        rng = random.Random(seed)
        templates = self.categories[category]
        pattern_set = rng.choice(templates.sets)
        pattern = _fill(rng.choice(pattern_set.patterns), templates.slots, rng)
        act = rng.choice(pattern_set.acts)
        form = rng.choice(FORMS)
        level = rng.choice(LEVELS)
        frame = _fill(rng.choice(getattr(self.frames[category], form)[level]), templates.slots, rng)
        conjugated = conjugate(act, form, level, rng.randrange(endings_count(form, level)))
        text = frame.format(pattern=pattern, act=conjugated, act_mod=modifier(act))
        return " ".join(text.split())

    def queries(self, category: str, seed: int, count: int) -> list[str]:
        """`count` distinct queries (fewer only when the category's space is that small)."""
        found: list[str] = []
        seen: set[str] = set()
        for attempt in range(count * 20):
            text = self.query(category, seed * 1_000_003 + attempt)
            if text not in seen:
                seen.add(text)
                found.append(text)
                if len(found) == count:
                    break
        return found

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


def _combinations(text: str, slots: dict[str, list[str]]) -> int:
    """How many ways the slot placeholders in `text` can be filled (frame fields excluded)."""
    combos = 1
    for slot, _ in _SLOT.findall(text):
        if slot not in FRAME_FIELDS:
            combos *= len(slots[slot])
    return combos


def _fill(text: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    """Slot placeholders replaced by seeded words (with agreeing particles); frame fields kept."""

    def word(match: re.Match[str]) -> str:
        if match.group(1) in FRAME_FIELDS:
            return match.group(0)
        chosen = rng.choice(slots[match.group(1)])
        return attach(chosen, match.group(2)) if match.group(2) else chosen

    return _SLOT.sub(word, text)


def _merge(defaults: Frames, own: Frames | None) -> Frames:
    if own is None:
        return defaults
    merged = defaults.model_dump()
    for form, levels in own.model_dump().items():
        merged[form] = {**merged[form], **levels}
    return Frames.model_validate(merged)
