"""LLM backends behind one interface (`base.Backend`), chosen by name.

Each backend module is imported only when chosen, so a laptop without vLLM or an API SDK still runs
the rest.
"""

from __future__ import annotations

from pipeline.backends.base import Backend, Request, Response
from pipeline.errors import UserError

BACKENDS = ("local",)

__all__ = ["BACKENDS", "Backend", "Request", "Response", "make_backend", "require_known_backend"]


def require_known_backend(name: str, flag: str) -> None:
    """A `UserError` naming the flag when `name` is no backend, before anything is loaded."""
    if name not in BACKENDS:
        raise UserError(f"{flag}: unknown backend {name!r} (available: {', '.join(BACKENDS)})")


def make_backend(name: str, model: str | None) -> Backend:
    """The backend called `name`, or a `UserError` listing the ones that exist."""
    if name == "local":
        from pipeline.backends.local import LocalBackend

        return LocalBackend(model)
    require_known_backend(name, "backend")
    raise AssertionError(f"backend {name!r} is listed but not built")
