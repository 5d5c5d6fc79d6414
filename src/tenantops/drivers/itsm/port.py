"""The ITSM port: open, update and read tickets, at most one per step's idempotency key.

Value objects only. ``open`` with a key it has seen returns the ticket it
opened then (``replayed``) instead of a second one, so a runbook step
re-executed after a crash does not file the same incident twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class TicketKind(StrEnum):
    """What kind of record."""

    INCIDENT = "incident"
    CHANGE = "change"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Ticket:
    """A record in the ITSM tool; ``id`` is the tool's key, ``number`` what people quote.

    ``version`` is the tool's own count of the record's updates (ServiceNow's
    ``sys_mod_count``), so two answers about one record are ordered without any
    host's clock; None where the tool keeps none (the built-in records).
    """

    kind: TicketKind
    id: str
    number: str
    state: str
    tenant: str
    correlation_id: str
    link: str = ""
    replayed: bool = False
    fields: Mapping[str, str] = field(default_factory=dict)
    version: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ticket:
        """The ticket ``as_dict`` gave (a step's output handed to a later step)."""
        return cls(
            kind=TicketKind(str(data["kind"])),
            id=str(data["id"]),
            number=str(data.get("number") or ""),
            state=str(data.get("state") or ""),
            tenant=str(data.get("tenant") or ""),
            correlation_id=str(data.get("correlation_id") or ""),
            link=str(data.get("link") or ""),
            fields={str(k): str(v) for k, v in dict(data.get("fields") or {}).items()},
            version=None if data.get("version") is None else int(data["version"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "id": self.id,
            "number": self.number,
            "state": self.state,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "link": self.link,
            "replayed": self.replayed,
            "fields": dict(self.fields),
            "version": self.version,
        }


class Itsm(Protocol):
    """An IT service management tool (ServiceNow; in memory locally)."""

    def open(
        self,
        kind: TicketKind,
        *,
        tenant: str,
        short_description: str,
        description: str,
        idempotency_key: str,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Open a record linked to ``tenant``, or return the one this key opened before."""
        ...

    def update(
        self,
        ticket: Ticket,
        *,
        idempotency_key: str,
        state: str | None = None,
        work_notes: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Set ``state``/``fields`` and add ``work_notes``; the record as it is afterwards."""
        ...

    def get(self, ticket: Ticket) -> Ticket:
        """The record as it is now."""
        ...
