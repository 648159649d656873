"""The vllm adapter's translation of requests into vLLM's documented offline API.

vLLM needs a GPU and is not installed here or in CI, so this module skips there; on a GPU node
with `pip install -e .[vllm]` it checks the sampling parameters each request becomes.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

from pipeline.backends import Request, make_backend
from pipeline.backends.vllm_offline import sampling_params
from pipeline.taxonomy import BackendSettings


def test_each_request_keeps_its_seed_and_limits() -> None:
    params = sampling_params(
        Request(prompt="1. ", temperature=0.7, top_p=0.9, max_tokens=64, seed=11, stop=("\n\n",))
    )
    assert (params.temperature, params.top_p, params.max_tokens, params.seed) == (0.7, 0.9, 64, 11)
    assert params.stop == ["\n\n"]


def test_a_json_schema_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"keep": {"type": "boolean"}}}
    params = sampling_params(Request(prompt="{", json_schema=schema))
    constraint = getattr(params, "structured_outputs", None) or getattr(
        params, "guided_decoding", None
    )
    assert constraint is not None and constraint.json == schema


def test_the_backend_batches_and_needs_a_model() -> None:
    backend = make_backend(BackendSettings(backend="vllm", model="some/model"))
    assert backend.batched and backend.name == "vllm"
    with pytest.raises(Exception, match="needs a model"):
        make_backend(BackendSettings(backend="vllm"))
