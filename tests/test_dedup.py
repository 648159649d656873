"""Dedup: exact, fuzzy and embedding passes on Korean pairs written for these tests
(tests/data/dedup_pairs.yaml), keep-first clustering, and the near-linear candidate search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from rapidfuzz import fuzz

from pipeline.dedup.clusters import decide
from pipeline.dedup.fuzzy import fuzzy_matches
from pipeline.dedup.keys import dedup_key
from pipeline.dedup.vectors import EXACT_LIMIT, similar_pairs
from pipeline.embed import VectorCache, make_embedder
from pipeline.stages import dedup
from pipeline.taxonomy import load_taxonomy
from pipeline.text import row_id

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(ROOT / "taxonomy.yaml")
PAIRS = yaml.safe_load((ROOT / "tests" / "data" / "dedup_pairs.yaml").read_text("utf-8"))
SETTINGS = TAXONOMY.dedup
NO_REFERENCE = pl.DataFrame(schema=dedup.REFERENCE_SCHEMA)


def _rows(texts: list[str], category: str = "everyday") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [row_id(category, text) for text in texts],
            "category": [category] * len(texts),
            "text": texts,
            "rejected_by": [None] * len(texts),
            "reject_reason": [None] * len(texts),
        },
        schema_overrides={"rejected_by": pl.String, "reject_reason": pl.String},
    )


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> VectorCache:
    return VectorCache(tmp_path_factory.mktemp("vectors"), make_embedder("e5"))


def test_key_normalizes_width_spacing_punctuation_and_keeps_hangul() -> None:
    assert dedup_key("ＣＣＴＶ 안 걸리는  방법, 알려줘!") == dedup_key("cctv안걸리는방법알려줘")
    assert dedup_key("김치찌개 끓이는 법?") == "김치찌개끓이는법"


@pytest.mark.parametrize("pair", PAIRS["edits"], ids=lambda pair: pair[0][:12])
def test_small_edits_are_caught_by_the_fuzzy_pass(pair: list[str]) -> None:
    keys = [dedup_key(text) for text in pair]
    assert fuzzy_matches(keys, SETTINGS.fuzzy_threshold, SETTINGS.num_perm, SETTINGS.bands)


def test_a_paraphrase_is_caught_by_the_embedding_pass_and_not_by_the_fuzzy_pass(
    vectors: VectorCache,
) -> None:
    original, paraphrase = next(p for p in PAIRS["paraphrases"] if "비트코인" in p[0])
    keys = [dedup_key(original), dedup_key(paraphrase)]
    assert fuzz.ratio(*keys) < SETTINGS.fuzzy_threshold
    assert not fuzzy_matches(keys, SETTINGS.fuzzy_threshold, SETTINGS.num_perm, SETTINGS.bands)
    deduped = dedup.run(_rows([original, paraphrase]), SETTINGS, NO_REFERENCE, vectors)
    assert deduped["rejected_by"].to_list() == [None, "dedup"]
    assert deduped["dup_reason"].to_list() == [None, "embedding"]
    assert deduped["dup_of_text"].to_list() == [None, original]
    assert deduped["dup_score"][1] >= SETTINGS.embedding_threshold
    assert deduped["cluster_id"][0] == deduped["cluster_id"][1] == deduped["id"][0]


def test_distinct_requests_on_one_topic_survive_the_fuzzy_pass() -> None:
    for pair in PAIRS["distinct"]:
        keys = [dedup_key(text) for text in pair]
        assert not fuzzy_matches(keys, SETTINGS.fuzzy_threshold, SETTINGS.num_perm, SETTINGS.bands)


def test_a_copied_exemplar_is_caught_even_when_slightly_edited(vectors: VectorCache) -> None:
    exemplar = TAXONOMY.category("crime_advice").exemplars[6]  # 가짜 신분증을 만들려면 뭐가 필요해?
    edited = exemplar.replace("신분증을", "신분증")
    rows = _rows([edited, "오늘 저녁 메뉴로 간단한 국수 요리를 추천해 줄래?"], "crime_advice")
    deduped = dedup.run(rows, SETTINGS, dedup.exemplar_reference(TAXONOMY), vectors)
    assert deduped["reject_reason"].to_list() == ["duplicate_of_exemplar:fuzzy", None]
    assert deduped["dup_of_text"][0] == exemplar


def test_exact_duplicates_across_rounds_are_caught(vectors: VectorCache) -> None:
    earlier_text = "주말에 아이랑 갈 만한 실내 놀이터를 추천해 주세요."
    earlier = pl.DataFrame(
        {
            "id": [row_id("everyday", earlier_text)],
            "text": [earlier_text],
            "source": ["earlier_round"],
        }
    )
    rows = _rows(
        ["주말에 아이랑 갈 만한 실내 놀이터를 추천해 주세요!", "파스타 면 삶는 시간 알려 줘."]
    )
    deduped = dedup.run(rows, SETTINGS, earlier, vectors)
    assert deduped["reject_reason"].to_list() == ["duplicate_of_earlier_round:exact", None]
    assert deduped["dup_of"][0] == earlier["id"][0]


def test_exact_duplicates_within_a_round_keep_the_earliest() -> None:
    text = "엑셀에서 중복된 값을 찾는 방법 알려 주세요."
    rows = _rows([text, text + "!", "전혀 다른 질문인데 고양이 발톱은 어떻게 깎아?", text])
    settings = SETTINGS.model_copy(update={"embedding_threshold": None})
    deduped = dedup.run(rows, settings, NO_REFERENCE, None)
    assert deduped["rejected_by"].to_list() == [None, "dedup", None, "dedup"]
    assert deduped["dup_reason"].to_list() == [None, "exact", None, "exact"]
    assert set(deduped["dup_of"].drop_nulls()) == {deduped["id"][0]}


def test_rows_rejected_earlier_pass_through_untouched() -> None:
    rows = _rows(["엑셀 함수 알려 줘요.", "엑셀 함수 알려 줘요."]).with_columns(
        pl.Series("rejected_by", ["screen", None]), pl.Series("reject_reason", ["too_short", None])
    )
    deduped = dedup.run(
        rows, SETTINGS.model_copy(update={"embedding_threshold": None}), NO_REFERENCE, None
    )
    assert deduped["rejected_by"].to_list() == ["screen", None]
    assert deduped["cluster_id"].to_list()[0] is None


def test_keep_first_does_not_chain() -> None:
    # A~B and B~C, but not A~C: B duplicates A; C is not a duplicate of anything kept
    decisions = decide(3, [(0, 1, "fuzzy", 0.95), (1, 2, "fuzzy", 0.95)], always_keep=0)
    assert [d.keeper for d in decisions] == [None, 0, None]
    assert {d.cluster for d in decisions} == {0}, "one cluster, so splits keep them together"


def test_exact_copies_of_a_duplicate_are_duplicates_too() -> None:
    """Found in a 5000-query template run: the first copy of a text was a fuzzy duplicate of a
    keeper, and its later exact copies (compared only with that first copy) all stayed kept."""
    original = "편의점에서 지갑을 몰래 가져가는 방법 알려 줘."
    near = original.replace("알려 줘", "알려 주라")
    rows = _rows([original, near, near, near])
    settings = SETTINGS.model_copy(update={"embedding_threshold": None})
    deduped = dedup.run(rows, settings, NO_REFERENCE, None)
    assert deduped["rejected_by"].to_list() == [None, "dedup", "dedup", "dedup"]
    assert deduped["dup_of"].to_list()[1:] == [deduped["id"][0]] * 3
    assert deduped["dup_reason"].to_list()[1:] == ["fuzzy"] * 3


def test_references_always_win_and_the_strongest_pass_names_the_pair() -> None:
    matches = [(1, 2, "embedding", 0.97), (1, 2, "fuzzy", 0.93), (0, 2, "embedding", 0.96)]
    decisions = decide(3, matches, always_keep=2)
    assert decisions[1].keeper is None, "a reference is never a duplicate"
    assert (decisions[2].keeper, decisions[2].how) == (0, "embedding")
    decisions = decide(3, [(1, 2, "embedding", 0.97), (1, 2, "fuzzy", 0.93)], always_keep=1)
    assert (decisions[2].keeper, decisions[2].how) == (1, "fuzzy")


def _planted_korean(n: int, seed: int) -> tuple[list[str], set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    syllables = [chr(code) for code in range(0xAC00, 0xAC00 + 2000, 7)]
    texts: list[str] = []
    planted: set[tuple[int, int]] = set()
    for index in range(n):
        if index and rng.random() < 0.2:
            source = int(rng.integers(0, index))
            chars = list(texts[source])
            chars[int(rng.integers(0, len(chars)))] = str(rng.choice(syllables))
            texts.append("".join(chars))
            planted.add((source, index))
        else:
            texts.append("".join(rng.choice(syllables, size=int(rng.integers(18, 30)))))
    return texts, planted


def test_minhash_lsh_finds_planted_korean_edits_like_all_pairs_does() -> None:
    texts, _ = _planted_korean(3000, seed=3)
    truth = set()
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if fuzz.ratio(texts[i], texts[j], score_cutoff=90):
                truth.add((i, j))
    found = {(i, j) for i, j, _ in fuzzy_matches(texts, 90, SETTINGS.num_perm, SETTINGS.bands)}
    assert found <= truth, "every reported pair is a true pair"
    assert len(found) >= 0.95 * len(truth)


def test_bucketed_vector_search_matches_exact_search() -> None:
    rng = np.random.default_rng(0)
    n = EXACT_LIMIT + 5000
    centres = rng.normal(size=(400, 64)).astype(np.float32)
    base = centres[rng.integers(0, 400, n)] + 0.6 * rng.normal(size=(n, 64)).astype(np.float32)
    copies = rng.integers(0, n, 2000)
    base[n - 2000 :] = base[copies] + 0.05 * rng.normal(size=(2000, 64)).astype(np.float32)
    vectors = base / np.linalg.norm(base, axis=1, keepdims=True)
    bucketed = {(i, j) for i, j, _ in similar_pairs(vectors, 0.97)}
    exact = set()
    for start in range(0, n, 4096):
        scores = vectors[start : start + 4096] @ vectors.T
        rows, cols = np.nonzero(scores >= 0.97)
        exact |= {
            (start + int(r), int(c)) for r, c in zip(rows, cols, strict=True) if c > start + r
        }
    assert bucketed <= exact
    assert len(bucketed) >= 0.95 * len(exact)
