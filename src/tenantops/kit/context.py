"""Per-request context (request id) carried in a context variable."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request (or CLI command) being handled, if any."""
    return request_id_var.get()
