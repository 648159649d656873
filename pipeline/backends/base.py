"""The one interface every LLM role (generator, judge, responder) talks to.

A backend turns requests into responses and nothing else: caching, the in-flight limit, rate limits,
retries, checkpoints and progress belong to `pipeline.llm` and the runner, so adding a provider
touches one new file. A backend only sorts its failures into `TransientBackendError` (worth a
retry) and `FatalBackendError` (stop the run with one line).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import UserError


@dataclass(frozen=True)
class Request:
    """A raw completion prompt or chat messages, plus sampling parameters.

    `seed` and `sample_index` are part of the cache key, so repeated samples from one prompt stay
    distinct calls rather than one cached answer replayed.
    """

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content) pairs
    temperature: float = 0.9
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    sample_index: int = 0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a request has either a prompt or messages, not both")

    def payload(self) -> dict[str, Any]:
        """Everything that determines the answer, as plain JSON-able data."""
        return asdict(self)


@dataclass
class Response:
    """What came back from one call; `cached` says it was replayed from calls.sqlite."""

    text: str
    finish_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    parsed: Any = None
    cached: bool = field(default=False, compare=False)


@dataclass
class BatchState:
    """Where a provider's batch job stands: `ended` once no request in it will change any more
    (completed, expired or cancelled); `failure` when the whole job was rejected."""

    ended: bool
    status: str
    done: int = 0
    total: int = 0
    failure: str | None = None


#: what a batch job gave for one request: its answer, or the error that request got
BatchResult = Response | str


class TransientBackendError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout, a dropped connection, a malformed body.

    `retry_after` is the server's own wait hint in seconds (the Retry-After header), if any;
    `status` the HTTP status when there was one (429 shrinks the client's in-flight limit).
    """

    def __init__(
        self, message: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class FatalBackendError(UserError):
    """A failure no retry can fix (a wrong key, an unknown model, a bad request): the run stops
    with one line, keeping every finished batch on disk."""


class Backend(ABC):
    """An LLM provider. `name:model` is recorded on every row it produces."""

    name: str = "backend"
    #: True when the model is a chat model; the stages then send messages instead of a prompt.
    chat: bool = False
    #: how many requests may be in flight at once
    max_in_flight: int = 1
    #: the adaptive in-flight limit never shrinks below this on 429s
    min_in_flight: int = 1
    #: True when `generate` is fastest given every request at once (vLLM's offline batches)
    batched: bool = False
    #: client-side limits; None means unlimited
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    #: retries of a `TransientBackendError` before the run stops
    max_retries: int = 0
    #: times an answer cut off (`length`) or filtered (`content_filter`) is asked again before it
    #: is recorded as a failed call; 0 where a retry would repeat the same answer (seeded local)
    finish_retries: int = 0
    #: True when requests go through the provider's batch API (half price, up to 24 h):
    #: `submit_batch`, `poll_batch` and `batch_results` are used instead of `generate`
    batch_api: bool = False
    #: seconds between two looks at a batch job
    batch_poll_s: float = 30.0

    @property
    @abstractmethod
    def model(self) -> str:
        """The model identifier used in the cache key and the `generator` column."""

    @abstractmethod
    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Answer every request, in order. Raise `TransientBackendError` for what a retry may
        fix and `FatalBackendError` for what it cannot."""

    async def submit_batch(self, items: Sequence[tuple[str, Request]]) -> str:
        """Submit (custom id, request) pairs as one batch job; returns the job's id."""
        raise FatalBackendError(f"the {self.name} backend has no batch API")

    async def poll_batch(self, batch_id: str) -> BatchState:
        raise FatalBackendError(f"the {self.name} backend has no batch API")

    async def batch_results(self, batch_id: str) -> dict[str, BatchResult]:
        """Every finished request of an ended job by custom id: its answer or its error."""
        raise FatalBackendError(f"the {self.name} backend has no batch API")

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail fast, before any work, on what is missing locally (an API key, a package)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what must be released on the event loop that used it (HTTP pools)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release what the backend holds (model weights, HTTP pools)."""


class TemplateBackend(Backend):
    """Stands for the template generator (`pipeline.template_queries`), which writes queries from
    lexicons without any model: rows name it as `template:lexicon`, and no call ever reaches it."""

    name = "template"

    @property
    def model(self) -> str:
        return "lexicon"

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        raise FatalBackendError(
            "the template backend writes queries itself and answers no LLM calls; choose an LLM "
            "backend for the judge or responder (--judge-backend, --responder-backend)"
        )
