"""ITIL records on both stores: numbering, state machines, segregation of duties on
changes, idempotent opening, notes, links, versions, audit and events, persistence."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.db import Database
from tenantops.errors import (
    Forbidden,
    IdempotencyMismatch,
    NotFound,
    PreconditionFailed,
    SegregationOfDuties,
    Unprocessable,
)
from tenantops.events.models import OutboxEvent
from tenantops.itil import service
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import Kind
from tests.conftest import Clock
from tests.itil.helpers import ADMIN, AM, GOV, OPS, OPS2, SEC, make_tenant

pytestmark = pytest.mark.usefixtures("clock")


def open_one(db: Database, kind: Kind = Kind.INCIDENT, **kwargs: Any) -> ItilRecord:
    args: dict[str, Any] = {
        "title": "queue latency",
        "description": "p99 above 2s",
        "priority": 3,
        "actor": OPS,
        **kwargs,
    }
    with db.write() as session:
        record = service.open_record(session, kind=kind, **args).record
        session.expunge(record)
        return record


def move(db: Database, ref: str, to: str, actor: Any = OPS, **kwargs: Any) -> ItilRecord:
    with db.write() as session:
        record = service.transition(session, actor=actor, ref=ref, to=to, **kwargs)
        session.expunge(record)
        return record


def test_records_are_numbered_per_kind_and_linked_to_their_tenant(
    db: Database, clock: Clock
) -> None:
    tenant_id = make_tenant(db, "acme")
    first = open_one(db, tenant="acme")
    clock.advance(seconds=1)
    second = open_one(db, tenant=tenant_id)
    change = open_one(db, Kind.CHANGE)
    problem = open_one(db, Kind.PROBLEM)
    assert (first.number, second.number) == ("INC0000001", "INC0000002")
    assert (change.number, problem.number) == ("CHG0000001", "PRB0000001")
    assert (first.tenant_id, first.tenant_name, first.state) == (tenant_id, "acme", "new")
    assert change.tenant_id is None  # the platform
    with db.read() as session:
        rows, _ = service.list_records(session, principal=OPS, tenant="acme")
        assert [r.number for r in rows] == ["INC0000002", "INC0000001"]  # newest first
        assert service.get(session, principal=OPS, ref="inc0000002").id == second.id
        with pytest.raises(NotFound):
            service.list_records(session, principal=OPS, tenant="nobody")


def test_an_incident_walks_its_machine_and_an_illegal_move_names_the_allowed_ones(
    db: Database, clock: Clock
) -> None:
    inc = open_one(db)
    with pytest.raises(Unprocessable) as illegal:
        move(db, inc.number, "closed")
    assert illegal.value.extra["allowed"] == ["cancelled", "in_progress", "resolved"]
    assert "allowed: cancelled, in_progress, resolved" in illegal.value.detail
    clock.advance(minutes=5)
    worked = move(db, inc.number, "in_progress")
    assert worked.acknowledged_at is not None
    assert worked.version == 2
    move(db, inc.number, "on_hold")
    move(db, inc.number, "in_progress")
    with pytest.raises(Unprocessable, match="needs a resolution"):
        move(db, inc.number, "resolved")
    resolved = move(db, inc.number, "resolved", resolution="restarted the consumer")
    assert resolved.resolved_at is not None
    assert resolved.resolution == "restarted the consumer"
    reopened = move(db, inc.number, "in_progress", note="it came back")
    assert reopened.resolved_at is None
    move(db, inc.number, "resolved", resolution="raised the pool size")
    closed = move(db, inc.number, "closed")
    assert closed.closed_at is not None
    with pytest.raises(Unprocessable, match="allowed: none"):
        move(db, inc.number, "in_progress")
    with db.read() as session:
        record = service.get(session, principal=OPS, ref=inc.id)
        notes = [n.text.splitlines()[0] for n in service.timeline(session, record)]
        assert notes == [
            "new -> in_progress",
            "in_progress -> on_hold",
            "on_hold -> in_progress",
            "in_progress -> resolved",
            "resolved -> in_progress",
            "in_progress -> resolved",
            "resolved -> closed",
        ]
        assert record.version == 8
        # Every change is audited and announced; the chain still verifies.
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
        assert actions.count("itil.record.transitioned") == 7
        assert actions[0] == "itil.record.opened"
        assert audit.verify(session).ok
        types = session.scalars(select(OutboxEvent.type)).all()
        assert types.count("io.tenantops.itil.record.transitioned") == 7
        assert types.count("io.tenantops.itil.record.opened") == 1


def test_a_problem_and_its_incident_are_linked_and_a_problem_needs_a_root_cause(
    db: Database,
) -> None:
    problem = open_one(db, Kind.PROBLEM, title="consumer leaks connections")
    inc = open_one(db, problem=problem.number)
    assert inc.problem_id == problem.id
    other = open_one(db)
    with db.write() as session:
        linked = service.link_problem(session, actor=OPS, ref=other.number, problem=problem.id)
        assert linked.problem_id == problem.id
        with pytest.raises(Unprocessable, match="not a problem"):
            service.link_problem(session, actor=OPS, ref=other.number, problem=inc.number)
        with pytest.raises(Unprocessable, match="not linked to another problem"):
            service.link_problem(session, actor=OPS, ref=problem.number, problem=problem.number)
    for state in ("assess", "root_cause_analysis", "fix_in_progress"):
        move(db, problem.number, state)
    with pytest.raises(Unprocessable, match="needs a resolution"):
        move(db, problem.number, "resolved")
    assert move(db, problem.number, "resolved", resolution="pool fixed").state == "resolved"
    with pytest.raises(Unprocessable):
        move(db, problem.number, "cancelled")


def test_a_change_is_authorised_by_governance_never_by_who_opened_it(db: Database) -> None:
    change = open_one(db, Kind.CHANGE, actor=AM, title="raise acme's quota")
    move(db, change.number, "assess")
    move(db, change.number, "authorize")
    with pytest.raises(SegregationOfDuties, match="governance or admin"):
        move(db, change.number, "scheduled", actor=OPS)
    own = open_one(db, Kind.CHANGE, actor=ADMIN)
    move(db, own.number, "assess")
    move(db, own.number, "authorize")
    with pytest.raises(SegregationOfDuties, match="may not authorise"):
        move(db, own.number, "scheduled", actor=ADMIN)
    assert move(db, own.number, "cancelled", actor=GOV).state == "cancelled"
    assert move(db, change.number, "scheduled", actor=GOV).state == "scheduled"
    with pytest.raises(Forbidden):  # governance authorises; it does not implement
        move(db, change.number, "implement", actor=GOV)
    move(db, change.number, "implement")
    with pytest.raises(Unprocessable, match="allowed: review"):
        move(db, change.number, "cancelled")
    move(db, change.number, "review")
    with pytest.raises(Unprocessable, match="needs a resolution"):
        move(db, change.number, "closed")
    closed = move(db, change.number, "closed", resolution="quota raised, no alerts")
    assert closed.closed_at is not None


def test_who_may_open_what(db: Database) -> None:
    with pytest.raises(Forbidden):
        open_one(db, actor=AM)  # an account manager opens changes only
    with pytest.raises(Forbidden):
        open_one(db, actor=GOV)
    assert open_one(db, Kind.CHANGE, actor=AM).opened_by == "amy"
    assert open_one(db, actor=SEC).opened_by == "sue"
    with pytest.raises(Unprocessable, match="priority"):
        open_one(db, priority=5)
    with pytest.raises(Unprocessable, match="standard"):
        open_one(db, Kind.CHANGE, fields={"type": "standard"})
    with pytest.raises(Unprocessable, match="kind must be one of"):
        open_one(db, "request")  # type: ignore[arg-type]
    with db.read() as session:
        assert session.scalar(select(ItilRecord.number).where(ItilRecord.priority == 5)) is None


def test_opening_is_idempotent_by_correlation_id(db: Database) -> None:
    first = open_one(db, correlation_id="run-1/incident")
    with db.write() as session:
        again = service.open_record(
            session,
            kind=Kind.INCIDENT,
            title="another title",
            description="",
            priority=1,
            actor=OPS2,
            correlation_id="run-1/incident",
        )
        assert again.replayed
        assert again.record.id == first.id
        assert again.record.priority == 3  # the record as it was opened
    with pytest.raises(IdempotencyMismatch, match="INC0000001"):
        open_one(db, Kind.CHANGE, correlation_id="run-1/incident")
    with db.read() as session:
        assert len(session.scalars(select(ItilRecord)).all()) == 1


def test_a_replayed_correlation_id_answers_only_what_get_would(db: Database) -> None:
    from tenantops.auth.principal import Principal, Role

    alpha = make_tenant(db, "alpha")
    make_tenant(db, "bravo")
    key = "alert:3f2a9c:2026-11-27T09:00:00Z"
    theirs = open_one(db, tenant="bravo", title="bravo secret", actor=ADMIN, correlation_id=key)
    eve = Principal("eve", frozenset({Role.OPS_ENGINEER}), tenant="alpha")

    def replay(actor: Any, **kwargs: Any) -> service.Opened:
        with db.write() as session:
            return service.open_record(
                session,
                **{
                    "kind": Kind.INCIDENT,
                    "title": "t",
                    "description": "",
                    "priority": 3,
                    "actor": actor,
                    "correlation_id": key,
                    **kwargs,
                },
            )

    with db.read() as session, pytest.raises(NotFound):
        service.get(session, principal=eve, ref=theirs.id)
    # As get: a record the caller may not see is not found, whatever it is.
    with pytest.raises(NotFound) as hidden:
        replay(eve, tenant="alpha")
    assert "bravo" not in str(hidden.value.detail)
    with pytest.raises(NotFound):
        replay(eve, tenant="alpha", kind=Kind.CHANGE)
    # Seen, but asked for another tenant, the platform or another kind: a reused key.
    with pytest.raises(IdempotencyMismatch, match="opened INC0000001 for bravo"):
        replay(OPS, tenant=alpha)
    with pytest.raises(IdempotencyMismatch, match="for bravo, not for this request's platform"):
        replay(OPS)
    with pytest.raises(IdempotencyMismatch, match="a incident, not a change"):
        replay(OPS, tenant="bravo", kind=Kind.CHANGE)
    again = replay(OPS, tenant="bravo")
    assert (again.replayed, again.record.id) == (True, theirs.id)
    with db.read() as session:
        assert [r.id for r in session.scalars(select(ItilRecord)).all()] == [theirs.id]


def test_a_note_key_used_on_another_record_is_a_reused_key(db: Database) -> None:
    first = open_one(db)
    second = open_one(db)
    with db.write() as session:
        note = service.add_note(session, actor=OPS, ref=first.number, text="paged", key="k")
    with db.write() as session:
        again = service.add_note(session, actor=OPS, ref=first.number, text="paged", key="k")
        assert again.id == note.id
    with (
        pytest.raises(IdempotencyMismatch, match="used on another record, not INC0000002"),
        db.write() as session,
    ):
        service.add_note(session, actor=OPS, ref=second.number, text="paged", key="k")
    with db.read() as session:
        record = service.get(session, principal=OPS, ref=second.id)
        assert (list(service.timeline(session, record)), record.version) == ([], 1)


def test_a_records_type_is_not_updated_after_it_is_opened(db: Database) -> None:
    change = open_one(db, Kind.CHANGE)
    with (
        pytest.raises(Unprocessable, match="type is set when it is opened"),
        db.write() as session,
    ):
        service.update_fields(session, actor=ADMIN, ref=change.id, fields={"type": "standard"})
    with db.write() as session:
        record = service.update_fields(session, actor=ADMIN, ref=change.id, fields={"risk": "low"})
        assert record.fields == {"risk": "low"}
        assert service.next_states(record) == ["assess", "cancelled"]


def test_notes_are_idempotent_by_key_and_versions_guard_changes(db: Database) -> None:
    inc = open_one(db)
    with db.write() as session:
        service.add_note(session, actor=OPS, ref=inc.number, text="looking", key="k1")
        service.add_note(session, actor=OPS, ref=inc.number, text="looking", key="k1")
        service.add_note(session, actor=OPS, ref=inc.number, text="still looking")
        record = service.assign(session, actor=OPS, ref=inc.number, assigned_to="team-db")
        assert record.assigned_to == "team-db"
        assert record.version == 4
    with pytest.raises(PreconditionFailed, match="version 4, not 1"):
        move(db, inc.number, "in_progress", expected_version=1)
    assert move(db, inc.number, "in_progress", expected_version=4).version == 5
    with db.read() as session:
        kinds = [
            n.kind
            for n in service.timeline(session, service.get(session, principal=OPS, ref=inc.id))
        ]
        assert kinds == ["work_note", "work_note", "assignment", "state"]


def test_a_tenant_owner_sees_their_own_tenants_records_only(db: Database) -> None:
    from tenantops.auth.principal import Principal, Role

    make_tenant(db, "acme")
    make_tenant(db, "globex")
    ours = open_one(db, tenant="acme")
    theirs = open_one(db, tenant="globex")
    platform = open_one(db)
    owner = Principal("olivia", frozenset({Role.TENANT_OWNER}), tenant="acme")
    with db.read() as session:
        rows, _ = service.list_records(session, principal=owner)
        assert [r.id for r in rows] == [ours.id]
        assert service.get(session, principal=owner, ref=ours.number).id == ours.id
        for hidden in (theirs, platform):
            with pytest.raises(NotFound):
                service.get(session, principal=owner, ref=hidden.number)
        with pytest.raises(NotFound):
            service.list_records(session, principal=owner, tenant="globex")


def test_records_survive_a_new_database_object(db: Database) -> None:
    inc = open_one(db, correlation_id="run-9/open")
    move(db, inc.number, "in_progress")
    again = Database(db.url)
    try:
        with again.read() as session:
            record = service.get(session, principal=OPS, ref=inc.number)
            assert (record.state, record.correlation_id) == ("in_progress", "run-9/open")
            rows, _ = service.list_records(session, principal=OPS, open_only=True)
            assert [r.number for r in rows] == ["INC0000001"]
    finally:
        again.dispose()


def test_listing_filters_and_pages(db: Database, clock: Clock) -> None:
    numbers = []
    for _ in range(5):
        numbers.append(open_one(db).number)
        clock.advance(seconds=1)
    change = open_one(db, Kind.CHANGE)
    move(db, numbers[0], "cancelled")
    with db.read() as session:
        page, cursor = service.list_records(session, principal=OPS, kind=Kind.INCIDENT, limit=2)
        assert [r.number for r in page] == ["INC0000005", "INC0000004"]
        assert cursor is not None
        rest, end = service.list_records(
            session, principal=OPS, kind=Kind.INCIDENT, cursor=cursor, limit=10
        )
        assert [r.number for r in rest] == ["INC0000003", "INC0000002", "INC0000001"]
        assert end is None
        live, _ = service.list_records(session, principal=OPS, kind=Kind.INCIDENT, open_only=True)
        assert "INC0000001" not in [r.number for r in live]
        assert len(live) == 4
        cancelled, _ = service.list_records(session, principal=OPS, state="cancelled")
        assert [r.number for r in cancelled] == ["INC0000001"]
        changes, _ = service.list_records(session, principal=OPS, kind=Kind.CHANGE)
        assert [r.id for r in changes] == [change.id]


def test_resolved_from_new_is_unacknowledged_until_someone_reopens_it(
    db: Database, clock: Clock
) -> None:
    inc = open_one(db)
    resolved = move(db, inc.number, "resolved", resolution="the alert cleared")
    assert resolved.acknowledged_at is None  # nobody took it up
    clock.advance(minutes=10)
    reopened = move(db, inc.number, "in_progress", note="it is back")
    assert reopened.acknowledged_at == clock.now  # taken up now, on reopening
