"""LLM backends behind one interface (`base.Backend`), chosen by name.

Each backend module is imported only when chosen, so a laptop without vLLM still runs the rest,
and building a backend touches no network and loads no model: that happens on its first call.
"""

from __future__ import annotations

from pipeline.backends.base import (
    Backend,
    FatalBackendError,
    Request,
    Response,
    TemplateBackend,
    TransientBackendError,
)
from pipeline.errors import UserError
from pipeline.taxonomy import BackendSettings

BACKENDS = ("local", "openai", "anthropic", "vllm", "template")

__all__ = [
    "BACKENDS",
    "Backend",
    "FatalBackendError",
    "Request",
    "Response",
    "TransientBackendError",
    "make_backend",
    "require_known_backend",
]


def require_known_backend(name: str, flag: str) -> None:
    """A `UserError` naming the flag when `name` is no backend, before anything is loaded."""
    if name not in BACKENDS:
        raise UserError(f"{flag}: unknown backend {name!r} (available: {', '.join(BACKENDS)})")


def make_backend(
    settings: BackendSettings,
    api_key: str | None = None,
    check: bool = True,
    threads: int | None = None,
) -> Backend:
    """The backend `settings` name, checked (`Backend.check`) but not yet loaded or connected.
    A dry run passes `check=False`: it needs the backend's name and mode, not a key. `threads`
    (--threads) is for the in-process local model; None: every core this process may use.

    `api_key` (from --api-key) is handed to API backends only; it is never part of `settings`,
    so it never reaches run.json.
    """
    name = settings.backend
    require_known_backend(name, "backend")
    backend: Backend
    if name == "local":
        from pipeline.backends.local import LocalBackend

        backend = LocalBackend(settings.model, threads=threads)
    elif name == "openai":
        from pipeline.backends.openai_api import OpenAIBackend

        backend = OpenAIBackend(settings, api_key)
    elif name == "anthropic":
        from pipeline.backends.anthropic_api import AnthropicBackend

        backend = AnthropicBackend(settings, api_key)
    elif name == "vllm":
        from pipeline.backends.vllm_offline import VLLMBackend

        backend = VLLMBackend(settings)
    else:
        backend = TemplateBackend()
    if check:
        backend.check()
    return backend
