"""What the API backends (openai, anthropic) share: the key, the connection settings, sorting an
HTTP failure into retry-or-stop, and keeping the key out of every message.

Both official SDKs raise errors with a status code, the server's message and the raw response
headers; only the exception classes differ, so each adapter maps its classes onto `status_error`.
The SDKs' own retries are turned off: `pipeline.llm` retries, counts and logs them instead.
"""

from __future__ import annotations

import email.utils
import importlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

from pipeline.backends.base import Backend, FatalBackendError, TransientBackendError
from pipeline.errors import UserError
from pipeline.taxonomy import BackendSettings

T = TypeVar("T")

#: what an OpenAI-compatible local server gets as a key when none is set (vLLM's convention)
NO_KEY = "EMPTY"

#: statuses a retry may fix: timeout, conflict, too early, rate limit, and every 5xx
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})

_FATAL_HINTS = {
    400: "bad request (check the model's limits and the sampling settings)",
    401: "authentication failed: check the API key ({key_source})",
    403: "permission denied: the key cannot use this model or endpoint",
    404: "not found: unknown model {model!r} or wrong --base-url",
    422: "the server rejected the request's parameters",
}


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


class Redactor:
    """Replaces the API key wherever it might surface (a server echoing it in an error body)."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret if secret and len(secret) >= 6 else None

    def __call__(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text


def status_error(
    provider: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
    model: str,
    key_source: str,
    redact: Redactor,
) -> Exception:
    """The exception for an HTTP error status: transient (retried) or fatal (stops the run)."""
    detail = redact(" ".join(message.split()))[:300]
    if status == 429 and "insufficient_quota" in message:
        return FatalBackendError(
            f"{provider}: HTTP 429, quota exhausted: add credit or raise the limit: {detail}"
        )
    if status in RETRYABLE_STATUSES or status >= 500:
        return TransientBackendError(f"HTTP {status}: {detail}", retry_after(headers), status)
    hint = _FATAL_HINTS.get(status, "the server refused the request").format(
        model=model, key_source=key_source
    )
    return FatalBackendError(f"{provider}: HTTP {status}, {hint}: {detail}")


class APIBackend(Backend):
    """An HTTP API reached through its official async SDK, created on first use."""

    chat = True
    #: the environment variable the SDK reads the key from
    key_variable = ""
    #: an example model, for the error when none is given
    example_model = ""

    def __init__(self, settings: BackendSettings, api_key: str | None = None) -> None:
        self.settings = settings
        self._model = settings.model
        self.base_url = settings.base_url
        self.max_in_flight = settings.max_in_flight
        self.min_in_flight = min(settings.min_in_flight, settings.max_in_flight)
        self.requests_per_minute = settings.requests_per_minute
        self.tokens_per_minute = settings.tokens_per_minute
        self.max_retries = settings.max_retries
        self.finish_retries = settings.finish_retries
        self.batch_api = settings.batch_api
        self.batch_poll_s = settings.batch_poll_s
        self.timeout_s = settings.timeout_s
        self._flag_key = api_key
        self._client: Any = None
        self.redact = Redactor(self._key())

    @property
    def model(self) -> str:
        return self._model or "?"

    @property
    def key_source(self) -> str:
        return "--api-key" if self._flag_key else self.key_variable

    def _key(self) -> str | None:
        return self._flag_key or os.environ.get(self.key_variable) or None

    def check(self) -> None:
        if not self._model:
            raise UserError(
                f"the {self.name} backend needs a model: pass --model (e.g. {self.example_model})"
            )
        if self._key() is None and self.base_url is None:
            raise UserError(
                f"the {self.name} backend needs an API key: set {self.key_variable} or pass "
                "--api-key (or point --base-url at a server that needs none)"
            )

    def api_key(self) -> str:
        return self._key() or NO_KEY

    def client(self) -> Any:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    #: the official SDK's module and its async client class
    sdk_module = ""
    client_class = ""

    def sdk(self) -> ModuleType:
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError:
            raise UserError(
                f"the {self.name} backend needs the {self.sdk_module} package: pip install -e ."
            ) from None

    def make_client(self) -> Any:
        """The SDK's async client, its own retries off (the pipeline's client retries)."""
        return getattr(self.sdk(), self.client_class)(
            api_key=self.api_key(),
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=0,
        )

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await `call`, turning the SDK's errors (both official SDKs share these class names
        and fields) into transient or fatal backend errors, the key redacted."""
        sdk = self.sdk()
        try:
            return await call()
        except sdk.APITimeoutError:
            raise TransientBackendError(f"no answer within {self.timeout_s:g} s") from None
        except sdk.APIConnectionError as error:
            raise TransientBackendError(f"connection failed: {self.redact(str(error))}") from None
        except sdk.APIStatusError as error:
            raise status_error(
                self.name,
                error.status_code,
                error.message,
                error.response.headers,
                self.model,
                self.key_source,
                self.redact,
            ) from None
        except (sdk.APIResponseValidationError, ValueError) as error:
            raise TransientBackendError(f"malformed response body: {error}") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
