"""Runbook actions of secrets rotation, and the daily check's chain of runs.

``secret-rotation-check`` runs once a day (a run per day; each run starts the
next one, as the monthly cost report does): it refreshes the inventory from
every tenant's store, announces what became due, tells the owners, waits until
the next day's check is due and starts it.

``secrets.*`` actions reach the secret store through its port (documented with
the Vault integration); ``rotation.*`` ones work on the inventory only.

- ``secrets.refresh``: reads every tenant's store through the port (outside the
  step's transaction, one small write per tenant: a re-run converges);
  output ``tenants, stores, paths, failed``. A tenant whose store cannot be read
  is named in the evidence (``failures``) and logged, and the others are
  refreshed: one broken store must not stop the check, nor the daily chain, for
  every tenant. Its entries keep their last refresh (``refreshed_at``) until the
  next day's check. Only when no tenant's store could be read (the backend is
  down or refuses us) does the step fail, retriable if any error was.
- ``rotation.check_due``: announces (``secret.rotation.due``/``.overdue``) each
  secret that became due soon or overdue since it was last announced; output
  ``due_soon, overdue, announced``.
- ``rotation.notify_due``: tells the owner (an address or channel registered as
  ``owner``, else the tenant's business owner) and security of each
  announcement not yet notified; the notifier's idempotency key names the
  announcement, so a re-run sends nothing twice. Output ``notified, messages``.
- ``rotation.next_day`` / ``rotation.schedule_next`` (params ``day``): the next
  check's day (the day after, or today if the chain fell behind), the wait until
  it is due (``CHECK_HOUR`` UTC), and its run.
- ``secrets.rotate`` (params ``path``, ``evidence``; a run against a tenant):
  records a new generation of the secret in the store (``SecretStore.rotate``)
  and the rotation in the inventory, audited and announced.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.drivers.errors import DriverError
from tenantops.drivers.notify.routing import is_recipient
from tenantops.drivers.secrets.port import SecretStore, state_from_record
from tenantops.errors import AppError
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks import chains
from tenantops.runbooks.actions import (
    Action,
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.runbooks.models import Run
from tenantops.secrets import service
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantRead

if TYPE_CHECKING:
    from tenantops.config import Settings

log = structlog.get_logger("tenantops.secrets")

CHECK_RUNBOOK = "secret-rotation-check"
CHECK_HOUR = 6
TEMPLATE = "secret_rotation"
SCHEDULER = Principal(
    subject="system:secrets-scheduler", roles=frozenset({Role.ADMIN}), via="system"
)
_READER = Principal(subject="system:secrets-check", roles=frozenset({Role.ADMIN}), via="system")
_PAGE = 200
_NAMED_AT_MOST = 50  # failures named in a step's evidence
# The first stores failing in a row, none read: the backend as a whole is unreachable,
# and reading every other tenant's (a timeout each) would only delay the retry.
_UNREACHABLE_AFTER = 5


def due_at(day: date) -> datetime:
    """When the check of ``day`` is due: ``CHECK_HOUR`` UTC that day."""
    return datetime.combine(day, time(CHECK_HOUR), tzinfo=UTC)


def _day(ctx: ActionContext) -> date:
    text = ctx.params.get("day")
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise StepFailed(
            f"{ctx.step_name}: param 'day' must be a date, YYYY-MM-DD (got {text!r})",
            retriable=False,
        ) from None


def open_check_runs(session: Session) -> list[Run]:
    """The unfinished runs of the daily check, oldest first."""
    return chains.open_chain_runs(session, CHECK_RUNBOOK)


def schedule_day(session: Session, day: date, *, actor: Principal) -> tuple[Run, bool]:
    """The check run of ``day``: the live one, or a new one (True) if none exists."""
    return chains.start_once(
        session, runbook_id=CHECK_RUNBOOK, key="day", value=day.isoformat(), actor=actor
    )


def _tenants(db: Database) -> list[TenantRead]:
    """Every tenant that may hold a store (not the rejected requests), read page by page."""
    found: list[TenantRead] = []
    cursor: str | None = None
    while True:
        with db.read() as session:
            rows, cursor = tenants.list_tenants(
                session,
                principal=_READER,
                filters=tenants.TenantFilter(),
                cursor=cursor,
                limit=_PAGE,
            )
            found.extend(TenantRead.model_validate(t) for t in rows if t.state != "rejected")
        if cursor is None:
            return found


def secret_actions(
    settings: Settings, db: Database, *, store: SecretStore, send: Action
) -> Registry:
    """The secrets-rotation actions, bound to the secret store and ``notify.send``."""

    def refresh(ctx: ActionContext) -> StepResult:
        counts = {"tenants": 0, "stores": 0, "paths": 0, "failed": 0}
        failures: list[str] = []
        retriable = False
        for tenant in _tenants(db):
            try:
                state = store.get_store(tenant_id=tenant.id)
            except DriverError as exc:
                # One tenant's broken store must not keep every other tenant's secrets
                # unchecked, nor stop the daily chain: named, and read again tomorrow.
                log.warning(
                    "secret store not read; its inventory is left as it was",
                    run_id=ctx.run_id,
                    tenant=tenant.name,
                    retry=exc.retry.value,
                    error=str(exc),
                )
                failures.append(f"{tenant.name}: {exc}")
                retriable = retriable or exc.retriable
                if counts["tenants"] == 0 and len(failures) >= _UNREACHABLE_AFTER:
                    break
                continue
            with db.write() as session:
                paths = service.refresh_tenant(
                    session, tenant_id=tenant.id, tenant_name=tenant.name, state=state
                )
            counts["tenants"] += 1
            counts["stores"] += state is not None
            counts["paths"] += paths
        counts["failed"] = len(failures)
        if failures and counts["tenants"] == 0:
            # Not one store could be read: the backend is down or refuses us. Failing lets
            # the engine retry; after its retries the run fails, visibly, and the chain
            # stops until someone looks (`tenantops secrets schedule` starts it again).
            raise StepFailed(
                f"{ctx.step_name}: no tenant's secret store could be read, the secret "
                f"store looks unreachable ({len(failures)} tried): {failures[0]}",
                retriable=retriable,
            )
        evidence: dict[str, Any] = {**counts, "failures": failures[:_NAMED_AT_MOST]}
        return StepResult(output=dict(counts), evidence=evidence)

    def check_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        summary = service.check_due(session, actor=ctx.actor)
        figures = {
            "due_soon": summary.due_soon,
            "overdue": summary.overdue,
            "announced": summary.announced,
        }
        result.output.update(figures)
        result.evidence.update(figures)

    def notify(ctx: ActionContext) -> StepResult:
        with db.read() as session:
            pending = [
                (row.tenant_id, row.path, row.announced, service.as_dict(row))
                for row in service.pending_notices(session)
            ]
        messages = 0
        undeliverable: list[str] = []
        snapshots: dict[str, dict[str, Any]] = {}
        for tenant_id, path, notice, entry in pending:
            assert notice is not None
            if tenant_id not in snapshots:
                snapshots[tenant_id] = _snapshot(tenant_id)
            for to in _audiences(entry["owner"]):
                try:
                    _send(ctx, to, notice, entry, snapshots[tenant_id])
                except StepFailed as exc:
                    if exc.retriable:
                        raise  # the engine retries the step; sent messages are not sent again
                    # One owner nobody can reach must not stop the notices of every other
                    # secret, nor the daily chain: the evidence names it.
                    undeliverable.append(f"{entry['tenant_name']} {path} to {to}: {exc}")
                    continue
                messages += 1
            with db.write() as session:
                service.mark_notified(session, tenant_id=tenant_id, path=path, notice=notice)
        figures = {"notified": len(pending), "messages": messages}
        evidence = {**figures, "undeliverable": undeliverable[:50]}
        return StepResult(output=dict(figures), evidence=evidence)

    def _snapshot(tenant_id: str) -> dict[str, Any]:
        with db.read() as session:
            tenant = tenants.get_tenant(session, principal=_READER, ref=tenant_id)
            return TenantRead.model_validate(tenant).model_dump(mode="json")

    def _audiences(owner: str | None) -> list[str]:
        audiences = [owner if owner and is_recipient(owner) else "tenant_owner"]
        if settings.notify.security:
            audiences.append("security")
        return audiences

    def _send(
        ctx: ActionContext, to: str, notice: str, entry: dict[str, Any], tenant: dict[str, Any]
    ) -> None:
        audience = to if to in ("tenant_owner", "security") else "owner"
        send.run(
            ActionContext(
                run_id=ctx.run_id,
                step_name=ctx.step_name,
                tenant_id=entry["tenant_id"],
                params={
                    "template": TEMPLATE,
                    "to": to,
                    "vars": {
                        "path": entry["path"],
                        "status": entry["status"].value,
                        "owner": entry["owner"],
                        "purpose": entry["purpose"],
                        "rotation_days": entry["rotation_days"],
                        "last_rotated_at": entry["last_rotated_at"].isoformat(),
                        "due_at": entry["next_due_at"].isoformat(),
                    },
                },
                # One message per announcement and audience, whatever re-runs the step.
                idempotency_key=(
                    f"secret-rotation/{entry['tenant_id']}/{entry['path']}/{notice}/{audience}"
                ),
                attempt=ctx.attempt,
                actor=ctx.actor,
                inputs={"tenant": tenant},
            )
        )

    def next_day(ctx: ActionContext) -> StepResult:
        # After an outage the chain resumes today: a missed day's check would find
        # nothing today's does not.
        following = max(_day(ctx) + timedelta(days=1), utcnow().date())
        due = due_at(following)
        wait = max(0, int((due - utcnow()).total_seconds()))
        return StepResult(
            output={"day": following.isoformat(), "due": due.isoformat(), "wait": f"{wait}s"},
            evidence={"day": following.isoformat(), "due": due.isoformat()},
        )

    def echo_day(ctx: ActionContext) -> StepResult:
        return StepResult(output={"day": _day(ctx).isoformat()})

    def schedule_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        # A run that waited past its day (the worker was down) starts today's check.
        run, started = schedule_day(session, max(_day(ctx), utcnow().date()), actor=SCHEDULER)
        result.output.update({"run_id": run.id, "started": started})
        result.evidence.update({"run_id": run.id, "started": started})

    def rotate(ctx: ActionContext) -> StepResult:
        path = str(ctx.params.get("path") or "").strip("/")
        if ctx.tenant_id is None or not path:
            raise StepFailed(
                f"{ctx.step_name}: secrets.rotate needs a run against a tenant and a 'path'",
                retriable=False,
            )
        try:
            state = store.rotate(
                tenant_id=ctx.tenant_id, path=path, idempotency_key=ctx.idempotency_key
            )
        except DriverError as exc:
            raise StepFailed(str(exc), retriable=exc.retriable) from exc
        ref = next(p for p in state.paths if p.path == state.prefix + path)
        rotated_at = as_utc(ref.rotated_at or utcnow()).isoformat()
        figures = {"path": path, "version": ref.version, "rotated_at": rotated_at}
        return StepResult(output={**figures, "store": state.as_dict()}, evidence=figures)

    def rotate_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        state = state_from_record(result.output["store"])
        service.refresh_tenant(
            session, tenant_id=state.tenant_id, tenant_name=state.tenant_name, state=state
        )
        evidence = str(ctx.params.get("evidence") or f"runbook run {ctx.run_id}")
        try:
            service.record_rotation(
                session,
                # The inventory names whoever ran the runbook; the engine only carried it out.
                principal=Principal(
                    subject=ctx.actor, roles=frozenset({Role.ADMIN}), via="runbook"
                ),
                tenant_ref=state.tenant_id,
                path=result.output["path"],
                evidence=evidence[:500],
                rotated_at=datetime.fromisoformat(result.output["rotated_at"]),
                version=int(result.output["version"]),
            )
        except AppError as exc:
            raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None

    return {
        "secrets.refresh": FunctionAction(refresh),
        "rotation.check_due": FunctionAction(_nothing, check_apply),
        "rotation.notify_due": FunctionAction(notify),
        "rotation.next_day": FunctionAction(next_day),
        "rotation.schedule_next": FunctionAction(echo_day, schedule_apply),
        "secrets.rotate": FunctionAction(rotate, rotate_apply),
    }


def _nothing(ctx: ActionContext) -> StepResult:
    """The check's work is all in its transaction (``apply``)."""
    return StepResult()
