"""Bad input, one test each: one `error:` line that names the input and what to do, exit code 2,
no traceback, and the run directory it was pointed at left exactly as it was.

Every case starts from a copy of a small project (taxonomy, prompts) and of a finished run of it,
breaks one thing, and runs the command a user would. A disk that fills up in the middle of a run
is simulated with a failpoint (`pipeline.failpoints`, ENOSPC at an exact write) and must keep
every finished part, so the same command finishes the run once there is room.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tests.conftest import kept_files, run_synth, write_taxonomy

#: a case edits the project copy under `root` and returns the arguments of the command to run
Case = Callable[[Path], list[Any]]


def _run(root: Path, *extra: Any, n: int = 40) -> list[Any]:
    return [
        "run",
        "--taxonomy",
        root / "taxonomy.yaml",
        "--n",
        n,
        "--out",
        root / "out",
        "--backend",
        "template",
        *extra,
    ]


def _edit_taxonomy(edit: Callable[[dict[str, Any]], None]) -> Case:
    def case(root: Path) -> list[Any]:
        path = root / "taxonomy.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(document)
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return _run(root)

    return case


def _write(relative: str, content: str | bytes, *extra: Any) -> Case:
    def case(root: Path) -> list[Any]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return _run(root, *extra)

    return case


def _append(relative: str, text: str) -> Case:
    def case(root: Path) -> list[Any]:
        path = root / relative
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
        return _run(root)

    return case


def _flags(*extra: Any, n: int = 40) -> Case:
    return lambda root: _run(root, *extra, n=n)


def _command(*args: Any) -> Case:
    return lambda root: [a(root) if callable(a) else a for a in args]


def _rename_category(document: dict[str, Any]) -> None:
    document["categories"][0]["id"] = "crime_advise"


def _bad_test_file(root: Path) -> list[Any]:
    path = root / "test.parquet"
    pl.DataFrame({"query": ["질문"], "label": ["safe"]}).write_parquet(path)
    return ["eval", root / "out", "--test", path]


def _out_in(place: Callable[[Path], Path]) -> Case:
    """A run whose --out is (under) a plain file."""

    def case(root: Path) -> list[Any]:
        (root / "file").write_text("")
        return ["run", "--taxonomy", root / "taxonomy.yaml", "--n", 40, "--out", place(root)]

    return case


def _escaping_instruction(root: Path) -> list[Any]:
    path = root / "prompts" / "instructions" / "safety.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["templates"][0]["instruction"] = JINJA_ESCAPE
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return _run(root)


JINJA_ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}\n"
CASES: dict[str, tuple[Case, tuple[str, ...]]] = {
    "broken YAML": (_write("taxonomy.yaml", "categories:\n  - id: [x\n"), ("taxonomy.yaml:",)),
    "unknown key": (
        _edit_taxonomy(lambda d: d["settings"].update(colour="red")),
        ("settings.colour", "unknown field"),
    ),
    "wrong type": (
        _edit_taxonomy(lambda d: d["settings"].update(max_rounds="many")),
        ("settings.max_rounds",),
    ),
    "empty categories": (
        _edit_taxonomy(lambda d: d.update(categories=[])),
        ("taxonomy.yaml", "categories"),
    ),
    "duplicate ids": (
        _edit_taxonomy(lambda d: d["categories"][1].update(id=d["categories"][0]["id"])),
        ("duplicate category id",),
    ),
    "prompt for an unknown category": (
        _edit_taxonomy(_rename_category),
        ("generate/crime_advice.j2", "no category with id 'crime_advice'"),
    ),
    "undefined variable in a prompt": (
        _append("prompts/generate/crime_advice.j2", "{{ no_such_variable }}\n"),
        ("crime_advice.j2:", "no_such_variable"),
    ),
    "Jinja2 syntax error": (
        _append("prompts/generate/crime_advice.j2", "{% if %}\n"),
        ("crime_advice.j2:", "syntax error"),
    ),
    "prompt reaching Python internals": (
        _append("prompts/generate/crime_advice.j2", JINJA_ESCAPE),
        ("crime_advice.j2:", "refused by the sandbox", "__class__"),
    ),
    "instruction template reaching Python internals": (
        _escaping_instruction,
        ("instructions/safety.yaml", "safety-01", "__class__"),
    ),
    "non-UTF-8 taxonomy": (
        _write("taxonomy.yaml", "categories: []\n# 한국어\n".encode("euc-kr")),
        ("taxonomy.yaml", "UTF-8"),
    ),
    "non-UTF-8 prompt": (
        _write("prompts/generate/crime_advice.j2", "질문을 써 주세요\n".encode("euc-kr")),
        ("crime_advice.j2", "UTF-8"),
    ),
    "missing taxonomy": (
        _command("run", "--taxonomy", lambda r: r / "nope.yaml", "--n", 5),
        ("nope.yaml",),
    ),
    "--n 0": (_flags(n=0), ("--n must be at least 1",)),
    "--n negative": (_flags(n=-5), ("--n must be at least 1",)),
    "unknown backend": (_flags("--backend", "nope"), ("--backend", "unknown backend 'nope'")),
    "unknown model file": (
        _flags("--backend", "local", "--model", "/no/such/model.gguf"),
        ("/no/such/model.gguf", "GGUF model file not found"),
    ),
    "missing OpenAI key": (
        _flags("--backend", "openai", "--model", "gpt-4o-mini", "--yes"),
        ("OPENAI_API_KEY",),
    ),
    "missing Anthropic key": (
        _flags("--backend", "anthropic", "--model", "claude-3-5-haiku-latest", "--yes"),
        ("ANTHROPIC_API_KEY",),
    ),
    "output is a file": (_out_in(lambda root: root / "file"), ("file", "not a directory")),
    "output under a file": (_out_in(lambda root: root / "file" / "x"), ("file", "--out")),
    "changed settings on resume": (_flags(n=41), ("setting 'n' changed", "--fresh")),
    "fuzzy threshold out of range": (_flags("--fuzzy-threshold", 150), ("--fuzzy-threshold",)),
    "template share out of range": (_flags("--template-share", 1.5), ("--template-share",)),
    "embedding threshold out of range": (
        _flags("--embedding-threshold", -1),
        ("--embedding-threshold",),
    ),
    "unknown judge backend": (
        _flags("--judge", "llm", "--judge-backend", "nope"),
        ("--judge-backend", "unknown backend 'nope'"),
    ),
    "unknown judge": (_flags("--judge", "bogus"), ("--judge must be 'offline' or 'llm'",)),
    "negative cost cap": (_flags("--max-cost", -1), ("--max-cost",)),
    "batch API without an API backend": (_flags("--batch-api"), ("--batch-api",)),
    "broken template lexicon": (
        _write("prompts/templates/crime_advice.yaml", "slots: [\n"),
        ("templates/crime_advice.yaml",),
    ),
    "eval test file with missing columns": (_bad_test_file, ("test.parquet", "text")),
    "status of a directory that is not a run": (
        _command("status", lambda r: r / "prompts"),
        ("prompts", "not a run directory"),
    ),
    "inspect of an unknown stage": (
        _command("inspect", lambda r: r / "out", "--stage", "nope"),
        ("--stage", "nope"),
    ),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a finished run in `out/` (template generator, seconds)."""
    root = tmp_path_factory.mktemp("project")
    write_taxonomy(root, settings={"max_rounds": 1})
    result = run_synth(*_run(root))
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_leaves_the_run_alone(
    name: str, project: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    root = tmp_path / "project"
    shutil.copytree(project, root)
    before = kept_files(root / "out")
    case, needles = CASES[name]
    result = cli(*case(root))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert kept_files(root / "out") == before


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    "failpoint",
    [
        "parquet-mid@round-001/screen",  # a checkpoint part
        "file-mid@run.json:3",  # the manifest
        "vectors-insert",  # an SQLite database (the vector cache)
    ],
)
def test_a_full_disk_is_one_line_keeps_finished_parts_and_the_rerun_finishes(
    project: Path, tmp_path: Path, failpoint: str
) -> None:
    root = tmp_path / "project"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("out"))
    full = run_synth(*_run(root), env={"SYNTH_FAILPOINTS": f"{failpoint}:enospc"})
    assert full.returncode == 2, full.stderr
    (line,) = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert "No space left on device" in line or "disk is full" in line
    assert "rerun the same command to resume" in line and "Traceback" not in full.stderr
    generated = root / "out" / "round-001" / "generate"
    for part in generated.glob("part-*.parquet"):
        assert pl.read_parquet(part).equals(
            pl.read_parquet(project / "out" / part.relative_to(root / "out"))
        )
    assert not list((root / "out").rglob(".*.tmp"))
    again = run_synth(*_run(root))
    assert again.returncode == 0, again.stderr
    items = pl.read_parquet(root / "out" / "corpus" / "items.parquet").sort("id")
    assert items.equals(pl.read_parquet(project / "out" / "corpus" / "items.parquet").sort("id"))
