"""Access Review: the snapshot of who can reach a tenant, starting a review, its outcome.

The snapshot gathers, each through its own domain's service, the tenant's
identity group (from the identity port), the API tokens and web users bound to
the tenant, its open or recent break-glass grants, and under ``platform`` what
reaches every tenant (active tokens, web users and break-glass grants bound to
no tenant). It holds no secret (a token appears by its prefix) but it names
people, so it is written to a file (``<data dir>/access-reviews/<tenant>/<run>.json``,
canonical JSON) served only to security, governance, auditors and admins; the
run's step output and evidence (readable by every role) hold only its counts,
a findings summary that names nobody, and its SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.accessreview.decision import outcome_of
from tenantops.audit import service as audit
from tenantops.auth import tokens
from tenantops.auth.principal import Principal, Role
from tenantops.breakglass import service as breakglass
from tenantops.drivers.identity.port import GroupState, Permission, access_findings
from tenantops.errors import NotFound
from tenantops.kit.clock import as_utc
from tenantops.runbooks import checklists, engine, spec
from tenantops.runbooks.models import Run
from tenantops.tenants import service as tenants
from tenantops.tenants.actions import TenantFiles
from tenantops.tenants.schemas import TenantRead
from tenantops.web import service as web

RUNBOOK = "access-review"
# How far back revoked or expired tokens and finished break-glass grants are listed.
RECENT = timedelta(days=30)
MAX_REASON = 500  # the longest reason a review is started with (API and web)
KIND = "access-reviews"  # the snapshots' folder under the data directory


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def bound(tenant_ref: str | None, tenant: dict[str, Any]) -> bool:
    """Whether access bound to ``tenant_ref`` (an id or a name) is bound to ``tenant``."""
    return tenant_ref is not None and tenant_ref in (tenant["id"], tenant["name"])


def _members(group: GroupState | None, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member with their permission, what the tenant record expects of them, and state."""
    if group is None:
        return []
    owner = str(tenant.get("business_owner") or "").lower()
    contacts = {str(c).lower() for c in tenant.get("contacts") or []} - {owner}
    members = []
    for grant in group.members:
        expected = (
            "owner" if grant.subject == owner else "contact" if grant.subject in contacts else None
        )
        members.append(
            {
                "subject": grant.subject,
                "permission": grant.permission.value,
                "as": expected or "unexpected",
                "state": "enabled" if group.enabled else "disabled",
            }
        )
    return members


def _token_state(row: Any, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    expires = row.expires_at
    return "expired" if expires is not None and as_utc(expires) <= now else "active"


def _tokens(session: Session, tenant: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    listed = []
    for row in tokens.list_tokens(session):
        if not bound(row.tenant_id, tenant):
            continue
        expires, revoked = row.expires_at, row.revoked_at
        state = _token_state(row, now)
        ended = revoked if revoked is not None else expires
        if state != "active" and ended is not None and as_utc(ended) < now - RECENT:
            continue
        listed.append(
            {
                "prefix": row.prefix,
                "subject": row.subject,
                "roles": sorted(row.roles),
                "state": state,
                "created_by": row.created_by,
                "created_at": _iso(row.created_at),
                "expires_at": _iso(expires),
                "revoked_at": _iso(revoked),
            }
        )
    return listed


def _user(user: Any) -> dict[str, Any]:
    return {
        "username": user.username,
        "roles": sorted(user.roles),
        "state": "disabled" if user.disabled else "enabled",
        "signs_in": f"oidc:{user.oidc_issuer}" if user.oidc_issuer else "password",
        "created_at": _iso(user.created_at),
    }


def _users(session: Session, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    return [_user(user) for user in web.list_users(session) if bound(user.tenant_id, tenant)]


def _platform(session: Session, now: datetime) -> dict[str, Any]:
    """What reaches every tenant, this one included: access bound to no tenant."""
    return {
        "tokens": [
            {
                "prefix": row.prefix,
                "subject": row.subject,
                "roles": sorted(row.roles),
                "created_by": row.created_by,
                "expires_at": _iso(row.expires_at),
            }
            for row in tokens.list_tokens(session)
            if row.tenant_id is None and _token_state(row, now) == "active"
        ],
        "users": [_user(user) for user in web.list_users(session) if user.tenant_id is None],
        "break_glass": breakglass.grants_of(session, tenant_id=None, since=now - RECENT, now=now),
    }


def findings_summary(group: GroupState | None, tenant: dict[str, Any]) -> list[str]:
    """The findings without anybody's name: what every role may read on the run."""
    if group is None:
        return ["the tenant has no identity group"]
    owner = str(tenant.get("business_owner") or "").lower()
    contacts = {str(c).lower() for c in tenant.get("contacts") or []} - {owner}
    summary = []
    if not group.enabled:
        summary.append("access to the tenant is disabled")
    held = group.permission_of(owner)
    if held is not Permission.WRITE:
        summary.append(f"the business owner has {held.value if held else 'no'} access, not write")
    wrong = sum(1 for c in contacts if group.permission_of(c) is not Permission.READ)
    if wrong:
        summary.append(f"{wrong} contact(s) without read access")
    strangers = sum(1 for g in group.members if g.subject not in contacts | {owner})
    if strangers:
        summary.append(f"{strangers} member(s) neither owner nor contact")
    return summary


def take_snapshot(
    session: Session, *, tenant: dict[str, Any], group: GroupState | None, now: datetime
) -> dict[str, Any]:
    """Who has access to ``tenant`` now; ``group`` is what the identity provider holds."""
    owner = str(tenant.get("business_owner") or "")
    contacts: Sequence[str] = [str(c) for c in tenant.get("contacts") or []]
    api_tokens = _tokens(session, tenant, now)
    users = _users(session, tenant)
    grants = breakglass.grants_of(session, tenant_id=tenant["id"], since=now - RECENT, now=now)
    platform = _platform(session, now)
    findings = (
        access_findings(group, owner=owner, contacts=contacts)
        if group is not None
        else ["the tenant has no identity group"]
    )
    snapshot: dict[str, Any] = {
        "taken_at": now.isoformat(),
        "tenant": {"id": tenant["id"], "name": tenant["name"], "business_owner": owner},
        "group": None if group is None else {"name": group.group, "enabled": group.enabled},
        "members": _members(group, tenant),
        "findings": findings,
        "tokens": api_tokens,
        "users": users,
        "break_glass": grants,
        "platform": platform,
    }
    snapshot["counts"] = {
        "members": len(snapshot["members"]),
        "tokens_active": sum(1 for t in api_tokens if t["state"] == "active"),
        "tokens_listed": len(api_tokens),
        "users_enabled": sum(1 for u in users if u["state"] == "enabled"),
        "users_listed": len(users),
        "break_glass_open": sum(1 for g in grants if g["open"]),
        "break_glass_listed": len(grants),
        "findings": len(findings),
        # Bound to no tenant, so reaching this one too: counted apart.
        "platform_tokens_active": len(platform["tokens"]),
        "platform_users_enabled": sum(1 for u in platform["users"] if u["state"] == "enabled"),
        "platform_users_listed": len(platform["users"]),
        "platform_break_glass_open": sum(1 for g in platform["break_glass"] if g["open"]),
        "platform_break_glass_listed": len(platform["break_glass"]),
    }
    snapshot["summary"] = findings_summary(group, tenant)
    return snapshot


def snapshot_api_path(tenant_id: str, run_id: str) -> str:
    """Where security, governance, auditors and admins read a review's full snapshot."""
    return f"/api/v1/tenants/{tenant_id}/access-reviews/{run_id}/snapshot"


def find_snapshot(
    session: Session, *, principal: Principal, ref: str, run_id: str, data_dir: Path
) -> tuple[Path, str]:
    """The snapshot file of review ``run_id`` of tenant ``ref`` and the digest its step recorded.

    404 when ``run_id`` is no access review of that tenant or its snapshot is not written yet.
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    step = checklists.finished_step(
        session,
        run_id=run_id,
        tenant_id=tenant.id,
        runbook_id=RUNBOOK,
        step="snapshot",
        what=f"access review {run_id!r} of {tenant.name}",
    )
    path = TenantFiles(data_dir).path(KIND, tenant.id, run_id)
    if not path.is_file():
        raise NotFound(f"access review {run_id} has no snapshot yet")
    return path, str((step.evidence or {}).get("digest"))


def start_access_review(
    session: Session, *, principal: Principal, ref: str, reason: str | None
) -> Run:
    """Start the Access Review of a tenant (409 while one of that tenant is open).

    Whoever starts it cannot tick its gates (segregation of duties, applied by
    the engine): another security user completes it.
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    # Locked, so two starts at once cannot both find no open review and both start one.
    session.refresh(tenant, with_for_update=True)
    checklists.refuse_second_open_run(
        session,
        tenant_id=tenant.id,
        runbook_id=RUNBOOK,
        what=f"the access review of {tenant.name}",
    )
    inputs: dict[str, Any] = {
        "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
        "reason": reason or "",
    }
    return engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), RUNBOOK),
        actor=principal,
        tenant_id=tenant.id,
        inputs=inputs,
    )


def record_outcome(
    session: Session,
    *,
    run_id: str,
    tenant_id: str,
    digest_of_snapshot: str | None,
    counts: dict[str, Any],
    fallback_actor: str,
    revocation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The review's gate decisions as one audit entry (``access_review.recorded``).

    The entry names the security user who decided, with the snapshot's digest
    and counts, so the trail says what list was reviewed and what was decided;
    ``revocation`` (the revoke step's ``revoked`` and ``already``) what was done.
    """
    gates = checklists.gate_decisions(session, run_id)
    decision = gates.get("decide") or (list(gates.values())[-1] if gates else {})
    decider = str(decision.get("by") or fallback_actor)
    comment = str(decision.get("comment") or "")
    outcome = outcome_of(comment)
    detail: dict[str, Any] = {
        "run_id": run_id,
        "decided_by": decider,
        "decision": comment,
        "outcome": outcome,
        "gates": gates,
        "snapshot_digest": digest_of_snapshot,
        "counts": counts,
    }
    if revocation is not None:
        detail["revoked"] = revocation.get("revoked") or []
        detail["already"] = revocation.get("already") or []
    entry = audit.record(
        session,
        # The trail names the security user who decided; the engine only carried it out.
        actor=Principal(subject=decider, roles=frozenset({Role.SECURITY}), via="runbook"),
        action="access_review.recorded",
        tenant_id=tenant_id,
        changes={},
        detail=detail,
    )
    return {"audit_seq": entry.seq, "decided_by": decider, "decision": comment, "outcome": outcome}
