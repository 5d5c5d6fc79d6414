"""An Access Review's revoke decision is carried out: all of it, once, or none of it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth import tokens
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import identity_provider
from tenantops.drivers.identity.models import IdentityEffect
from tenantops.drivers.identity.port import Permission
from tenantops.errors import NotAuthenticated
from tenantops.events.models import OutboxEvent
from tenantops.runbooks import engine
from tenantops.runbooks.models import RunSignal
from tenantops.runbooks.worker import Worker
from tenantops.web import service as web
from tenantops.wiring import build_actions
from tests.accessreview.test_access_review import OWNER, blue, decide  # noqa: F401 (fixture)
from tests.conftest import Clock, TokenFactory
from tests.flows import drain, ok
from tests.servers import mint_token

MALLORY = "mallory@example.com"  # in blue's group, named by neither the owner nor a contact


class Review:
    """Blue's review run up to its ``decide`` gate, with the access it is about."""

    def __init__(
        self, client: TestClient, auth: TokenFactory, db: Database, settings: Settings, tenant: str
    ) -> None:
        self.client, self.db, self.blue = client, db, tenant
        # Security and admin: platform- items (access bound to no tenant) need both.
        self.reviewer = auth("sue", "security", "admin")
        self.deploy = mint_token(db, "blue-deploy", "tenant_owner", tenant=tenant)
        self.kept = mint_token(db, "blue-keep", "tenant_owner", tenant=tenant)
        self.root = mint_token(db, "root-bot", "admin")
        grant = ok(
            client.post(
                "/api/v1/break-glass",
                json={"reason": "database is down", "incident_ref": "INC7", "tenant": "blue"},
                headers=auth("oli", "ops_engineer"),
            ),
            201,
        )
        self.grant_run, self.grant_token = grant["run_id"], grant["token"]
        with db.write() as session:
            web.create_user(
                session,
                actor=SYSTEM,
                username="contractor",
                password="a long enough password 3",
                roles=[Role.QA],
                tenant_id=None,
            )
            prefixes = {r.subject: r.prefix for r in tokens.list_tokens(session)}
        self.prefix, self.root_prefix = prefixes["blue-deploy"], prefixes["root-bot"]
        self.worker = Worker(db, build_actions(settings, db))
        started = client.post(
            "/api/v1/tenants/blue/access-reviews", json={}, headers=auth("sam", "security")
        )
        self.run_id = ok(started, 201)["id"]
        drain(self.worker)
        for gate in ("confirm-members", "confirm-tokens"):
            ok(decide(client, self.reviewer, self.run_id, gate, "checked"))
        self.identity = identity_provider(settings, db)

    def decide(self, comment: str) -> dict[str, Any]:
        """Security's decision, then the worker until the run ends; the run as the API shows it."""
        ok(decide(self.client, self.reviewer, self.run_id, "decide", comment))
        drain(self.worker)
        return ok(self.client.get(f"/api/v1/runs/{self.run_id}", headers=self.reviewer))

    def works(self, token: str) -> bool:
        with self.db.read() as session:
            try:
                tokens.authenticate(session, token)
            except NotAuthenticated:
                return False
        return True

    def disabled(self) -> dict[str, bool]:
        with self.db.read() as session:
            return {u.username: u.disabled for u in web.list_users(session)}

    def member(self, subject: str) -> Permission | None:
        group = self.identity.get_group(tenant_id=self.blue)
        assert group is not None
        return group.permission_of(subject)

    def entries(self, action: str) -> list[AuditEntry]:
        with self.db.read() as session:
            query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            return list(session.execute(query).scalars())

    def revoked_events(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            rows = session.execute(select(OutboxEvent).order_by(OutboxEvent.seq)).scalars()
            return [r.data for r in rows if r.type.endswith("tenant.access.revoked")]


@pytest.fixture
def review(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    blue: str,  # noqa: F811
) -> Review:
    return Review(client, auth, db, settings, blue)


def _step(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["steps"] if s["name"] == name)
    return found


def test_revoke_of_a_member_a_token_a_user_and_a_grant_is_carried_out(review: Review) -> None:
    items = [
        f"member:{MALLORY}",
        f"token:{review.prefix}",
        "user:blue-viewer",
        f"breakglass:{review.grant_run}",
        "platform-user:contractor",
    ]
    run = review.decide(f"revoke {', '.join(items)}; left the team")

    assert run["status"] == "succeeded", run
    evidence = _step(run, "revoke")["evidence"]
    assert (evidence["outcome"], evidence["decided_by"]) == ("revoke", "sue")
    assert (evidence["revoked"], evidence["already"]) == (items, [])
    # Each one through its own service: the member is out of the group, the tokens no
    # longer authenticate, the users are disabled. What was not named is untouched.
    assert review.member(MALLORY) is None
    assert review.member(OWNER) is Permission.WRITE
    assert not review.works(review.deploy)
    assert not review.works(review.grant_token)
    assert review.works(review.kept)
    assert review.works(review.root)
    assert review.disabled() == {"blue-viewer": True, "contractor": True}
    # Audited as the security user who decided, with the review's run.
    [entry] = review.entries("access_review.revoked")
    assert (entry.actor, entry.tenant_id) == ("sue", review.blue)
    assert entry.detail["run_id"] == review.run_id
    assert entry.detail["revoked"] == items
    assert entry.detail["reason"] == "left the team"
    assert {e.actor for e in review.entries("token.revoked")} == {"sue"}
    assert len(review.entries("token.revoked")) == 2  # the deploy and the break-glass token
    assert [e.detail["username"] for e in review.entries("user.disabled")] == [
        "blue-viewer",
        "contractor",
    ]
    [recorded] = review.entries("access_review.recorded")
    assert (recorded.detail["outcome"], recorded.detail["revoked"]) == ("revoke", items)
    assert {(e["subject"], e["actor"]) for e in review.revoked_events()} == {
        (MALLORY, "sue"),
        ("breakglass:oli", "sue"),
    }
    # Tokens appear by prefix; no value is in the run anyone may read.
    shown = json.dumps(run)
    assert review.prefix in shown
    assert not [t for t in (review.deploy, review.grant_token) if t in shown]
    with review.db.read() as session:
        assert audit.verify(session).ok


def test_a_decision_the_snapshot_does_not_bear_out_is_refused_at_the_gate(
    review: Review,
) -> None:
    """422 naming each bad item, nothing recorded; corrected, the approval goes through."""
    bad = (
        f"revoke token:{review.prefix}, member:{MALLORY}, user:blue-viewer,"
        f" user:nobody, token:{review.root_prefix}; gone"
    )
    refused = decide(review.client, review.reviewer, review.run_id, "decide", bad)

    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    detail = refused.json()["detail"]
    assert "user:nobody is not in the reviewed snapshot" in detail
    assert f"write platform-token:{review.root_prefix}" in detail
    assert f"token:{review.prefix}" not in detail  # the good items are not blamed
    typo = decide(review.client, review.reviewer, review.run_id, "decide", "revoke usr:bob")
    assert typo.status_code == 422
    assert "'usr:bob' has an unknown kind 'usr'" in typo.json()["detail"]
    # Refused before anything was written: no signal, no audit entry, the gate still waits.
    with review.db.read() as session:
        signals = session.execute(
            select(RunSignal).where(RunSignal.run_id == review.run_id)
        ).scalars()
        assert [s.step_name for s in signals] == ["confirm-members", "confirm-tokens"]
    assert [e.detail["step"] for e in review.entries("run.gate.signal")] == [
        "confirm-members",
        "confirm-tokens",
    ]
    waiting = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "decide")

    # The reviewer corrects the comment and approves again: the review goes on.
    run = review.decide(
        f"revoke token:{review.prefix}, member:{MALLORY}, user:blue-viewer,"
        f" platform-token:{review.root_prefix}; gone"
    )
    assert run["status"] == "succeeded", run
    assert _step(run, "decide")["evidence"]["comment"].endswith("; gone")
    assert _step(run, "revoke")["evidence"]["revoked"] == [
        f"token:{review.prefix}",
        f"member:{MALLORY}",
        "user:blue-viewer",
        f"platform-token:{review.root_prefix}",
    ]
    assert not review.works(review.deploy)
    assert not review.works(review.root)
    assert review.member(MALLORY) is None


def test_a_rejection_is_not_checked(review: Review) -> None:
    rejected = review.client.post(
        f"/api/v1/runs/{review.run_id}/gates/decide",
        json={"decision": "reject", "comment": "revoke whatever:nonsense"},
        headers=review.reviewer,
    )
    run = ok(rejected)
    assert run["status"] == "failed"
    assert review.works(review.deploy)
    assert review.entries("access_review.revoked") == []


def test_a_snapshot_changed_after_the_decision_fails_the_step_and_revokes_nothing(
    review: Review, settings: Settings
) -> None:
    ok(decide(review.client, review.reviewer, review.run_id, "decide", f"revoke member:{MALLORY}"))
    snapshot = settings.data_dir / "access-reviews" / review.blue / f"{review.run_id}.json"
    snapshot.write_text(snapshot.read_text().replace(MALLORY, "someone@example.com"))
    drain(review.worker)

    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "failed"
    step = _step(run, "revoke")
    assert len(step["attempts"]) == 1  # not retried: the same decision would fail again
    assert (
        "nothing was revoked: the snapshot file no longer has the reviewed digest"
        in (step["error"])
    )
    assert review.member(MALLORY) is Permission.READ
    assert review.entries("access_review.revoked") == []
    assert review.entries("access_review.recorded") == []


def test_keep_revokes_nothing(review: Review) -> None:
    run = review.decide("keep; mallory covers for ops this quarter")

    assert run["status"] == "succeeded"
    evidence = _step(run, "revoke")["evidence"]
    assert (evidence["outcome"], evidence["revoked"], evidence["already"]) == ("keep", [], [])
    assert review.member(MALLORY) is Permission.READ
    assert review.works(review.deploy)
    assert review.works(review.grant_token)
    assert not any(review.disabled().values())
    assert review.entries("access_review.revoked") == []
    assert review.entries("token.revoked") == []
    [recorded] = review.entries("access_review.recorded")
    assert (recorded.detail["outcome"], recorded.detail["revoked"]) == ("keep", [])


def test_a_revoke_step_run_again_after_a_crash_is_harmless(
    review: Review, settings: Settings, clock: Clock
) -> None:
    """A worker removes the member, then dies before recording; another runs the step again."""
    decision = f"revoke member:{MALLORY} token:{review.prefix} user:blue-viewer; left"
    ok(decide(review.client, review.reviewer, review.run_id, "decide", decision))
    with review.db.write() as session:
        [dead] = engine.claim(session, worker="dies", lease=timedelta(seconds=30))
    assert dead.step_name == "revoke"
    actions = build_actions(settings, review.db)
    actions[dead.action].run(dead.context())
    assert review.member(MALLORY) is None  # its side effect happened; nothing was recorded
    assert review.works(review.deploy)

    clock.advance(minutes=10)  # the dead worker's lease lapses; the step is taken over
    drain(review.worker)
    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "succeeded", run
    step = _step(run, "revoke")
    assert step["attempt"] == 2
    assert step["evidence"]["revoked"] == [
        f"member:{MALLORY}",
        f"token:{review.prefix}",
        "user:blue-viewer",
    ]
    assert not review.works(review.deploy)
    assert review.disabled()["blue-viewer"] is True
    # Once each: one removal in the identity provider's effect log, one entry per change.
    with review.db.read() as session:
        keys = [
            k
            for k in session.execute(select(IdentityEffect.idempotency_key)).scalars()
            if k.startswith(f"{review.run_id}/revoke/")
        ]
    assert len(keys) == 1
    assert len(review.entries("access_review.revoked")) == 1
    assert len(review.entries("token.revoked")) == 1
    assert len(review.entries("user.disabled")) == 1
    assert [e["subject"] for e in review.revoked_events()] == [MALLORY]


def test_what_was_revoked_already_is_listed_and_not_revoked_again(review: Review) -> None:
    with review.db.write() as session:
        tokens.revoke_token(session, actor=SYSTEM, token_id=review.prefix)
        web.set_disabled(session, actor=SYSTEM, username="blue-viewer", disabled=True)

    run = review.decide(f"revoke token:{review.prefix} user:blue-viewer member:{MALLORY}")

    assert run["status"] == "succeeded", run
    evidence = _step(run, "revoke")["evidence"]
    assert evidence["revoked"] == [f"member:{MALLORY}"]
    assert evidence["already"] == [f"token:{review.prefix}", "user:blue-viewer"]
    assert [e.actor for e in review.entries("token.revoked")] == [SYSTEM.subject]
    assert [e.actor for e in review.entries("user.disabled")] == [SYSTEM.subject]
