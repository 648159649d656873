"""Editable Jinja2 prompt files: rendering with strict variables and checking them up front.

Researchers edit `prompts/` without touching Python, so every template problem (syntax error,
undefined variable, missing file, a prompt for a category that does not exist) is reported as a
`UserError` naming the file and line, before any model is called.
"""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pipeline.attributes import CallAttributes, call_attributes, prompt_variables
from pipeline.errors import UserError
from pipeline.taxonomy import Category, Taxonomy

GENERATE_DIR = "generate"
JUDGE_TEMPLATE = "judge.j2"
RESPOND_TEMPLATE = "respond.j2"


class PromptLibrary:
    """The prompt files of one `prompts/` directory."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise UserError(f"{root}: prompts directory not found (settings.prompts_dir)")
        self.root = root
        # prompt files are data written by researchers, not code: the sandbox refuses attribute
        # access to Python internals (`''.__class__.__mro__`) and calls that mutate objects
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(root), encoding="utf-8"),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )

    @staticmethod
    def generation_template(category: Category) -> str:
        return category.prompt or f"{GENERATE_DIR}/{category.id}.j2"

    def render(self, name: str, **variables: Any) -> str:
        try:
            return self.env.get_template(name).render(**variables)
        except jinja2.TemplateNotFound as error:
            raise UserError(f"{self.root / error.name}: prompt file not found") from None
        except jinja2.TemplateSyntaxError as error:
            where = self._where(error.filename or name, error.lineno)
            raise UserError(f"{where}: template syntax error: {error.message}") from None
        except jinja2.UndefinedError as error:
            where = self._where_in_traceback(error) or str(self.root / name)
            raise UserError(
                f"{where}: {error.message}; the variables available here are "
                f"{', '.join(sorted(variables))}"
            ) from None
        except jinja2.exceptions.SecurityError as error:
            where = self._where_in_traceback(error) or str(self.root / name)
            raise UserError(f"{where}: {sandbox_message(error)}") from None
        except UnicodeDecodeError:
            raise UserError(f"{self.root / name}: not UTF-8 text; save it as UTF-8") from None

    def prompt_id(self, name: str) -> str:
        """`generate/crime_advice.j2@3f2a...`: the name plus a hash of the template and every
        template it includes, so a row records exactly which prompt text produced it."""
        digest = hashlib.sha256()
        for source_name in sorted(self._closure(name)):
            digest.update(source_name.encode())
            digest.update((self.root / source_name).read_bytes())
        return f"{name}@{digest.hexdigest()[:10]}"

    def fingerprint(self) -> dict[str, str]:
        """A hash per prompt file (templates and the YAML of responses and instructions); part
        of the run's config snapshot."""
        return {
            str(path.relative_to(self.root)): hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and path.suffix in (".j2", ".yaml", ".yml")
        }

    def check(
        self, taxonomy: Taxonomy, require_judge: bool = False, require_respond: bool = False
    ) -> list[str]:
        """Every problem with the prompt files for this taxonomy, one line each. The judge and
        respond prompts are checked whenever they exist, and must exist when the LLM judge or
        the LLM responder is chosen."""
        problems: list[str] = []
        if require_respond or (self.root / RESPOND_TEMPLATE).exists():
            for category in taxonomy.categories:
                try:
                    self.render(
                        RESPOND_TEMPLATE,
                        category=category.model_dump(),
                        item={"text": category.exemplars[0], "label": category.label},
                    )
                except UserError as error:
                    problems.append(error.message)
                    break
        if require_judge or (self.root / JUDGE_TEMPLATE).exists():
            category = taxonomy.categories[0]
            try:
                self.render(
                    JUDGE_TEMPLATE,
                    categories=[c.model_dump() for c in taxonomy.categories],
                    rules=[rule.model_dump() for rule in taxonomy.rules_for(category)],
                    intended=category.model_dump(),
                    item={"text": category.exemplars[0], "label": category.label},
                )
            except UserError as error:
                problems.append(error.message)
        known = {self.generation_template(category) for category in taxonomy.categories}
        for path in sorted((self.root / GENERATE_DIR).glob("*.j2")):
            name = f"{GENERATE_DIR}/{path.name}"
            if name not in known and not path.name.startswith("_"):
                problems.append(
                    f"{path}: no category with id {path.stem!r} in the taxonomy "
                    "(rename the file or add the category)"
                )
        for category in taxonomy.categories:
            try:
                self.render(
                    self.generation_template(category),
                    **generation_variables(taxonomy, category, category.exemplars[:3], 8),
                )
            except UserError as error:
                problems.append(error.message)
        return problems

    def _closure(self, name: str) -> set[str]:
        seen: set[str] = set()
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            source = (self.root / current).read_text(encoding="utf-8")
            try:
                parsed = self.env.parse(source)
            except jinja2.TemplateSyntaxError:
                continue
            pending.extend(ref for ref in meta.find_referenced_templates(parsed) if ref)
        return seen

    def _where(self, name: str, line: int | None) -> str:
        path = Path(name) if Path(name).is_absolute() else self.root / name
        return f"{path}:{line}" if line else str(path)

    def _where_in_traceback(self, error: BaseException) -> str | None:
        # Jinja rewrites tracebacks so template frames carry the template file and line.
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if frame.filename.endswith(".j2")
        ]
        if not frames:
            return None
        return f"{frames[-1].filename}:{frames[-1].lineno}"


def sandbox_message(error: jinja2.exceptions.SecurityError) -> str:
    """What a template that reached for Python internals is told."""
    return (
        f"template refused by the sandbox ({str(error).rstrip('.')}); prompt files may use "
        "their variables, filters and loops, not Python attributes or methods"
    )


def generation_variables(
    taxonomy: Taxonomy,
    category: Category,
    exemplars: list[str],
    n_new: int,
    attributes: CallAttributes | None = None,
) -> dict[str, Any]:
    """The variables every generation prompt may use (documented in the README); the drawn
    `attributes` of the call (those of seed 0 when none are given, to check a prompt)."""
    chosen = attributes or call_attributes(taxonomy, category, 0)
    return {
        "category": category.model_dump(),
        "rules": [rule.model_dump() for rule in taxonomy.rules_for(category)],
        "exemplars": exemplars,
        "n_new": n_new,
        **prompt_variables(taxonomy, chosen),
    }
