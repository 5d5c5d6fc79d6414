"""The Budget Review checklist: started over the API, completed by finance, kept in the ledger."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.finops.models import LedgerEntry
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import TokenFactory, invoke
from tests.finops.test_reports import Server, seeded, server  # noqa: F401 (fixtures)
from tests.flows import drain, ok
from tests.servers import mint_token


def decide(client: TestClient, who: dict[str, str], run_id: str, step: str, comment: str) -> Any:
    return client.post(
        f"/api/v1/runs/{run_id}/gates/{step}",
        json={"decision": "approve", "comment": comment},
        headers=who,
    )


def test_finance_completes_the_review_and_the_decision_reaches_the_ledger(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    seeded: dict[str, str],  # noqa: F811
) -> None:
    starter = auth("frank", "finance")
    reviewer = auth("fiona", "finance")
    ops = auth("oli", "ops_engineer")
    worker = Worker(db, build_actions(settings, db))
    run = ok(
        client.post(
            "/api/v1/tenants/blue/budget-reviews", json={"month": "2030-01"}, headers=starter
        ),
        201,
    )
    run_id = run["id"]
    assert run["runbook_id"] == "budget-review"
    assert run["inputs"]["month"] == "2030-01"
    again = client.post(
        "/api/v1/tenants/blue/budget-reviews", json={"month": "2030-01"}, headers=starter
    )
    assert again.status_code == 409
    assert run_id in again.json()["detail"]
    refused = client.post(
        "/api/v1/tenants/blue/budget-reviews", json={"month": "2030-01"}, headers=ops
    )
    assert refused.status_code == 403

    drain(worker)
    waiting = ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "review-spend")
    steps = {s["name"]: s for s in waiting["steps"]}
    snapshot = steps["snapshot"]["evidence"]
    assert (snapshot["cost"], snapshot["budget"], snapshot["currency"]) == (
        "850.00",
        "1000.00",
        "EUR",
    )
    assert snapshot["ratio"] == "0.8500"
    assert snapshot["top_services"][0] == ["Compute", "500.00"]
    notes = ok(client.get("/api/v1/notifications", headers=auth("root", "admin")))["items"]
    assert any(
        n["run_id"] == run_id and n["subject"].startswith("[FinOps] Budget review due: blue")
        for n in notes
    )

    # Not finance: refused at the gate; the starter: refused too (segregation of duties).
    assert decide(client, ops, run_id, "review-spend", "looks fine").status_code == 403
    assert decide(client, starter, run_id, "review-spend", "mine").status_code == 403
    ok(decide(client, reviewer, run_id, "review-spend", "850 of 1000 EUR, compute-heavy"))
    ok(decide(client, reviewer, run_id, "review-forecast", "forecast 2635 EUR: over"))
    ok(decide(client, reviewer, run_id, "decide", "raise to 3000 EUR: new batch workload"))
    drain(worker)
    done = ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))
    assert done["status"] == "succeeded"

    with db.read() as session:
        entry = session.execute(
            select(LedgerEntry).where(LedgerEntry.ref == "budget-review:2030-01")
        ).scalar_one()
        gate_audits = list(
            session.execute(
                select(AuditEntry).where(AuditEntry.action == "run.gate.signal")
            ).scalars()
        )
        ledger_audit = session.execute(
            select(AuditEntry).where(AuditEntry.action == "finops.ledger.note")
        ).scalar_one()
        assert audit.verify(session).ok
    assert (entry.tenant_id, entry.kind, entry.actor) == (seeded["blue"], "note", "fiona")
    assert entry.data is not None
    assert entry.data["decision"] == "raise to 3000 EUR: new batch workload"
    assert entry.data["outcome"] == "raise"
    assert entry.data["decided_by"] == "fiona"
    assert entry.data["gates"]["review-spend"]["comment"] == "850 of 1000 EUR, compute-heavy"
    assert set(entry.data["gates"]) == {"review-spend", "review-forecast", "decide"}
    # Every decision audited by the engine, with its comment and who made it.
    applied = [a for a in gate_audits if a.detail["run_id"] == run_id]
    assert [(a.actor, a.detail["step"], a.detail["comment"]) for a in applied] == [
        ("fiona", "review-spend", "850 of 1000 EUR, compute-heavy"),
        ("fiona", "review-forecast", "forecast 2635 EUR: over"),
        ("fiona", "decide", "raise to 3000 EUR: new batch workload"),
    ]
    assert ledger_audit.detail["ledger_seq"] == entry.seq
    ledger_page = ok(client.get("/api/v1/tenants/blue/ledger", headers=reviewer))
    assert any(e["ref"] == "budget-review:2030-01" for e in ledger_page["items"])


def test_a_review_needs_a_known_tenant_and_a_valid_month(
    client: TestClient,
    auth: TokenFactory,
    seeded: dict[str, str],  # noqa: F811
) -> None:
    finance = auth("frank", "finance")
    missing = client.post("/api/v1/tenants/nobody/budget-reviews", json={}, headers=finance)
    assert missing.status_code == 404
    bad = client.post(
        "/api/v1/tenants/blue/budget-reviews", json={"month": "2030-1"}, headers=finance
    )
    assert bad.status_code == 422
    default = ok(client.post("/api/v1/tenants/blue/budget-reviews", headers=finance), 201)
    assert default["inputs"]["month"] == "2030-01"  # the clock's month


def test_the_cli_starts_a_review_once(
    server: Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "frank", "finance"))
    # The server runs on the wall clock: a month that is over whenever this test runs.
    started = invoke(capsys, "finops", "review", "start", "cli-blue", "--month", "2026-01")
    assert started.code == 0, started
    assert started.out.startswith("budget review 2026-01 of cli-blue started: run ")
    again = invoke(capsys, "finops", "review", "start", "cli-blue", "--month", "2026-01")
    assert again.code == 1
    assert again.err.startswith("error: Conflict: the budget review of cli-blue for 2026-01")


def test_the_start_wakes_the_worker(
    client: TestClient,
    auth: TokenFactory,
    seeded: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Looper:
        woken = 0

        def wake(self) -> None:
            Looper.woken += 1

    state = client.app.state  # type: ignore[attr-defined]
    monkeypatch.setattr(state, "worker", Looper(), raising=False)
    started = client.post(
        "/api/v1/tenants/blue/budget-reviews",
        json={"month": "2030-01"},
        headers=auth("frank", "finance"),
    )
    ok(started, 201)
    assert Looper.woken == 1
