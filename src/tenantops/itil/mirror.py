"""Mirror rows: the ITSM tool's tickets as ITIL records, so one query lists a tenant's.

With ServiceNow configured the tool is where people work the ticket; the
control plane keeps a row per ticket it opened or updated there
(``external_system``/``external_id``/``external_link``), numbered locally like
every record (the tool's number is in ``fields["external_number"]``). The
tool owns the state: a mirror takes whatever state it reports, without the
state machine (which would refuse a jump the tool allowed), and records the
move on the timeline. Only a mirror row follows: a row is a read-only copy
of its ticket, and a local record is never moved past its state machine
(a correlation id that opened a local record is a reused key, not a mirror).
Answers about one ticket can arrive out of order (a runbook step's update and
the periodic refresh, ``itil.refresh``, ask at once), so the row keeps the
tool's own version stamp of the state it holds (``external_version``:
ServiceNow's ``sys_mod_count``) and takes an answer only if its stamp is not
lower (equal: the same state). The hosts' clocks order nothing: the request
sent first may be applied last. Without a stamp on either side the answer is
applied. Every step's write stamps ``refreshed_at`` with now, so the refresh
asks for the others first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import IdempotencyMismatch, NotFound, Unprocessable
from tenantops.events import catalogue, outbox
from tenantops.itil import hooks, repository, service, states
from tenantops.itil.models import ItilNote, ItilRecord
from tenantops.itil.states import Kind
from tenantops.kit.clock import utcnow
from tenantops.tenants import service as tenants

log = structlog.get_logger("tenantops.itil")


@dataclass(frozen=True)
class Answer:
    """What the tool said of a ticket: its state and the tool's version stamp of it."""

    state: str
    version: int | None = None


def older(record: ItilRecord, version: int | None) -> bool:
    """Whether an answer stamped ``version`` is older than the state ``record`` holds;
    without a stamp on either side no order is known, and it is not."""
    held = record.external_version
    return version is not None and held is not None and version < held


def mirror(
    session: Session,
    *,
    actor: Principal,
    kind: Kind,
    system: str,
    external_id: str,
    external_number: str,
    link: str,
    state: str,
    tenant: str,
    title: str,
    description: str = "",
    correlation_id: str | None = None,
    run_id: str | None = None,
    priority: int = 3,
    version: int | None = None,
) -> ItilRecord:
    """The mirror row of ticket ``external_id`` in ``system``, created or brought up to date.

    ``version`` is the tool's stamp of the answer that told ``state``: a row holding a
    higher one keeps the newer state it has.
    """
    # A code this table does not know leaves the mirror where it is.
    name = states.name_of(kind, state)
    # Locked: of this write and a refresher's record, one reads what the other wrote.
    record = repository.by_external(session, system, external_id, for_update=True)
    if record is not None and older(record, version):
        log.info(
            "older answer left unrecorded: the row holds a newer version of the ticket",
            number=record.number,
            state=record.state,
            answer=state,
            version=version,
            held=record.external_version,
        )
        return record
    if record is None:
        try:
            tenants.get_tenant(session, principal=actor, ref=tenant)
            owner: str | None = tenant
        except NotFound:
            owner = None  # a ticket of a tenant this control plane does not know (any more)
        record, replayed = service.open_record(
            session,
            kind=kind,
            title=title or external_number or external_id,
            description=description,
            priority=priority,
            actor=actor,
            tenant=owner,
            source="itsm",
            run_id=run_id,
            correlation_id=correlation_id,
            fields={"external_number": external_number, **({} if owner else {"tenant": tenant})},
            external={"system": system, "id": external_id, "link": link},
        )
        if replayed and (record.external_system, record.external_id) != (system, external_id):
            # The key opened a record that mirrors nothing (or another ticket): following
            # the tool's state on it would move a local record past its state machine.
            raise IdempotencyMismatch(
                f"correlation id {correlation_id!r} opened {record.number}, "
                f"which is not the mirror of {system} ticket {external_number or external_id}"
            )
    if name is not None and record.state != name:
        _follow(session, record, actor, name, system)
    if version is not None:
        record.external_version = version
    record.refreshed_at = utcnow()
    return record


def follow(
    session: Session,
    record: ItilRecord,
    *,
    actor: Principal,
    state: str,
    system: str,
    version: int | None = None,
) -> bool:
    """Bring an existing mirror row to the ``state`` its ticket has now (stamped
    ``version``; the caller has checked it is not ``older``); whether it moved.

    A code this table does not know leaves the state where it is. ``refreshed_at`` is
    the caller's: the refresh set it when it claimed the row.
    """
    name = states.name_of(Kind(record.kind), state)
    moved = name is not None and record.state != name
    if name is not None and moved:
        _follow(session, record, actor, name, system)
    if version is not None:
        record.external_version = version
    return moved


def gone(
    session: Session,
    record: ItilRecord,
    *,
    actor: Principal,
    system: str,
) -> bool:
    """Note once on the timeline that the tool has no such ticket (any more); whether this
    is the first time. The row keeps the state it had: deleted there, or hidden from the
    integration user by an ACL, the last state seen is still the best copy."""
    key = f"{system}:gone:{record.external_id}"
    if repository.note_by_key(session, key) is not None:
        return False
    session.add(
        ItilNote(
            record_id=record.id,
            at=utcnow(),
            author=actor.subject,
            kind="work_note",
            text=f"{system} has no ticket {record.external_id} (any more); "
            f"the state here is the last one {system} reported",
            key=key,
        )
    )
    return True


def _follow(
    session: Session, record: ItilRecord, actor: Principal, state: str, system: str
) -> None:
    """Take the state the tool reports, whatever the machine would say (mirror rows only)."""
    if record.external_system != system:
        raise Unprocessable(f"{record.number} is no mirror of a {system} ticket; its state is ours")
    now = utcnow()
    before = record.state
    record.state = state
    if before == states.NEW and record.acknowledged_at is None:
        record.acknowledged_at = now
    if state == states.RESOLVED:
        record.resolved_at = now
    if state in states.TERMINAL:
        record.closed_at = now
    record.updated_at = now
    record.version += 1
    session.add(
        ItilNote(
            record_id=record.id,
            at=now,
            author=actor.subject,
            kind="state",
            text=f"{before} -> {state} (in {system})",
        )
    )
    audit.record(
        session,
        actor=actor,
        action="itil.record.transitioned",
        tenant_id=record.tenant_id,
        changes={"state": {"before": before, "after": state}},
        detail={"number": record.number, "external_system": system},
    )
    outbox.emit(session, catalogue.ITIL_RECORD_TRANSITIONED, hooks.event(record, actor, before))
    hooks.moved(session, record, actor)


def priority_of(fields: Mapping[str, str]) -> int:
    """The record's priority from a ticket's fields (``priority``, else 3 moderate)."""
    given = str(fields.get("priority") or "").strip()
    return int(given) if given in {"1", "2", "3", "4"} else 3
