"""The template generator: queries from topic lexicons x shared sentence frames x framings x
registers, no model.

`prompts/templates/<category>.yaml` lists a category's topics (an unsafe category's sub-harms),
each with contents of three kinds: `act` (a dictionary-form verb phrase: what the user wants done
or told how to do), `ask` (an embedded question ending in 지: what the user wants answered) and
`say` (a dictionary-form sentence said to the assistant). An unsafe topic's `twin` holds safe
contents on the same topic, which the taxonomy's twin category deals, so topic words appear
under both labels. `_frames.yaml` turns a content into each form (how-to, where/which,
is-it-OK, yes/no, statement, command, rewrite) at each base level (반말, 존댓말, written), and
the same frames serve every category; `_framings.yaml` wraps it (backstory, fiction, research;
euphemism swaps in a topic's coded words); `_registers.yaml` rewrites it as people type.

Topics are dealt round-robin and each topic's contents from a deck shuffled by the run seed, so
every topic gets its share and calls do not repeat one another; a call's rows are fully
determined by the run seed, its call index and its own seed. Every row records its topic,
register, form, framing and skeleton (the content before its slots are filled), so splits keep a
skeleton on one side and the report counts attributes.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.attributes import draw
from pipeline.errors import UserError
from pipeline.korean import BASE_LEVELS, CLAUSES, attach, clause, quoted, sentence_end
from pipeline.plan import derive_seed
from pipeline.taxonomy import FORMS, StrictModel, Taxonomy
from pipeline.template_registers import (
    KNOWN_REGISTERS,
    RegisterTables,
    base_level,
    rewrite,
    swap_word,
)
from pipeline.yamlfile import load_yaml_model

TEMPLATES_DIR = "templates"
FRAMES_FILE = "_frames.yaml"
FRAMINGS_FILE = "_framings.yaml"
REGISTERS_FILE = "_registers.yaml"
KINDS = ("act", "task", "ask", "say")
#: framings that wrap the query in a frame of `_framings.yaml`
WRAPPED_FRAMINGS = ("backstory", "fiction", "research")
KNOWN_FRAMINGS = ("plain", *WRAPPED_FRAMINGS, "euphemism")
_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")
_FRAME_FIELD = re.compile(r"\{(act|task|ask|say|you)(?:\.(\w+))?\}")
#: the share of a twin category's rows given to its own topics (the rest: every unsafe twin)
OWN_TOPIC_SHARE = 0.35
#: above this many contents a topic draws them at random instead of from a shuffled deck
DECK_LIMIT = 1 << 20

Level = str
Frames = dict[str, dict[Level, list[str]]]  # form -> base level -> frames


class Contents(StrictModel):
    """What one topic (or its safe twin) can say, and what it can be wrapped in."""

    slots: dict[str, list[str]] = Field(default_factory=dict)
    #: dictionary-form sentences of a situation, said before the request (framing backstory)
    backstory: list[str] = Field(default_factory=list)
    #: a slot name or a word -> coded or softened words used instead (framing euphemism)
    coded: dict[str, list[str]] = Field(default_factory=dict)
    #: dictionary-form verb phrases the user wants to do (asked how, whether, where...)
    act: list[str] = Field(default_factory=list)
    #: dictionary-form verb phrases the user wants the assistant to do (write, make, predict)
    task: list[str] = Field(default_factory=list)
    #: embedded questions ending in 지 the user wants answered
    ask: list[str] = Field(default_factory=list)
    #: dictionary-form sentences said to the assistant
    say: list[str] = Field(default_factory=list)
    #: a twin only: the safe category that deals it (default: settings.twin_category)
    category: str | None = None

    def has_content(self) -> bool:
        return bool(self.act or self.task or self.ask or self.say)


class Topic(Contents):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    twin: Contents | None = None


class CategoryTemplates(StrictModel):
    slots: dict[str, list[str]] = Field(default_factory=dict)
    backstory: list[str] = Field(default_factory=list)
    topics: list[Topic] = Field(min_length=1)


class FrameBook(StrictModel):
    """`_frames.yaml`: per kind, per form, per base level; `you` is how a query addresses the
    assistant at each level."""

    you: dict[Level, list[str]]
    act: Frames
    task: Frames
    ask: Frames
    say: Frames


class FramingBook(StrictModel):
    """`_framings.yaml`: wrappers per framing, per base level; `{main}` is the query itself,
    `{story}` one or two of the topic's backstory sentences."""

    backstory: dict[Level, list[str]]
    fiction: dict[Level, list[str]]
    research: dict[Level, list[str]]


@dataclass(frozen=True)
class TemplateItem:
    """One query and the attributes it was built from."""

    text: str
    topic: str
    twin_of: str | None
    register: str
    form: str
    framing: str
    skeleton: str


@dataclass(frozen=True)
class _Entry:
    """One content template: `text` with slot placeholders, of one kind, in one topic."""

    skeleton: str
    kind: str
    text: str
    slot_names: tuple[str, ...]
    contents: Contents
    backstory: tuple[str, ...]


class _TopicDeck:
    """Every (content, slot fill) of one topic by index, dealt in one seeded order."""

    def __init__(self, entries: list[_Entry], slots: dict[str, list[str]], seed: int) -> None:
        self.entries = entries
        self.slots = slots
        self.starts: list[int] = []
        start = 0
        for entry in entries:
            self.starts.append(start)
            start += math.prod(len(slots[name]) for name in entry.slot_names)
        self.size = start
        self.order = (
            np.random.default_rng(seed).permutation(self.size) if self.size <= DECK_LIMIT else None
        )

    def dealt(self, position: int, rng: random.Random) -> int:
        if self.order is None:
            return rng.randrange(self.size)
        return int(self.order[position % self.size])

    def content(self, index: int) -> tuple[_Entry, tuple[int, ...]]:
        """The entry of content `index` and the word index per slot placeholder."""
        entry_index = bisect.bisect_right(self.starts, index) - 1
        entry = self.entries[entry_index]
        rest = index - self.starts[entry_index]
        words = []
        for name in entry.slot_names:
            rest, word = divmod(rest, len(self.slots[name]))
            words.append(word)
        return entry, tuple(words)


class TemplateGenerator:
    """Every category's lexicon, checked once; `queries` deals seeded, attributed queries."""

    name = "template"
    model = "lexicon"

    def __init__(self, taxonomy: Taxonomy, prompts_root: Path, seed: int = 0) -> None:
        #: the run seed: it shuffles each topic's deck and the order of topics
        self.seed = seed
        self.root = prompts_root / TEMPLATES_DIR
        self.frames = load_yaml_model(self.root / FRAMES_FILE, FrameBook)
        self.framings = load_yaml_model(self.root / FRAMINGS_FILE, FramingBook)
        self.registers = load_yaml_model(self.root / REGISTERS_FILE, RegisterTables)
        self.attributes = taxonomy.attributes
        self._check_attributes()
        missing = [c.id for c in taxonomy.categories if not (self.root / f"{c.id}.yaml").exists()]
        if missing:
            raise UserError(
                f"{self.root}: no template file for {', '.join(missing)} "
                f"(add {missing[0]}.yaml, or use another --backend)"
            )
        self.categories: dict[str, CategoryTemplates] = {
            c.id: load_yaml_model(self.root / f"{c.id}.yaml", CategoryTemplates)
            for c in taxonomy.categories
        }
        twin_category = taxonomy.settings.twin_category
        self.twin_category = twin_category if twin_category in self.categories else None
        self._topics: dict[str, list[tuple[str, str | None, list[_Entry], dict]]] = {}
        for category in taxonomy.categories:
            self._topics.setdefault(category.id, [])
            self._collect(category.id, taxonomy)
        self._decks: dict[tuple[str, int], _TopicDeck] = {}
        self._orders: dict[str, list[tuple[int, int, int]]] = {}

    # -- loading ---------------------------------------------------------------------------

    def _check_attributes(self) -> None:
        for value in self.attributes.registers:
            if value.id not in KNOWN_REGISTERS:
                raise UserError(
                    f"attributes.registers: the template generator cannot write {value.id!r} "
                    f"(known: {', '.join(KNOWN_REGISTERS)})"
                )
        for value in self.attributes.framings:
            if value.id not in KNOWN_FRAMINGS:
                raise UserError(
                    f"attributes.framings: the template generator cannot write {value.id!r} "
                    f"(known: {', '.join(KNOWN_FRAMINGS)})"
                )
        for framing in WRAPPED_FRAMINGS:
            for level in BASE_LEVELS:
                if not getattr(self.framings, framing).get(level):
                    raise UserError(f"{self.root / FRAMINGS_FILE}: {framing}.{level}: no frame")
        for kind in KINDS:
            for form, levels in getattr(self.frames, kind).items():
                for level, options in levels.items():
                    for frame in options:
                        self._check_frame(kind, form, level, frame)

    def _check_frame(self, kind: str, form: str, level: str, frame: str) -> None:
        where = f"{self.root / FRAMES_FILE}: {kind}.{form}.{level}: {frame!r}"
        if form not in {value.id for value in FORMS}:
            raise UserError(f"{where}: unknown form {form!r}")
        if level not in BASE_LEVELS:
            raise UserError(f"{where}: unknown level {level!r} (known: {', '.join(BASE_LEVELS)})")
        fields = _FRAME_FIELD.findall(frame)
        if not any(name == kind for name, _ in fields):
            raise UserError(f"{where}: has no {{{kind}...}} placeholder")
        for name, form_name in fields:
            if name in ("act", "task") and form_name not in (*CLAUSES, "da"):
                raise UserError(f"{where}: unknown clause form {form_name!r}")

    def _collect(self, category_id: str, taxonomy: Taxonomy) -> None:
        path = self.root / f"{category_id}.yaml"
        templates = self.categories[category_id]
        category = taxonomy.category(category_id)
        for topic in templates.topics:
            if not topic.has_content():
                raise UserError(f"{path}: topic {topic.id}: no act, task, ask or say")
            topic_slots = {**templates.slots, **topic.slots}
            self._add(
                category_id, topic.id, None, topic, topic_slots, templates.backstory, path, ""
            )
            if topic.twin is not None and topic.twin.has_content():
                if category.label != "unsafe":
                    raise UserError(f"{path}: topic {topic.id}: only unsafe topics have a twin")
                deal_to = topic.twin.category or self.twin_category
                if deal_to not in self.categories:
                    deal_to = None  # a taxonomy without that safe category: no twins dealt
                if deal_to is not None:
                    if taxonomy.category(deal_to).label != "safe":
                        raise UserError(
                            f"{path}: topic {topic.id}: twin.category {deal_to!r} is not safe"
                        )
                    # a twin inherits the topic's coded words unless it says its own (even none):
                    # a slur a topic codes must not reach the safe side
                    own = "coded" in topic.twin.model_fields_set
                    twin = topic.twin.model_copy(
                        update={"coded": topic.twin.coded if own else topic.coded}
                    )
                    self._add(
                        deal_to, topic.id, category_id, twin,
                        {**topic_slots, **twin.slots}, [], path, "twin.",
                    )

    def _add(
        self,
        deal_to: str,
        topic_id: str,
        twin_of: str | None,
        contents: Contents,
        slots: dict[str, list[str]],
        generic_backstory: list[str],
        path: Path,
        prefix: str,
    ) -> None:
        slots = {**slots, **contents.slots}
        for index, sentence in enumerate(contents.backstory):
            try:
                sentence_end(_stand_in(sentence, slots), "banmal")
            except UserError as error:
                raise UserError(
                    f"{path}: topic {topic_id}: {prefix}backstory[{index}]: {error}"
                ) from None
            for name, _ in _SLOT.findall(sentence):
                if name != "you" and not slots.get(name):
                    raise UserError(
                        f"{path}: topic {topic_id}: {prefix}backstory[{index}]: {sentence!r} uses "
                        f"slot {name!r}, which has no words"
                    )
        entries = []
        for kind in KINDS:
            for index, text in enumerate(getattr(contents, kind)):
                where = f"{path}: topic {topic_id}: {prefix}{kind}[{index}]"
                names = tuple(name for name, _ in _SLOT.findall(text) if name != "you")
                for name, particle in _SLOT.findall(text):
                    if name != "you" and not slots.get(name):
                        raise UserError(f"{where}: {text!r} uses slot {name!r}, which has no words")
                    if particle:
                        try:
                            attach("가", particle)
                        except UserError as error:
                            raise UserError(f"{where}: {text!r}: {error}") from None
                if kind in ("act", "task", "say"):
                    try:
                        clause(_stand_in(text, slots), "mod")
                    except UserError as error:
                        raise UserError(f"{where}: {error}") from None
                source = twin_of or deal_to
                entries.append(
                    _Entry(
                        skeleton=f"{source}/{topic_id}/{prefix}{kind}{index}",
                        kind=kind,
                        text=text,
                        slot_names=names,
                        contents=contents,
                        # the category's generic situations fit any of its topics
                        backstory=(*contents.backstory, *generic_backstory),
                    )
                )
        if entries:
            self._topics.setdefault(deal_to, []).append((topic_id, twin_of, entries, slots))

    # -- dealing ---------------------------------------------------------------------------

    def _deck(self, category: str, topic_index: int) -> _TopicDeck:
        key = (category, topic_index)
        if key not in self._decks:
            topic_id, twin_of, entries, slots = self._topics[category][topic_index]
            seed = derive_seed(self.seed, "template deck", category, topic_id, str(twin_of))
            self._decks[key] = _TopicDeck(entries, slots, seed)
        return self._decks[key]

    def _topic_order(self, category: str) -> list[tuple[int, int, int]]:
        """One lap of the topic rotation, seeded: (topic index, which of its turns, its turns
        per lap). A category that deals other categories' twins as well as its own topics gives
        its own topics `OWN_TOPIC_SHARE` of the lap, so a hundred twins do not crowd them out."""
        if category in self._orders:
            return self._orders[category]
        topics = self._topics[category]
        own = [i for i, (_, twin_of, _, _) in enumerate(topics) if twin_of is None]
        twins = len(topics) - len(own)
        turns = dict.fromkeys(range(len(topics)), 1)
        if own and twins:
            per_own = round(OWN_TOPIC_SHARE * twins / ((1 - OWN_TOPIC_SHARE) * len(own)))
            turns.update(dict.fromkeys(own, max(1, per_own)))
        slots = [(index, turn, turns[index]) for index in turns for turn in range(turns[index])]
        random.Random(derive_seed(self.seed, "template topics", category)).shuffle(slots)
        self._orders[category] = slots
        return slots

    def topics(self, category: str) -> list[str]:
        return [topic_id for topic_id, _, _, _ in self._topics[category]]

    def space(self, category: str) -> int:
        """How many distinct (content, slot fill) a category deals before a deck laps."""
        return sum(self._deck(category, i).size for i in range(len(self._topics[category])))

    def query(self, category: str, seed: int) -> TemplateItem:
        """One query of random content, fully determined by `seed`."""
        rng = random.Random(seed)
        return self._at(category, rng.randrange(1 << 30), rng)

    def queries(self, category: str, call_index: int, seed: int, count: int) -> list[TemplateItem]:
        """The `count` queries of one planned call: topics in turn, each topic's contents dealt
        from its deck at this call's place in it; attributes drawn from `seed`. Distinct within
        the call (fewer only when the category's whole space is that small)."""
        rng = random.Random(seed)
        found: list[TemplateItem] = []
        seen: set[str] = set()
        for position in range(call_index * count, call_index * count + count * 20):
            item = self._at(category, position, rng)
            if item.text not in seen:
                seen.add(item.text)
                found.append(item)
                if len(found) == count:
                    break
        return found

    def _at(self, category: str, position: int, rng: random.Random) -> TemplateItem:
        order = self._topic_order(category)
        if not order:
            raise UserError(f"{self.root / (category + '.yaml')}: no topic to deal")
        topic_index, turn, turns = order[position % len(order)]
        deck = self._deck(category, topic_index)
        entry, words = deck.content(deck.dealt(position // len(order) * turns + turn, rng))
        topic_id, twin_of, _, slots = self._topics[category][topic_index]
        state = rng.getstate()
        try:
            return self._render(entry, words, slots, topic_id, twin_of, rng)
        except UserError:
            # a coded word Kiwi cannot conjugate with (the load check fills slots with one
            # plain noun): the same draw again without the euphemism
            rng.setstate(state)
            return self._render(entry, words, slots, topic_id, twin_of, rng, plain_words=True)

    # -- rendering -------------------------------------------------------------------------

    def _render(
        self,
        entry: _Entry,
        words: tuple[int, ...],
        slots: dict[str, list[str]],
        topic_id: str,
        twin_of: str | None,
        rng: random.Random,
        plain_words: bool = False,
    ) -> TemplateItem:
        register = draw(self.attributes.registers, rng).id
        framing = draw(self.attributes.framings, rng).id
        level = base_level(register, self.registers, rng)
        forms = getattr(self.frames, entry.kind)
        available = [v for v in self.attributes.forms if forms.get(v.id, {}).get(level)]
        if not available:
            raise UserError(
                f"{self.root / FRAMES_FILE}: {entry.kind}: no frame at level {level}"
            )
        form = draw(available, rng).id
        coded = entry.contents.coded
        if framing == "euphemism" and (plain_words or not _codable(entry, coded)):
            framing = "plain"
        if framing == "backstory" and not entry.backstory:
            framing = "plain"
        chosen: dict[str, str] = {}
        content = self._fill(
            entry.text, words, slots, coded if framing == "euphemism" else {}, level, rng, chosen
        )
        main = self._frame(rng.choice(forms[form][level]), entry.kind, content, level, rng)
        if framing in WRAPPED_FRAMINGS:
            main = self._wrap(framing, main, entry, slots, chosen, level, rng)
        if level == "jondaetmal":
            main = _humble(main)
        text = " ".join(rewrite(main, register, self.registers, rng).split())
        return TemplateItem(text, topic_id, twin_of, register, form, framing, entry.skeleton)

    def _fill(
        self,
        template: str,
        words: tuple[int, ...] | None,
        slots: dict[str, list[str]],
        coded: dict[str, list[str]],
        level: str,
        rng: random.Random,
        chosen: dict[str, str],
    ) -> str:
        """`template` with its slots filled: by the dealt word indices (`words`, in placeholder
        order), else by the words already `chosen` for the same slot, else at random; coded
        words swapped in where `coded` has them. Records each slot's word in `chosen`."""
        dealt = iter(words or ())

        def word(match: re.Match[str]) -> str:
            name, particle = match.group(1), match.group(2)
            if name == "you":
                picked = rng.choice(self.frames.you[level])
            elif words is None:
                picked = chosen.get(name) or rng.choice(slots[name])
            else:
                options = coded.get(name) or slots[name]
                picked = options[next(dealt) % len(options)]
            chosen.setdefault(name, picked)
            return attach(picked, particle) if particle else picked

        text = _SLOT.sub(word, template)
        for plain_word, variants in coded.items():
            if plain_word not in slots and plain_word in text:
                text = swap_word(text, plain_word, rng.choice(variants))
        return text

    def _frame(self, frame: str, kind: str, content: str, level: str, rng: random.Random) -> str:
        def field(match: re.Match[str]) -> str:
            name, form = match.group(1), match.group(2)
            if name == "you":
                return rng.choice(self.frames.you[level])
            if name in ("act", "task"):
                return clause(content, form or "mod")
            if name == "say":
                if form == "go":
                    return quoted(content)
                return content if form == "da" else sentence_end(content, level)
            return content  # ask: an embedded question, used as it is

        return _FRAME_FIELD.sub(field, frame)

    def _wrap(
        self,
        framing: str,
        main: str,
        entry: _Entry,
        slots: dict[str, list[str]],
        chosen: dict[str, str],
        level: str,
        rng: random.Random,
    ) -> str:
        wrapper = rng.choice(getattr(self.framings, framing)[level])
        story = ""
        if framing == "backstory":
            # one sentence: two drawn from a topic's list rarely belong to one story
            picked = [rng.choice(entry.backstory)]
            story = " ".join(
                sentence_end(self._fill(s, None, slots, {}, level, rng, chosen), level) + "."
                for s in picked
            )
        return wrapper.replace("{story}", story).replace("{main}", main)


#: the user's own pronouns at 존댓말 (나는 ... 해요 mixes levels; 저는 ... 해요 does not)
_HUMBLE = {"나는": "저는", "내가": "제가", "나를": "저를", "나한테": "저한테", "나도": "저도",
           "내": "제", "나": "저", "난": "전", "날": "절"}
_PRONOUN = re.compile(
    r"(?<![가-힣])(" + "|".join(sorted(_HUMBLE, key=len, reverse=True)) + r")(?![가-힣])"
)


def _humble(text: str) -> str:
    return _PRONOUN.sub(lambda match: _HUMBLE[match.group(1)], text)


def _stand_in(text: str, slots: dict[str, list[str]] | None = None) -> str:
    """`text` with each slot's first word (or a plain noun) and its particle, to check its
    grammar once."""

    def word(match: re.Match[str]) -> str:
        options = (slots or {}).get(match.group(1)) or ["그것"]
        return attach(options[0], match.group(2)) if match.group(2) else options[0]

    return _SLOT.sub(word, text)


def _codable(entry: _Entry, coded: dict[str, list[str]]) -> bool:
    """Whether euphemism can change this entry: one of its slots or words has coded variants."""
    return any(name in coded for name in entry.slot_names) or any(
        word in entry.text for word in coded
    )



