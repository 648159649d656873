"""The harm taxonomy: categories, labels, quota weights, generation rules and exemplars.

Loaded once from YAML and validated with pydantic at the edge; every validation problem becomes a
`UserError` that names the file, the line and the field, so a researcher can fix it without Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import UserError

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
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0, le=50)


#: `BackendSettings` fields that never change results (left out of the resume check)
CONNECTION_FIELDS = frozenset(
    {
        "base_url",
        "max_in_flight",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout_s",
        "max_retries",
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
    generator: GeneratorSettings = GeneratorSettings()
    judge: JudgeSettings = JudgeSettings()


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
    embedder: str = "e5"
    num_perm: int = Field(120, ge=8, le=1024)
    bands: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _bands_divide(self) -> DedupSettings:
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


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

    @model_validator(mode="after")
    def _consistent(self) -> Category:
        if (self.label == "safe") != (self.group == "safe"):
            raise ValueError("group 'safe' goes with label 'safe', and only with it")
        blank = [i for i, text in enumerate(self.exemplars) if not text.strip()]
        if blank:
            raise ValueError(f"exemplar {blank[0] + 1} is empty")
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
    raw = _read_text(path)
    try:
        document = yaml.safe_load(raw)
        root_node = yaml.compose(raw)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: expected a mapping with 'categories' at the top level")
    try:
        return Taxonomy.model_validate(document)
    except ValidationError as error:
        problems = [_describe(path, root_node, document, item) for item in error.errors()]
        raise UserError(problems[0], details=problems[1:]) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a taxonomy YAML file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}: not UTF-8 text (bad byte at offset {error.start}); save it as UTF-8"
        ) from None


def _describe(path: Path, root_node: Any, document: Any, item: dict[str, Any]) -> str:
    """One line for one pydantic error: file:line: field path (with category ids): message."""
    loc = list(item["loc"])
    # pydantic puts model-validator errors at the model's own location; a bare field path is
    # more useful than an empty one
    field = _field_path(document, loc) or "taxonomy"
    line = _line_of(root_node, loc)
    where = f"{path}:{line}" if line else str(path)
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown field (check its spelling; see the README for the fields)"
    elif item["type"] == "missing":
        message = "required field is missing"
    elif item["type"] == "too_short" and loc and loc[-1] == "exemplars":
        message = f"needs at least {MIN_EXEMPLARS} exemplars, has {len(item.get('input') or [])}"
    elif "input" in item and item["type"] not in ("model_type", "list_type"):
        shown = repr(item["input"])
        if len(shown) <= 40:
            message = f"{message} (got {shown})"
    return f"{where}: {field}: {message}"


def _field_path(document: Any, loc: list[Any]) -> str:
    """`categories[2]` becomes `categories[crime_advice]` when that entry has an id."""
    parts: list[str] = []
    node = document
    for key in loc:
        if isinstance(key, int):
            label = str(key)
            if isinstance(node, list) and key < len(node):
                entry = node[key]
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    label = entry["id"]
                node = entry
            else:
                node = None
            parts.append(f"[{label}]")
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return "".join(parts)


def _line_of(node: Any, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML node that `loc` reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            matches = [(k, v) for k, v in node.value if k.value == key]
            if not matches:
                break
            key_node, node = matches[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line
