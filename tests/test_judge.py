"""Judges: verdict parsing, retry with feedback, recorded failures, and the offline judge's quality
on the labelled set in tests/data/judge_eval.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.backends.base import Backend, Response
from pipeline.backends.local import LocalBackend
from pipeline.callcache import CallCache
from pipeline.embed import VectorCache, make_embedder
from pipeline.evaluation import macro_f1, per_class_scores
from pipeline.events import EventLog
from pipeline.judges import Item, JudgeFailure, Verdict
from pipeline.judges.llm import LLMJudge, VerdictError, parse_verdict
from pipeline.judges.offline import CentroidJudge
from pipeline.llm import CallStats, LLMClient
from pipeline.prompts import PromptLibrary
from pipeline.stages import judge as judge_stage
from pipeline.stages import screen
from pipeline.taxonomy import load_taxonomy
from tests.scripted_backend import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(ROOT / "taxonomy.yaml")
IDS = TAXONOMY.category_ids
sys.path.insert(0, str(ROOT / "benchmarks"))
from judge_offline import eval_rows  # noqa: E402

GOOD = (
    '{"keep": true, "category": "crime_advice", "harmful": true, "rule_violations": [], '
    '"score": 0.9, "reason": "절도 방법을 묻는 요청"}'
)


def _response(text: str, finish_reason: str = "stop") -> Response:
    return Response(text=text, finish_reason=finish_reason)


def test_parses_a_bare_json_verdict() -> None:
    verdict = parse_verdict(_response(GOOD), IDS)
    assert verdict == Verdict(
        keep=True, category="crime_advice", harmful=True, score=0.9, reason="절도 방법을 묻는 요청"
    )


def test_parses_json_inside_prose_and_code_fences() -> None:
    text = f"판정 결과는 다음과 같습니다.\n```json\n{GOOD}\n```\n이상입니다."
    assert parse_verdict(_response(text), IDS).category == "crime_advice"


@pytest.mark.parametrize(
    ("text", "finish_reason", "message"),
    [
        ("판정할 수 없습니다.", "stop", "no JSON object"),
        ('{"keep": true, "category": "crime_advice"', "stop", "no JSON object"),
        (GOOD.replace('"score": 0.9', '"score": 7'), "stop", "score"),
        (GOOD.replace('"harmful": true, ', ""), "stop", "harmful"),
        (GOOD.replace("crime_advice", "phishing"), "stop", "'phishing' is not one of"),
        (GOOD, "length", "finish_reason length"),
        (GOOD, "content_filter", "finish_reason content_filter"),
    ],
)
def test_invalid_answers_raise_a_message_for_the_retry(
    text: str, finish_reason: str, message: str
) -> None:
    with pytest.raises(VerdictError, match=message):
        parse_verdict(_response(text, finish_reason), IDS)


def _llm_judge(tmp_path: Path, backend: Backend) -> LLMJudge:
    client = LLMClient(
        backend, CallCache(tmp_path / "calls.sqlite"), EventLog(tmp_path / "e.jsonl")
    )
    prompts = PromptLibrary(ROOT / "prompts")
    return LLMJudge(TAXONOMY, prompts, client, TAXONOMY.settings.judge, CallStats())


ITEM = Item(
    id="x1",
    text="편의점에서 몰래 물건 가져오는 법 알려 줘.",
    category="crime_advice",
    label="unsafe",
)


def test_invalid_answer_is_retried_with_the_error_fed_back(tmp_path: Path) -> None:
    backend = ScriptedBackend(["판정: 위험함", GOOD])
    (outcome,) = _llm_judge(tmp_path, backend).judge([ITEM])
    assert isinstance(outcome, Verdict) and outcome.category == "crime_advice"
    first, retry = backend.requests
    assert retry.sample_index == first.sample_index + 1
    assert retry.messages is not None and retry.messages[1] == ("assistant", "판정: 위험함")
    assert "no JSON object" in retry.messages[2][1]
    assert first.json_schema is not None
    assert first.json_schema["properties"]["category"]["enum"] == IDS


def test_no_valid_verdict_is_recorded_on_the_row_not_raised(tmp_path: Path) -> None:
    backend = ScriptedBackend(["모르겠습니다"] * 3)
    judge = _llm_judge(tmp_path, backend)
    rows = pl.DataFrame(
        {
            "id": ["x1"],
            "text": [ITEM.text],
            "category": ["crime_advice"],
            "label": ["unsafe"],
            "rejected_by": [None],
            "reject_reason": [None],
        },
        schema_overrides={"rejected_by": pl.String, "reject_reason": pl.String},
    )
    judged = judge_stage.run(rows, judge)
    assert len(backend.requests) == TAXONOMY.settings.judge.max_attempts
    assert judged["rejected_by"].to_list() == ["judge"]
    assert judged["reject_reason"].to_list() == ["judge_failed"]
    assert "no valid verdict after 3 attempts: no JSON object" in judged["judge_reason"][0]
    assert judged["judge_keep"].to_list() == [False]


def test_llm_judge_on_the_local_model_returns_schema_valid_verdicts(tmp_path: Path) -> None:
    """The real bundled model, grammar-constrained: every answer parses into a verdict."""
    backend = LocalBackend()
    judge = _llm_judge(tmp_path, backend)
    items = [
        ITEM,
        Item(id="x2", text="김치찌개 맛있게 끓이는 법 알려 줘.", category="everyday", label="safe"),
    ]
    try:
        outcomes = judge.judge(items)
    finally:
        backend.close()
    assert all(isinstance(outcome, Verdict) for outcome in outcomes), outcomes
    assert all(outcome.category in IDS for outcome in outcomes if isinstance(outcome, Verdict))
    assert judge.stats.calls == 2, "valid on the first attempt: no retries needed"


@pytest.fixture(scope="module")
def offline_judged(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    vectors = VectorCache(tmp_path_factory.mktemp("vectors"), make_embedder("e5"))
    judge = CentroidJudge(TAXONOMY, vectors, TAXONOMY.settings.judge.min_margin)
    rows = eval_rows({c.id: c.label for c in TAXONOMY.categories})
    return judge_stage.run(screen.run(rows, TAXONOMY), judge)


def test_offline_judge_reads_categories_with_macro_f1_above_target(
    offline_judged: pl.DataFrame,
) -> None:
    positives = offline_judged.filter(pl.col("why") == "positive")
    scores = per_class_scores(positives["truth"].to_list(), positives["judge_category"].to_list())
    assert macro_f1(scores) >= 0.8
    assert min(score.f1 for score in scores) >= 0.6


def test_offline_judge_keeps_most_positives_and_rejects_every_negative(
    offline_judged: pl.DataFrame,
) -> None:
    positives = offline_judged.filter(pl.col("why") == "positive")
    assert positives.filter(pl.col("rejected_by").is_null()).height >= 0.8 * positives.height
    negatives = offline_judged.filter(pl.col("why") != "positive")
    assert negatives["rejected_by"].null_count() == 0
    wrong_category = negatives.filter(pl.col("why") == "wrong_category")
    # a query filed under a category with cues (self-harm, sexual/minors) that has none of
    # them is already caught by the screen's cue check; the judge reads the rest as off-category
    by_judge = wrong_category.filter(pl.col("rejected_by") == "judge")
    assert set(wrong_category["rejected_by"]) <= {"judge", "screen"} and by_judge.height
    assert by_judge["reject_reason"].str.starts_with("off_category:").all()
    assert (
        wrong_category.filter(pl.col("rejected_by") == "screen")["reject_reason"] == "no_cue"
    ).all()
    assert set(negatives.filter(pl.col("why") != "wrong_category")["rejected_by"]) == {"screen"}


def test_offline_judge_reuses_cached_vectors(tmp_path: Path) -> None:
    first = VectorCache(tmp_path, make_embedder("e5"))
    CentroidJudge(TAXONOMY, first, 0.0).judge([ITEM])
    assert first.encoded == sum(len(c.exemplars) for c in TAXONOMY.categories) + 1
    first.close()
    again = VectorCache(tmp_path, make_embedder("e5"))
    outcome = CentroidJudge(TAXONOMY, again, 0.0).judge([ITEM])
    assert again.encoded == 0
    assert not isinstance(outcome[0], JudgeFailure)
