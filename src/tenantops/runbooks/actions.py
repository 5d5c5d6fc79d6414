"""What a step may call: actions, their context, results and errors; and gate checks.

An action has two halves. ``run`` does the side effect through a driver,
outside any database transaction; it must be idempotent for the step's
``idempotency_key``, because a step whose worker died is run again. ``apply``
(optional) records what the step means in the control plane — a lifecycle
transition, a ledger entry — inside the same transaction that marks the step
complete, so that happens exactly once.

A gate check (``gate: {check: <name>}``) is asked, before a person's approval
of that gate is written, whether the decision (its comment) can be accepted;
it raises an ``AppError`` naming what is wrong, and then nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from tenantops.auth.principal import Principal
    from tenantops.runbooks.models import Run


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may know about the step it runs."""

    run_id: str
    step_name: str
    tenant_id: str | None
    params: dict[str, Any]
    idempotency_key: str
    attempt: int
    actor: str
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What a step produced: ``output`` feeds later steps, ``evidence`` is kept for auditors."""

    output: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)


def skipped(reason: str) -> StepResult:
    """A step whose system this installation does not have: done, and saying why."""
    result = {"skipped": True, "reason": reason}
    return StepResult(output=result, evidence=result)


class StepFailed(Exception):
    """An action failed. ``retriable`` says whether trying again can help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class Action(Protocol):
    def run(self, ctx: ActionContext) -> StepResult: ...


class ApplyingAction(Action, Protocol):
    def apply(self, session: Session, ctx: ActionContext, result: StepResult) -> None: ...


@dataclass(frozen=True)
class FunctionAction:
    """An action made of plain functions."""

    run_fn: Callable[[ActionContext], StepResult]
    apply_fn: Callable[[Session, ActionContext, StepResult], None] | None = None

    def run(self, ctx: ActionContext) -> StepResult:
        return self.run_fn(ctx)

    def apply(self, session: Session, ctx: ActionContext, result: StepResult) -> None:
        if self.apply_fn is not None:
            self.apply_fn(session, ctx, result)


Registry = dict[str, Action]


class GateCheck(Protocol):
    """Whether a person's approval of a gate may be accepted as given.

    Called by ``engine.signal`` before anything is written, in its transaction
    (the run locked): it reads, never writes, and raises an ``AppError`` (most
    often ``Unprocessable``) whose detail names what to correct, or returns None.
    ``principal`` is who approves (a check may need more than the gate's role).
    """

    def __call__(
        self,
        session: Session,
        *,
        run: Run,
        step_name: str,
        decision: str,
        comment: str | None,
        principal: Principal,
    ) -> None: ...


GateChecks = Mapping[str, GateCheck]


def builtin_actions() -> Registry:
    """Actions with no driver: ``noop`` and ``fail`` (for tests and dry runs)."""

    def noop(ctx: ActionContext) -> StepResult:
        return StepResult(output={"echo": ctx.params})

    def fail(ctx: ActionContext) -> StepResult:
        raise StepFailed(
            str(ctx.params.get("message", "failed on purpose")),
            retriable=bool(ctx.params.get("retriable", True)),
        )

    return {"noop": FunctionAction(noop), "fail": FunctionAction(fail)}
