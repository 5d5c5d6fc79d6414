"""Store Alertmanager notifications, start the playbooks they name, close them when resolved.

An alert no playbook takes on may open an ITIL incident instead (``incidents``),
resolved with it.

``receive`` runs in the caller's one write transaction: every alert of the
notification is stored, every run it starts is created, every signal sent and
every audit entry written before the receiver answers 2xx — or none of it, and
Alertmanager retries (it retries on 5xx only).

The order of locks is fixed so concurrent notifications never deadlock on
PostgreSQL: first the alert rows (insert-or-ignore, in dedupe-key order), then
the tenants they name (in id order), then runs and the audit head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import structlog
from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from tenantops.alerts import incidents
from tenantops.alerts.dispatch import RESOLVED_SIGNAL, TENANT_LABEL, Dispatch
from tenantops.alerts.models import Alert
from tenantops.alerts.schemas import (
    AlertmanagerAlert,
    AlertmanagerPayload,
    AlertStatus,
    ReceiveResult,
)
from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import AppError, Conflict, NotFound, Unprocessable
from tenantops.events import catalogue, outbox
from tenantops.finops import ledger
from tenantops.finops.ledger import LedgerKind
from tenantops.kit.clock import utcnow
from tenantops.kit.cursor import decode_cursor, encode_cursor
from tenantops.kit.ids import new_id
from tenantops.runbooks import engine
from tenantops.tenants import repository as tenant_rows
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantRead

log = structlog.get_logger("tenantops.alerts")

# Who starts and signals alert runs: the audit trail and the runs name it.
ALERTMANAGER = Principal(subject="system:alertmanager", via="system")

Hook = Callable[[Session, Alert], None]
_ALERTS = cast(Table, Alert.__table__)


def on_alert(session: Session, alert: Alert) -> None:
    """Called once for every newly stored alert (firing or resolved), in its transaction.

    The one seam for what else an alert records: an entry in the tenant's FinOps
    ledger and a ``tenant.alert.fired``/``resolved`` event. Whatever it raises
    rolls the whole notification back (Alertmanager retries).
    """
    if alert.tenant_id is None:
        return  # no tenant to book it to; the alert row and the audit entry keep it
    firing = alert.status == AlertStatus.FIRING.value
    event = catalogue.AlertNotified(
        tenant_id=alert.tenant_id,
        tenant_name=alert.tenant_label,
        actor=ALERTMANAGER.subject,
        alert_id=alert.id,
        alertname=alert.alertname,
        fingerprint=alert.fingerprint,
        status="firing" if firing else "resolved",
        severity=_text(alert.labels.get("severity")),
        summary=_text(alert.annotations.get("summary")),
        playbook=alert.playbook,
        run_id=alert.run_id,
        dispatch_error=alert.dispatch_error,
    )
    facts = event.model_dump(
        include={"alert_id", "alertname", "status", "severity", "summary", "playbook", "run_id"},
        exclude_none=True,
    )
    ledger.append(
        session,
        alert.tenant_id,
        LedgerKind.ALERT,
        actor=ALERTMANAGER,
        ref=alert.fingerprint,
        data=facts,
    )
    outbox.emit(session, catalogue.ALERT_FIRED if firing else catalogue.ALERT_RESOLVED, event)


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:500]


DEFAULT_HOOKS: tuple[Hook, ...] = (on_alert,)


def dedupe_key(group_key: str, alert: AlertmanagerAlert) -> str:
    """The identity of one delivery of one alert state; repeats and retries share it."""
    parts = (group_key, alert.fingerprint, alert.status.value, alert.starts_at.isoformat())
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@cache
def _insert_statement(dialect: str) -> ReturningInsert[tuple[str]]:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_ALERTS)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(_ALERTS.c.id)
    )


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> list[Alert]:
    """Insert the rows whose dedupe key is new; the stored ones, in dedupe-key order.

    An ``ON CONFLICT DO NOTHING`` rather than a lookup first: two replicas
    handling the same retry at once must not both store it. One statement for
    the whole notification, built once; ``RETURNING`` says which rows went in.
    """
    ids = list(session.execute(_insert_statement(session.get_bind().dialect.name), rows).scalars())
    if not ids:
        return []
    query = select(Alert).where(Alert.id.in_(ids)).order_by(Alert.dedupe_key)
    return list(session.scalars(query))


@dataclass
class _Outcome:
    runs_started: list[str]
    errors: list[str]


def _note(alert: Alert, text: str) -> None:
    alert.note = f"{alert.note}; {text}" if alert.note else text


def _alert_input(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "alertname": alert.alertname,
        "fingerprint": alert.fingerprint,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at.isoformat(),
        "value": alert.annotations.get("value"),
    }


def _open_run_of(session: Session, alert: Alert) -> str | None:
    """The still-open run an earlier firing of this alert started for this tenant and playbook."""
    earlier = session.execute(
        select(Alert.run_id)
        .where(
            Alert.fingerprint == alert.fingerprint,
            Alert.tenant_id == alert.tenant_id,
            Alert.playbook == alert.playbook,
            Alert.status == AlertStatus.FIRING.value,
            Alert.closed_at.is_(None),  # a resolved firing's run already has its signal
            Alert.run_id.is_not(None),
            Alert.id != alert.id,
        )
        .order_by(Alert.id.desc())
    ).scalars()
    for run_id in dict.fromkeys(earlier):
        if run_id is not None and engine.get_run(session, run_id).finished_at is None:
            return run_id
    return None


def _fire(
    session: Session, alert: Alert, tenant: Tenant | None, dispatch: Dispatch, out: _Outcome
) -> None:
    playbook = dispatch.playbook_for(alert.labels)
    if playbook is not None and len(playbook) > 200:
        alert.dispatch_error = f"no runbook named {playbook[:100]!r}… (over 200 characters)"
        out.errors.append(f"{alert.alertname} ({alert.fingerprint}): {alert.dispatch_error}")
        return
    alert.playbook = playbook
    if playbook is None:
        return
    if tenant is None:
        alert.dispatch_error = f"playbook {playbook!r} not started: the alert names no known tenant"
    else:
        running = _open_run_of(session, alert)
        if running is not None:
            alert.run_id = running
            _note(alert, f"run {running} of this alert is still open; no other started")
            return
        try:
            run = engine.start_run(
                session,
                loaded=dispatch.resolve(playbook),
                actor=ALERTMANAGER,
                tenant_id=tenant.id,
                inputs={
                    "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
                    "alert": _alert_input(alert),
                },
            )
        except (NotFound, Unprocessable) as exc:
            # Retrying would not fix it: recorded and shown, Alertmanager gets its 200.
            alert.dispatch_error = exc.detail
        else:
            alert.run_id = run.id
            out.runs_started.append(run.id)
    if alert.dispatch_error:
        out.errors.append(f"{alert.alertname} ({alert.fingerprint}): {alert.dispatch_error}")
        log.warning(
            "alert playbook not started",
            alert_id=alert.id,
            alertname=alert.alertname,
            playbook=playbook,
            error=alert.dispatch_error,
        )


def _open_incident(session: Session, alert: Alert, dispatch: Dispatch) -> None:
    priority = incidents.priority_for(
        alert.labels,
        severities=dispatch.incident_severities,
        has_playbook=alert.run_id is not None,
    )
    if priority is None:
        return
    try:
        with session.begin_nested():  # a refusal undoes the incident's rows only
            number = incidents.open_for(session, alert, priority=priority)
    except AppError as exc:
        # Recorded on the alert like a playbook that cannot start: Alertmanager gets its
        # 200, and the group's other alerts and playbooks are not held up by this one.
        _incident_refused(alert, f"incident not opened: {exc.detail}")
    else:
        _note(alert, f"incident {number} (priority {priority})")


def _resolve_incident(session: Session, alert: Alert) -> None:
    try:
        with session.begin_nested():
            resolved = incidents.resolve_for(session, alert)
    except AppError as exc:
        _incident_refused(alert, f"incident not resolved: {exc.detail}")
    else:
        if resolved:
            _note(alert, resolved)


def _incident_refused(alert: Alert, error: str) -> None:
    alert.dispatch_error = "; ".join(filter(None, [alert.dispatch_error, error]))
    log.warning("alert incident refused", alert_id=alert.id, alertname=alert.alertname, error=error)


def _resolve(session: Session, alert: Alert) -> None:
    """Close the firing rows of this fingerprint and tell their open runs."""
    firing = session.execute(
        select(Alert)
        .where(
            Alert.fingerprint == alert.fingerprint,
            Alert.status == AlertStatus.FIRING.value,
            Alert.closed_at.is_(None),
        )
        .order_by(Alert.id)
    ).scalars()
    closed = 0
    run_ids: list[str] = []
    for row in firing:
        row.closed_at = alert.received_at
        closed += 1
        if row.run_id is not None and row.run_id not in run_ids:
            run_ids.append(row.run_id)
    _note(alert, f"closed {closed} firing alert(s)" if closed else "no open firing alert")
    for run_id in run_ids:
        alert.run_id = run_id
        _note(alert, _signal(session, alert, run_id))


def _signal(session: Session, alert: Alert, run_id: str) -> str:
    run = engine.get_run(session, run_id)
    if run.finished_at is not None:
        return f"run {run_id} already {run.status}"
    gates = [
        s.name
        for s in engine.spec_of(run).steps
        if s.gate is not None and s.gate.signal == RESOLVED_SIGNAL
    ]
    if not gates:
        return f"run {run_id} has no {RESOLVED_SIGNAL} gate; resolution recorded only"
    sent, refused = [], []
    for step in gates:
        try:
            engine.signal(
                session,
                run_id=run_id,
                step_name=step,
                decision="approve",
                principal=ALERTMANAGER,
                comment=f"alert {alert.alertname} resolved",
            )
            sent.append(step)
        except Conflict as exc:
            refused.append(f"{step}: {exc.detail}")
    note = f"{RESOLVED_SIGNAL} sent to run {run_id} ({', '.join(sent)})" if sent else ""
    return "; ".join(filter(None, [note, *(f"run {run_id} {r}" for r in refused)]))


def receive(
    session: Session,
    *,
    payload: AlertmanagerPayload,
    dispatch: Dispatch,
    hooks: Sequence[Hook] = DEFAULT_HOOKS,
) -> ReceiveResult:
    """Store a notification's new alerts, start or signal their runs, audit it: one transaction.

    A duplicate (same group key, fingerprint, status and start) changes
    nothing. An unknown tenant or runbook is recorded on the alert, not raised.
    """
    now = utcnow()
    # Sorted, so concurrent notifications take the unique-index locks in one order.
    keyed = sorted({dedupe_key(payload.group_key, a): a for a in payload.alerts}.items())
    rows = [
        {
            "id": new_id(),
            "dedupe_key": key,
            "group_key": payload.group_key,
            "receiver": payload.receiver,
            "fingerprint": item.fingerprint,
            "status": item.status.value,
            "alertname": item.labels["alertname"][:200],
            "tenant_id": None,
            "tenant_label": (item.labels.get(TENANT_LABEL) or "")[:200] or None,
            "labels": item.labels,
            "annotations": item.annotations,
            "starts_at": item.starts_at,
            "ends_at": item.ends_at,
            "generator_url": item.generator_url,
            "received_at": now,
        }
        for key, item in keyed
    ]
    stored = _insert_new(session, rows)

    tenants = _tenants(session, stored, dispatch)
    out = _Outcome(runs_started=[], errors=[])
    for alert in stored:
        tenant = tenants.get(alert.tenant_label) if alert.tenant_label else None
        if tenant is not None:
            alert.tenant_id = tenant.id
        elif alert.tenant_label:
            _note(alert, f"unknown tenant {alert.tenant_label[:100]!r}")
        else:
            _note(alert, f"no {TENANT_LABEL!r} label")
        if alert.status == AlertStatus.FIRING.value:
            _fire(session, alert, tenant, dispatch, out)
            _open_incident(session, alert, dispatch)
        else:
            _resolve(session, alert)
            _resolve_incident(session, alert)
    session.flush()
    audit.record_many(
        session,
        [
            audit.NewEntry(
                actor=ALERTMANAGER,
                action=f"alert.{alert.status}",
                tenant_id=alert.tenant_id,
                changes={},
                detail={
                    "alert_id": alert.id,
                    "alertname": alert.alertname,
                    "fingerprint": alert.fingerprint,
                    "group_key": alert.group_key,
                    "playbook": alert.playbook,
                    "run_id": alert.run_id,
                    "note": alert.note,
                    "dispatch_error": alert.dispatch_error,
                },
            )
            for alert in stored
        ],
    )
    for alert in stored:
        for hook in hooks:
            hook(session, alert)
    log.info(
        "alertmanager notification",
        receiver=payload.receiver,
        status=payload.status.value,
        received=len(payload.alerts),
        stored=len(stored),
        runs_started=len(out.runs_started),
    )
    return ReceiveResult(
        received=len(payload.alerts),
        stored=len(stored),
        duplicates=len(payload.alerts) - len(stored),
        runs_started=out.runs_started,
        dispatch_errors=out.errors,
    )


def _tenants(session: Session, alerts: Sequence[Alert], dispatch: Dispatch) -> dict[str, Tenant]:
    """The tenants named by label (name or id); unknown ones are left out.

    Those a firing alert may start a playbook for are locked, in id order: the
    lock serialises dispatch per tenant across replicas, so two notifications
    cannot both decide that no run is open. SQLite needs no lock: its write
    transactions are already one at a time.
    """
    refs = {a.tenant_label for a in alerts if a.tenant_label}
    found = {ref: t for ref in refs if (t := tenant_rows.get(session, ref)) is not None}
    if session.get_bind().dialect.name == "sqlite":
        return found
    dispatching = {
        found[a.tenant_label].id
        for a in alerts
        if a.tenant_label in found
        and a.status == AlertStatus.FIRING.value
        and dispatch.playbook_for(a.labels) is not None
    }
    for tenant_id in sorted(dispatching):
        tenant_rows.get(session, tenant_id, for_update=True)
    return found


def already_received(session: Session, payload: AlertmanagerPayload) -> ReceiveResult | None:
    """The answer to a notification whose every alert is stored already, else ``None``.

    Read-only, so Alertmanager's repeats and retries cost no write transaction.
    A miss proves nothing (a copy may be committing right now): ``receive``
    still inserts-or-ignores.
    """
    keys = {dedupe_key(payload.group_key, a) for a in payload.alerts}
    found = session.scalar(
        select(func.count()).select_from(_ALERTS).where(_ALERTS.c.dedupe_key.in_(keys))
    )
    if found != len(keys):
        return None
    received = len(payload.alerts)
    return ReceiveResult(
        received=received, stored=0, duplicates=received, runs_started=[], dispatch_errors=[]
    )


def list_alerts(
    session: Session,
    *,
    status: AlertStatus | None = None,
    tenant: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Alert], str | None]:
    """Stored alerts newest first; ``tenant``: an id, a name, or an unknown tenant's label."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Alert.status == status.value)
    if tenant is not None:
        known = tenant_rows.get(session, tenant)
        query = query.where(
            Alert.tenant_id == known.id if known is not None else Alert.tenant_label == tenant
        )
    if after is not None:
        query = query.where(Alert.id < decode_cursor(after))
    rows = list(session.execute(query).scalars())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].id)
    return rows, None
