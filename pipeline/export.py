"""Export: the files researchers train on, in `<run>/corpus/`.

Every selected item becomes one example per task (safety label, category, response), each
rendered from a template drawn (seeded by item and task) from that task's pool in
`prompts/instructions/<task>.yaml`, so a model does not overfit one phrasing. Splits come from
`pipeline.splits` (by dedup cluster, stratified by category). Written:

- `{split}.parquet`: the examples (instruction, input, output, chat messages, and the item's
  text, label, category, response); `polars.read_parquet` or `datasets.load_dataset("parquet")`;
  a split that no item fell into gets no files
- `chat/{split}.jsonl`: `{"messages": [...]}` per line, the form fine-tuning tools accept
- `classification/{split}.parquet` and `.csv`: the flat table `text, label, category`
- `items.parquet`: one row per item with its split and response
- `README.md`: the dataset card; `summary.json`: counts for `synth status`

The directory is built beside the old one and swapped in, so a reader never sees half a corpus.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Literal

import jinja2
import polars as pl
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field, model_validator

from pipeline import failpoints
from pipeline.attributes import ATTRIBUTE_COLUMNS
from pipeline.card import present_splits
from pipeline.errors import UserError
from pipeline.plan import derive_seed
from pipeline.splits import SPLITS, assign_splits, split_groups
from pipeline.store import write_atomic
from pipeline.taxonomy import StrictModel, Taxonomy
from pipeline.yamlfile import load_yaml_model

TASKS = ("safety", "category", "response")
INSTRUCTIONS_DIR = "instructions"
MIN_TEMPLATES = 10


class InstructionTemplate(StrictModel):
    id: str = Field(min_length=1)
    instruction: str = Field(min_length=1)
    input_prefix: str = ""
    #: safety task: the output word for each label
    answers: dict[str, str] | None = None
    #: category task: answer with the category's Korean name or its id
    answer: Literal["name_ko", "id"] | None = None


class InstructionPool(StrictModel):
    templates: list[InstructionTemplate] = Field(min_length=MIN_TEMPLATES)

    @model_validator(mode="after")
    def _unique_ids(self) -> InstructionPool:
        seen: set[str] = set()
        for template in self.templates:
            if template.id in seen:
                raise ValueError(f"template id {template.id!r} appears twice")
            seen.add(template.id)
        return self


def load_instructions(prompts_root: Path) -> dict[str, InstructionPool]:
    """Every task's pool, checked for what its task needs; errors name file and template."""
    pools = {}
    for task in TASKS:
        path = prompts_root / INSTRUCTIONS_DIR / f"{task}.yaml"
        pool = load_yaml_model(path, InstructionPool, "expected a mapping with 'templates'")
        for template in pool.templates:
            if task == "safety" and set(template.answers or {}) != {"safe", "unsafe"}:
                raise UserError(f"{path}: {template.id}: answers needs exactly 'safe' and 'unsafe'")
            if task == "category" and template.answer is None:
                raise UserError(f"{path}: {template.id}: answer must be 'name_ko' or 'id'")
            try:
                ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined).from_string(
                    template.instruction
                ).render(categories="")
            except jinja2.TemplateError as error:
                raise UserError(f"{path}: {template.id}: instruction: {error}") from None
        pools[task] = pool
    return pools


class ExampleRenderer:
    """Turns an item into its three task examples."""

    def __init__(self, taxonomy: Taxonomy, pools: dict[str, InstructionPool], seed: int) -> None:
        self.taxonomy = taxonomy
        self.pools = pools
        self.seed = seed
        self.env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        self.names = {c.id: c.name_ko for c in taxonomy.categories}

    def category_list(self, answer: str) -> str:
        return "\n".join(
            f"- {c.id} ({c.name_ko})" if answer == "id" else f"- {c.name_ko}"
            for c in self.taxonomy.categories
        )

    def template(self, item_id: str, task: str) -> InstructionTemplate:
        rng = random.Random(derive_seed(self.seed, "instruction", task, item_id))
        return rng.choice(self.pools[task].templates)

    def instruction(self, task: str, template: InstructionTemplate) -> str:
        categories = self.category_list(template.answer or "name_ko")
        return self.env.from_string(template.instruction).render(categories=categories)

    def output(self, task: str, template: InstructionTemplate, item: dict) -> str:
        if task == "safety":
            assert template.answers is not None
            return template.answers[item["label"]]
        if task == "category":
            return item["category"] if template.answer == "id" else self.names[item["category"]]
        return item["response"]

    def examples(self, item: dict) -> list[dict]:
        found = []
        for task in TASKS:
            if task == "response" and not item.get("response"):
                continue  # no real answer was written (offline, safe query): left out, not faked
            template = self.template(item["id"], task)
            instruction = self.instruction(task, template)
            text_input = f"{template.input_prefix}{item['text']}"
            output = self.output(task, template, item)
            found.append(
                {
                    "example_id": f"{item['id']}-{task}",
                    "id": item["id"],
                    "task": task,
                    "template_id": template.id,
                    "instruction": instruction,
                    "input": text_input,
                    "output": output,
                    "messages": [
                        {"role": "user", "content": f"{instruction}\n\n{text_input}"},
                        {"role": "assistant", "content": output},
                    ],
                }
            )
        return found


ITEM_COLUMNS = (
    "id",
    "text",
    "label",
    "category",
    "response",
    "response_source",
    "split",
    "split_group",
    "round",
    "generator",
    "judge_score",
    *ATTRIBUTE_COLUMNS,
    "skeleton",
)


def build(
    items: pl.DataFrame,
    taxonomy: Taxonomy,
    pools: dict[str, InstructionPool],
    shares: dict[str, float],
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items with `split` and `split_group`, examples): pure, no files."""
    skeletons = items["skeleton"].to_list() if "skeleton" in items.columns else None
    groups = split_groups(items["id"].to_list(), items["cluster_id"].to_list(), skeletons)
    assignment = assign_splits(
        items["id"].to_list(), items["category"].to_list(), groups, shares, seed
    )
    items = items.with_columns(
        pl.Series("split_group", groups, dtype=pl.String),
        pl.Series("split", [assignment[i] for i in items["id"]], dtype=pl.String),
        pl.col("category")
        .replace_strict({c.id: c.name_ko for c in taxonomy.categories}, return_dtype=pl.String)
        .alias("category_ko"),
    )
    renderer = ExampleRenderer(taxonomy, pools, seed)
    examples = []
    for item in items.iter_rows(named=True):
        for example in renderer.examples(item):
            examples.append(
                {
                    **example,
                    "text": item["text"],
                    "label": item["label"],
                    "category": item["category"],
                    "category_ko": item["category_ko"],
                    "response": item["response"],
                    "split": item["split"],
                }
            )
    frame = pl.DataFrame(examples, schema=EXAMPLE_SCHEMA)
    order = {split: index for index, split in enumerate(SPLITS)}
    frame = frame.sort(pl.col("split").replace_strict(order, return_dtype=pl.Int8), "id", "task")
    for name in (*ATTRIBUTE_COLUMNS, "skeleton"):
        if name not in items.columns:  # rows of runs made before attributes were recorded
            items = items.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    return items.select(*ITEM_COLUMNS, "category_ko"), frame


EXAMPLE_SCHEMA = {
    "example_id": pl.String,
    "id": pl.String,
    "task": pl.String,
    "template_id": pl.String,
    "instruction": pl.String,
    "input": pl.String,
    "output": pl.String,
    "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    "text": pl.String,
    "label": pl.String,
    "category": pl.String,
    "category_ko": pl.String,
    "response": pl.String,
    "split": pl.String,
}


def write_corpus(root: Path, items: pl.DataFrame, examples: pl.DataFrame, card: str) -> Path:
    """Write every file into a fresh directory, then swap it in for `root/corpus`."""
    final = root / "corpus"
    staging = root / "corpus.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "chat").mkdir(parents=True)
    (staging / "classification").mkdir()
    for split in present_splits(items):
        part = examples.filter(pl.col("split") == split)
        part.write_parquet(staging / f"{split}.parquet")
        lines = [
            json.dumps({"messages": messages}, ensure_ascii=False)
            for messages in part["messages"].to_list()
        ]
        (staging / "chat" / f"{split}.jsonl").write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8"
        )
        table = items.filter(pl.col("split") == split).select("text", "label", "category")
        table.write_parquet(staging / "classification" / f"{split}.parquet")
        table.write_csv(staging / "classification" / f"{split}.csv")
    items.write_parquet(staging / "items.parquet")
    (staging / "README.md").write_text(card, encoding="utf-8")
    summary = {
        "items": items.height,
        "examples": examples.height,
        "by_split": {s: items.filter(pl.col("split") == s).height for s in SPLITS},
    }
    write_atomic(staging / "summary.json", json.dumps(summary, indent=2).encode())
    old = root / "corpus.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
        failpoints.reached("corpus-swap", str(final))
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
