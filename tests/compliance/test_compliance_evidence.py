"""Compliance Evidence Collection: a bundle an auditor verifies; another one signs it off."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import SYSTEM
from tenantops.compliance import cli as compliance_cli
from tenantops.compliance import periods
from tenantops.compliance import service as compliance_service
from tenantops.compliance.service import RUNBOOK
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.canonical import canonical_json
from tenantops.notifications.models import OutboxMessage
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState
from tenantops.tenants.models import Tenant
from tenantops.wiring import build_actions
from tests.conftest import (
    Actors,
    Clock,
    Headers,
    TokenFactory,
    blocked_on_a_lock,
    invoke,
    postgres_only,
)
from tests.finops.test_reports import Server, server  # noqa: F401 (fixture)
from tests.flows import approve, drain, ok, request_tenant, tenant_in
from tests.servers import mint_token

BREAK_GLASS = {
    "reason": "database failover stuck, need admin",
    "incident_ref": "INC7",
    "duration": "30m",
}


def start(client: TestClient, who: Headers, tenant: str, period: str | None = "2030-01") -> Any:
    return client.post(
        f"/api/v1/tenants/{tenant}/compliance-evidence",
        json={"period": period} if period else {},
        headers=who,
    )


def decide(client: TestClient, who: Headers, run_id: str, step: str, comment: str) -> Any:
    return client.post(
        f"/api/v1/runs/{run_id}/gates/{step}",
        json={"decision": "approve", "comment": comment},
        headers=who,
    )


def bundle_file(client: TestClient, who: Headers, settings: Settings, run_id: str) -> Path:
    """The file the run's collect step recorded (relative to the data directory)."""
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=who))
    name = {s["name"]: s["evidence"] for s in run["steps"]}["collect"]["bundle"]
    return settings.data_dir / str(name)


def collected(
    client: TestClient, who: Headers, settings: Settings, run_id: str
) -> tuple[bytes, dict[str, Any]]:
    body = bundle_file(client, who, settings, run_id).read_bytes()
    return body, json.loads(body)


@pytest.fixture
def worker(db: Database, settings: Settings) -> Worker:
    return Worker(db, build_actions(settings, db))


def a_month_of_operations(
    client: TestClient, actors: Actors, worker: Worker, clock: Clock
) -> dict[str, Any]:
    """January 2030: a tenant approved and provisioned; break glass used, revoked, reviewed."""
    clock.now = datetime(2030, 1, 10, 9, tzinfo=UTC)
    tenant = request_tenant(client, actors.am, name="audited")
    approve(client, "audited", "governance", actors.gov)
    approve(client, "audited", "security", actors.sec)
    drain(worker)
    grant = ok(
        client.post(
            "/api/v1/break-glass", json={**BREAK_GLASS, "tenant": "audited"}, headers=actors.ops
        ),
        201,
    )
    for _ in range(5):
        worker.run_once()
    clock.advance(minutes=31)
    for _ in range(5):
        worker.run_once()
    ok(decide(client, actors.sec, grant["run_id"], "review", "justified: INC7"))
    drain(worker)
    clock.now = datetime(2030, 2, 3, 8, tzinfo=UTC)
    return {"tenant": tenant, "grant": grant}


def test_an_auditor_verifies_and_signs_off_the_bundle_of_a_month(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    worker: Worker,
    clock: Clock,
) -> None:
    seen = a_month_of_operations(client, actors, worker, clock)
    tenant, grant = seen["tenant"], seen["grant"]
    starter, checker = actors.auditor, auth("abe", "auditor")

    run = ok(start(client, starter, "audited"), 201)
    run_id = run["id"]
    assert (run["runbook_id"], run["inputs"]["period"]) == ("compliance-evidence", "2030-01")
    drain(worker)
    waiting = ok(client.get(f"/api/v1/runs/{run_id}", headers=checker))
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "verify-bundle")
    evidence = {s["name"]: s["evidence"] for s in waiting["steps"]}["collect"]

    # The bundle is canonical JSON whose SHA-256 is the step's evidence.
    body, bundle = collected(client, checker, settings, run_id)
    assert hashlib.sha256(body).hexdigest() == evidence["digest"]
    # Named by its content, relative to the data directory; no server path in the run.
    assert evidence["bundle"] == (
        f"compliance/{tenant['id']}/{run_id}.{evidence['digest'][:16]}.json"
    )
    assert str(settings.data_dir) not in json.dumps(waiting)
    assert canonical_json(bundle).encode() == body
    assert bundle["period"] == {
        "label": "2030-01",
        "from": "2030-01-01T00:00:00+00:00",
        "to": "2030-02-01T00:00:00+00:00",
    }
    assert bundle["tenant"]["name"] == "audited"
    chain = bundle["audit"]["chain"]
    assert chain["ok"] is True
    assert chain["reason"] is None
    with db.read() as session:
        trail = audit.tenant_trail(session, tenant["id"])
    january = [e for e in trail if e["at"] < "2030-02"]
    assert bundle["audit"]["entries"] == january
    assert all(len(e["hash"]) == 64 for e in bundle["audit"]["entries"])
    actions = {e["action"] for e in bundle["audit"]["entries"]}
    assert {"tenant.requested", "tenant.approved", "breakglass.opened"} <= actions
    # Approvals with who decided: governance and security, neither the requester.
    [onboarding] = [a for a in bundle["approvals"] if a["kind"] == "onboarding"]
    assert onboarding["requested_by"] == "amy"
    assert {(d["role"], d["by"]) for d in onboarding["decisions"]} == {
        ("governance", "gus"),
        ("security", "sue"),
    }
    assert onboarding["segregated"] is True
    # Runs with the runbook version and content hash each ran; not the collection itself.
    runs = {r["runbook"]: r for r in bundle["runs"]}
    assert run_id not in {r["run_id"] for r in bundle["runs"]}
    glass = runs["emergency-break-glass"]
    assert glass["version"] == "1.0"
    assert len(glass["hash"]) == 64
    [granted] = bundle["break_glass"]
    assert granted["run_id"] == grant["run_id"]
    assert (granted["opened_by"], granted["incident_ref"]) == ("oli", "INC7")
    assert granted["revoked_at"] is not None
    assert granted["review"] == {
        "status": "succeeded",
        "by": "sue",
        "comment": "justified: INC7",
        "at": granted["review"]["at"],
    }
    # The onboarding's step evidence: its GitOps commit and manifest digest, its secrets.
    onboarding_run = runs["tenant-onboarding"]
    gitops = {s["name"]: s for s in onboarding_run["steps"]}["gitops"]["evidence"]
    assert bundle["gitops_commits"] == [
        {
            "sha": gitops["commit"],
            "run_id": onboarding_run["run_id"],
            "runbook": "tenant-onboarding",
            "step": "gitops",
        }
    ]
    assert bundle["manifest_digests"] == [gitops["manifest_digest"]]
    assert bundle["sla_breaches"] == []
    assert all(s["tenant_id"] == tenant["id"] for s in bundle["secrets"])
    assert evidence["chain_ok"] is True
    assert evidence["audit_entries"] == len(january)

    # The auditors are told, with the digest.
    with db.read() as session:
        [note] = session.execute(
            select(OutboxMessage).where(OutboxMessage.run_id == run_id)
        ).scalars()
    assert note.template == "compliance_evidence"
    assert note.recipients == ["auditor@localhost"]
    assert evidence["digest"] in note.body

    # The download carries the recorded digest; the body hashes to it.
    got = client.get(
        f"/api/v1/tenants/audited/compliance-evidence/{run_id}/bundle", headers=checker
    )
    assert got.status_code == 200
    assert got.headers["x-evidence-sha256"] == evidence["digest"]
    assert hashlib.sha256(got.content).hexdigest() == evidence["digest"]

    # Segregation of duties: the starter cannot tick a gate; others without the role neither.
    assert decide(client, starter, run_id, "verify-bundle", "mine").status_code == 403
    assert decide(client, actors.gov, run_id, "verify-bundle", "gov").status_code == 403
    ok(decide(client, checker, run_id, "verify-bundle", f"sha256 {evidence['digest']} matches"))
    ok(decide(client, checker, run_id, "findings", "no findings"))
    ok(decide(client, checker, run_id, "sign-off", "signed off 2030-01"))
    drain(worker)
    done = ok(client.get(f"/api/v1/runs/{run_id}", headers=checker))
    assert done["status"] == "succeeded"

    with db.read() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "compliance.evidence.signed_off")
        ).scalar_one()
        assert audit.verify(session).ok
    assert (entry.actor, entry.tenant_id) == ("abe", tenant["id"])
    assert entry.detail["digest"] == evidence["digest"]
    assert entry.detail["findings"] == "no findings"
    assert entry.detail["sign_off"] == "signed off 2030-01"
    assert entry.detail["period"] == "2030-01"
    assert set(entry.detail["gates"]) == {"verify-bundle", "findings", "sign-off"}


def test_the_bundle_says_the_chain_is_broken_when_an_audit_row_was_altered(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    worker: Worker,
    clock: Clock,
) -> None:
    a_month_of_operations(client, actors, worker, clock)
    with db.write() as session:
        victim = session.execute(
            select(AuditEntry.seq).where(AuditEntry.action == "breakglass.opened")
        ).scalar_one()
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == victim)
            .values(detail={"reason": "nothing to see"})
        )
    run_id = ok(start(client, actors.gov, "audited"), 201)["id"]
    drain(worker)
    _, bundle = collected(client, actors.auditor, settings, run_id)
    chain = bundle["audit"]["chain"]
    assert chain["ok"] is False
    assert chain["bad_seq"] == victim
    assert chain["reason"] == "content does not match its hash"
    evidence = {
        s["name"]: s["evidence"]
        for s in ok(client.get(f"/api/v1/runs/{run_id}", headers=actors.auditor))["steps"]
    }["collect"]
    assert evidence["chain_ok"] is False


def test_the_sign_off_refuses_a_bundle_changed_after_collection(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    settings: Settings,
    worker: Worker,
    clock: Clock,
) -> None:
    tenant = a_month_of_operations(client, actors, worker, clock)["tenant"]
    run_id = ok(start(client, actors.auditor, "audited"), 201)["id"]
    drain(worker)
    path = bundle_file(client, actors.auditor, settings, run_id)
    assert path.parent == settings.data_dir / "compliance" / tenant["id"]
    path.write_bytes(path.read_bytes().replace(b"INC7", b"INC8"))
    checker = auth("abe", "auditor")
    for step in ("verify-bundle", "findings", "sign-off"):
        ok(decide(client, checker, run_id, step, "ok"))
    drain(worker)
    done = ok(client.get(f"/api/v1/runs/{run_id}", headers=checker))
    assert done["status"] == "failed"
    record = {s["name"]: s for s in done["steps"]}["record"]
    assert "not the" in (record["error"] or "")


def test_who_may_start_one_the_period_and_one_open_collection_per_period(
    client: TestClient, actors: Actors, auth: TokenFactory, clock: Clock
) -> None:
    clock.now = datetime(2030, 4, 3, 8, tzinfo=UTC)
    tenant_in(client, actors, TenantState.ACTIVE, name="audited")
    for who in (actors.ops, actors.sec, actors.am, auth("fin", "finance")):
        assert start(client, who, "audited").status_code == 403
    for period in ("2030-Q5", "2030-13", "Q1-2030", "2030-1", "0000-Q1", "9999-12"):
        bad = start(client, actors.auditor, "audited", period)
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
    assert start(client, actors.auditor, "nobody").status_code == 404

    default = ok(start(client, actors.auditor, "audited", None), 201)
    assert default["inputs"]["period"] == "2030-Q1"  # the last quarter ended
    again = start(client, actors.admin, "audited", "2030-Q1")
    assert again.status_code == 409
    assert default["id"] in again.json()["detail"]
    # The same quarter in Arabic-Indic or full-width digits is no other period.
    for alias in ("\u0662\u0660\u0663\u0660-Q1", "\uff12\uff10\uff13\uff10-Q1"):
        assert start(client, actors.admin, "audited", alias).status_code == 422
    ok(start(client, actors.gov, "audited", "2030-01"), 201)  # another period


def test_a_period_not_over_is_refused_saying_when_it_ends(
    client: TestClient, actors: Actors, clock: Clock
) -> None:
    clock.now = datetime(2026, 11, 27, 14, tzinfo=UTC)
    tenant_in(client, actors, TenantState.ACTIVE, name="audited")
    for period, ends in (
        ("2026-Q4", "2027-01-01 00:00"),
        ("2026-11", "2026-12-01 00:00"),
        ("2027-Q1", "2027-04-01 00:00"),
    ):
        running = start(client, actors.auditor, "audited", period)
        assert running.status_code == 422, period
        assert running.headers["content-type"].startswith("application/problem+json")
        assert f"{period} is not over until {ends} UTC" in running.json()["detail"]
    assert ok(start(client, actors.auditor, "audited", None), 201)["inputs"]["period"] == "2026-Q3"
    ok(start(client, actors.auditor, "audited", "2026-10"), 201)  # over since 2026-11-01
    clock.now = datetime(2026, 12, 1, tzinfo=UTC)  # its first instant after: over
    ok(start(client, actors.auditor, "audited", "2026-11"), 201)


def test_period_labels_are_ascii_and_canonical_and_boundaries_half_open() -> None:
    for alias in (
        "\u0662\u0660\u0663\u0660-Q1",
        "\uff12\uff10\uff13\uff10-Q1",
        "2030-\u0661\u0662",
    ):
        with pytest.raises(Unprocessable):
            periods.parse(alias)
    assert periods.parse(" 2030-Q1\n").label == "2030-Q1"
    assert periods.parse("2030-01").label == "2030-01"
    january, february = periods.parse("2030-01"), periods.parse("2030-02")
    midnight = datetime(2030, 2, 1, tzinfo=UTC)
    # Ended exactly at February's first instant: January's, not February's too.
    late = datetime(2030, 1, 31, 23, tzinfo=UTC)
    assert january.overlaps(late, midnight)
    assert not february.overlaps(late, midnight)
    # Begun at that instant: February's, not January's.
    assert february.overlaps(midnight, None)
    assert not january.overlaps(midnight, datetime(2030, 2, 2, tzinfo=UTC))


def test_the_start_wakes_the_worker(
    client: TestClient, actors: Actors, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.now = datetime(2030, 2, 3, 8, tzinfo=UTC)
    tenant_in(client, actors, TenantState.ACTIVE, name="audited")

    class Looper:
        woken = 0

        def wake(self) -> None:
            Looper.woken += 1

    state = client.app.state  # type: ignore[attr-defined]
    monkeypatch.setattr(state, "worker", Looper(), raising=False)
    ok(start(client, actors.auditor, "audited"), 201)
    assert Looper.woken == 1


def test_a_late_collect_attempt_cannot_replace_the_recorded_bundle(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    worker: Worker,
    clock: Clock,
) -> None:
    tenant = a_month_of_operations(client, actors, worker, clock)["tenant"]
    run_id = ok(start(client, actors.auditor, "audited"), 201)["id"]
    drain(worker)
    recorded = bundle_file(client, actors.auditor, settings, run_id)
    before = recorded.read_bytes()
    # An earlier attempt (timed out, lease lost) finishes late and writes its bundle.
    clock.advance(minutes=7)
    late = build_actions(settings, db)["compliance.collect_evidence"].run(
        ActionContext(
            run_id=run_id,
            step_name="collect",
            tenant_id=tenant["id"],
            params={"period": "2030-01"},
            idempotency_key=f"{run_id}:collect",
            attempt=1,
            actor="ada",
        )
    )
    assert late.evidence["digest"] != hashlib.sha256(before).hexdigest()  # collected_at
    assert (settings.data_dir / late.evidence["bundle"]).is_file()
    assert recorded.read_bytes() == before
    checker = auth("abe", "auditor")
    got = client.get(
        f"/api/v1/tenants/audited/compliance-evidence/{run_id}/bundle", headers=checker
    )
    assert got.content == before
    for step in ("verify-bundle", "findings", "sign-off"):
        ok(decide(client, checker, run_id, step, "ok"))
    drain(worker)
    assert ok(client.get(f"/api/v1/runs/{run_id}", headers=checker))["status"] == "succeeded"


def test_no_bundle_before_collection_nor_of_another_tenant(
    client: TestClient, actors: Actors, clock: Clock
) -> None:
    clock.now = datetime(2030, 2, 3, 8, tzinfo=UTC)
    tenant_in(client, actors, TenantState.ACTIVE, name="audited")
    tenant_in(client, actors, TenantState.ACTIVE, name="other")
    run_id = ok(start(client, actors.auditor, "audited"), 201)["id"]
    path = f"/api/v1/tenants/audited/compliance-evidence/{run_id}/bundle"
    assert client.get(path, headers=actors.auditor).status_code == 404  # not collected yet
    other = f"/api/v1/tenants/other/compliance-evidence/{run_id}/bundle"
    assert client.get(other, headers=actors.auditor).status_code == 404
    assert client.get(path, headers=actors.ops).status_code == 403


def test_the_cli_starts_a_collection_once(
    server: Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "ada", "auditor"))
    started = invoke(capsys, "compliance", "start", "cli-blue", "--period", "2026-Q3")
    assert started.code == 0, started
    assert started.out.startswith("compliance evidence 2026-Q3 of cli-blue started: run ")
    again = invoke(capsys, "compliance", "start", "cli-blue", "--period", "2026-Q3")
    assert again.code == 1
    assert again.err.startswith("error: Conflict: the compliance evidence of cli-blue for 2026-Q3")
    assert again.err.count("\n") == 1
    bad = invoke(capsys, "compliance", "start", "cli-blue", "--period", "2026-Q9")
    assert bad.code == 1
    assert bad.err.count("\n") == 1
    running = invoke(capsys, "compliance", "start", "cli-blue", "--period", "2999-Q1")
    assert running.code == 1
    assert "2999-Q1 is not over until 2999-04-01 00:00 UTC" in running.err
    assert running.err.count("\n") == 1
    for wrong in (["--period", "2026-Q3"], ["cli-blue", "--all"], ["cli-blue", "--tier", "basic"]):
        refused = invoke(capsys, "compliance", "start", *wrong)
        assert refused.code == 1, wrong
        assert refused.err.count("\n") == 1
    # cli-blue is requested, not on the platform: nothing to collect, and it says so.
    none = invoke(capsys, "compliance", "start", "--all", "--period", "2026-Q3")
    assert none.code == 0, none
    assert none.out == "compliance evidence 2026-Q3: 0 collection(s) started\n"
    typo = invoke(capsys, "compliance", "start", "--all", "--tier", "golden")
    assert typo.code == 1
    assert "unknown tier 'golden'" in typo.err

    # The server's worker collects; the bundle is written only if it matches the run.
    run_id = started.out.split("run ", 1)[1].split()[0]
    token = {"Authorization": f"Bearer {mint_token(server.db, 'abe', 'auditor')}"}
    deadline = time.monotonic() + 30
    digest = None
    while digest is None and time.monotonic() < deadline:
        run = httpx.get(f"{server.url}/api/v1/runs/{run_id}", headers=token).json()
        evidence = {s["name"]: s["evidence"] for s in run["steps"]}["collect"]
        digest = (evidence or {}).get("digest")  # none while the step has not run
        time.sleep(0.2)
    target = tmp_path / "bundle.json"
    fetched = invoke(capsys, "compliance", "bundle", "cli-blue", run_id, "-o", str(target))
    assert fetched.code == 0, fetched
    assert fetched.out.startswith(f"wrote {target}")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    missing = invoke(capsys, "compliance", "bundle", "cli-blue", "no-such-run")
    assert missing.code == 1
    assert missing.err.count("\n") == 1


def test_the_runbook_is_valid_and_survives_its_test_harness(
    capsys: pytest.CaptureFixture[str],
) -> None:
    valid = invoke(capsys, "runbooks", "validate")
    assert valid.code == 0, valid
    assert "compliance-evidence.yaml" in valid.out
    tested = invoke(
        capsys,
        "runbooks",
        "test",
        "compliance-evidence",
        "--fail",
        "collect:1",
        "--crash",
        "record",
    )
    assert tested.code == 0, tested
    assert "PASS compliance-evidence 1.0" in tested.out


def start_all(client: TestClient, who: Headers, **body: Any) -> Any:
    return client.post("/api/v1/compliance-evidence", json=body, headers=who)


def test_every_live_tenant_of_a_period_is_started_once_and_a_rerun_starts_only_the_failed(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    worker: Worker,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock.now = datetime(2030, 3, 10, 9, tzinfo=UTC)
    names = {}
    for name, state, tier in (
        ("alpha", TenantState.ACTIVE, "standard"),
        ("bravo", TenantState.ACTIVE, "premium"),
        ("cut-off", TenantState.SUSPENDED, "standard"),
        ("pending", TenantState.REQUESTED, "standard"),  # not on the platform
    ):
        names[name] = tenant_in(client, actors, state, name=name, tier=tier)["id"]
    clock.now = datetime(2030, 4, 2, 9, tzinfo=UTC)
    tenant_in(client, actors, TenantState.ACTIVE, name="late")  # active after 2030-Q1
    alpha = ok(start(client, actors.auditor, "alpha", "2030-Q1"), 201)["id"]

    for who in (actors.ops, actors.sec, actors.am):
        assert start_all(client, who, period="2030-Q1").status_code == 403
    for bad in (
        {"period": "2030-Q2"},
        {"tier": "golden"},
        {"tier": "BAD"},
        {"region": "nowhere-1"},  # no tenant was ever placed there: a typo, not an empty start
        {"states": "all"},
    ):
        refused = start_all(client, actors.auditor, **bad)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"].startswith("application/problem+json")
    with worker.db.read() as s:
        assert (
            len(engine.runs_with_input(s, runbook_id=RUNBOOK, name="period", value="2030-Q1")) == 1
        )

    fleet = ok(start_all(client, actors.auditor, period="2030-Q1"), 201)
    started = {one["tenant_name"]: one["run_id"] for one in fleet["started"]}
    assert fleet["period"] == "2030-Q1"
    assert set(started) == {"bravo", "cut-off"}
    assert fleet["skipped"] == [
        {"tenant_id": names["alpha"], "tenant_name": "alpha", "run_id": alpha, "why": "open"}
    ]
    for name, run_id in started.items():
        run = ok(client.get(f"/api/v1/runs/{run_id}", headers=actors.auditor))
        assert (run["tenant_id"], run["inputs"]["period"]) == (names[name], "2030-Q1")
        assert run["inputs"]["tenant"]["name"] == name
        assert run["started_by"] == "ada"  # actors.auditor

    # Alpha signed off, bravo's run cancelled: a rerun starts bravo's only.
    drain(worker)
    checker = auth("abe", "auditor")
    for gate in ("verify-bundle", "findings", "sign-off"):
        ok(decide(client, checker, alpha, gate, "no findings"))
    drain(worker)
    cancel = f"/api/v1/runs/{started['bravo']}/cancel"
    ok(client.post(cancel, json={"reason": "wrong bundle"}, headers=actors.admin))
    again = ok(start_all(client, actors.admin, period="2030-Q1", tier="premium"), 201)
    assert [one["tenant_name"] for one in again["started"]] == ["bravo"]
    assert again["skipped"] == []
    last = ok(start_all(client, actors.auditor, period="2030-Q1"), 200)
    assert last["started"] == []
    assert {(one["tenant_name"], one["why"]) for one in last["skipped"]} == {
        ("alpha", "collected"),
        ("bravo", "open"),
        ("cut-off", "open"),
    }

    # Collected again by hand after the sign-off: the open collection is the one named.
    reopened = ok(start(client, actors.auditor, "alpha", "2030-Q1"), 201)["id"]
    named = ok(start_all(client, actors.auditor, period="2030-Q1"), 200)["skipped"]
    assert [one["run_id"] for one in named if one["tenant_name"] == "alpha"] == [reopened]

    # What the CLI prints of such an answer: a line per tenant and the count.
    compliance_cli._report(fleet)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        "compliance evidence 2030-Q1: 2 collection(s) started, 1 skipped (1 open); "
        "an auditor decides their gates: tenantops runs list --runbook compliance-evidence"
    )
    assert f"skipped  alpha: open (run {alpha})" in out
    assert f"started  bravo: run {started['bravo']}" in out


@postgres_only
def test_a_fleet_start_waits_for_a_transaction_holding_the_chain_then_a_tenant(
    client: TestClient, actors: Actors, db: Database, clock: Clock
) -> None:
    """A worker's batch takes the audit chain's lock, then a tenant's (a step that changes
    the tenant); a fleet start that locked the tenants first would deadlock with it."""
    clock.now = datetime(2030, 3, 10, 9, tzinfo=UTC)
    tid = tenant_in(client, actors, TenantState.ACTIVE, name="alpha")["id"]
    clock.now = datetime(2030, 4, 2, 9, tzinfo=UTC)
    errors: list[BaseException] = []
    started: list[str] = []

    def fleet() -> None:
        try:
            with db.write() as s:
                done = compliance_service.start_collections(s, principal=SYSTEM, period="2030-Q1")
                started.extend(one.tenant_name for one in done.started)
        except Exception as exc:
            errors.append(exc)

    with db.write() as s:
        audit.serialize(s)  # what a batch's record_many takes first
        other = threading.Thread(target=fleet)
        other.start()
        deadline = time.monotonic() + 10
        while not blocked_on_a_lock(db) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert blocked_on_a_lock(db)  # the fleet start waits on the chain, holding nothing
        s.execute(select(Tenant).where(Tenant.id == tid).with_for_update())  # then the tenant
    other.join(30)
    assert not errors, errors
    assert started == ["alpha"]
