"""Carrying out an Access Review's revoke decision: tokens, web users, break-glass grants.

The members of the tenant's group are taken out by the step's action through
the identity port (a side effect outside the database, keyed by the step's
idempotency key). What lives in the control plane is revoked here, in the
transaction that records the step, each through its own domain's service, and
the whole is one ``access_review.revoked`` audit entry naming the security user
who decided and the review's run. Every revocation is idempotent: a token
already revoked or a user already disabled is left as it is, recorded nowhere
again, and listed as ``already``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.accessreview.decision import Decision, DecisionError, Item, check, parse
from tenantops.accessreview.service import bound
from tenantops.audit import service as audit
from tenantops.auth import tokens
from tenantops.auth.principal import Principal, Role
from tenantops.breakglass import service as breakglass
from tenantops.errors import Conflict
from tenantops.events import catalogue, outbox
from tenantops.web import service as web


def reviewed_snapshot(path: Path, digest: str | None) -> dict[str, Any]:
    """The snapshot file security reviewed; ``DecisionError`` unless its SHA-256 is ``digest``.

    A file that cannot be read or is no JSON object is refused the same way (422,
    nothing revoked), never a server error.
    """
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise DecisionError("nothing was revoked: the reviewed snapshot file is gone") from None
    except OSError as exc:
        raise DecisionError(
            f"nothing was revoked: the reviewed snapshot file cannot be read ({exc.strerror})"
        ) from None
    if not digest or hashlib.sha256(body).hexdigest() != digest:
        raise DecisionError(
            f"nothing was revoked: the snapshot file no longer has the reviewed digest {digest}"
        )
    try:
        snapshot = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        snapshot = None
    if not isinstance(snapshot, dict):
        raise DecisionError("nothing was revoked: the reviewed snapshot file is not a snapshot")
    return snapshot


def decided_items(
    comment: str | None, *, snapshot: Path, digest: str | None
) -> tuple[Decision, list[Item]]:
    """The decision in ``comment`` and what it revokes, each item checked against the snapshot.

    The one check of a decision against the reviewed ``snapshot`` file (whose
    SHA-256 must be ``digest``): the ``decide`` gate's check asks it before the
    approval is recorded, and the ``revoke`` step again before anything is
    revoked, since the file could have changed in between. ``DecisionError``
    names every problem; ``keep`` or no comment revokes nothing and reads no file.
    """
    decision = parse(comment)
    if decision.outcome != "revoke":
        return decision, []
    if not digest:
        raise DecisionError("nothing can be revoked before the review's snapshot is taken")
    return decision, check(decision, reviewed_snapshot(snapshot, digest))


def _in_scope(tenant_ref: str | None, item: Item, tenant: dict[str, Any]) -> bool:
    return tenant_ref is None if item.platform else bound(tenant_ref, tenant)


def _tokens(session: Session, item: Item, tenant: dict[str, Any]) -> list[Any]:
    return [
        r
        for r in tokens.list_tokens(session)
        if r.prefix == item.ident and _in_scope(r.tenant_id, item, tenant)
    ]


def _users(session: Session, item: Item, tenant: dict[str, Any]) -> list[Any]:
    return [
        u
        for u in web.list_users(session)
        if u.username == item.ident and _in_scope(u.tenant_id, item, tenant)
    ]


@dataclass(frozen=True)
class Decider:
    """Who approved the decision: their subject, every role they held then, and their scope.

    ``tenant_scoped``: bound to one tenant (or holding ``tenant_owner``), as
    ``Principal.tenant_scoped``; unknown counts as bound (fail closed).
    """

    subject: str
    roles: frozenset[str]
    tenant_scoped: bool = True

    def principal(self) -> Principal:
        """The decider as the trail's actor: the roles the approval recorded, and
        security (the gate's role). The engine only carries the decision out."""
        held = frozenset(r for r in Role if r.value in self.roles) | {Role.SECURITY}
        return Principal(subject=self.subject, roles=held, via="runbook")

    @property
    def platform_admin(self) -> bool:
        """Whether they may revoke access bound to no tenant: admin, bound to no tenant."""
        return (
            Role.ADMIN.value in self.roles
            and Role.TENANT_OWNER.value not in self.roles
            and not self.tenant_scoped
        )


def check_current(
    session: Session, *, items: Sequence[Item], tenant: dict[str, Any], decider: Decider
) -> None:
    """``DecisionError`` naming every item that cannot be revoked now, or by this ``decider``.

    Checked before the first revocation, so a decision that cannot be carried
    out whole revokes nothing: each token and user must be exactly one row in
    scope; access bound to no tenant (``platform-`` items) reaches every tenant,
    so its revocation needs the admin role besides security, held by a decider
    bound to no tenant (``Decider.platform_admin``); nobody revokes
    their own token, and no decision disables the last enabled admin web user.
    """
    problems = []
    platform = [str(i) for i in items if i.platform]
    if platform and not decider.platform_admin:
        problems.append(
            f"access bound to no tenant reaches every tenant ({', '.join(platform)}):"
            " revoking it needs the admin role as well as security, held by a user"
            " bound to no tenant"
        )
    named_users: set[str] = set()
    for item in items:
        if item.base not in ("token", "user"):
            continue  # members and grants: the identity provider and the grant's run say
        rows = (
            _tokens(session, item, tenant)
            if item.base == "token"
            else _users(session, item, tenant)
        )
        if len(rows) != 1:
            problems.append(f"{item} matches {len(rows)} {item.base}s now, not one")
        elif item.base == "token" and rows[0].subject == decider.subject:
            problems.append(f"{item} is your own token: another security user must revoke it")
        elif item.base == "user":
            named_users.add(rows[0].username)
    # Only admins who can run the platform count: not one bound to a tenant or tenant_owner.
    admins = [u for u in web.list_users(session) if web.administers_platform(u)]
    if named_users & {u.username for u in admins} and not [
        u for u in admins if u.username not in named_users
    ]:
        problems.append(
            "it would disable the last enabled admin web user"
            f" ({', '.join(sorted(named_users & {u.username for u in admins}))})"
        )
    if problems:
        raise DecisionError(f"nothing was revoked: {'; '.join(problems)}")


def revoke(
    session: Session,
    *,
    items: Sequence[Item],
    tenant: dict[str, Any],
    run_id: str,
    decider: Decider,
    reason: str,
    group: str | None,
) -> dict[str, list[str]]:
    """Revoke the tokens, users and break-glass grants of ``items``; announce the members.

    The members were taken out of ``group`` through the identity port already
    (``None``: the tenant has no group any more): here they get their
    ``tenant.access.revoked`` event. Returns ``revoked`` (what this review took
    away) and ``already`` (what had no access left).
    """
    decided_by = decider.subject
    # Every named grant's run first, in run id order, before any write: the grant's
    # own revoke step locks run -> token -> audit head, so taking a token or the
    # audit head before a grant's run (comment order) could deadlock with it.
    breakglass.lock_grants(session, [i.ident for i in items if i.base == "breakglass"])
    if any(i.base == "user" for i in items):
        # The web user rows before any token or audit entry: a sign-in locks its user's
        # row, then the audit head; taking the head first here could deadlock with it.
        web.lock_for_disabling(session)
    check_current(session, items=items, tenant=tenant, decider=decider)
    # The trail names the security user who decided; the engine only carried it out.
    actor = decider.principal()
    revoked: list[str] = []
    already: list[str] = []
    for item in items:
        if item.base == "member":
            changed = group is not None  # no group left: nobody is a member any more
            if changed:
                outbox.emit(
                    session,
                    catalogue.ACCESS_REVOKED,
                    catalogue.AccessChanged(
                        tenant_id=tenant["id"],
                        tenant_name=tenant.get("name"),
                        actor=decided_by,
                        grant_id=f"{group}/{item.ident}",
                        subject=item.ident,
                        reason=reason or None,
                    ),
                )
        elif item.base == "token":
            [row] = _tokens(session, item, tenant)
            # The conditional update says: a token revoked by hand meanwhile is ``already``.
            _row, changed = tokens.revoke_token_once(session, actor=actor, token_id=row.id)
        elif item.base == "user":
            [user] = _users(session, item, tenant)
            try:
                changed = web.set_disabled(
                    session, actor=actor, username=user.username, disabled=True
                ).changed
            except Conflict as exc:  # the last platform admin, under lock: nothing is revoked
                raise DecisionError(f"nothing was revoked: {exc.detail}") from None
        else:
            changed = breakglass.revoke_early(
                session, actor=actor, run_id=item.ident, reason=reason or None
            )
        (revoked if changed else already).append(str(item))
    audit.record(
        session,
        actor=actor,
        action="access_review.revoked",
        tenant_id=tenant["id"],
        changes={},
        detail={
            "run_id": run_id,
            "decided_by": decided_by,
            "revoked": revoked,
            "already": already,
            "reason": reason,
        },
    )
    return {"revoked": revoked, "already": already}
