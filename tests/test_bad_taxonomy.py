"""A bad taxonomy gives one clear line naming the file and field, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_taxonomy


def _set_weight(value: float) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["categories"][0]["weight"] = value

    return edit


def _unknown_field(document: dict[str, Any]) -> None:
    document["categories"][1]["colour"] = "red"


def _few_exemplars(document: dict[str, Any]) -> None:
    document["categories"][0]["exemplars"] = document["categories"][0]["exemplars"][:3]


def _duplicate_id(document: dict[str, Any]) -> None:
    document["categories"][1]["id"] = document["categories"][0]["id"]


def _wrong_type(document: dict[str, Any]) -> None:
    document["settings"]["max_rounds"] = "many"


def _bad_label(document: dict[str, Any]) -> None:
    document["categories"][0]["label"] = "harmful"


def _missing_definition(document: dict[str, Any]) -> None:
    del document["categories"][1]["definition"]


CASES = {
    "unknown field": (_unknown_field, ["categories[lookalike].colour", "unknown field"]),
    "too few exemplars": (_few_exemplars, ["categories[crime_advice].exemplars", "at least 15"]),
    "zero weight": (_set_weight(0), ["categories[crime_advice].weight", "greater than 0"]),
    "negative weight": (_set_weight(-2), ["categories[crime_advice].weight", "-2"]),
    "duplicate id": (_duplicate_id, ["duplicate category id", "crime_advice"]),
    "wrong type": (_wrong_type, ["settings.max_rounds", "'many'"]),
    "unknown label": (_bad_label, ["categories[crime_advice].label", "'harmful'"]),
    "missing field": (_missing_definition, ["categories[lookalike].definition", "missing"]),
}


def _assert_one_clear_line(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.output + result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_field_is_named_with_file_and_line(tmp_path: Path, cli: Any, case: str) -> None:
    edit, needles = CASES[case]
    taxonomy = write_taxonomy(tmp_path, edit=edit)
    result = cli("run", "--taxonomy", taxonomy, "--n", "4", "--out", tmp_path / "out")
    _assert_one_clear_line(result, f"{taxonomy}:", *needles)
    assert not (tmp_path / "out").exists(), "nothing is written for a bad taxonomy"


def test_line_number_points_at_the_bad_field(tmp_path: Path, cli: Any) -> None:
    taxonomy = write_taxonomy(tmp_path, edit=_set_weight(-1))
    line_no = next(
        number
        for number, line in enumerate(taxonomy.read_text("utf-8").splitlines(), start=1)
        if line.strip() == "weight: -1"
    )
    result = cli("validate", taxonomy)
    _assert_one_clear_line(result, f"{taxonomy}:{line_no}:")


def test_yaml_syntax_error_names_the_line(tmp_path: Path, cli: Any) -> None:
    taxonomy = write_taxonomy(tmp_path)
    lines = taxonomy.read_text("utf-8").splitlines()
    lines.insert(3, "settings: [unclosed")
    taxonomy.write_text("\n".join(lines), "utf-8")
    result = cli("validate", taxonomy)
    _assert_one_clear_line(result, f"{taxonomy}:", "YAML syntax error")


def test_non_utf8_file(tmp_path: Path, cli: Any) -> None:
    taxonomy = write_taxonomy(tmp_path)
    taxonomy.write_bytes(taxonomy.read_text("utf-8").encode("cp949"))
    _assert_one_clear_line(cli("validate", taxonomy), str(taxonomy), "not UTF-8")


def test_missing_file(tmp_path: Path, cli: Any) -> None:
    _assert_one_clear_line(cli("validate", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_validate_lists_every_problem(tmp_path: Path, cli: Any) -> None:
    def two_problems(document: dict[str, Any]) -> None:
        _set_weight(0)(document)
        _unknown_field(document)

    taxonomy = write_taxonomy(tmp_path, edit=two_problems)
    result = cli("validate", taxonomy)
    assert result.exit_code == 2
    assert "weight" in result.stderr and "colour" in result.stderr


def test_validate_accepts_the_shipped_taxonomy(cli: Any) -> None:
    result = cli("validate", Path(__file__).resolve().parents[1] / "taxonomy.yaml")
    assert result.exit_code == 0, result.output
    assert "13 categories" in result.stdout
