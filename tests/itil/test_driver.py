"""The ITSM port on the ITIL records: ``itsm.open``/``itsm.update`` steps make records,
and ServiceNow's tickets (recorded exchanges replayed locally) get mirror rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantops.auth.principal import SYSTEM
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, local_drivers
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.itsm.database import DatabaseItsm, MirroredItsm, _ticket, run_of
from tenantops.drivers.itsm.port import TicketKind
from tenantops.drivers.itsm.servicenow import ServiceNowItsm
from tenantops.errors import IdempotencyMismatch
from tenantops.itil import mirror, service
from tenantops.itil.states import Kind
from tenantops.runbooks.actions import StepFailed
from tests.drivers.test_argocd import Replay, replay  # noqa: F401
from tests.drivers.test_itsm import ex, open_incident, settings
from tests.itil.helpers import GOV, OPS, make_tenant
from tests.provisioning.test_actions import ctx

pytestmark = pytest.mark.usefixtures("clock")


def test_an_itsm_open_step_makes_a_record_of_the_runs_tenant(db: Database, tmp_path: Path) -> None:
    tenant_id = make_tenant(db, "acme")
    actions = driver_actions(Settings(data_dir=tmp_path), db)
    params = {"kind": "incident", "short_description": "acme isolated", "fields": {"priority": "2"}}
    opened = actions["itsm.open"].run(ctx("incident", run_id="run-7", params=params))
    again = actions["itsm.open"].run(ctx("incident", run_id="run-7", params=params))
    assert (opened.output["number"], again.output["id"]) == ("INC0000001", opened.output["id"])
    assert again.output["replayed"]
    closed = actions["itsm.update"].run(
        ctx(
            "close",
            run_id="run-7",
            params={"ticket": opened.output, "state": "7", "work_notes": "isolation complete"},
        )
    )
    assert closed.output["state"] == "closed"  # 7: ServiceNow's closed, walked to legally
    with db.read() as session:
        (record,), _ = service.list_records(session, principal=OPS, tenant="acme")
        assert (record.tenant_id, record.source, record.run_id) == (tenant_id, "runbook", "run-7")
        assert (record.priority, record.correlation_id) == (2, "run-7/incident")
        assert record.resolution == "isolation complete"
        notes = [n.text.splitlines()[0] for n in service.timeline(session, record)]
        assert notes == [
            "isolation complete",
            "new -> resolved",
            "resolved -> closed",
        ]


def test_a_runbooks_change_is_standard_and_closes_without_authorisation(
    db: Database, tmp_path: Path
) -> None:
    make_tenant(db, "acme")
    actions = driver_actions(Settings(data_dir=tmp_path), db)
    opened = actions["itsm.open"].run(ctx("change", params={"kind": "change"}))
    assert opened.output["number"] == "CHG0000001"
    assert "type" not in opened.output["fields"]
    done = actions["itsm.update"].run(
        ctx("done", params={"ticket": opened.output, "state": "closed"})
    )
    assert done.output["state"] == "closed"
    with db.read() as session:
        record = service.get(session, principal=SYSTEM, ref="CHG0000001")
        assert record.fields["type"] == "standard"
        assert record.resolution == "done by runbook step run-1/done"
    # A ticket of a state machine it cannot reach is refused for good, not retried.
    with pytest.raises(StepFailed, match="cannot get from closed to new") as refused:
        actions["itsm.update"].run(ctx("back", params={"ticket": done.output, "state": "new"}))
    assert not refused.value.retriable


def test_a_step_never_authorises_a_normal_change_nor_makes_one_standard(db: Database) -> None:
    make_tenant(db, "acme")
    with db.write() as session:
        # A normal change of run-1's (not standard: nothing authorised it).
        change = service.open_record(
            session,
            kind=Kind.CHANGE,
            title="risky",
            description="",
            priority=3,
            actor=OPS,
            tenant="acme",
            source="runbook",
            run_id="run-1",
            correlation_id="run-1/change",
        ).record
        ticket = _ticket(change)
    itsm = DatabaseItsm(db)
    # As far as authorize, and no further: a person authorises a change.
    assert itsm.update(ticket, idempotency_key="run-1/assess", state="authorize").state == (
        "authorize"
    )
    for state in ("scheduled", "closed", "cancelled"):
        with pytest.raises(
            DriverError, match=r"a person \(governance or admin, not its opener\) must authorise it"
        ) as refused:
            itsm.update(ticket, idempotency_key="run-1/close", state=state, work_notes="done")
        assert refused.value.retry is Retry.PERMANENT
    with pytest.raises(DriverError, match="type is set when it is opened") as retyped:
        itsm.update(ticket, idempotency_key="run-1/retype", fields={"type": "standard"})
    assert retyped.value.retry is Retry.PERMANENT
    with db.read() as session:
        record = service.get(session, principal=OPS, ref=change.id)
        assert (record.state, record.fields) == ("authorize", {})
        assert [n.kind for n in service.timeline(session, record)] == ["state"] * 2
    with db.write() as session:
        service.transition(session, actor=GOV, ref=change.id, to="scheduled")
    closed = itsm.update(ticket, idempotency_key="run-1/close", state="closed", work_notes="done")
    assert closed.state == "closed"


def test_a_step_updates_only_records_its_own_run_opened(db: Database) -> None:
    make_tenant(db, "acme")
    itsm = DatabaseItsm(db)
    ours = itsm.open(
        TicketKind.INCIDENT,
        tenant="acme",
        short_description="s",
        description="",
        idempotency_key="run-1/incident",
    )
    with db.write() as session:
        manual = service.open_record(
            session, kind=Kind.INCIDENT, title="a person's", description="", priority=3, actor=OPS
        ).record
        mirrored = mirror.mirror(
            session,
            actor=SYSTEM,
            kind=Kind.INCIDENT,
            system="servicenow",
            external_id="46d4",
            external_number="INC0010023",
            link="",
            state="1",
            tenant="acme",
            title="in the tool",
            correlation_id="servicenow:run-1/snow",
            run_id="run-1",
        )
        theirs, copy = _ticket(manual), _ticket(mirrored)
    for key in ("run-2/close", "run-10/close", "run-1", "close"):
        with pytest.raises(DriverError, match="updates only the records its own run opened") as no:
            itsm.update(ours, idempotency_key=key, state="in_progress")
        assert no.value.retry is Retry.PERMANENT
    for other in (theirs, copy):
        with pytest.raises(DriverError) as refused:
            itsm.update(other, idempotency_key="run-1/close", work_notes="x", state="closed")
        assert refused.value.retry is Retry.PERMANENT
    assert "read only" in str(refused.value)
    assert itsm.update(ours, idempotency_key="run-1/work", state="2").state == "in_progress"
    with db.read() as session:
        for record in (manual, mirrored):
            again = service.get(session, principal=OPS, ref=record.id)
            assert (again.state, again.version) == ("new", 1)


def test_a_mirror_never_moves_a_local_record(db: Database) -> None:
    # A person's change under the key a ServiceNow mirror would use.
    with db.write() as session:
        local = service.open_record(
            session,
            kind=Kind.CHANGE,
            title="risky",
            description="",
            priority=3,
            actor=OPS,
            correlation_id="servicenow:run-1/change",
        ).record
        for state in ("assess", "authorize"):
            service.transition(session, actor=OPS, ref=local.id, to=state)
    with (
        pytest.raises(IdempotencyMismatch, match="not the mirror of servicenow ticket CHG0030001"),
        db.write() as session,
    ):
        mirror.mirror(
            session,
            actor=SYSTEM,
            kind=Kind.CHANGE,
            system="servicenow",
            external_id="9a1b",
            external_number="CHG0030001",
            link="",
            state="closed",
            tenant="",
            title="risky",
            correlation_id="servicenow:run-1/change",
        )
    with db.read() as session:
        assert service.get(session, principal=OPS, ref=local.id).state == "authorize"


def test_the_run_of_a_step_key() -> None:
    assert run_of("0193a0c4-5b6e-7d2f-9a10-2b3c4d5e6f70/incident") == (
        "0193a0c4-5b6e-7d2f-9a10-2b3c4d5e6f70"
    )
    assert run_of("no-run") is None


def test_servicenow_tickets_get_mirror_rows_listed_with_the_tenant(
    db: Database,
    replay: Replay,  # noqa: F811
) -> None:
    make_tenant(db, "acme")
    replay.script(
        ex("lookup_incident_none"),
        ex("create_incident"),
        ex("journal_none"),
        ex("update_incident"),
    )
    snow = ServiceNowItsm(settings(replay.url))
    itsm = MirroredItsm(snow, db, system="servicenow")
    try:
        ticket = open_incident(itsm)
        updated = itsm.update(ticket, idempotency_key="s5", state="in_progress", work_notes="x")
    finally:
        itsm.close()
    replay.assert_done()
    assert updated.state == "2"
    assert replay.seen[-1].body["state"] == "2"  # our name, the instance's code
    with db.read() as session:
        (record,), _ = service.list_records(session, principal=OPS, tenant="acme")
        assert record.number == "INC0000001"  # the local number stays unique
        assert record.fields["external_number"] == "INC0010023"
        assert (record.external_system, record.external_id) == ("servicenow", ticket.id)
        assert record.external_link == ticket.link
        assert (record.source, record.state) == ("itsm", "in_progress")
        assert record.correlation_id == f"servicenow:{ticket.correlation_id}"


def test_servicenow_configured_is_mirrored(db: Database, tmp_path: Path) -> None:
    configured = Settings(data_dir=tmp_path, servicenow={"username": "u", "password": "p"})
    itsm = local_drivers(configured, db).itsm
    assert isinstance(itsm, MirroredItsm)
    assert isinstance(itsm.inner, ServiceNowItsm)
    itsm.close()
