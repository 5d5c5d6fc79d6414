"""An in-memory ITSM: the embedded default and the test seam (nothing survives a restart).

Records live in this process only — no tables, no migrations. It keeps the
port's promise: one record per idempotency key, replayed on a second ``open``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import replace

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.itsm.port import Ticket, TicketKind

PREFIX = {TicketKind.INCIDENT: "INC", TicketKind.CHANGE: "CHG", TicketKind.PROBLEM: "PRB"}


class InMemoryItsm:
    """``Itsm`` in a dict, keyed by idempotency key."""

    def __init__(self) -> None:
        self._by_key: dict[str, Ticket] = {}
        self._by_id: dict[str, Ticket] = {}
        self.notes: dict[str, list[str]] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InMemoryItsm({len(self._by_id)} records)"

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
        """The record this key opened before, or a new one."""
        with self._lock:
            done = self._by_key.get(idempotency_key)
            if done is not None:
                if done.kind is not kind:
                    raise DriverError(
                        f"idempotency key {idempotency_key!r} opened a {done.kind}, not a {kind}",
                        retry=Retry.PERMANENT,
                    )
                return replace(self._by_id[done.id], replayed=True)
            n = next(self._numbers)
            ticket = Ticket(
                kind=kind,
                id=f"local-{n}",
                number=f"{PREFIX[kind]}{n:07d}",
                state="1",
                tenant=tenant,
                correlation_id=idempotency_key,
                fields={"short_description": short_description, **(fields or {})},
            )
            self._by_key[idempotency_key] = self._by_id[ticket.id] = ticket
            return ticket

    def update(
        self,
        ticket: Ticket,
        *,
        idempotency_key: str,
        state: str | None = None,
        work_notes: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Set state and fields; a work note is added once per key."""
        with self._lock:
            current = self._get(ticket)
            updated = replace(
                current,
                state=state if state is not None else current.state,
                fields={**current.fields, **(fields or {})},
                replayed=False,
            )
            self._by_id[ticket.id] = updated
            if work_notes:
                notes = self.notes.setdefault(ticket.id, [])
                marked = f"{work_notes}\n[tenantops {idempotency_key}]"
                if marked not in notes:
                    notes.append(marked)
            return updated

    def get(self, ticket: Ticket) -> Ticket:
        """The record as it is now."""
        with self._lock:
            return replace(self._get(ticket), replayed=False)

    def _get(self, ticket: Ticket) -> Ticket:
        found = self._by_id.get(ticket.id)
        if found is None:
            raise DriverError(f"no {ticket.kind} {ticket.id}", retry=Retry.PERMANENT)
        return found
