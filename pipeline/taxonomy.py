"""The harm taxonomy: categories, labels, quota weights, generation rules and exemplars.

Loaded once from YAML and validated with pydantic at the edge; every validation problem becomes a
`UserError` that names the file, the line and the field, so a researcher can fix it without Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pipeline.refusals import REFUSAL_WARN_SHARE
from pipeline.yamlfile import load_yaml_model

MIN_EXEMPLARS = 15
ID_PATTERN = r"^[a-z][a-z0-9_]*$"


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a field name must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(StrictModel):
    """One numbered generation rule; categories override a global rule by reusing its id."""

    id: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1)


class BackendSettings(StrictModel):
    """Which backend and model play an LLM role, and how hard the runner may push them.

    The connection fields (`CONNECTION_FIELDS`) change how fast answers come, never what they say,
    so changing them does not block a resume; no API key is ever a setting (keys come from flags
    or the environment and are never written anywhere).
    """

    backend: str = "local"
    model: str | None = None
    #: an OpenAI-compatible server (vLLM serve, llama.cpp server, Ollama) or a proxy
    base_url: str | None = None
    #: chat messages (True) or a plain completion prompt (False); None: the backend's default
    chat: bool | None = None
    max_in_flight: int = Field(16, ge=1, le=4096)
    #: on 429s the in-flight limit halves, down to this; successes regrow it to max_in_flight
    min_in_flight: int = Field(1, ge=1, le=4096)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0, le=50)
    #: an answer cut off at max_tokens or stopped by a content filter is asked again this often
    finish_retries: int = Field(1, ge=0, le=10)
    #: send requests through the provider's batch API (OpenAI Batch, Anthropic Message Batches):
    #: half price, answers within 24 h; the job ids are kept in calls.sqlite, so a restarted run
    #: polls its jobs instead of submitting them again
    batch_api: bool = False
    #: seconds between two looks at a batch job
    batch_poll_s: float = Field(30.0, gt=0, le=3600)


#: `BackendSettings` fields that never change results (left out of the resume check)
CONNECTION_FIELDS = frozenset(
    {
        "base_url",
        "max_in_flight",
        "min_in_flight",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout_s",
        "max_retries",
        "finish_retries",
        "batch_api",
        "batch_poll_s",
    }
)


class GeneratorSettings(BackendSettings):
    """Which backend writes the queries and how it samples."""

    temperature: float = Field(0.9, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(320, ge=16, le=8192)


class JudgeSettings(BackendSettings):
    """Which judge decides what is kept: `offline` (embedding classifier) or `llm`."""

    kind: Literal["offline", "llm"] = "offline"
    embedder: str = "e5"
    min_margin: float = Field(0.0, ge=-1.0, le=1.0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=16, le=8192)
    max_attempts: int = Field(3, ge=1, le=10)


class ResponderSettings(BackendSettings):
    """Who writes the safe responses: `template` (offline, prompts/respond/templates.yaml) or
    `llm` (prompts/respond.j2 on a backend)."""

    kind: Literal["template", "llm"] = "template"
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(400, ge=16, le=8192)


class SplitSettings(StrictModel):
    """Shares of the exported corpus per split; dedup clusters never straddle two."""

    train: float = Field(0.8, gt=0.0, lt=1.0)
    validation: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1 (got {total:g})")
        return self

    def shares(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


class Price(StrictModel):
    """US dollars per million tokens for the models whose name matches `model` (a glob)."""

    model: str = Field(min_length=1)
    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)


class Settings(StrictModel):
    """Run-wide defaults that live with the taxonomy so a run is reproducible from it."""

    prompts_dir: str = "prompts"
    safe_share: float | None = Field(0.3, gt=0.0, lt=1.0)
    max_rounds: int = Field(3, ge=1, le=20)
    oversample: float = Field(1.5, ge=1.0, le=10.0)
    items_per_call: int = Field(8, ge=1, le=50)
    exemplars_per_prompt: int = Field(6, ge=1, le=50)
    calls_per_batch: int = Field(4, ge=1, le=1000)
    max_calls_per_round: int = Field(500, ge=1)
    #: share of each category's quota given to the template generator (lexicons x sentence
    #: templates, no model); the rest goes to `generator`. 0: LLM only; `--backend template`: all
    template_share: float = Field(0.0, ge=0.0, le=1.0)
    #: the safe category that holds every unsafe sub-harm's twin (the same topic asked with
    #: benign intent); null, or a category not in the taxonomy: twins are not generated
    twin_category: str | None = "sensitive_info"
    #: stop before any call that could take the run's estimated spend past this (US dollars);
    #: never part of the resume check, so a run can go on with a higher cap
    max_cost_usd: float | None = Field(None, gt=0)
    #: `synth status` names a category whose generation calls were refused more often than this
    #: (soft refusals and content filters), with a hint; display only, not part of the resume check
    refusal_warn_share: float = Field(REFUSAL_WARN_SHARE, ge=0.0, le=1.0)
    generator: GeneratorSettings = GeneratorSettings()
    judge: JudgeSettings = JudgeSettings()
    responder: ResponderSettings = ResponderSettings()
    splits: SplitSettings = SplitSettings()


class ScreenSettings(StrictModel):
    """Bounds and lists for the deterministic screen stage."""

    min_hangul_share: float = Field(0.6, ge=0.0, le=1.0)
    min_chars: int = Field(6, ge=1)
    max_chars: int = Field(200, ge=1)
    blocked_names: list[str] = []

    @model_validator(mode="after")
    def _bounds(self) -> ScreenSettings:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        return self


class DedupSettings(StrictModel):
    """Thresholds for near-duplicate removal, tuned for short Korean queries."""

    fuzzy_threshold: float = Field(90.0, ge=0.0, le=100.0)
    embedding_threshold: float | None = Field(0.95, ge=0.0, le=1.0)
    #: between two rows of the template generator: e5 puts queries that differ in one content
    #: slot (another object or place) at 0.95-0.97 and wording variants of one content (frame,
    #: ending, sentence type) above, so 0.95 would merge the variety templates exist to make
    template_embedding_threshold: float | None = Field(0.97, ge=0.0, le=1.0)
    embedder: str = "e5"
    num_perm: int = Field(120, ge=8, le=1024)
    bands: int = Field(24, ge=1)

    @model_validator(mode="after")
    def _bands_divide(self) -> DedupSettings:
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class AttributeValue(StrictModel):
    """One value of a generation attribute: `ko` tells an LLM prompt what to write, `weight` how
    often a call draws it."""

    id: str = Field(pattern=ID_PATTERN)
    ko: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0.0)


def _values(*pairs: tuple[str, str]) -> list[AttributeValue]:
    return [AttributeValue(id=value_id, ko=ko) for value_id, ko in pairs]


#: how people type (the template generator knows each of these by id)
REGISTERS = _values(
    ("banmal", "반말 채팅체"),
    ("jondaetmal", "존댓말"),
    ("written", "문어체(~다, ~는가, ~하라)"),
    ("slang", "인터넷 은어와 초성 줄임말(ㄹㅇ, ㅇㅇ, ㄱㄱ)"),
    ("typo", "오타와 띄어쓰기 생략"),
    ("no_punct", "문장부호 없이"),
    ("emoticon", "ㅋㅋ, ㅠㅠ, 이모지를 섞어서"),
    ("code_switch", "영어 단어를 섞어서"),
)
#: what the query asks for
FORMS = _values(
    ("how_to", "방법을 묻는 질문"),
    ("where_which", "어디서, 어떤 것, 얼마나, 언제를 묻는 질문"),
    ("is_it_ok", "해도 되는지 묻는 질문"),
    ("yes_no", "예/아니오로 답할 질문"),
    ("statement", "질문이 아닌 평서문이나 의견"),
    ("command", "무언가를 써 달라거나 해 달라는 명령"),
    ("rewrite", "자기가 쓴 글을 고쳐 달라는 요청"),
)
#: how the request is wrapped
FRAMINGS = _values(
    ("plain", "있는 그대로"),
    ("backstory", "한두 문장의 사정을 먼저 말하고 의도는 돌려서"),
    ("fiction", "소설, 롤플레이, 가정의 형식으로"),
    ("research", "연구나 보고서, 기사 작성을 위한다며"),
    ("euphemism", "완곡한 표현이나 은어로 돌려서"),
)


class Attributes(StrictModel):
    """What every generation call samples and every row records, so the corpus spreads over
    registers, forms and framings on both labels alike."""

    registers: list[AttributeValue] = Field(default_factory=lambda: list(REGISTERS), min_length=1)
    forms: list[AttributeValue] = Field(default_factory=lambda: list(FORMS), min_length=1)
    framings: list[AttributeValue] = Field(default_factory=lambda: list(FRAMINGS), min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Attributes:
        for name in ("registers", "forms", "framings"):
            _require_unique([value.id for value in getattr(self, name)], f"{name} id")
        return self


class SubHarm(StrictModel):
    """One kind of harm inside an unsafe category, with its safe twin on the same topic."""

    id: str = Field(pattern=ID_PATTERN)
    name_ko: str = Field(min_length=1)
    #: topic words that must appear under both labels (the report counts them per label)
    keywords: list[str] = []
    #: the benign questions on the same topic (prevention, reporting, law, history, helping)
    twin: str | None = None
    #: what the offline responder offers instead, in a sentence
    alternative: str | None = None


class Category(StrictModel):
    """A harm (or safe contrast) category with everything needed to generate and answer it."""

    id: str = Field(pattern=ID_PATTERN)
    name_ko: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    label: Literal["safe", "unsafe"]
    group: Literal["legal", "ethical", "etc", "safe"]
    weight: float = Field(gt=0.0)
    definition: str = Field(min_length=1)
    response_policy: str = Field(min_length=1)
    rules: list[Rule] = []
    drop_rules: list[str] = []
    prompt: str | None = None
    exemplars: list[str] = Field(min_length=MIN_EXEMPLARS)
    sub_harms: list[SubHarm] = []
    #: words of which every query of this category holds at least one (the screen's lint);
    #: empty: no such check
    cues: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> Category:
        if (self.label == "safe") != (self.group == "safe"):
            raise ValueError("group 'safe' goes with label 'safe', and only with it")
        blank = [i for i, text in enumerate(self.exemplars) if not text.strip()]
        if blank:
            raise ValueError(f"exemplar {blank[0] + 1} is empty")
        _require_unique([sub_harm.id for sub_harm in self.sub_harms], "sub_harm id")
        seen: set[str] = set()
        for text in self.exemplars:
            if text.strip() in seen:
                raise ValueError(f"exemplar appears twice: {text.strip()!r}")
            seen.add(text.strip())
        return self


class Taxonomy(StrictModel):
    """The whole taxonomy file."""

    version: Literal[1] = 1
    settings: Settings = Settings()
    screen: ScreenSettings = ScreenSettings()
    dedup: DedupSettings = DedupSettings()
    #: estimated cost per model; edit freely, it never blocks a resume
    prices: list[Price] = []
    rules: list[Rule] = []
    attributes: Attributes = Field(default_factory=Attributes)
    categories: list[Category] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[Rule]) -> list[Rule]:
        _require_unique([rule.id for rule in rules], "rule id")
        return rules

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, categories: list[Category]) -> list[Category]:
        _require_unique([category.id for category in categories], "category id")
        return categories

    @model_validator(mode="after")
    def _resolvable(self) -> Taxonomy:
        global_ids = {rule.id for rule in self.rules}
        for category in self.categories:
            _require_unique(
                [rule.id for rule in category.rules], f"rule id in category {category.id}"
            )
            unknown = [rule_id for rule_id in category.drop_rules if rule_id not in global_ids]
            if unknown:
                raise ValueError(
                    f"category {category.id}: drop_rules names unknown rule {unknown[0]!r}"
                )
        twin = self.settings.twin_category
        if twin is not None and twin in self.category_ids and self.category(twin).label != "safe":
            raise ValueError(f"settings.twin_category {twin!r} must be a safe category")
        return self

    def category(self, category_id: str) -> Category:
        for category in self.categories:
            if category.id == category_id:
                return category
        raise KeyError(category_id)

    @property
    def category_ids(self) -> list[str]:
        return [category.id for category in self.categories]

    def rules_for(self, category: Category) -> list[Rule]:
        """Global rules in order, a category's override replacing the rule of the same id in
        place, dropped rules removed, and the category's new rules appended."""
        overrides = {rule.id: rule for rule in category.rules}
        merged = [
            overrides.pop(rule.id, rule)
            for rule in self.rules
            if rule.id not in category.drop_rules
        ]
        return merged + [rule for rule in category.rules if rule.id in overrides]


def _require_unique(values: list[str], what: str) -> None:
    first_index: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first_index:
            raise ValueError(
                f"duplicate {what} {value!r} (entries {first_index[value] + 1} and {index + 1})"
            )
        first_index[value] = index


def load_taxonomy(path: Path) -> Taxonomy:
    """Read and validate a taxonomy file, raising `UserError` naming file, line and field."""
    return load_yaml_model(path, Taxonomy, "expected a mapping with 'categories' at the top level")
