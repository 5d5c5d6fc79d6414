"""The ITSM port on the control plane's own ITIL records: the embedded default.

``DatabaseItsm`` keeps a runbook step's ticket as an ITIL record (``tenantops
itil``), so it survives a restart, is numbered like any record and is listed
with the tenant's. A step's idempotency key is the record's ``correlation_id``:
the step run again finds the record it opened (``replayed``). A change opened
by a runbook is a *standard* change — the run it belongs to passed its
approval gate — so it needs no authorisation of its own. ``update`` to a state
takes the record there one legal move at a time (each on its timeline);
states are the names of ``tenantops.itil.states`` or ServiceNow's codes.

The driver acts as ``SYSTEM`` (admin), who never opened a person's change, so
segregation of duties is held here as well as in the service: a step updates
only the records its own run opened (not a person's, nor a mirror row), never
takes a change that is not standard out of ``authorize`` (a person authorises
it), and cannot make a change standard (``itil.service.update_fields`` refuses
``type``).

``MirroredItsm`` wraps the ServiceNow adapter: every ticket it opens or
updates there also gets a mirror row here (``itil.mirror``), ordered by the
ticket's version stamp; ``state_of`` is what the periodic refresh of those rows
asks it (``itil.refresh``).
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


def _opened_by_run(record: ItilRecord, run_id: str | None) -> bool:
    """Whether the run ``run_id`` opened ``record`` (its ``run_id``, or its step's key)."""
    if run_id is None:
        return False
    if record.run_id == run_id:
        return True
    key = record.correlation_id or ""
    # "<run>/<step>" as the engine writes it, or "<run>:<...>"; never "<run>0/<step>".
    return key.startswith(run_id) and key[len(run_id) : len(run_id) + 1] in ("/", ":")


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
        """Add the work note (once per key), merge ``fields``, walk to ``state``.

        Only a record this step's run opened; every rule is checked before anything
        is written, so a refused update leaves the record as it was.
        """
        try:
            with self.db.write() as session:
                record = service.get(session, principal=self.actor, ref=ticket.id)
                kind = Kind(record.kind)
                self._owned(record, idempotency_key)
                walk = None if state is None else self._plan(record, kind, state)
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
                if walk:
                    self._walk(session, record, kind, walk, work_notes, idempotency_key)
                return _ticket(service.get(session, principal=self.actor, ref=record.id))
        except AppError as exc:
            raise _failed(exc) from exc

    @staticmethod
    def _owned(record: ItilRecord, key: str) -> None:
        if record.external_system is not None:
            raise DriverError(
                f"itil: {record.number} mirrors {record.external_system} ticket "
                f"{(record.fields or {}).get('external_number') or record.external_id}; "
                "its copy here is read only",
                retry=Retry.PERMANENT,
            )
        run_id = run_of(key)
        if not _opened_by_run(record, run_id):
            raise DriverError(
                f"itil: {record.number} was not opened by this step's run (key {key!r}); "
                "a runbook step updates only the records its own run opened",
                retry=Retry.PERMANENT,
            )

    @staticmethod
    def _plan(record: ItilRecord, kind: Kind, state: str) -> list[str]:
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
        if kind is Kind.CHANGE and not standard and states.AUTHORIZE in [record.state, *walk][:-1]:
            # Segregation of duties: the run's actor is no person and approved nothing.
            raise DriverError(
                f"itil: {record.number} is a normal change; a person (governance or admin, "
                f"not its opener) must authorise it, a runbook step does not take it out of "
                f"{states.AUTHORIZE}",
                retry=Retry.PERMANENT,
            )
        return walk

    def _walk(
        self,
        session: Session,
        record: ItilRecord,
        kind: Kind,
        walk: list[str],
        work_notes: str | None,
        key: str,
    ) -> None:
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
        """Update in the tool, then bring the mirror row to the state the tool reports
        (unless the row holds a newer version of the ticket already: see ``itil.mirror``)."""
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

    def state_of(self, kind: Kind, external_id: str) -> mirror.Answer | None:
        """The state the tool has ticket ``external_id`` in now, with the tool's version
        stamp of it; None when it has no such ticket (404: deleted, or hidden from the
        integration user). Any other failure is raised: the refresh ends its turn."""
        ticket = Ticket(
            kind=TicketKind(kind.value),
            id=external_id,
            number="",
            state="",
            tenant="",
            correlation_id="",
        )
        try:
            now = self.inner.get(ticket)
        except DriverError as exc:
            if exc.status == 404:
                return None
            raise
        return mirror.Answer(now.state, now.version)

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
                    version=ticket.version,
                )
        except AppError as exc:
            raise _failed(exc) from exc
