"""How hard the client may push a backend, and when it must stop: an AIMD in-flight limit, a
circuit breaker, and the run's spending cap.

These hold across every call of a client (and the budget across every client of a run), so they
live outside the call path in small objects the client consults before and after each attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from pipeline.backends.base import FatalBackendError
from pipeline.errors import UserError
from pipeline.prices import format_cost

#: one multiplicative decrease per burst of rate limits: concurrent 429s count once
DECREASE_COOLDOWN_S = 1.0
#: the breaker looks at this many recent attempts
BREAKER_WINDOW = 50


class AdaptiveLimit:
    """Calls in flight, adjusted by additive increase / multiplicative decrease.

    A rate-limit answer halves the limit (not below `lower`); every `limit` successes in a row
    of the current limit raise it by one (not above `upper`), so it regrows slowly after a burst.
    Waiters are served first come, first served.
    """

    def __init__(self, upper: int, lower: int = 1) -> None:
        self.upper = max(1, upper)
        self.lower = max(1, min(lower, self.upper))
        self.limit = self.upper
        self.in_flight = 0
        self._successes = 0
        self._last_decrease = float("-inf")
        self._condition: asyncio.Condition | None = None

    def _ready(self) -> asyncio.Condition:
        if self._condition is None:
            self._condition = asyncio.Condition()
        return self._condition

    async def acquire(self) -> None:
        condition = self._ready()
        async with condition:
            await condition.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self) -> None:
        condition = self._ready()
        async with condition:
            self.in_flight -= 1
            condition.notify_all()

    def succeeded(self) -> bool:
        """Count a success; True when the limit grew."""
        self._successes += 1
        if self.limit < self.upper and self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
            return True
        return False

    def rate_limited(self) -> bool:
        """Halve the limit on a 429 (once per burst); True when it shrank."""
        now = time.monotonic()
        self._successes = 0
        if now - self._last_decrease < DECREASE_COOLDOWN_S or self.limit <= self.lower:
            return False
        self.limit = max(self.lower, self.limit // 2)
        self._last_decrease = now
        return True


class CircuitBreaker:
    """Stops a client early: when over half of the last `BREAKER_WINDOW` attempts failed, or at
    once after an error that no retry can fix (a wrong key, an unknown model, no quota)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.recent: deque[bool] = deque(maxlen=BREAKER_WINDOW)
        self.reason: str | None = None
        self.fatal: FatalBackendError | None = None

    def check(self) -> None:
        """Raise instead of sending another request once the breaker is open."""
        if self.fatal is not None:
            raise FatalBackendError(str(self.fatal))
        if self.reason is not None:
            raise FatalBackendError(
                f"{self.name}: stopped early: {self.reason}. Finished batches are saved; check "
                "the server, key and quota, then rerun the same command to resume"
            )

    def record(self, ok: bool, error: BaseException | None = None) -> None:
        self.recent.append(ok)
        failures = self.recent.count(False)
        if len(self.recent) == BREAKER_WINDOW and failures * 2 > BREAKER_WINDOW:
            self.reason = f"{failures} of the last {BREAKER_WINDOW} calls failed (last: {error})"

    def trip(self, error: FatalBackendError) -> None:
        """A non-retryable error: every later call would fail the same way."""
        if self.fatal is None:
            self.fatal = error


class BudgetExhausted(UserError):
    """The next call could take spending past `--max-cost`: the run stops before making it."""


class Budget:
    """The run's spending cap across every client: each call reserves its upper-bound cost
    (estimated input plus the whole output allowance) before it is sent and settles at its real
    cost, so calls in flight can never take the total past the cap."""

    def __init__(self, cap_usd: float | None, spent_before_usd: float = 0.0) -> None:
        self.cap_usd = cap_usd
        self.spent_usd = spent_before_usd
        self.reserved_usd = 0.0
        self.exhausted = False

    def reserve(self, estimate_usd: float, who: str) -> None:
        over = self.spent_usd + self.reserved_usd + estimate_usd > (self.cap_usd or float("inf"))
        if self.cap_usd is not None and (self.exhausted or over):
            self.exhausted = True
            raise BudgetExhausted(
                f"budget: {format_cost(self.spent_usd)} spent of --max-cost "
                f"{format_cost(self.cap_usd)}, and the next {who} call could cost up to "
                f"{format_cost(estimate_usd)}; everything finished is saved: rerun with a higher "
                "--max-cost to continue"
            )
        self.reserved_usd += estimate_usd

    def settle(self, estimate_usd: float, actual_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - estimate_usd)
        self.spent_usd += actual_usd
