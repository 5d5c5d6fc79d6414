"""API shapes of runs, their steps and the runbook library."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
RunStatus = Literal["running", "waiting", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "ready", "running", "waiting", "succeeded", "failed", "cancelled"]


class SlaStatus(BaseModel):
    """An SLA clock: its deadline, whether and when it was breached, time left."""

    deadline: datetime
    breached: bool = Field(
        description="The deadline passed before the run or step finished (recorded or not yet)"
    )
    breached_at: datetime | None = Field(description="When the engine recorded the breach")
    remaining_seconds: float | None = Field(
        description="Seconds until the deadline (negative once passed); null when finished"
    )


class AttemptRead(BaseModel):
    """One try of a step by one worker."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    worker: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None


class GateInfo(BaseModel):
    """Who may decide a gate step."""

    roles: list[str]
    prompt: str | None = None
    signal: str | None = None


class StepRead(BaseModel):
    """A step of a run: what it did, with what, how often, and its evidence."""

    name: str
    title: str | None
    position: int
    kind: Literal["action", "gate", "wait"]
    action: str | None
    gate: GateInfo | None
    window: str | None = Field(
        default=None,
        description="The maintenance window the step may only start in (it waits until "
        "wake_at when due outside it)",
    )
    status: StepStatus
    attempt: int = Field(description="Tries started so far")
    failures: int = Field(description="Failed tries since the step was last (re)started")
    tries: int = Field(
        description="Tries since the step was last (re)started: its failures plus the try "
        "running or that ended it; at most max_attempts, while attempt counts every round"
    )
    max_attempts: int
    wake_at: datetime | None = Field(
        description="When a ready step becomes due (retry, timer, maintenance window)"
    )
    lease_owner: str | None
    lease_expires_at: datetime | None
    idempotency_key: str
    inputs: dict[str, Any] | None = Field(description="The rendered params it ran with")
    output: dict[str, Any] | None
    evidence: dict[str, Any] | None
    error: str | None
    decided_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    sla: SlaStatus | None
    attempts: list[AttemptRead]


class RunSummary(BaseModel):
    """A run as lists show it."""

    id: str
    runbook_id: str
    runbook_version: str
    runbook_hash: str
    tenant_id: str | None
    tenant_name: str | None
    status: RunStatus
    started_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: str | None
    closed_at: datetime | None = Field(
        None, description="When a failed run was closed: it stays failed and is not retried"
    )
    closed_reason: str | None = None
    current_step: str | None = Field(description="The first step not yet finished")
    steps_done: int
    steps_total: int
    sla: SlaStatus | None


class RunRead(RunSummary):
    """A run with its inputs and every step."""

    inputs: dict[str, Any]
    steps: list[StepRead]
    retriable: bool = Field(
        False,
        description="Failed, not closed and not ended by a rejected gate: runs retry takes it",
    )


class RunPage(BaseModel):
    """One page of runs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[RunSummary]
    next_cursor: str | None


class GateDecisionCreate(BaseModel):
    """A decision on an approval gate of a run."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: Text | None = None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


class RunbookSummary(BaseModel):
    """A runbook of the library."""

    id: str
    version: str
    title: str
    kind: str
    description: str | None
    tenant: bool
    hash: str
    source: str
    steps: int


class RunbookRead(RunbookSummary):
    """A runbook with its whole validated document."""

    document: dict[str, Any]


WindowDay = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]


class WindowWrite(BaseModel):
    """A weekly maintenance window: opens on ``days`` at ``start``, closes at ``end``.

    An ``end`` at or before ``start`` closes the next day (overnight); equal is a whole day.
    """

    model_config = ConfigDict(extra="forbid")

    days: list[WindowDay] = Field(min_length=1, examples=[["sat", "sun"]])
    start: ClockTime = Field(description="Local opening time, HH:MM", examples=["02:00"])
    end: ClockTime = Field(description="Local closing time, HH:MM", examples=["06:00"])
    timezone: str = Field(
        min_length=1, max_length=64, description="IANA time zone", examples=["Europe/Berlin"]
    )
    description: str | None = Field(default=None, max_length=2000)


class WindowRead(BaseModel):
    """A maintenance window, whether it is open now and when it next opens."""

    name: str
    days: list[str]
    start: str
    end: str
    timezone: str
    description: str | None
    open_now: bool
    next_start: datetime | None = Field(
        description="Now if open, else the next opening (UTC); null if it cannot be read here"
    )
    error: str | None = Field(
        default=None, description="Why this server cannot read the window (e.g. its time zone)"
    )
    updated_at: datetime
    updated_by: str
