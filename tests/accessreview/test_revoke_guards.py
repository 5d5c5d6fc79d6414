"""What an Access Review may not revoke, or not revoke silently: the guards of ADR 0040."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.accessreview import revocation
from tenantops.accessreview.actions import access_review_actions
from tenantops.accessreview.decision import DecisionError
from tenantops.audit.models import AuditEntry
from tenantops.auth import tokens
from tenantops.auth.models import ApiToken
from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.identity.port import GroupState, IdentityProvider, Permission
from tenantops.events import catalogue
from tenantops.events.models import OutboxEvent
from tenantops.runbooks import engine
from tenantops.runbooks.actions import StepFailed
from tenantops.runbooks.worker import Worker
from tenantops.web import service as web
from tenantops.wiring import build_actions
from tests.accessreview.test_access_review import blue, decide  # noqa: F401 (fixture)
from tests.accessreview.test_revoke import MALLORY, Review, _step
from tests.conftest import TokenFactory
from tests.flows import drain, ok

CONTACT = "ops@acme.example"  # in blue's group with mallory


class FailsOn:
    """The configured identity adapter, except that removing ``subject`` fails for good."""

    def __init__(self, real: IdentityProvider, subject: str) -> None:
        self.real, self.subject = real, subject

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        if subject == self.subject:
            raise DriverError(f"{subject} is managed elsewhere", retry=Retry.PERMANENT)
        return self.real.remove_member(
            tenant_id=tenant_id, subject=subject, idempotency_key=idempotency_key
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CrashesOn(FailsOn):
    """Removing ``subject`` fails with no driver error at all (a bug, say)."""

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        if subject == self.subject:
            raise RuntimeError("adapter bug")
        return super().remove_member(
            tenant_id=tenant_id, subject=subject, idempotency_key=idempotency_key
        )


@pytest.fixture
def review(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    blue: str,  # noqa: F811
) -> Review:
    """Blue's review, its snapshot also listing one admin web user and a platform grant."""
    with db.write() as session:
        web.create_user(
            session,
            actor=SYSTEM,
            username="root-admin",
            password="a long enough password 9",
            roles=[Role.ADMIN],
            tenant_id=None,
        )
    grant = client.post(
        "/api/v1/break-glass",
        json={"reason": "the whole cluster is down", "incident_ref": "INC9"},
        headers=auth("pat", "ops_engineer"),
    )
    made = Review(client, auth, db, settings, blue)
    made.platform_grant = ok(grant, 201)  # type: ignore[attr-defined]
    return made


def refusal(review: Review, comment: str, who: dict[str, str] | None = None) -> str:
    r = decide(review.client, who or review.reviewer, review.run_id, "decide", comment)
    assert r.status_code == 422, r.text
    detail: str = r.json()["detail"]
    return detail


def test_a_member_removed_before_the_identity_provider_fails_is_in_the_trail(
    review: Review, settings: Settings, db: Database
) -> None:
    failing = FailsOn(review.identity, CONTACT)
    actions = {**build_actions(settings, db)}
    actions.update(access_review_actions(settings, db, identity=failing))  # type: ignore[arg-type]
    worker = Worker(db, actions)
    ok(
        decide(
            review.client,
            review.reviewer,
            review.run_id,
            "decide",
            f"revoke member:{MALLORY}, member:{CONTACT}; left",
        )
    )
    drain(worker)

    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "failed"
    assert f"already out of the group: member:{MALLORY}" in _step(run, "revoke")["error"]
    assert review.member(MALLORY) is None  # gone before the failure ...
    assert review.member(CONTACT) is Permission.READ
    [entry] = review.entries("access_review.revoke_partial")  # ... and not without a trail
    assert (entry.actor, entry.tenant_id) == ("sue", review.blue)
    assert entry.actor_roles == ["admin", "security"]  # the decider's, not just security
    assert entry.detail["run_id"] == review.run_id
    assert entry.detail["decided_by"] == "sue"
    assert entry.detail["removed"] == [f"member:{MALLORY}"]
    assert "managed elsewhere" in entry.detail["error"]
    assert review.entries("access_review.revoked") == []


def test_a_removal_then_a_refused_apply_names_the_member_in_the_trail(
    review: Review, settings: Settings
) -> None:
    """The tokens change between the removal and the record: the run fails, naming who left."""
    ok(
        decide(
            review.client,
            review.reviewer,
            review.run_id,
            "decide",
            f"revoke member:{MALLORY} token:{review.prefix}",
        )
    )
    with review.db.write() as session:
        [claim] = engine.claim(session, worker="w", lease=timedelta(seconds=30))
    action = build_actions(settings, review.db)[claim.action]
    ctx = claim.context()
    result = action.run(ctx)
    assert review.member(MALLORY) is None
    with review.db.write() as session:  # a second token now shows the same prefix
        twin = tokens.create_token(
            session, actor=SYSTEM, subject="twin", roles=[Role.QA], tenant_id=review.blue, ttl=None
        )
        session.get(ApiToken, twin.id).prefix = review.prefix  # type: ignore[union-attr]
    with pytest.raises(StepFailed) as refused, review.db.write() as session:
        engine.complete(
            session,
            claim=claim,
            result=result,
            apply=lambda s: action.apply(s, ctx, result),  # type: ignore[attr-defined]
        )
    with review.db.write() as session:
        engine.fail(session, claim=claim, error=str(refused.value), retriable=False)

    [failed] = [e for e in review.entries("run.failed") if e.detail["run_id"] == review.run_id]
    assert "matches 2 tokens now" in failed.detail["error"]
    assert f"member:{MALLORY} already left group" in failed.detail["error"]
    assert review.works(review.deploy)


def test_access_bound_to_no_tenant_needs_an_admin_besides_security(
    review: Review, auth: TokenFactory
) -> None:
    lone = auth("sec", "security")
    detail = refusal(review, f"revoke platform-token:{review.root_prefix}, user:blue-viewer", lone)
    assert (
        f"access bound to no tenant reaches every tenant (platform-token:{review.root_prefix}):"
        " revoking it needs the admin role as well as security"
    ) in detail
    assert review.works(review.root)


def test_the_step_checks_the_approvers_roles_again(review: Review) -> None:
    """An approval the gate check did not see (a system signal) is held to the same rule."""
    eve = Principal("eve", frozenset({Role.SECURITY}), via="system")
    with review.db.write() as session:
        engine.signal(
            session,
            run_id=review.run_id,
            step_name="decide",
            decision="approve",
            principal=eve,
            comment=f"revoke platform-token:{review.root_prefix}",
        )
    drain(review.worker)

    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "failed"
    assert "needs the admin role as well as security" in _step(run, "revoke")["error"]
    assert review.works(review.root)


def test_nobody_revokes_their_own_token_or_the_last_admin(review: Review) -> None:
    with review.db.read() as session:
        [own] = [t.prefix for t in tokens.list_tokens(session) if t.subject == "sue"]
    detail = refusal(review, f"revoke platform-token:{own}, platform-user:root-admin")
    assert f"platform-token:{own} is your own token" in detail
    assert "it would disable the last enabled admin web user (root-admin)" in detail
    assert review.disabled()["root-admin"] is False


def test_a_platform_break_glass_grant_is_ended_and_announced_once(review: Review) -> None:
    grant = review.platform_grant  # type: ignore[attr-defined]
    run = review.decide(f"revoke platform-breakglass:{grant['run_id']}; review")

    assert run["status"] == "succeeded", run
    assert _step(run, "revoke")["evidence"]["revoked"] == [f"platform-breakglass:{grant['run_id']}"]
    assert not review.works(grant["token"])
    assert review.works(review.grant_token)  # blue's own grant was not named
    drain(review.worker)  # the grant's run: its timer ended, its revoke step announces nothing
    with review.db.read() as session:
        events = session.execute(
            select(OutboxEvent).where(OutboxEvent.type == catalogue.ACCESS_REVOKED.type)
        ).scalars()
        ends = [e.data for e in events if e.data["grant_id"] == grant["token_id"]]
    assert [(e["actor"], e["tenant_id"]) for e in ends] == [("sue", None)]


def test_a_decision_before_the_snapshot_is_refused(
    client: TestClient,
    auth: TokenFactory,
    blue: str,  # noqa: F811
) -> None:
    started = client.post(
        "/api/v1/tenants/blue/access-reviews", json={}, headers=auth("sam", "security")
    )
    run_id = ok(started, 201)["id"]  # no worker yet: the snapshot is not taken
    sue = auth("sue", "security", "admin")
    r = decide(client, sue, run_id, "decide", f"revoke member:{MALLORY}")
    assert r.status_code == 422
    assert "nothing can be revoked before the review's snapshot is taken" in r.json()["detail"]


def test_a_token_no_longer_one_row_is_refused_at_the_gate(review: Review) -> None:
    with review.db.write() as session:
        twin = tokens.create_token(
            session, actor=SYSTEM, subject="twin", roles=[Role.QA], tenant_id=review.blue, ttl=None
        )
        session.get(ApiToken, twin.id).prefix = review.prefix  # type: ignore[union-attr]
    detail = refusal(review, f"revoke token:{review.prefix}")
    assert f"token:{review.prefix} matches 2 tokens now, not one" in detail
    assert review.works(review.deploy)


@pytest.mark.parametrize(
    "body", [b"{not json", b"\xff\xfe", b"[1, 2]"], ids=["invalid", "not-utf8", "not-object"]
)
def test_a_snapshot_file_that_is_no_snapshot_is_a_422(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(body)
    with pytest.raises(DecisionError) as refused:
        revocation.reviewed_snapshot(path, hashlib.sha256(body).hexdigest())
    assert refused.value.status == 422
    assert "the reviewed snapshot file is not a snapshot" in str(refused.value.detail)


def test_a_snapshot_file_that_cannot_be_read_is_a_422(tmp_path: Path) -> None:
    with pytest.raises(DecisionError) as refused:
        revocation.reviewed_snapshot(tmp_path, "0" * 64)  # a directory
    assert refused.value.status == 422
    assert "cannot be read" in str(refused.value.detail)


def test_a_decider_bound_to_a_tenant_does_not_revoke_platform_access(
    review: Review, auth: TokenFactory
) -> None:
    """Security and admin, but bound to blue: access reaching every tenant is not theirs."""
    bound = auth("tess", "security", "admin", tenant=review.blue)
    detail = refusal(review, f"revoke platform-token:{review.root_prefix}", bound)
    assert "held by a user bound to no tenant" in detail
    assert review.works(review.root)


def test_the_step_refuses_platform_items_to_an_approver_bound_to_a_tenant(review: Review) -> None:
    """The step reads the approver's binding from the engine's audit entry of the approval."""
    tess = Principal(
        "tess", frozenset({Role.SECURITY, Role.ADMIN}), tenant=review.blue, via="system"
    )
    with review.db.write() as session:
        engine.signal(
            session,
            run_id=review.run_id,
            step_name="decide",
            decision="approve",
            principal=tess,
            comment=f"revoke platform-token:{review.root_prefix}",
        )
    [signalled] = [
        e
        for e in review.entries("run.gate.signal")
        if (e.detail["run_id"], e.detail["step"]) == (review.run_id, "decide")
    ]
    assert signalled.detail["approver_tenant"] == review.blue
    drain(review.worker)

    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "failed"
    assert "held by a user bound to no tenant" in _step(run, "revoke")["error"]
    assert review.works(review.root)


def test_the_step_refuses_platform_items_when_the_binding_is_not_recorded(review: Review) -> None:
    """An approval entry that does not say the approver's tenant (older) counts as bound."""
    ok(
        decide(
            review.client,
            review.reviewer,
            review.run_id,
            "decide",
            f"revoke platform-token:{review.root_prefix}",
        )
    )
    with review.db.write() as session:  # as an entry written before the binding was recorded
        [entry] = [
            e
            for e in session.execute(
                select(AuditEntry).where(AuditEntry.action == "run.gate.signal")
            ).scalars()
            if (e.detail["run_id"], e.detail["step"]) == (review.run_id, "decide")
        ]
        assert entry.detail["approver_tenant"] is None
        entry.detail = {k: v for k, v in entry.detail.items() if k != "approver_tenant"}
    drain(review.worker)

    run = ok(review.client.get(f"/api/v1/runs/{review.run_id}", headers=review.reviewer))
    assert run["status"] == "failed"
    assert "held by a user bound to no tenant" in _step(run, "revoke")["error"]
    assert review.works(review.root)


def test_admins_bound_to_a_tenant_or_tenant_owners_leave_the_last_admin(
    review: Review, db: Database
) -> None:
    """Enabled admins bound to a tenant (or tenant owners) do not count as another admin."""
    with db.write() as session:
        for username, roles, tenant_id in (
            ("blue-admin", [Role.ADMIN], review.blue),
            ("owner-admin", [Role.ADMIN, Role.TENANT_OWNER], review.blue),
        ):
            web.create_user(
                session,
                actor=SYSTEM,
                username=username,
                password="a long enough password 9",
                roles=roles,
                tenant_id=tenant_id,
            )
    detail = refusal(review, "revoke platform-user:root-admin")
    assert "it would disable the last enabled admin web user (root-admin)" in detail
    assert review.disabled()["root-admin"] is False


def test_a_token_revoked_by_hand_meanwhile_is_reported_already(
    review: Review, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step reports what its own conditional update did, not an earlier unlocked read."""
    comment = f"revoke token:{review.prefix}"
    ok(decide(review.client, review.reviewer, review.run_id, "decide", comment))
    with review.db.write() as session:
        [claim] = engine.claim(session, worker="w", lease=timedelta(seconds=30))
    action = build_actions(settings, review.db)[claim.action]
    ctx = claim.context()
    result = action.run(ctx)
    real = tokens.revoke_token_once
    by_hand: list[str] = []

    def cli_revokes_first(session: Any, *, actor: Principal, token_id: str) -> Any:
        # `tenantops tokens revoke` winning the row just before the step's own update.
        if not by_hand:
            by_hand.append(token_id)
            real(session, actor=SYSTEM, token_id=token_id)
        return real(session, actor=actor, token_id=token_id)

    monkeypatch.setattr(tokens, "revoke_token_once", cli_revokes_first)
    with review.db.write() as session:
        engine.complete(
            session,
            claim=claim,
            result=result,
            apply=lambda s: action.apply(s, ctx, result),  # type: ignore[attr-defined]
        )
    assert len(by_hand) == 1
    assert result.output["revoked"] == []
    assert result.output["already"] == [f"token:{review.prefix}"]


def test_any_failure_after_a_removal_leaves_the_trail(
    review: Review, settings: Settings, db: Database
) -> None:
    """Not only a driver error: whatever stops the step after a removal, the entry is written."""
    comment = f"revoke member:{MALLORY}, member:{CONTACT}; left"
    ok(decide(review.client, review.reviewer, review.run_id, "decide", comment))
    with db.write() as session:
        [claim] = engine.claim(session, worker="w", lease=timedelta(seconds=30))
    crashing = access_review_actions(settings, db, identity=CrashesOn(review.identity, CONTACT))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="adapter bug"):
        crashing[claim.action].run(claim.context())

    assert review.member(MALLORY) is None
    [entry] = review.entries("access_review.revoke_partial")
    assert entry.detail["removed"] == [f"member:{MALLORY}"]
    assert entry.detail["error"] == "RuntimeError: adapter bug"
    assert entry.actor_roles == ["admin", "security"]
