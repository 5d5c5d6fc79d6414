"""Pages through the service: trigger (idempotent per key), acknowledge, resolve, and what
each change leaves behind (timeline, audit entry, event), on both stores."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import NotFound, Unprocessable
from tenantops.events.models import OutboxEvent
from tenantops.oncall import service
from tenantops.oncall.models import Page, PageEvent
from tests.conftest import Clock

OLI = Principal(subject="oli@acme.example", roles=frozenset({Role.OPS_ENGINEER}))


def test_trigger_opens_a_page_due_at_once_on_the_default_policy(db: Database, clock: Clock) -> None:
    with db.write() as session:
        page = service.trigger(
            session, key="itil:r1", summary="orders API down", severity="critical", actor=OLI
        )
    assert page.status == "triggered"
    assert page.policy == "default"
    assert page.config_version is None
    assert page.level is None
    assert page.levels == 2
    assert page.round == 0
    assert page.next_at == clock.now
    assert not page.exhausted
    with db.read() as session:
        events = session.scalars(select(PageEvent.event)).all()
        actions = session.scalars(select(AuditEntry.action)).all()
        types = session.scalars(select(OutboxEvent.type)).all()
    assert events == ["triggered"]
    assert "oncall.page.triggered" in actions
    assert types == ["io.tenantops.oncall.page.triggered"]


def test_trigger_is_idempotent_per_key_whatever_the_status(db: Database, clock: Clock) -> None:
    with db.write() as session:
        first = service.trigger(
            session, key="itil:r1", summary="orders API down", severity="high", actor=OLI
        )
        service.resolve(session, key="itil:r1", actor=OLI)
    with db.write() as session:
        again = service.trigger(
            session, key="itil:r1", summary="something else", severity="info", actor=OLI
        )
    assert again.id == first.id
    assert again.status == "resolved"
    assert again.summary == "orders API down"
    with db.read() as session:
        assert len(session.scalars(select(Page)).all()) == 1


def test_acknowledge_stops_escalation_and_is_idempotent(db: Database, clock: Clock) -> None:
    with db.write() as session:
        service.trigger(session, key="k1", summary="disk full", severity="warning", actor=OLI)
    clock.advance(minutes=3)
    with db.write() as session:
        acked = service.acknowledge(session, key="k1", actor=OLI)
        twice = service.acknowledge(session, key="k1", actor=OLI)
    assert acked is not None
    assert twice is not None
    assert acked.status == "acknowledged"
    assert acked.next_at is None
    assert acked.acknowledged_by == "oli@acme.example"
    assert acked.acknowledged_at == clock.now
    assert twice.version == acked.version
    with db.write() as session:
        assert service.acknowledge(session, key="nope", actor=OLI) is None
        assert service.resolve(session, key="nope", actor=OLI) is None
        done = service.resolve(session, key="k1", actor=OLI)
        after = service.acknowledge(session, key="k1", actor=OLI)
    assert done is not None
    assert done.status == "resolved"
    assert after is not None
    assert after.status == "resolved"
    with db.read() as session:
        detail = service.get_page(session, page_id=done.id)
    assert [e.event for e in detail.timeline] == ["triggered", "acknowledged", "resolved"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"severity": "urgent"}, "severity"),
        ({"summary": "   "}, "summary"),
        ({"key": ""}, "key"),
    ],
)
def test_a_bad_trigger_is_refused_and_writes_nothing(
    db: Database, clock: Clock, fields: dict[str, str], param: str
) -> None:
    args = {"key": "k", "summary": "disk full", "severity": "high"} | fields
    with pytest.raises(Unprocessable, match=param), db.write() as session:
        service.trigger(session, actor=OLI, **args)
    with db.read() as session:
        assert session.scalars(select(Page)).all() == []


def test_a_page_for_an_unknown_tenant_is_a_404(db: Database, clock: Clock) -> None:
    with pytest.raises(NotFound), db.write() as session:
        service.trigger(
            session, key="k", summary="x down", severity="high", actor=OLI, tenant_id="ghost"
        )


def test_two_triggers_of_one_key_at_once_open_one_page(db: Database, clock: Clock) -> None:
    start = threading.Barrier(4)
    ids: list[str] = []
    errors: list[BaseException] = []

    def trigger() -> None:
        try:
            start.wait()
            with db.write() as session:
                page = service.trigger(
                    session, key="itil:same", summary="db down", severity="critical", actor=OLI
                )
            ids.append(page.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=trigger) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
    with db.read() as session:
        assert len(session.scalars(select(Page)).all()) == 1
        assert session.scalars(select(PageEvent.event)).all() == ["triggered"]
