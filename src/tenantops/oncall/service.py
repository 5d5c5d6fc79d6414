"""On-call: the applied configuration, who is on call, and pages from trigger to resolve.

A page is opened by ``trigger`` (idempotent per ``key``) in the caller's
transaction, so an incident record and its page are written together; the
escalator (``oncall.escalator``) tells its levels on its next sweep, seconds
later. The policy is chosen at trigger (the document's routes over the tenant's
tier, compliance classification, region and the severity) and the document's
version is pinned on the page: applying a new document changes no open page.

Escalation state on the row: ``level``/``round`` name the step told last
(``level`` -1: nobody told yet), ``next_at`` when the next step is due. Every
status change writes a ``PageEvent``, an audit entry and an event on the outbox.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.drivers.notify.settings import SCHEMES
from tenantops.errors import NotFound, Unprocessable
from tenantops.events import catalogue, outbox
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.cursor import decode_cursor, page
from tenantops.kit.ids import new_id
from tenantops.kit.locks import serialise
from tenantops.oncall import repository
from tenantops.oncall.document import (
    SEVERITIES,
    YEARS,
    OncallDocument,
    default_document,
    validate,
)
from tenantops.oncall.models import OncallConfig, Page, PageEvent
from tenantops.oncall.rotations import shift_at
from tenantops.oncall.schemas import (
    ConfigApplied,
    ConfigRead,
    OnCallNow,
    PageDetail,
    PageEventRead,
    PageList,
    PageRead,
    ShiftRead,
)
from tenantops.tenants import service as tenants

TRIGGERED, ACKNOWLEDGED, RESOLVED = "triggered", "acknowledged", "resolved"
STATUSES = (TRIGGERED, ACKNOWLEDGED, RESOLVED)
NOT_YET = -1  # ``level`` of a page nobody was told of yet
ESCALATOR = Principal(subject="system:oncall", via="system")
_CONFIG_LOCK = "oncall-config"

_EVENTS = {
    "triggered": catalogue.PAGE_TRIGGERED,
    "notified": catalogue.PAGE_ESCALATED,
    "escalated": catalogue.PAGE_ESCALATED,
    "acknowledged": catalogue.PAGE_ACKNOWLEDGED,
    "resolved": catalogue.PAGE_RESOLVED,
    "exhausted": catalogue.PAGE_EXHAUSTED,
}


# The configuration ---------------------------------------------------------------------


def _config_read(row: OncallConfig | None) -> ConfigRead:
    if row is None:
        doc = default_document()
        return ConfigRead(
            version=None,
            digest=doc.digest(),
            applied_by=None,
            applied_at=None,
            document=doc.as_json(),
        )
    return ConfigRead(
        version=row.version,
        digest=row.digest,
        applied_by=row.applied_by,
        applied_at=as_utc(row.applied_at),
        document=row.document,
    )


def current_config(session: Session) -> ConfigRead:
    """The document in force: the latest applied, else the built-in default (version null)."""
    return _config_read(repository.latest_config(session))


def document_of(session: Session, version: int | None) -> OncallDocument:
    """The document of ``version`` (a page's pinned one); None: the built-in default."""
    if version is None:
        return default_document()
    row = repository.config_version(session, version)
    if row is None:  # pragma: no cover - versions are never deleted
        raise NotFound(f"no on-call configuration version {version}")
    return OncallDocument.model_validate(row.document)


def _in_force(session: Session) -> tuple[int | None, OncallDocument]:
    row = repository.latest_config(session)
    if row is None:
        return None, default_document()
    return row.version, OncallDocument.model_validate(row.document)


def apply_config(
    session: Session,
    document: OncallDocument | Mapping[str, Any],
    actor: Principal,
    *,
    channels: Collection[str] | None = None,
) -> ConfigApplied:
    """Validate and apply an on-call document (audited); a new version only if it changed.

    Applying the document in force again is a no-op (``changed`` false), so a
    GitOps job may apply the same file every few minutes. With ``channels``
    (the ``<scheme>:<name>`` this server is configured to deliver to), a
    recipient naming any other channel is a warning: the document is still
    applied (another replica, or a later setting, may serve it), but a page to
    it would reach no one.
    """
    doc = document if isinstance(document, OncallDocument) else validate(dict(document))
    warnings = [] if channels is None else _unreachable(doc, channels)
    serialise(session, _CONFIG_LOCK)
    latest = repository.latest_config(session)
    digest = doc.digest()
    if latest is not None and latest.digest == digest:
        read = _config_read(latest).model_dump()
        return ConfigApplied(**read, changed=False, warnings=warnings)
    row = OncallConfig(
        version=repository.next_config_version(session),
        document=doc.as_json(),
        digest=digest,
        applied_by=actor.subject,
        applied_at=utcnow(),
    )
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="oncall.config.applied",
        tenant_id=None,
        changes={"digest": {"before": None if latest is None else latest.digest, "after": digest}},
        detail={
            "version": row.version,
            "rotations": sorted(doc.rotations),
            "policies": sorted(doc.policies),
        },
    )
    return ConfigApplied(**_config_read(row).model_dump(), changed=True, warnings=warnings)


def _unreachable(doc: OncallDocument, channels: Collection[str]) -> list[str]:
    """A sentence per recipient that names a channel scheme this server has no such channel of."""
    warnings = []
    for recipient in doc.recipients():
        scheme, _, name = recipient.partition(":")
        if scheme in SCHEMES and recipient not in channels:
            warnings.append(
                f"{recipient}: no {scheme} channel {name!r} is configured here"
                f" (TENANTOPS_CHANNELS__…); pages to it stay in the notification outbox"
            )
    return warnings


def on_call_at(session: Session, at: datetime | None = None) -> OnCallNow:
    """Who is on call at ``at`` (default now) in each rotation of the document in force."""
    when = as_utc(at) if at is not None else utcnow()
    if when.year not in YEARS:
        raise Unprocessable(f"'at' must be in the years {YEARS[0]}-{YEARS[-1]}", param="at")
    version, doc = _in_force(session)
    shifts = [
        ShiftRead(**vars(shift_at(rotation.spec(name), when)))
        for name, rotation in sorted(doc.rotations.items())
    ]
    return OnCallNow(at=when, config_version=version, shifts=shifts)


# Pages -------------------------------------------------------------------------------


def levels_of(session: Session, row: Page) -> int:
    policy = document_of(session, row.config_version).policies.get(row.policy)
    return 0 if policy is None else len(policy.levels)


def page_read(session: Session, row: Page, tenant_name: str | None = None) -> PageRead:
    """The API's view of a page."""
    if tenant_name is None and row.tenant_id is not None:
        tenant_name = tenants.names_of(session, [row.tenant_id]).get(row.tenant_id)
    return PageRead(
        id=row.id,
        key=row.key,
        tenant_id=row.tenant_id,
        tenant_name=tenant_name,
        record_id=row.record_id,
        summary=row.summary,
        severity=row.severity,
        policy=row.policy,
        config_version=row.config_version,
        level=None if row.level == NOT_YET else row.level + 1,
        levels=levels_of(session, row),
        round=row.round,
        status=row.status,
        exhausted=row.status == TRIGGERED and row.next_at is None,
        next_at=None if row.next_at is None else as_utc(row.next_at),
        triggered_at=as_utc(row.triggered_at),
        acknowledged_at=None if row.acknowledged_at is None else as_utc(row.acknowledged_at),
        acknowledged_by=row.acknowledged_by,
        resolved_at=None if row.resolved_at is None else as_utc(row.resolved_at),
        resolved_by=row.resolved_by,
        updated_at=as_utc(row.updated_at),
        version=row.version,
    )


def record_change(
    session: Session,
    row: Page,
    *,
    event: str,
    actor: Principal,
    level: int | None = None,
    targets: Sequence[str] = (),
    detail: str | None = None,
    changes: dict[str, Any] | None = None,
) -> None:
    """One step of a page's life: its timeline entry, audit entry and outbox event.

    ``event`` is a timeline name (triggered, notified, escalated, acknowledged,
    resolved, exhausted, notify_failed); the last has no outbox event.
    """
    now = utcnow()
    session.add(
        PageEvent(
            page_id=row.id,
            at=now,
            event=event,
            level=level,
            targets=list(targets),
            actor=actor.subject,
            detail=detail,
        )
    )
    kind = _EVENTS.get(event)
    if kind is None:
        session.flush()
        return
    audit.record(
        session,
        actor=actor,
        action=f"oncall.page.{event}",
        tenant_id=row.tenant_id,
        changes=changes or {},
        detail={"page_id": row.id, "key": row.key, "level": level, "targets": list(targets)}
        | ({"detail": detail} if detail else {}),
    )
    names = tenants.names_of(session, [row.tenant_id]) if row.tenant_id else {}
    outbox.emit(
        session,
        kind,
        catalogue.PageChanged(
            tenant_id=row.tenant_id,
            tenant_name=names.get(row.tenant_id) if row.tenant_id else None,
            actor=actor.subject,
            page_id=row.id,
            key=row.key,
            summary=row.summary,
            severity=row.severity,
            policy=row.policy,
            status=row.status,
            level=None if row.level == NOT_YET else row.level + 1,
            round=row.round,
            exhausted=row.status == TRIGGERED and row.next_at is None,
            targets=list(targets),
            record_id=row.record_id,
        ),
    )


MANUAL = "manual:"  # the keys of pages raised by hand (API, CLI)


def manual_key(key: str | None) -> str:
    """The key of a page raised by hand: always under ``manual:`` (a new one if none),
    so nobody can take a key the platform opens pages under (``itil:<record>``,
    ``sla:<run>/<step>``, ``run:<id>:failed``) before the real page is opened."""
    if key is None:
        return f"{MANUAL}{new_id()}"
    key = key.strip()
    return key if key.startswith(MANUAL) else f"{MANUAL}{key}"


def page_for_key(session: Session, key: str) -> PageRead | None:
    """The page opened under ``key`` (e.g. ``itil:<record id>``), whatever its status."""
    row = repository.by_key(session, key)
    return None if row is None else page_read(session, row)


def _check_key(key: str) -> str:
    key = key.strip()
    if not 1 <= len(key) <= 200:
        raise Unprocessable("a page key is 1 to 200 characters", param="key")
    return key


def trigger(
    session: Session,
    *,
    key: str,
    summary: str,
    severity: str,
    actor: Principal,
    tenant_id: str | None = None,
    record_id: str | None = None,
) -> PageRead:
    """Page on-call about ``key`` (e.g. "itil:<record id>"); idempotent: the page this key
    already has (any status) is returned unchanged. The first notification goes out on
    the escalator's next sweep (seconds), not inside this call.

    ``tenant_id`` may be the tenant's id or name (one the actor may see).
    """
    key = _check_key(key)
    if severity not in SEVERITIES:
        raise Unprocessable(f"severity must be one of {', '.join(SEVERITIES)}", param="severity")
    summary = " ".join(summary.split())
    if not 1 <= len(summary) <= 500:
        raise Unprocessable("a page's summary is 1 to 500 characters", param="summary")
    serialise(session, f"oncall-page:{key}")  # two replicas triggering one key: one page
    existing = repository.by_key(session, key)
    if existing is not None:
        return page_read(session, existing)
    tenant = None
    if tenant_id is not None:
        tenant = tenants.get_tenant(session, principal=actor, ref=tenant_id)
    version, doc = _in_force(session)
    policy = doc.route(
        severity=severity,
        tier=None if tenant is None else tenant.tier,
        compliance=None if tenant is None else tenant.compliance_classification,
        region=None if tenant is None else tenant.region,
    )
    now = utcnow()
    row = Page(
        id=new_id(),
        key=key,
        tenant_id=None if tenant is None else tenant.id,
        record_id=record_id,
        summary=summary,
        severity=severity,
        policy=policy,
        config_version=version,
        level=NOT_YET,
        round=0,
        status=TRIGGERED,
        next_at=now,
        triggered_at=now,
        updated_at=now,
        version=1,
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        row,
        event="triggered",
        actor=actor,
        detail=f"policy {policy} (configuration {version or 'default'})",
        changes={"status": {"before": None, "after": TRIGGERED}},
    )
    return page_read(session, row, None if tenant is None else tenant.name)


def _answer(session: Session, row: Page, *, actor: Principal, to: str) -> PageRead:
    """Move ``row`` to acknowledged or resolved (no-op if it is there or beyond)."""
    if row.status == RESOLVED or row.status == to:
        return page_read(session, row)
    now = utcnow()
    before = row.status
    row.status, row.next_at, row.updated_at = to, None, now
    row.version += 1
    if to == ACKNOWLEDGED:
        row.acknowledged_at, row.acknowledged_by = now, actor.subject
    else:
        row.resolved_at, row.resolved_by = now, actor.subject
    record_change(
        session,
        row,
        event=to,
        actor=actor,
        level=None if row.level == NOT_YET else row.level,
        changes={"status": {"before": before, "after": to}},
    )
    return page_read(session, row)


def acknowledge(session: Session, *, key: str, actor: Principal) -> PageRead | None:
    """Stop escalating; None if there is no page with that key. Idempotent."""
    row = repository.by_key(session, key, for_update=True)
    return None if row is None else _answer(session, row, actor=actor, to=ACKNOWLEDGED)


def resolve(session: Session, *, key: str, actor: Principal) -> PageRead | None:
    """Close the page; None if there is no page with that key. Idempotent."""
    row = repository.by_key(session, key, for_update=True)
    return None if row is None else _answer(session, row, actor=actor, to=RESOLVED)


def _by_id(session: Session, page_id: str, *, lock: bool = False) -> Page:
    row = repository.by_id(session, page_id, for_update=lock)
    if row is None:
        raise NotFound(f"no page {page_id!r}")
    return row


def acknowledge_page(session: Session, *, page_id: str, actor: Principal) -> PageRead:
    """``acknowledge`` by the page's id (API, CLI); 404 if there is none."""
    return _answer(session, _by_id(session, page_id, lock=True), actor=actor, to=ACKNOWLEDGED)


def resolve_page(session: Session, *, page_id: str, actor: Principal) -> PageRead:
    """``resolve`` by the page's id (API, CLI); 404 if there is none."""
    return _answer(session, _by_id(session, page_id, lock=True), actor=actor, to=RESOLVED)


def get_page(session: Session, *, page_id: str) -> PageDetail:
    """A page with its timeline."""
    row = _by_id(session, page_id)
    timeline = [
        PageEventRead(
            at=as_utc(e.at),
            event=e.event,
            level=None if e.level is None or e.level < 0 else e.level + 1,
            targets=list(e.targets),
            actor=e.actor,
            detail=e.detail,
        )
        for e in repository.timeline(session, row.id)
    ]
    return PageDetail(**page_read(session, row).model_dump(), timeline=timeline)


def list_pages(
    session: Session,
    *,
    status: str | None = None,
    open_only: bool = False,
    tenant: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    principal: Principal | None = None,
) -> PageList:
    """Pages newest first, filtered by status (or open: not resolved) and tenant."""
    if status is not None and status not in STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(STATUSES)}", param="status")
    tenant_id = None
    if tenant is not None:
        viewer = principal or ESCALATOR
        tenant_id = tenants.get_tenant(session, principal=viewer, ref=tenant).id
    rows = repository.listing(
        session,
        status=status,
        open_only=open_only,
        tenant_id=tenant_id,
        before_id=None if cursor is None else decode_cursor(cursor),
        limit=limit,
    )
    shown, next_cursor = page(rows, limit)
    names = tenants.names_of(session, {r.tenant_id for r in shown if r.tenant_id})
    items = [page_read(session, r, names.get(r.tenant_id) if r.tenant_id else None) for r in shown]
    return PageList(items=items, next_cursor=next_cursor)


def open_keys(session: Session, prefix: str, limit: int = 500) -> list[str]:
    """The keys of open pages (triggered or acknowledged) under ``prefix``, e.g. ``run:``."""
    return list(repository.open_keys(session, prefix, limit))
