"""LLM backends behind one interface (`base.Backend`), chosen by name.

Each backend module is imported only when chosen, so a laptop without vLLM or an API SDK still runs
the rest.
"""

from __future__ import annotations

from pipeline.backends.base import Backend, Request, Response
from pipeline.errors import UserError

BACKENDS = ("local",)

__all__ = ["BACKENDS", "Backend", "Request", "Response", "make_backend"]


def make_backend(name: str, model: str | None) -> Backend:
    """The backend called `name`, or a `UserError` listing the ones that exist."""
    if name == "local":
        from pipeline.backends.local import LocalBackend

        return LocalBackend(model)
    raise UserError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
