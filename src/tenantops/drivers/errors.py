"""The one error a driver raises, and whether trying again can help.

A runbook step maps it onto ``StepFailed``: ``retriable`` errors are retried
with the step's backoff; ``permanent`` and ``needs_human`` fail the step at once
(the second says a person must act — fix data, clear a lock — before someone
retries the run from that step).
"""

from __future__ import annotations

from enum import StrEnum


class Retry(StrEnum):
    """Whether a retry can help."""

    RETRIABLE = "retriable"
    PERMANENT = "permanent"
    NEEDS_HUMAN = "needs_human"


class DriverError(Exception):
    """A driver operation failed; ``retry`` says what trying again would do."""

    def __init__(self, message: str, *, retry: Retry) -> None:
        super().__init__(message)
        self.retry = retry

    @property
    def retriable(self) -> bool:
        """True when the same call, made again later, may succeed."""
        return self.retry is Retry.RETRIABLE

    def __str__(self) -> str:
        return f"{super().__str__()} ({self.retry.value})"
