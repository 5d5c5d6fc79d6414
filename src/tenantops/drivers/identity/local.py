"""The local identity provider: groups and grants in the control-plane database.

The embedded default and the test seam of ``IdentityProvider``. A change and
its effect-log row commit in one transaction, so an effect is applied exactly
once per idempotency key: the same key again (a step run again after a crash)
returns the recorded state. Two workers racing on one key collide on the log's
primary key; the loser rolls back and returns the winner's record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.identity.models import IdentityEffect, IdentityGroup, IdentityMember
from tenantops.drivers.identity.port import Grant, GroupState, Permission
from tenantops.kit.clock import utcnow


def group_name(tenant_name: str) -> str:
    """The group's name in the identity provider."""
    return f"tenant-{tenant_name}"


def _state(session: Session, group: IdentityGroup) -> GroupState:
    members = session.execute(
        select(IdentityMember)
        .where(IdentityMember.tenant_id == group.tenant_id)
        .order_by(IdentityMember.subject)
    ).scalars()
    return GroupState(
        tenant_id=group.tenant_id,
        tenant_name=group.tenant_name,
        group=group.name,
        enabled=group.enabled,
        members=tuple(Grant(m.subject, Permission(m.permission)) for m in members),
    )


def _from_record(result: dict[str, object]) -> GroupState:
    members = result["members"]
    assert isinstance(members, list)
    return GroupState(
        tenant_id=str(result["tenant_id"]),
        tenant_name=str(result["tenant_name"]),
        group=str(result["group"]),
        enabled=bool(result["enabled"]),
        members=tuple(Grant(m["subject"], Permission(m["permission"])) for m in members),
    )


def _grant(session: Session, tenant_id: str, grant: Grant) -> None:
    subject = grant.subject.strip().lower()
    if not subject:
        raise DriverError("a grant needs a subject", retry=Retry.PERMANENT)
    row = session.get(IdentityMember, (tenant_id, subject))
    if row is None:
        session.add(
            IdentityMember(
                tenant_id=tenant_id,
                subject=subject,
                permission=grant.permission.value,
                granted_at=utcnow(),
            )
        )
    elif row.permission != grant.permission.value:
        row.permission, row.granted_at = grant.permission.value, utcnow()


class LocalIdentity:
    """``IdentityProvider`` on the control-plane database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _change(
        self,
        *,
        key: str,
        operation: str,
        tenant_id: str,
        mutate: Callable[[Session], IdentityGroup],
    ) -> GroupState:
        def change(session: Session) -> GroupState:
            group = mutate(session)
            group.updated_at = utcnow()
            session.flush()
            return _state(session, group)

        return apply_once(
            self.db,
            IdentityEffect,
            key=key,
            operation=operation,
            tenant_id=tenant_id,
            change=change,
            recorded=_from_record,
            what="identity",
        )

    @staticmethod
    def _group(session: Session, tenant_id: str) -> IdentityGroup:
        group = session.get(IdentityGroup, tenant_id, with_for_update=True)
        if group is None:
            raise DriverError(
                f"tenant {tenant_id} has no group; create it first", retry=Retry.NEEDS_HUMAN
            )
        return group

    def create_group(
        self, *, tenant_id: str, tenant_name: str, grants: Sequence[Grant], idempotency_key: str
    ) -> GroupState:
        def mutate(session: Session) -> IdentityGroup:
            group = session.get(IdentityGroup, tenant_id, with_for_update=True)
            if group is None:
                now = utcnow()
                group = IdentityGroup(
                    tenant_id=tenant_id,
                    tenant_name=tenant_name,
                    name=group_name(tenant_name),
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
                session.add(group)
                session.flush()
            for grant in grants:
                _grant(session, tenant_id, grant)
            return group

        return self._change(
            key=idempotency_key, operation="create_group", tenant_id=tenant_id, mutate=mutate
        )

    def add_member(self, *, tenant_id: str, grant: Grant, idempotency_key: str) -> GroupState:
        def mutate(session: Session) -> IdentityGroup:
            group = self._group(session, tenant_id)
            _grant(session, tenant_id, grant)
            return group

        return self._change(
            key=idempotency_key, operation="add_member", tenant_id=tenant_id, mutate=mutate
        )

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        def mutate(session: Session) -> IdentityGroup:
            group = self._group(session, tenant_id)
            row = session.get(IdentityMember, (tenant_id, subject.strip().lower()))
            if row is not None:
                session.delete(row)
            return group

        return self._change(
            key=idempotency_key, operation="remove_member", tenant_id=tenant_id, mutate=mutate
        )

    def _set_enabled(self, tenant_id: str, enabled: bool, key: str) -> GroupState:
        def mutate(session: Session) -> IdentityGroup:
            group = self._group(session, tenant_id)
            group.enabled = enabled
            return group

        operation = "enable_access" if enabled else "disable_access"
        return self._change(key=key, operation=operation, tenant_id=tenant_id, mutate=mutate)

    def disable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, False, idempotency_key)

    def enable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, True, idempotency_key)

    def get_group(self, *, tenant_id: str) -> GroupState | None:
        with self.db.read() as session:
            group = session.get(IdentityGroup, tenant_id)
            return None if group is None else _state(session, group)

    def list_groups(self) -> list[GroupState]:
        with self.db.read() as session:
            groups = session.execute(
                select(IdentityGroup).order_by(IdentityGroup.tenant_name)
            ).scalars()
            return [_state(session, g) for g in groups]

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many effects were applied (the crash harness counts these)."""
        query = select(IdentityEffect.idempotency_key)
        if tenant_id is not None:
            query = query.where(IdentityEffect.tenant_id == tenant_id)
        with self.db.read() as session:
            return len(session.execute(query).all())
