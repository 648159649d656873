"""The attributes a generation call realises: sub-harm (or twin topic), register, form, framing.

Drawn from the taxonomy's lists (`attributes:` and each category's `sub_harms:`) by the call's own
seed, so a rerun renders the very same prompt, and recorded on every row the call gives, so the
report can count each value per category. The template generator draws its own per query from
the same lists (`pipeline.template_queries`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from pipeline.taxonomy import AttributeValue, Category, Taxonomy

#: the row columns that hold a query's attributes, in order
ATTRIBUTE_COLUMNS = ("topic", "twin_of", "register", "form", "framing")
#: share of a twin category's calls that ask for an unsafe sub-harm's safe twin
TWIN_SHARE = 0.7


@dataclass(frozen=True)
class CallAttributes:
    topic: str | None
    twin_of: str | None
    register: str
    form: str
    framing: str

    def as_row(self) -> dict[str, str | None]:
        return asdict(self)


def draw(values: list[AttributeValue], rng: random.Random) -> AttributeValue:
    return rng.choices(values, weights=[value.weight for value in values])[0]


def call_attributes(taxonomy: Taxonomy, category: Category, seed: int) -> CallAttributes:
    """The attributes of one planned call of `category`, fully determined by `seed`."""
    rng = random.Random(f"attributes {seed}")
    attributes = taxonomy.attributes
    topic = twin_of = None
    if category.sub_harms:
        topic = rng.choice(category.sub_harms).id
    elif category.id == taxonomy.settings.twin_category and rng.random() < TWIN_SHARE:
        twins = [(c.id, s.id) for c in taxonomy.categories if c.label == "unsafe"
                 for s in c.sub_harms]
        if twins:
            twin_of, topic = rng.choice(twins)
    return CallAttributes(
        topic=topic,
        twin_of=twin_of,
        register=draw(attributes.registers, rng).id,
        form=draw(attributes.forms, rng).id,
        framing=draw(attributes.framings, rng).id,
    )


def prompt_variables(taxonomy: Taxonomy, chosen: CallAttributes) -> dict[str, object]:
    """What a generation prompt says of the drawn attributes (`_attributes.j2`): each value's
    Korean description, and the sub-harm (or the unsafe sub-harm a twin mirrors)."""
    attributes = taxonomy.attributes

    def described(values: list[AttributeValue], value_id: str) -> str:
        return next((value.ko for value in values if value.id == value_id), value_id)

    sub_harm = None
    if chosen.topic is not None:
        owner = taxonomy.category(chosen.twin_of) if chosen.twin_of else None
        for category in [owner] if owner else taxonomy.categories:
            for candidate in category.sub_harms:
                if candidate.id == chosen.topic:
                    sub_harm = candidate.model_dump()
                    break
            if sub_harm:
                break
    return {
        "sub_harm": sub_harm,
        "twin": chosen.twin_of is not None,
        "register": described(attributes.registers, chosen.register),
        "form": described(attributes.forms, chosen.form),
        "framing": described(attributes.framings, chosen.framing),
    }
