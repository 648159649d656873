"""The caching client between stages and backends.

Stages hand it requests; it replays what `calls.sqlite` already holds and sends the rest to the
backend, keeping a bounded number in flight under optional requests- and tokens-per-minute limits,
retrying transient failures (429, 5xx, timeouts, dropped connections) with exponential backoff and
jitter that honours the server's Retry-After. Each answer is committed to the cache before it is
returned, and every call, cache hit, retry, token and estimated dollar is counted for the manifest
and the progress bars.

One event loop lives as long as the client, so the in-flight limit and the rate limiters hold
across batches instead of starting afresh (with a full burst) at each one. The in-flight limit
adapts (halved on 429, regrown slowly), a circuit breaker stops a client whose calls mostly fail,
and the run's budget is reserved before each call is sent (`pipeline.flow`). With the backend's
batch API on, cache misses go out as batch jobs instead (`pipeline.batches`), at the batch price.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from pipeline.backends.base import (
    Backend,
    FatalBackendError,
    Request,
    Response,
    TransientBackendError,
)
from pipeline.batches import answer_by_batches
from pipeline.callcache import CallCache, call_key
from pipeline.errors import UserError
from pipeline.events import EventLog
from pipeline.flow import AdaptiveLimit, Budget, BudgetExhausted, CircuitBreaker
from pipeline.prices import PriceTable
from pipeline.tokens import estimate_tokens

T = TypeVar("T")

#: the longest the client waits between two attempts, whatever Retry-After says
MAX_WAIT_S = 120.0
_backoff = wait_exponential_jitter(initial=1.0, max=60.0, jitter=1.0)
#: what a batch API answer costs against the listed price (both providers halve it)
BATCH_PRICE_FACTOR = 0.5
#: finish reasons of an answer that stopped early: asked again, then recorded, never parsed
BAD_FINISHES = frozenset({"length", "content_filter"})


class BadFinish(TransientBackendError):
    """An answer cut off at its token limit or stopped by the provider's content filter. It is
    paid for, so it is counted; it is asked again up to the backend's `finish_retries` times, and
    the last one is recorded (cached) for the stage to treat as a failed call."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"the answer stopped early (finish_reason {response.finish_reason})")
        self.response = response


@dataclass
class CallStats:
    """Counters for one stage; summed into run.json."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    #: paid answers that stopped early (`BAD_FINISHES`), retried ones included
    bad_finishes: int = 0

    def add(self, response: Response, cost: float | None) -> None:
        if response.cached:
            self.cache_hits += 1
            return
        self.calls += 1
        self.bad_finishes += response.finish_reason in BAD_FINISHES
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        if cost is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += cost

    def merge(self, other: CallStats) -> None:
        for key, value in other.as_dict().items():
            setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def counting_calls(record: dict[str, Any], stats: CallStats, work: Callable[[], T]) -> T:
    """Run `work`, adding the calls it made (by `stats`) to a stage's record in run.json."""
    before = stats.as_dict()
    result = work()
    for key, value in stats.as_dict().items():
        record[key] = record.get(key, 0) + value - before[key]
    return result


def wait_before_retry(state: RetryCallState) -> float:
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, BadFinish):
        return 0.0  # the server is fine; the answer was not
    hint = getattr(error, "retry_after", None)
    if hint is not None:
        return min(max(float(hint), 0.0), MAX_WAIT_S)
    return _backoff(state)


class LLMClient:
    """One backend plus the run's call cache."""

    def __init__(
        self,
        backend: Backend,
        cache: CallCache,
        events: EventLog,
        prices: PriceTable | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.events = events
        self.prices = prices or PriceTable([])
        self.budget = budget or Budget(None)
        self._loop_runner: asyncio.Runner | None = None
        self.limit = AdaptiveLimit(backend.max_in_flight, backend.min_in_flight)
        self.breaker = CircuitBreaker(self.generator_name)
        self._requests_limit: AsyncLimiter | None = None
        self._tokens_limit: AsyncLimiter | None = None
        self.retries = 0  # transient failures retried so far by this client
        #: told how batch jobs stand while the client waits for them (the progress bar)
        self.on_status: Callable[[str], None] | None = None
        self.price_factor = BATCH_PRICE_FACTOR if backend.batch_api else 1.0
        if (
            self.budget.cap_usd is not None
            and self.prices.per_million(backend.name, backend.model) is None
        ):
            raise UserError(
                f"--max-cost needs a price for {self.generator_name}: add its model under "
                "prices: in taxonomy.yaml"
            )

    @property
    def generator_name(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    def key(self, request: Request) -> str:
        return call_key(self.backend.name, self.backend.model, request)

    def upper_cost(self, request: Request) -> float:
        """The most a request can cost: estimated input plus its whole output allowance."""
        cost = self.prices.cost(
            self.backend.name, self.backend.model, request_tokens(request), request.max_tokens
        )
        return (cost or 0.0) * self.price_factor

    def cost(self, response: Response) -> float | None:
        cost = self.prices.cost(
            self.backend.name, self.backend.model, response.input_tokens, response.output_tokens
        )
        return None if cost is None else cost * self.price_factor

    # -- the event loop -------------------------------------------------------------------------

    def run_async(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's own loop (created on first use)."""
        if self._loop_runner is None:
            self._loop_runner = asyncio.Runner()
        return self._loop_runner.run(work)

    def run(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None = None,
    ) -> list[Response]:
        """Answers in request order; `on_done` fires per answer (progress bars)."""
        return self.run_async(self.answer_all(requests, stats, on_done))

    def close(self) -> None:
        """Close the backend's connections on the loop that opened them, then the loop."""
        if self._loop_runner is None:
            return
        try:
            self._loop_runner.run(_cancel_others_then(self.backend.aclose()))
        finally:
            self._loop_runner.close()
            self._loop_runner = None

    # -- answering ------------------------------------------------------------------------------

    async def answer_all(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None = None,
    ) -> list[Response]:
        # every call settles before an error is raised, so none that was paid for is dropped
        answers = await asyncio.gather(
            *self.start(requests, stats, on_done), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return list(answers)  # type: ignore[arg-type]

    def start(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None = None,
    ) -> list[Awaitable[Response]]:
        """Begin answering every request now; await the returned futures in any order.

        The in-flight limit is first come, first served, so earlier requests finish first and a
        caller writing checkpoints in order is never starved by later ones.
        """
        if self.backend.batched or self.backend.batch_api:
            whole = asyncio.ensure_future(self._answer_batch(requests, stats, on_done))
            return [_pick(whole, index) for index in range(len(requests))]
        return [asyncio.ensure_future(self._answer(r, stats, on_done)) for r in requests]

    async def _answer(
        self,
        request: Request,
        stats: CallStats,
        on_done: Callable[[Response], None] | None,
    ) -> Response:
        key = self.key(request)
        response = self.cache.get(key)
        if response is None:
            response = await self._call_with_retries(request, stats)
            self.commit(key, request, response)
        self._count(response, stats, on_done)
        return response

    async def _answer_batch(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None,
    ) -> list[Response]:
        """For backends that want every request at once: one call for all cache misses (vLLM),
        or batch jobs (a provider's batch API)."""
        keys = [self.key(request) for request in requests]
        answers: list[Response | None] = [self.cache.get(key) for key in keys]
        missing = [index for index, answer in enumerate(answers) if answer is None]
        if missing and self.backend.batch_api:
            fresh_by_key = await answer_by_batches(
                self, {keys[index]: requests[index] for index in missing}, self.on_status
            )
            for index in missing:
                answers[index] = fresh_by_key.get(keys[index]) or self.cache.get(keys[index])
        elif missing:
            fresh = await self.backend.generate([requests[index] for index in missing])
            for index, response in zip(missing, fresh, strict=True):
                self.commit(keys[index], requests[index], response)
                answers[index] = response
        for answer in answers:
            assert answer is not None
            self._count(answer, stats, on_done)
        return [answer for answer in answers if answer is not None]

    def commit(self, key: str, request: Request, response: Response) -> None:
        # committed before anyone sees it: a kill after this line costs nothing
        self.cache.put(key, self.backend.name, self.backend.model, request, response)
        self.events.write(
            "llm_call",
            key=key,
            generator=self.generator_name,
            finish_reason=response.finish_reason,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            latency_s=round(response.latency_s, 3),
        )

    def _count(
        self,
        response: Response,
        stats: CallStats,
        on_done: Callable[[Response], None] | None,
    ) -> None:
        stats.add(response, None if response.cached else self.cost(response))
        if on_done is not None:
            on_done(response)

    async def _call_with_retries(self, request: Request, stats: CallStats) -> Response:
        attempts = self.backend.max_retries + 1
        early_stops = 0

        def give_up(state: RetryCallState) -> bool:
            nonlocal early_stops
            if isinstance(state.outcome and state.outcome.exception(), BadFinish):
                early_stops += 1
                return early_stops > self.backend.finish_retries
            return state.attempt_number >= attempts

        retrying = AsyncRetrying(
            stop=give_up,
            wait=wait_before_retry,
            retry=retry_if_exception_type(TransientBackendError),
            before_sleep=lambda state: self._note_retry(state, stats),
            reraise=True,
        )
        self.breaker.check()
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(request)
        except BadFinish as error:
            return error.response  # recorded as it is; the stage treats it as a failed call
        except TransientBackendError as error:
            raise FatalBackendError(
                f"{self.generator_name}: gave up after {attempts} attempts: {error}; finished "
                "batches are saved, rerun the same command to resume"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(self, request: Request) -> Response:
        """One try under the limits, feeding the breaker and the adaptive in-flight limit.

        Its upper-bound cost is reserved once it holds a slot (so only calls really in flight
        hold reservations) and settled at what the answer cost."""
        self.breaker.check()
        await self._throttle(request)
        await self.limit.acquire()
        estimate, actual = 0.0, 0.0
        try:
            self.breaker.check()  # it may have opened while this call waited its turn
            estimate = self.upper_cost(request)
            self.budget.reserve(estimate, self.generator_name)
            (response,) = await self.backend.generate([request])
            actual = self.cost(response) or 0.0
        except BudgetExhausted:
            estimate = 0.0  # nothing was reserved
            raise
        except TransientBackendError as error:
            self.breaker.record(False, error)
            if error.status == 429 and self.limit.rate_limited():
                self._note_limit("rate_limited")
            raise
        except FatalBackendError as error:
            self.breaker.trip(error)
            raise
        finally:
            self.budget.settle(estimate, actual)
            await self.limit.release()
        self.breaker.record(True)
        if self.limit.succeeded():
            self._note_limit("recovered")
        if response.finish_reason in BAD_FINISHES:
            raise BadFinish(response)
        return response

    def _note_limit(self, why: str) -> None:
        self.events.write(
            "llm_concurrency", generator=self.generator_name, limit=self.limit.limit, why=why
        )

    def _note_retry(self, state: RetryCallState, stats: CallStats) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.retries += 1
        stats.retries += 1
        if isinstance(error, BadFinish):  # paid for, though asked again
            stats.add(error.response, self.cost(error.response))
        self.events.write(
            "llm_retry",
            generator=self.generator_name,
            attempt=state.attempt_number,
            error=str(error),
            wait_s=round(wait, 2),
        )

    async def _throttle(self, request: Request) -> None:
        """Wait for the optional requests- and tokens-per-minute budgets."""
        rpm, tpm = self.backend.requests_per_minute, self.backend.tokens_per_minute
        if rpm:
            if self._requests_limit is None:
                self._requests_limit = _per_minute(rpm)
            await self._requests_limit.acquire()
        if tpm:
            if self._tokens_limit is None:
                self._tokens_limit = _per_minute(tpm)
            needed = request_tokens(request) + request.max_tokens
            await self._tokens_limit.acquire(min(needed, self._tokens_limit.max_rate))


def _per_minute(rate: float) -> AsyncLimiter:
    """A leaky bucket for `rate` per minute that refills every second or so, so a fresh client
    does not fire a whole minute's budget in its first burst."""
    capacity = max(1.0, rate / 60)
    return AsyncLimiter(capacity, capacity * 60 / rate)


def request_tokens(request: Request) -> int:
    """Estimated input tokens of a request."""
    if request.prompt is not None:
        return estimate_tokens(request.prompt)
    return sum(estimate_tokens(content) for _, content in request.messages or ())


async def _pick(whole: asyncio.Future[list[Response]], index: int) -> Response:
    return (await whole)[index]


async def _cancel_others_then(work: Coroutine[Any, Any, None]) -> None:
    """Cancel every task still pending on this loop (calls of an interrupted batch), then work."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await work
