"""Break glass: granted at once, told to security, revoked on time, reviewed by another."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit.models import AuditEntry
from tenantops.auth import tokens
from tenantops.auth.models import ApiToken
from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.breakglass import service as breakglass
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.events import catalogue, outbox
from tenantops.events.models import OutboxEvent
from tenantops.kit.clock import utcnow
from tenantops.notifications.models import OutboxMessage
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import Clock, TokenFactory

SUE = Principal("sue", frozenset({Role.SECURITY}))
REQUEST = {
    "reason": "database failover stuck, need admin to reassign",
    "incident_ref": "INC0042",
    "duration": "30m",
}


def drain(worker: Worker) -> None:
    # A due timer completes inside a claim without being handed out, so an
    # empty round does not mean there is nothing left: run a few.
    for _ in range(5):
        worker.run_once()


def test_break_glass_is_time_boxed_notified_revoked_and_reviewed_by_another(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, clock: Clock
) -> None:
    oli = auth("oli", "ops_engineer")
    sue = auth("sue", "security")
    worker = Worker(db, build_actions(settings, db))

    r = client.post("/api/v1/break-glass", json=REQUEST, headers=oli)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["subject"] == "breakglass:oli"
    assert grant["expires_at"].startswith("2030-01-01T09:30:00")
    elevated = {"Authorization": f"Bearer {grant['token']}"}
    assert client.get("/api/v1/me", headers=elevated).json()["roles"] == ["admin"]

    # Security hears of it at once.
    drain(worker)
    with db.read() as s:
        told = s.execute(select(OutboxMessage).where(OutboxMessage.run_id == grant["run_id"]))
        [message] = told.scalars().all()
    assert message.template == "break_glass"
    assert message.recipients == ["security@localhost"]
    assert "INC0042" in message.body

    # The timer holds: nothing is revoked before the time is up.
    clock.advance(minutes=29)
    drain(worker)
    assert client.get("/api/v1/me", headers=elevated).status_code == 200
    with db.read() as s:
        assert s.get(ApiToken, grant["token_id"]).revoked_at is None  # type: ignore[union-attr]

    # At expiry the runbook revokes the token, then waits for the review.
    clock.advance(minutes=1)
    drain(worker)
    with db.read() as s:
        token = s.get(ApiToken, grant["token_id"])
        assert token is not None
        assert token.revoked_at is not None
    run = client.get(f"/api/v1/runs/{grant['run_id']}", headers=sue).json()
    assert run["status"] == "waiting"
    assert run["current_step"] == "review"

    # The requester cannot close their own review; another person can.
    oli_as_security = auth("oli", "security")  # even holding the gate's role
    r = client.post(
        f"/api/v1/runs/{grant['run_id']}/gates/review",
        json={"decision": "approve"},
        headers=oli_as_security,
    )
    assert r.status_code == 403
    assert r.json()["rule"] == "requester-not-approver"
    r = client.post(
        f"/api/v1/runs/{grant['run_id']}/gates/review",
        json={"decision": "approve", "comment": "justified"},
        headers=sue,
    )
    assert r.status_code == 200, r.text
    assert client.get(f"/api/v1/runs/{grant['run_id']}", headers=sue).json()["status"] == (
        "succeeded"
    )

    with db.read() as s:
        actions = [
            e.action
            for e in s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
            if e.detail.get("run_id") == grant["run_id"]
            or e.detail.get("token_id") == grant["token_id"]
        ]
    assert "breakglass.opened" in actions
    assert "token.revoked" in actions
    assert actions[-1] == "run.succeeded"


def test_a_grant_ended_early_goes_straight_to_its_review_and_is_announced_once(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, clock: Clock
) -> None:
    oli, sue = auth("oli", "ops_engineer"), auth("sue", "security")
    worker = Worker(db, build_actions(settings, db))
    grant = client.post("/api/v1/break-glass", json=REQUEST, headers=oli).json()
    drain(worker)
    with db.read() as s:
        [before] = breakglass.grants_of(s, tenant_id=None, since=clock.now)
    assert (before["open"], before["review_due"]) == (True, False)

    clock.advance(minutes=5)  # an access review decides to end it, long before its expiry
    with db.write() as s:
        assert breakglass.revoke_early(s, actor=SUE, run_id=grant["run_id"], reason="review")
    with db.write() as s:  # a second decision changes nothing
        assert not breakglass.revoke_early(s, actor=SUE, run_id=grant["run_id"], reason="again")
    drain(worker)  # the timer ended with the grant: no waiting for the 30 minutes
    run = client.get(f"/api/v1/runs/{grant['run_id']}", headers=sue).json()
    assert (run["status"], run["current_step"]) == ("waiting", "review")
    revoke = next(step for step in run["steps"] if step["name"] == "revoke")
    assert revoke["output"]["early"] is True
    with db.read() as s:
        [after] = breakglass.grants_of(s, tenant_id=None, since=clock.now)
        revoked = s.execute(
            select(OutboxEvent).where(OutboxEvent.type == catalogue.ACCESS_REVOKED.type)
        ).scalars()
        assert len(list(revoked)) == 1  # by the early end, not again by the run's own step
    assert (after["open"], after["review_due"]) == (False, True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**REQUEST, "reason": "short"}, "reason"),
        ({k: v for k, v in REQUEST.items() if k != "incident_ref"}, "incident_ref"),
        ({**REQUEST, "duration": "9h"}, "duration"),
        ({**REQUEST, "duration": "481m"}, "duration"),
        ({**REQUEST, "duration": "999m"}, "duration"),
        ({**REQUEST, "duration": "0m"}, "duration"),
        ({**REQUEST, "duration": "2d"}, "duration"),
        ({**REQUEST, "roles": ["governance"]}, "roles"),
    ],
)
def test_a_break_glass_request_needs_reason_incident_and_a_bounded_time(
    client: TestClient, auth: TokenFactory, body: dict[str, object], field: str
) -> None:
    r = client.post("/api/v1/break-glass", json=body, headers=auth("oli", "ops_engineer"))
    assert r.status_code == 422
    assert field in r.json()["detail"]


@pytest.mark.parametrize("duration", ["1m", "480m", "8h", "90m"])
def test_a_grant_lasts_up_to_a_shift_in_minutes_or_hours(
    client: TestClient, auth: TokenFactory, duration: str
) -> None:
    r = client.post(
        "/api/v1/break-glass",
        json={**REQUEST, "duration": duration},
        headers=auth("oli", "ops_engineer"),
    )
    assert r.status_code == 201, r.text


def test_only_ops_and_security_may_break_glass(client: TestClient, auth: TokenFactory) -> None:
    for role in ("qa", "finance", "account_manager", "auditor"):
        r = client.post("/api/v1/break-glass", json=REQUEST, headers=auth(f"x-{role}", role))
        assert r.status_code == 403


def _ends(db: Database, token_id: str) -> list[dict[str, object]]:
    """The ``tenant.access.revoked`` events announcing the end of grant ``token_id``."""
    with db.read() as s:
        rows = s.execute(
            select(OutboxEvent).where(OutboxEvent.type == catalogue.ACCESS_REVOKED.type)
        ).scalars()
        return [r.data for r in rows if r.data["grant_id"] == token_id]


def test_a_grant_whose_token_was_revoked_by_hand_is_still_announced_at_expiry(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, clock: Clock
) -> None:
    """``tenantops tokens revoke`` announces nothing: the run's own revoke step does."""
    worker = Worker(db, build_actions(settings, db))
    grant = client.post("/api/v1/break-glass", json=REQUEST, headers=auth("oli", "ops_engineer"))
    grant_id = grant.json()["token_id"]
    drain(worker)
    with db.write() as s:  # what the CLI calls
        tokens.revoke_token(s, actor=SYSTEM, token_id=grant_id)

    clock.advance(minutes=30)
    drain(worker)

    [end] = _ends(db, grant_id)
    assert end["actor"] == "system:runbook-engine"
    run = client.get(f"/api/v1/runs/{grant.json()['run_id']}", headers=auth("sue", "security"))
    assert run.json()["current_step"] == "review"


def test_ending_a_grant_revoked_by_hand_ends_its_timer_and_announces_it_once(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, clock: Clock
) -> None:
    worker = Worker(db, build_actions(settings, db))
    grant = client.post("/api/v1/break-glass", json=REQUEST, headers=auth("oli", "ops_engineer"))
    run_id, grant_id = grant.json()["run_id"], grant.json()["token_id"]
    drain(worker)
    with db.write() as s:
        tokens.revoke_token(s, actor=SYSTEM, token_id=grant_id)

    clock.advance(minutes=5)
    with db.write() as s:  # revoked already: not this call's to announce ...
        assert not breakglass.revoke_early(s, actor=SUE, run_id=run_id, reason="review")
    drain(worker)  # ... but its timer ended, so the run's step announces it now

    assert [e["actor"] for e in _ends(db, grant_id)] == ["system:runbook-engine"]
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth("sue", "security")).json()
    assert (run["status"], run["current_step"]) == ("waiting", "review")


def test_ending_a_grant_after_its_expiry_announces_nothing_more(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, clock: Clock
) -> None:
    worker = Worker(db, build_actions(settings, db))
    grant = client.post("/api/v1/break-glass", json=REQUEST, headers=auth("oli", "ops_engineer"))
    run_id, grant_id = grant.json()["run_id"], grant.json()["token_id"]
    drain(worker)
    clock.advance(minutes=30)
    drain(worker)  # revoked and announced by the run at expiry

    with db.write() as s:
        assert not breakglass.revoke_early(s, actor=SUE, run_id=run_id, reason="late")

    assert [e["actor"] for e in _ends(db, grant_id)] == ["system:runbook-engine"]


def test_only_the_call_that_revokes_a_token_is_told_it_did(db: Database) -> None:
    with db.write() as s:
        issued = tokens.create_token(
            s, actor=SYSTEM, subject="bot", roles=[Role.QA], tenant_id=None, ttl=None
        )
    with db.write() as s:
        first = tokens.revoke_token_once(s, actor=SYSTEM, token_id=issued.id)
    with db.write() as s:
        second = tokens.revoke_token_once(s, actor=SYSTEM, token_id=issued.id)
    assert (first[1], second[1]) == (True, False)
    assert first[0].revoked_at == second[0].revoked_at


def test_whether_a_grant_end_was_announced_is_asked_of_its_own_tenant(db: Database) -> None:
    """The outbox lookup is narrowed to the grant's tenant (bound to none: ``tenant_id`` null)."""
    since = utcnow() - timedelta(minutes=1)
    with db.write() as s:
        outbox.emit(
            s,
            catalogue.ACCESS_REVOKED,
            catalogue.AccessChanged(
                tenant_id="t-green", tenant_name="green", actor="sue", grant_id="g-1", subject="x"
            ),
        )
    with db.read() as s:
        assert breakglass.announced(s, grant_id="g-1", tenant_id="t-green", since=since)
        assert not breakglass.announced(s, grant_id="g-1", tenant_id="t-blue", since=since)
        assert not breakglass.announced(s, grant_id="g-1", tenant_id=None, since=since)
        later = utcnow() + timedelta(minutes=1)
        assert not breakglass.announced(s, grant_id="g-1", tenant_id="t-green", since=later)
