"""Prompt files: their shape, and clear errors when a researcher breaks one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.prompts import PromptLibrary, generation_variables
from pipeline.taxonomy import load_taxonomy
from tests.conftest import write_taxonomy


def _render(taxonomy_path: Path, category_id: str, exemplars: int = 5) -> str:
    taxonomy = load_taxonomy(taxonomy_path)
    prompts = PromptLibrary(taxonomy_path.parent / "prompts")
    category = taxonomy.category(category_id)
    return prompts.render(
        f"generate/{category_id}.j2",
        **generation_variables(taxonomy, category, category.exemplars[:exemplars], 8),
    )


def test_prompt_has_instructions_numbered_rules_and_an_open_list(small_taxonomy: Path) -> None:
    taxonomy = load_taxonomy(small_taxonomy)
    text = _render(small_taxonomy, "crime_advice", exemplars=5)
    category = taxonomy.category("crime_advice")
    assert category.definition in text
    rules = taxonomy.rules_for(category)
    for number, rule in enumerate(rules, start=1):
        assert f"{number}. {rule.text}" in text
    # the exemplars come last, numbered, and the list is left open at the next number
    tail = text.splitlines()[-6:]
    assert tail == [f"{i}. {q}" for i, q in enumerate(category.exemplars[:5], 1)] + ["6."]
    assert text.index(rules[-1].text) < text.index(category.exemplars[0])


def test_undefined_variable_names_file_and_line(small_taxonomy: Path, cli: Any) -> None:
    prompt = small_taxonomy.parent / "prompts" / "generate" / "lookalike.j2"
    lines = prompt.read_text("utf-8").splitlines()
    lines.insert(2, "대상: {{ target_audience }}")
    prompt.write_text("\n".join(lines), "utf-8")
    result = cli("validate", small_taxonomy)
    assert result.exit_code == 2
    assert f"{prompt}:3:" in result.stderr
    assert "target_audience" in result.stderr
    assert "Traceback" not in result.output


def test_syntax_error_names_file_and_line(small_taxonomy: Path, cli: Any) -> None:
    rules = small_taxonomy.parent / "prompts" / "_rules.j2"
    rules.write_text(rules.read_text("utf-8") + "{% for x in %}\n", "utf-8")
    result = cli("validate", small_taxonomy)
    assert result.exit_code == 2
    assert "_rules.j2:" in result.stderr and "syntax error" in result.stderr


def test_prompt_for_unknown_category_is_an_error(small_taxonomy: Path, cli: Any) -> None:
    prompts = small_taxonomy.parent / "prompts" / "generate"
    (prompts / "phishing.j2").write_text((prompts / "crime_advice.j2").read_text("utf-8"))
    result = cli("validate", small_taxonomy)
    assert result.exit_code == 2
    assert "phishing.j2" in result.stderr and "no category with id 'phishing'" in result.stderr


def test_missing_prompt_file_is_an_error(small_taxonomy: Path, cli: Any) -> None:
    (small_taxonomy.parent / "prompts" / "generate" / "lookalike.j2").unlink()
    result = cli(
        "run", "--taxonomy", small_taxonomy, "--n", "2", "--out", small_taxonomy.parent / "o"
    )
    assert result.exit_code == 2
    assert "lookalike.j2: prompt file not found" in result.stderr


def test_category_may_name_its_own_prompt_file(tmp_path: Path) -> None:
    def point_elsewhere(document: dict[str, Any]) -> None:
        document["categories"][0]["prompt"] = "custom/crime.j2"

    taxonomy_path = write_taxonomy(tmp_path, edit=point_elsewhere)
    prompts = tmp_path / "prompts"
    (prompts / "custom").mkdir()
    (prompts / "generate" / "crime_advice.j2").rename(prompts / "custom" / "crime.j2")
    taxonomy = load_taxonomy(taxonomy_path)
    assert PromptLibrary(prompts).check(taxonomy) == []


def test_prompt_id_changes_when_an_included_file_changes(small_taxonomy: Path) -> None:
    prompts = PromptLibrary(small_taxonomy.parent / "prompts")
    before = prompts.prompt_id("generate/crime_advice.j2")
    rules = small_taxonomy.parent / "prompts" / "_rules.j2"
    rules.write_text(rules.read_text("utf-8") + "\n", "utf-8")
    after = prompts.prompt_id("generate/crime_advice.j2")
    assert before.split("@")[0] == after.split("@")[0] == "generate/crime_advice.j2"
    assert before != after


def test_each_call_names_its_drawn_attributes_and_its_rows_record_them() -> None:
    """An LLM call draws a sub-harm (or, for the twin category, an unsafe sub-harm's safe twin),
    a register, a form and a framing from its seed; the prompt says them in Korean, and every
    row the call gives carries them, so an API run spreads like the template generator."""
    import polars as pl

    from pipeline.attributes import call_attributes
    from pipeline.backends.base import Response
    from pipeline.stages.generate import build_request, rows

    root = Path(__file__).resolve().parents[1]
    taxonomy = load_taxonomy(root / "taxonomy.yaml")
    prompts = PromptLibrary(root / "prompts")
    crime = taxonomy.category("crime_advice")
    drawn = [call_attributes(taxonomy, crime, seed) for seed in range(200)]
    assert drawn[7] == call_attributes(taxonomy, crime, 7), "the call's seed decides"
    assert {a.topic for a in drawn} == {s.id for s in crime.sub_harms}
    assert {a.register for a in drawn} == {v.id for v in taxonomy.attributes.registers}
    twins = [call_attributes(taxonomy, taxonomy.category("sensitive_info"), s) for s in range(200)]
    assert any(a.twin_of == "crime_advice" for a in twins)

    task = {"category": "crime_advice", "label": "unsafe", "seed": 7, "n_new": 4, "round": 1,
            "task_id": "t7", "source": "llm"}
    request, prompt_id, _ = build_request(task, taxonomy, prompts, taxonomy.settings.generator,
                                          chat=True)
    text = request.messages[0][1]
    chosen = drawn[7]
    sub_harm = next(s for s in crime.sub_harms if s.id == chosen.topic)
    register = next(v for v in taxonomy.attributes.registers if v.id == chosen.register)
    assert f"세부 유형: {sub_harm.name_ko}" in text and f"말투: {register.ko}" in text

    # `rows` is pure: the context needs only what the parser reads of the client
    context = SimpleNamespace(
        taxonomy=taxonomy,
        llm=SimpleNamespace(
            generator_name="scripted:test",
            backend=SimpleNamespace(chat=True),
            key=lambda request: "key",
        ),
    )
    answer = Response(text="1. 첫 번째 질의예요\n2. 두 번째 질의예요", finish_reason="stop")
    found = rows(pl.DataFrame([task]), [(request, prompt_id, 1)], [answer], context)
    assert found.height == 2
    assert set(found["topic"]) == {chosen.topic} and set(found["register"]) == {chosen.register}
    assert set(found["framing"]) == {chosen.framing} and found["skeleton"].is_null().all()
