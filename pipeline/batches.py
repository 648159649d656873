"""Answering calls through a provider's batch API (`--batch-api`): half price, within 24 hours.

The client hands over every cache miss of a stage at once. Misses that an open job of this run
already holds are not sent again: that job is polled (a restarted run picks up the jobs its
killed predecessor submitted, since each job's id and keys are committed to `calls.sqlite` the
moment it is submitted). The rest go out as a new job. Once a job has ended its answers are
committed to the cache and the job is closed; requests it did not answer (errored, expired) are
submitted again, up to `max_retries` times, before the run stops with one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.backends.base import BatchState, FatalBackendError, Request, Response

if TYPE_CHECKING:
    from pipeline.llm import LLMClient

#: the most requests one job carries (the providers allow more; smaller jobs finish sooner)
MAX_REQUESTS_PER_JOB = 10_000


@dataclass
class BatchProgress:
    """What the progress bar shows while jobs run: requests finished of those submitted."""

    jobs: int = 0
    done: int = 0
    total: int = 0

    def label(self) -> str:
        plural = "s" if self.jobs != 1 else ""
        return f"batch: {self.jobs} job{plural}, {self.done}/{self.total} answered"


async def answer_by_batches(
    llm: LLMClient,
    missing: dict[str, Request],
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Response]:
    """Answer every request in `missing` (by cache key) through batch jobs; returns the answers
    committed to the cache here (cache hits are the caller's)."""
    backend = llm.backend
    fresh: dict[str, Response] = {}
    reserved: dict[str, float] = {}  # by job: what the budget holds for it until it settles
    collected: set[str] = set()  # jobs read in this call: what they did not answer is resent
    last_errors: dict[str, str] = {}
    submissions_left = backend.max_retries + 1
    while True:
        pending = {key for key in missing if key not in fresh and llm.cache.get(key) is None}
        if not pending:
            return fresh
        jobs = [
            (job_id, keys)
            for job_id, keys in llm.cache.open_batches(backend.name, backend.model)
            if job_id not in collected and pending & set(keys)
        ]
        held = {key for _, keys in jobs for key in keys}
        unsent = [key for key in missing if key in pending and key not in held]
        if jobs:
            llm.events.write(
                "batch_resumed", generator=llm.generator_name, jobs=[job for job, _ in jobs]
            )
        if unsent:
            if not submissions_left:
                example = next((last_errors[key] for key in unsent if key in last_errors), "")
                raise FatalBackendError(
                    f"{llm.generator_name}: the batch API left {len(unsent)} requests unanswered "
                    f"after {backend.max_retries + 1} submissions (last error: {example}); "
                    "finished batches are saved, rerun the same command to resume"
                )
            submissions_left -= 1
            jobs += await _submit(llm, [(key, missing[key]) for key in unsent], reserved)
        answered, errors = await _collect(llm, jobs, missing, reserved, on_status)
        collected.update(job_id for job_id, _ in jobs)
        fresh.update(answered)
        last_errors.update(errors)


Job = tuple[str, list[str]]  # a job's id and the cache keys of its requests


async def _submit(
    llm: LLMClient, items: Sequence[tuple[str, Request]], reserved: dict[str, float]
) -> list[Job]:
    """New jobs for `items`, each recorded before anything else happens; the budget reserves
    every request's upper-bound cost before its job is sent."""
    jobs = []
    for start in range(0, len(items), MAX_REQUESTS_PER_JOB):
        chunk = items[start : start + MAX_REQUESTS_PER_JOB]
        estimate = sum(llm.upper_cost(request) for _, request in chunk)
        llm.budget.reserve(estimate, llm.generator_name)
        try:
            job_id = await llm.backend.submit_batch(chunk)
        except BaseException:
            llm.budget.settle(estimate, 0.0)
            raise
        reserved[job_id] = estimate
        keys = [key for key, _ in chunk]
        llm.cache.add_batch(job_id, llm.backend.name, llm.backend.model, keys)
        llm.events.write(
            "batch_submitted", generator=llm.generator_name, job=job_id, requests=len(keys)
        )
        jobs.append((job_id, keys))
    return jobs


async def _collect(
    llm: LLMClient,
    jobs: list[Job],
    requests: dict[str, Request],
    reserved: dict[str, float],
    on_status: Callable[[str], None] | None,
) -> tuple[dict[str, Response], dict[str, str]]:
    """Poll every job until it ended, then commit its answers and close it. Returns the answers
    committed and the errors of requests left unanswered. A job that also answers requests
    this call did not ask for stays open for the call that will (its results can be read again
    for free); jobs adopted from an earlier session were reserved by nobody, so only their
    spend counts."""
    states: dict[str, BatchState] = {}
    progress = BatchProgress(jobs=len(jobs))

    def report() -> None:
        progress.done = sum(state.done for state in states.values())
        progress.total = sum(state.total for state in states.values())
        if on_status is not None:
            on_status(progress.label())

    async def wait_for(job_id: str) -> None:
        while True:
            state = await llm.backend.poll_batch(job_id)
            states[job_id] = state
            report()
            if state.failure is not None:
                raise FatalBackendError(
                    f"{llm.generator_name}: batch job {job_id} failed: {state.failure}"
                )
            if state.ended:
                return
            await asyncio.sleep(llm.backend.batch_poll_s)

    await asyncio.gather(*(wait_for(job_id) for job_id, _ in jobs))
    answered: dict[str, Response] = {}
    errors: dict[str, str] = {}
    for job_id, keys in jobs:
        results = await llm.backend.batch_results(job_id)
        spent = 0.0
        others = 0
        for key in keys:
            result = results.get(key, "no result in the job's output (expired or cancelled)")
            if isinstance(result, str):
                errors[key] = result
            elif key not in requests:
                others += llm.cache.get(key) is None
            elif llm.cache.get(key) is None:
                llm.commit(key, requests[key], result)
                answered[key] = result
                spent += llm.cost(result) or 0.0
        llm.budget.settle(reserved.pop(job_id, 0.0), spent)
        if not others:
            llm.cache.end_batch(job_id)
        llm.events.write(
            "batch_ended",
            generator=llm.generator_name,
            job=job_id,
            status=states[job_id].status,
            answered=len(keys) - sum(key in errors for key in keys),
            errors=sum(key in errors for key in keys),
        )
    return answered, errors
