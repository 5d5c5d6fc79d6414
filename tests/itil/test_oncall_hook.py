"""Incidents page on-call: P1/P2 trigger, in progress acknowledges, resolved ends the page.

The page is written in the record's transaction (``oncall.service``'s contract).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tenantops.db import Database
from tenantops.itil import service
from tenantops.itil.states import Kind
from tenantops.oncall.models import Page
from tests.itil.helpers import OPS, make_tenant

pytestmark = pytest.mark.usefixtures("clock")


def page_of(db: Database, record_id: str) -> Page | None:
    with db.read() as session:
        return session.scalar(select(Page).where(Page.key == f"itil:{record_id}"))


def test_a_critical_incident_pages_and_its_page_follows_the_record(db: Database) -> None:
    tenant_id = make_tenant(db, "acme")
    with db.write() as session:
        inc = service.open_record(
            session,
            kind=Kind.INCIDENT,
            title="acme down",
            description="",
            priority=1,
            actor=OPS,
            tenant="acme",
        ).record
        record_id, number = inc.id, inc.number
    page = page_of(db, record_id)
    assert page is not None
    assert (page.severity, page.status, page.record_id) == ("critical", "triggered", record_id)
    assert page.tenant_id == tenant_id
    assert page.summary.startswith(number)
    with db.write() as session:
        service.transition(session, actor=OPS, ref=number, to="in_progress")
    acknowledged = page_of(db, record_id)
    assert acknowledged is not None
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("acknowledged", "oli")
    with db.write() as session:
        service.transition(session, actor=OPS, ref=number, to="resolved", resolution="ok")
    resolved = page_of(db, record_id)
    assert resolved is not None
    assert resolved.status == "resolved"


def test_a_high_incident_pages_high_and_cancelling_resolves_the_page(db: Database) -> None:
    with db.write() as session:
        inc = service.open_record(
            session, kind=Kind.INCIDENT, title="slow", description="", priority=2, actor=OPS
        ).record
        service.transition(session, actor=OPS, ref=inc.id, to="cancelled")
        record_id = inc.id
    page = page_of(db, record_id)
    assert page is not None
    assert (page.severity, page.status) == ("high", "resolved")


def test_moderate_incidents_and_other_kinds_page_nobody(db: Database) -> None:
    with db.write() as session:
        moderate = service.open_record(
            session, kind=Kind.INCIDENT, title="blip", description="", priority=3, actor=OPS
        ).record
        problem = service.open_record(
            session, kind=Kind.PROBLEM, title="leak", description="", priority=1, actor=OPS
        ).record
        ids = [moderate.id, problem.id]
    with db.read() as session:
        assert session.scalars(select(Page)).all() == []
    assert all(page_of(db, i) is None for i in ids)
