"""The ITSM port on the control plane's own ITIL records: the embedded default.

``DatabaseItsm`` keeps a runbook step's ticket as an ITIL record (``tenantops
itil``), so it survives a restart, is numbered like any record and is listed
with the tenant's. A step's idempotency key is the record's ``correlation_id``:
the step run again finds the record it opened (``replayed``). A change opened
by a runbook is a *standard* change — the run it belongs to passed its
approval gate — so it needs no authorisation of its own. ``update`` to a state
takes the record there one legal move at a time (each on its timeline);
states are the names of ``tenantops.itil.states`` or ServiceNow's codes.

``MirroredItsm`` wraps the ServiceNow adapter: every ticket it opens or
updates there also gets a mirror row here (``itil.mirror``).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from tenantops.auth.principal import SYSTEM, Principal
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.itsm.port import Itsm, Ticket, TicketKind
from tenantops.errors import AppError
from tenantops.itil import mirror, service, states
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import Kind


def run_of(idempotency_key: str) -> str | None:
    """The run a step's key names (the engine's keys are ``<run id>/<step>``)."""
    run_id, sep, _ = idempotency_key.partition("/")
    return run_id if sep and 0 < len(run_id) <= 36 else None


def _ticket(record: ItilRecord, *, replayed: bool = False) -> Ticket:
    fields = {str(k): str(v) for k, v in (record.fields or {}).items() if k != "type"}
    return Ticket(
        kind=TicketKind(record.kind),
        id=record.id,
        number=record.number,
        state=record.state,
        tenant=record.tenant_name or "",
        correlation_id=record.correlation_id or "",
        link=record.external_link or "",
        replayed=replayed,
        fields={"short_description": record.title, **fields},
    )


def _failed(exc: AppError) -> DriverError:
    # A refusal of the records' rules does not change on a retry; a conflict may.
    retry = Retry.RETRIABLE if exc.status in (409, 503) else Retry.PERMANENT
    return DriverError(f"itil: {exc.detail}", retry=retry)


class DatabaseItsm:
    """``Itsm`` on the ITIL records of this control plane."""

    def __init__(self, db: Database, *, actor: Principal = SYSTEM) -> None:
        self.db = db
        self.actor = actor

    def __repr__(self) -> str:
        return "DatabaseItsm(itil records)"

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
        """The record this key opened before, or a new one linked to ``tenant``."""
        extra = dict(fields or {})
        if kind is TicketKind.CHANGE:
            extra["type"] = states.STANDARD
        try:
            with self.db.write() as session:
                opened = service.open_record(
                    session,
                    kind=Kind(kind.value),
                    title=short_description or idempotency_key,
                    description=description,
                    priority=mirror.priority_of(extra),
                    actor=self.actor,
                    tenant=tenant or None,
                    source="runbook",
                    run_id=run_of(idempotency_key),
                    correlation_id=idempotency_key,
                    fields=extra,
                )
                return _ticket(opened.record, replayed=opened.replayed)
        except AppError as exc:
            raise _failed(exc) from exc

    def update(
        self,
        ticket: Ticket,
        *,
        idempotency_key: str,
        state: str | None = None,
        work_notes: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Add the work note (once per key), merge ``fields``, walk to ``state``."""
        try:
            with self.db.write() as session:
                record = service.get(session, principal=self.actor, ref=ticket.id)
                kind = Kind(record.kind)
                if work_notes:
                    service.add_note(
                        session,
                        actor=self.actor,
                        ref=record.id,
                        text=work_notes,
                        key=f"itsm:{idempotency_key}",
                    )
                if fields:
                    service.update_fields(session, actor=self.actor, ref=record.id, fields=fields)
                if state is not None:
                    self._walk(session, record, kind, state, work_notes, idempotency_key)
                return _ticket(service.get(session, principal=self.actor, ref=record.id))
        except AppError as exc:
            raise _failed(exc) from exc

    def _walk(
        self,
        session: Session,
        record: ItilRecord,
        kind: Kind,
        state: str,
        work_notes: str | None,
        key: str,
    ) -> None:
        goal = states.name_of(kind, state)
        if goal is None:
            names = ", ".join(states.TABLES[kind])
            raise DriverError(
                f"itil: {state!r} is no {kind.value} state (one of {names}, or a ServiceNow code)",
                retry=Retry.PERMANENT,
            )
        standard = (record.fields or {}).get("type") == states.STANDARD
        walk = states.path(kind, record.state, goal, standard=standard)
        if walk is None:
            raise DriverError(
                f"itil: {record.number} cannot get from {record.state} to {goal}",
                retry=Retry.PERMANENT,
            )
        resolution = work_notes or f"done by runbook step {key}"
        for step in walk:
            service.transition(
                session,
                actor=self.actor,
                ref=record.id,
                to=step,
                resolution=resolution if states.needs_resolution(kind, step) else None,
            )

    def get(self, ticket: Ticket) -> Ticket:
        """The record as it is now."""
        try:
            with self.db.read() as session:
                return _ticket(service.get(session, principal=self.actor, ref=ticket.id))
        except AppError as exc:
            raise _failed(exc) from exc


class MirroredItsm:
    """An ITSM adapter whose tickets are also kept as mirror rows in the ITIL records."""

    def __init__(self, inner: Itsm, db: Database, *, system: str, actor: Principal = SYSTEM):
        self.inner = inner
        self.db = db
        self.system = system
        self.actor = actor

    def __repr__(self) -> str:
        return f"MirroredItsm({self.inner!r})"

    def close(self) -> None:
        """Close the adapter's connections, if it has any."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

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
        """Open in the tool, then mirror the ticket (with the step's key)."""
        ticket = self.inner.open(
            kind,
            tenant=tenant,
            short_description=short_description,
            description=description,
            idempotency_key=idempotency_key,
            fields=fields,
        )
        self._mirror(ticket, tenant, idempotency_key, description, fields)
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
        """Update in the tool, then bring the mirror row to the state the tool reports."""
        updated = self.inner.update(
            ticket,
            idempotency_key=idempotency_key,
            state=state,
            work_notes=work_notes,
            fields=fields,
        )
        self._mirror(updated, ticket.tenant or updated.tenant, None, "", fields)
        return updated

    def get(self, ticket: Ticket) -> Ticket:
        """The ticket as the tool has it (read only: no mirror write)."""
        return self.inner.get(ticket)

    def _mirror(
        self,
        ticket: Ticket,
        tenant: str,
        key: str | None,
        description: str,
        fields: Mapping[str, str] | None,
    ) -> None:
        try:
            with self.db.write() as session:
                mirror.mirror(
                    session,
                    actor=self.actor,
                    kind=Kind(ticket.kind.value),
                    system=self.system,
                    external_id=ticket.id,
                    external_number=ticket.number,
                    link=ticket.link,
                    state=ticket.state,
                    tenant=tenant,
                    title=str(ticket.fields.get("short_description") or ticket.number),
                    description=description,
                    correlation_id=None if key is None else f"{self.system}:{key}",
                    run_id=None if key is None else run_of(key),
                    priority=mirror.priority_of(fields or {}),
                )
        except AppError as exc:
            raise _failed(exc) from exc
