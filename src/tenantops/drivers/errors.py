"""The one error a driver raises, and whether trying again can help.

A runbook step maps it onto ``StepFailed``: ``retriable`` errors are retried
with the step's backoff; ``permanent`` and ``needs_human`` fail the step at once
(the second says a person must act — fix data, clear a lock — before someone
retries the run from that step).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import NamedTuple, Protocol, runtime_checkable


class Retry(StrEnum):
    """Whether a retry can help."""

    RETRIABLE = "retriable"
    PERMANENT = "permanent"
    NEEDS_HUMAN = "needs_human"


class DriverError(Exception):
    """A driver operation failed; ``retry`` says what trying again would do.

    An adapter over HTTP also says the ``status`` it got and how long the other
    side asked to be left alone (``retry_after``, seconds), when it knows.
    """

    def __init__(
        self,
        message: str,
        *,
        retry: Retry,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status
        self.retry_after = retry_after

    @property
    def retriable(self) -> bool:
        """True when the same call, made again later, may succeed."""
        return self.retry is Retry.RETRIABLE

    def __str__(self) -> str:
        return f"{super().__str__()} ({self.retry.value})"


class CheckRow(NamedTuple):
    """One line of ``tenantops doctor``: what was checked, whether it passed, how to fix it."""

    check: str
    ok: bool
    detail: str
    fix: str


@runtime_checkable
class Checked(Protocol):
    """An adapter ``tenantops doctor`` can ask: its rows, then let go of its connections."""

    def check(self) -> list[CheckRow]: ...

    def close(self) -> None: ...


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if usable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
