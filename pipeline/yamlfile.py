"""YAML files validated with pydantic, every problem named by file, line and field.

The taxonomy, the response templates and the instruction templates are all edited by researchers
without Python, so a mistake in any of them must point at the line to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.errors import UserError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M], shape_hint: str = "expected a mapping") -> M:
    """Read `path` and validate it as `model`; a `UserError` (with every problem) otherwise."""
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
        raise UserError(f"{path}: {shape_hint}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = [_describe(path, root_node, document, item) for item in error.errors()]
        raise UserError(problems[0], details=problems[1:]) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a YAML file") from None
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
    field = _field_path(document, loc) or path.stem
    line = _line_of(root_node, loc)
    where = f"{path}:{line}" if line else str(path)
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown field (check its spelling; see the README for the fields)"
    elif item["type"] == "missing":
        message = "required field is missing"
    elif item["type"] == "too_short" and loc and isinstance(loc[-1], str):
        least = (item.get("ctx") or {}).get("min_length", "?")
        message = f"needs at least {least} {loc[-1]}, has {len(item.get('input') or [])}"
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
