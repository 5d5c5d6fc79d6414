"""Alerts that open ITIL incidents (and page on-call), and resolutions that resolve them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.alerts.incidents import priority_for
from tenantops.alerts.models import Alert
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.itil import service as itil
from tenantops.itil.models import ItilNote, ItilRecord
from tenantops.oncall.models import Page
from tests.alerts.payloads import alert, notification, resolved

URL = "/api/v1/webhooks/alertmanager"


def post(client: TestClient, body: Any) -> None:
    from tests.alerts.conftest import AM

    r = client.post(URL, json=body, headers=AM)
    assert r.status_code == 200, r.text


def incidents(db: Database) -> list[ItilRecord]:
    with db.read() as session:
        query = select(ItilRecord).where(ItilRecord.kind == "incident").order_by(ItilRecord.seq)
        return list(session.execute(query).scalars())


def pages(db: Database) -> list[Page]:
    with db.read() as session:
        return list(session.execute(select(Page)).scalars())


@pytest.mark.parametrize(
    ("labels", "playbook", "expected"),
    [
        ({"severity": "critical"}, False, 1),
        ({"severity": "Critical"}, False, 1),
        ({"severity": "warning"}, False, None),  # not in the default severities
        ({"severity": "critical"}, True, None),  # a playbook owns the response
        ({"severity": "critical", "tenantops_incident": "false"}, False, None),
        ({"severity": "warning", "tenantops_incident": "true"}, True, 3),
        ({"severity": "warning", "tenantops_incident": "2"}, False, 2),
        ({"tenantops_incident": "yes"}, False, 4),
        ({}, False, None),
    ],
)
def test_which_alert_opens_an_incident_at_which_priority(
    labels: dict[str, str], playbook: bool, expected: int | None
) -> None:
    got = priority_for(labels, severities=["critical"], has_playbook=playbook)
    assert got == expected


def test_a_critical_alert_opens_one_incident_that_pages_and_its_resolution_resolves_it(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    firing = alert(tenant["name"], playbook=None, alertname="TenantApiDown", severity="critical")
    post(receiver, notification(firing))
    post(receiver, notification(firing))  # Alertmanager re-sends the group: nothing new

    [incident] = incidents(db)
    assert (incident.tenant_id, incident.priority, incident.source) == (tenant["id"], 1, "alert")
    assert incident.state == "new"
    assert incident.title == f"TenantApiDown: TenantApiDown for {tenant['name']}"
    assert incident.fields["fingerprint"] == firing["fingerprint"]
    [page] = pages(db)
    assert (page.key, page.severity, page.status) == (
        f"itil:{incident.id}",
        "critical",
        "triggered",
    )
    with db.read() as session:
        first = session.execute(select(Alert).order_by(Alert.id)).scalars().first()
    assert first is not None
    assert incident.number in (first.note or "")

    post(receiver, notification(resolved(firing)))
    [incident] = incidents(db)
    assert incident.state == "resolved"
    assert "TenantApiDown resolved at 2030-01-01T09:10:00" in (incident.resolution or "")
    with db.read() as session:
        moves = session.execute(
            select(ItilNote.text).where(ItilNote.record_id == incident.id, ItilNote.kind == "state")
        ).scalars()
        assert [m.splitlines()[0] for m in moves] == ["new -> resolved"]
    assert incident.acknowledged_at is None  # nobody took it up: the record says so
    [page] = pages(db)
    assert (page.status, page.acknowledged_at) == ("resolved", None)

    # Firing again later is a new incident, not the old one reopened.
    again = {**firing, "startsAt": "2030-01-02T08:00:00Z"}
    post(receiver, notification(again))
    assert [i.state for i in incidents(db)] == ["resolved", "new"]


def test_an_incident_someone_closed_stays_closed_when_the_alert_resolves(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    firing = alert(tenant["name"], playbook=None, tenantops_incident="3")
    post(receiver, notification(firing))
    [incident] = incidents(db)
    assert pages(db) == []  # priority 3 does not page
    ops = Principal("olga", frozenset({Role.OPS_ENGINEER}))
    with db.write() as session:
        for to in ("in_progress", "resolved", "closed"):
            itil.transition(session, actor=ops, ref=incident.number, to=to, resolution="by hand")
    post(receiver, notification(resolved(firing)))
    [incident] = incidents(db)
    assert incident.state == "closed"
    with db.read() as session:
        notes = [a.note or "" for a in session.execute(select(Alert)).scalars()]
    assert any(f"incident {incident.number} already closed" in n for n in notes)


def test_an_alert_naming_no_known_tenant_opens_a_platform_incident(
    receiver: TestClient, db: Database
) -> None:
    post(receiver, notification(alert(tenant=None, playbook=None, severity="critical")))
    [incident] = incidents(db)
    assert incident.tenant_id is None
    assert incident.priority == 1


def test_a_playbook_alert_opens_no_incident_of_its_own(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    post(receiver, notification(alert(tenant["name"], severity="critical")))
    assert incidents(db) == []


def test_a_refused_incident_is_recorded_on_the_alert_and_holds_up_nothing(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    from tenantops.alerts.models import Alert as AlertRow

    firing = alert(tenant["name"], playbook=None, alertname="TenantApiDown", severity="critical")
    key = f"alert:{firing['fingerprint']}:2030-01-01T08:59:00.123456+00:00"
    am = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
    with db.write() as session:  # someone took the firing's key for a change first
        itil.open_record(
            session, kind="change", title="x", description="", priority=3, actor=am,
            tenant=tenant["name"], correlation_id=key,
        )  # fmt: skip
    other = alert(tenant["name"], alertname="TenantBudgetExceeded")  # starts its playbook
    post(receiver, notification(firing, other))
    with db.read() as session:
        rows = {a.alertname: a for a in session.execute(select(AlertRow)).scalars()}
    assert "incident not opened" in (rows["TenantApiDown"].dispatch_error or "")
    assert rows["TenantBudgetExceeded"].run_id is not None  # the other alert went through
    assert incidents(db) == []

    post(receiver, notification(resolved(firing)))  # the change is not this alert's incident
    with db.read() as session:
        change = itil.find_by_correlation(session, key)
        assert change is not None
        assert change.state == "new"
