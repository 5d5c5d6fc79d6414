"""The identity-provider port: what Keycloak, Entra ID and the local adapter all do.

A tenant has one group; each member holds ``read`` or ``write`` (or ``admin``,
for time-boxed break-glass access). Disabling a tenant's access disables every
member at once and keeps the grants, so enabling restores them exactly.
Every change takes the step's idempotency key: the same key again returns the
state recorded the first time and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True)
class Grant:
    """One member of a tenant's group and what they may do."""

    subject: str
    permission: Permission


@dataclass(frozen=True)
class GroupState:
    """A tenant's group as the identity provider holds it."""

    tenant_id: str
    tenant_name: str
    group: str
    enabled: bool
    members: tuple[Grant, ...]

    def permission_of(self, subject: str) -> Permission | None:
        for grant in self.members:
            if grant.subject == subject.lower():
                return grant.permission
        return None

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "group": self.group,
            "enabled": self.enabled,
            "members": [
                {"subject": g.subject, "permission": g.permission.value} for g in self.members
            ],
        }


def access_findings(group: GroupState, *, owner: str, contacts: Sequence[str]) -> list[str]:
    """Where the group differs from the tenant record: the owner writes, contacts read,
    nobody else is a member, and access is enabled. Empty when it matches."""
    owner = owner.lower()
    readers = {c.lower() for c in contacts} - {owner}
    findings: list[str] = []
    if not group.enabled:
        findings.append("access to the tenant is disabled")
    if group.permission_of(owner) is not Permission.WRITE:
        findings.append(f"owner {owner} has {group.permission_of(owner) or 'no'} access, not write")
    for contact in sorted(readers):
        held = group.permission_of(contact)
        if held is not Permission.READ:
            findings.append(f"contact {contact} has {held or 'no'} access, not read")
    for grant in group.members:
        if grant.subject != owner and grant.subject not in readers:
            findings.append(
                f"{grant.subject} holds {grant.permission} but is neither owner nor contact"
            )
    return findings


class IdentityProvider(Protocol):
    """Groups and grants of tenants in an identity provider."""

    def create_group(
        self, *, tenant_id: str, tenant_name: str, grants: Sequence[Grant], idempotency_key: str
    ) -> GroupState:
        """Create the tenant's group (or converge an existing one) with at least ``grants``."""
        ...

    def add_member(self, *, tenant_id: str, grant: Grant, idempotency_key: str) -> GroupState:
        """Grant ``grant.permission`` to ``grant.subject`` (replacing any earlier grant)."""
        ...

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        """Take ``subject`` out of the tenant's group (a no-op if not a member)."""
        ...

    def disable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        """Disable every member's access to the tenant; grants are kept."""
        ...

    def enable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        """Re-enable the access that ``disable_access`` turned off."""
        ...

    def get_group(self, *, tenant_id: str) -> GroupState | None:
        """The tenant's group, or ``None`` if it has none."""
        ...

    def list_groups(self) -> list[GroupState]:
        """Every tenant group, by tenant name."""
        ...
