"""Open a break-glass grant: an expiring elevated token plus the runbook that watches it.

The grant is the only bypass of segregation of duties, so it is never silent:
the request needs a reason and an incident, the token carries its own subject
(``breakglass:<who>``) so every use is attributable, security is notified by
the first step, a durable timer revokes the token at expiry (the token's own
expiry is a second guard), and a review gate stays open until someone other
than the requester closes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth import tokens
from tenantops.auth.principal import Principal, Role
from tenantops.breakglass.schemas import BreakGlassCreate, BreakGlassRead
from tenantops.errors import NotFound
from tenantops.events import catalogue, outbox
from tenantops.events import service as events
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks import engine, spec
from tenantops.runbooks.spec import seconds
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantRead

RUNBOOK = "emergency-break-glass"
TIMEBOX = "timebox"  # the runbook's wait until the grant expires


def open_break_glass(
    session: Session, *, principal: Principal, data: BreakGlassCreate
) -> BreakGlassRead:
    """Grant time-boxed elevated access and start the break-glass runbook."""
    tenant = (
        tenants.get_tenant(session, principal=principal, ref=data.tenant) if data.tenant else None
    )
    subject = f"breakglass:{principal.subject}"
    issued = tokens.create_token(
        session,
        actor=principal,
        subject=subject,
        roles=[Role(r) for r in data.roles],
        tenant_id=tenant.id if tenant else None,
        ttl=timedelta(seconds=seconds(data.duration)),
    )
    assert issued.expires_at is not None
    inputs: dict[str, object] = {
        "reason": data.reason,
        "incident_ref": data.incident_ref,
        "duration": data.duration,
        "token_id": issued.id,
        "subject": subject,
        "expires_at": issued.expires_at.isoformat(),
    }
    if tenant is not None:
        inputs["tenant"] = TenantRead.model_validate(tenant).model_dump(mode="json")
    run = engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), RUNBOOK),
        actor=principal,
        tenant_id=tenant.id if tenant else None,
        inputs=inputs,
        audited=False,
    )
    audit.record(
        session,
        actor=principal,
        action="breakglass.opened",
        tenant_id=tenant.id if tenant else None,
        changes={},
        detail={
            "run_id": run.id,
            "token_id": issued.id,
            "subject": subject,
            "roles": sorted(data.roles),
            "reason": data.reason,
            "incident_ref": data.incident_ref,
            "expires_at": issued.expires_at,
        },
    )
    outbox.emit(
        session,
        catalogue.ACCESS_GRANTED,
        catalogue.AccessChanged(
            tenant_id=tenant.id if tenant else None,
            tenant_name=tenant.name if tenant else None,
            actor=principal.subject,
            grant_id=issued.id,
            subject=subject,
            reason=data.reason,
            incident_ref=data.incident_ref,
            expires_at=issued.expires_at.isoformat(),
        ),
    )
    return BreakGlassRead(
        run_id=run.id,
        token=issued.value,
        token_id=issued.id,
        subject=subject,
        roles=sorted(data.roles),
        tenant_id=tenant.id if tenant else None,
        expires_at=issued.expires_at,
    )


class _Token(Protocol):
    """What break glass reads of an API token (``tokens.find_token``'s row)."""

    @property
    def id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def _works(token: _Token | None, *, now: datetime) -> bool:
    return token is not None and tokens.status_of(token, now=now) is tokens.TokenStatus.ACTIVE


def grants_of(
    session: Session, *, tenant_id: str | None, since: datetime, now: datetime | None = None
) -> list[dict[str, object]]:
    """The tenant's break-glass grants still open, or opened since ``since``, oldest first.

    ``tenant_id`` ``None``: the grants bound to no tenant (they reach every tenant).

    Read from the runs that watch them (the grant's reason, incident and expiry
    are their inputs); the token's value is never part of it. ``open``: its
    token still works at ``now``; ``review_due``: it no longer does and the
    post-use review has not been completed.
    """
    now = now or utcnow()
    grants: list[dict[str, object]] = []
    for run in engine.runs_of(session, tenant_id=tenant_id):
        if run.runbook_id != RUNBOOK:
            continue
        opened = as_utc(run.created_at)
        if run.finished_at is not None and opened < since:
            continue
        inputs = run.inputs or {}
        token = tokens.find_token(session, str(inputs.get("token_id") or ""))
        grants.append(
            {
                "run_id": run.id,
                # Open while its token still works: not once revoked (at expiry or early)
                # though the run waits on for its post-use review.
                "open": _works(token, now=now),
                "review_due": run.finished_at is None and not _works(token, now=now),
                "status": run.status,
                "subject": inputs.get("subject"),
                "opened_by": run.started_by,
                "opened_at": opened.isoformat(),
                "expires_at": inputs.get("expires_at"),
                "reason": inputs.get("reason"),
                "incident_ref": inputs.get("incident_ref"),
                "token_id": inputs.get("token_id"),
            }
        )
    return grants


def lock_grants(session: Session, run_ids: Iterable[str]) -> None:
    """Lock the runs watching the grants ``run_ids``, in run id order, before any write.

    A caller ending several grants (an access review) calls this first: each
    grant's own revoke step locks its run, then the token, then the audit
    head, so a caller that took a token or the audit head before a grant's run
    could deadlock with it. Locked in one stable order, two such callers take
    turns too.
    """
    for run_id in sorted(set(run_ids)):
        engine.get_run(session, run_id, for_update=True)


def revoke_early(session: Session, *, actor: Principal, run_id: str, reason: str | None) -> bool:
    """End the break-glass grant watched by run ``run_id`` now: its token is revoked.

    ``True`` if this call took the access away, ``False`` if the token was
    revoked already (nothing recorded then, so a repeat is harmless). The
    watching run's timer ends now, so it goes straight on to its own revoke
    step, tells security, and opens the post-use review without waiting for the
    expiry. The run is locked first, the order the engine's completion of that
    revoke step locks in, and the token is revoked by a conditional update, so
    of the two only one announces the end (``announced``).
    """
    run = engine.get_run(session, run_id, for_update=True)
    token_id = (run.inputs or {}).get("token_id") if run.runbook_id == RUNBOOK else None
    if not token_id:
        raise NotFound(f"no break-glass grant {run_id!r}")
    row, changed = tokens.revoke_token_once(session, actor=actor, token_id=str(token_id))
    # Also when revoked already (``tenantops tokens revoke``): the run's revoke step
    # then announces the end now rather than at the expiry.
    engine.end_wait(session, run_id=run.id, step_name=TIMEBOX, now=utcnow())
    if not changed:
        return False
    announce_end(
        session,
        inputs=run.inputs or {},
        tenant_id=run.tenant_id,
        actor=actor,
        token=row,
        reason=reason,
    )
    return True


def announce_end(
    session: Session,
    *,
    inputs: Mapping[str, Any],
    tenant_id: str | None,
    actor: Principal,
    token: _Token,
    reason: str | None,
) -> None:
    """``tenant.access.revoked`` for the grant whose run has ``inputs``: its token ended."""
    tenant = inputs.get("tenant")
    outbox.emit(
        session,
        catalogue.ACCESS_REVOKED,
        catalogue.AccessChanged(
            tenant_id=tenant_id,
            tenant_name=tenant.get("name") if isinstance(tenant, dict) else None,
            actor=actor.subject,
            grant_id=token.id,
            subject=token.subject,
            reason=reason,
            incident_ref=str(inputs.get("incident_ref") or "") or None,
        ),
    )


def announced(session: Session, *, grant_id: str, tenant_id: str | None, since: datetime) -> bool:
    """Whether a ``tenant.access.revoked`` event for grant ``grant_id`` was emitted since ``since``.

    Read from the event outbox through the events service: that type, about the
    grant's tenant (``None``: bound to no tenant), since the grant's run began
    — a few rows. Asked before anything is written, so the read happens before
    the audit head is locked. Retention (ADR 0030) deletes only events older
    than ``events.retention_days`` (at least a day) and handed on; a grant
    lasts at most 8 hours, so the announcement of an early end is still there
    when the run's own revoke step asks. Were it pruned (workers stopped for
    days), the step would announce again: a duplicate, which at-least-once
    consumers already expect, never a missing announcement.
    """
    rows = events.emitted(
        session, event_type=catalogue.ACCESS_REVOKED.type, tenant_id=tenant_id, since=since
    )
    return any(d.get("grant_id") == grant_id for d in rows)
