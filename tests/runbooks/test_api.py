"""The runs API as a client meets it: listing, a run's steps and evidence, gates, cancel, retry.

Runs are started straight through the engine with small runbooks made of the
builtin ``noop``/``fail`` actions and driven by a real worker, one batch at a
time, so each assertion sees a known state. Both stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.kit.clock import set_clock, utcnow
from tenantops.runbooks import engine
from tenantops.runbooks.actions import builtin_actions
from tenantops.runbooks.spec import Loaded, parse
from tenantops.runbooks.worker import Worker
from tests.conftest import TokenFactory
from tests.factories import tenant_body
from tests.flows import drain

PROBLEM = "application/problem+json"

DEMO = parse("""
id: api-demo
version: "1.0"
title: API demo
tenant: false
inputs: {who: {type: string}}
sla: {within: 1h}
steps:
  - {name: hello, action: noop, params: {greeting: "hello {{ inputs.who }}"}, evidence: [echo]}
  - {name: again, action: noop, params: {prev: "{{ steps.hello.echo.greeting }}"},
     sla: {within: 2h}}
""")

GATED = parse("""
id: api-gated
version: "1.0"
title: API gated
tenant: false
steps:
  - {name: prepare, action: noop, params: {x: 1}}
  - {name: sign-off, gate: {roles: [governance], prompt: "Looks right?"}}
  - {name: finish, action: noop, params: {x: 2}}
""")

FLAKY = parse("""
id: api-flaky
version: "1.0"
title: API flaky
tenant: false
steps:
  - {name: first, action: noop}
  - {name: breaks, action: fail, params: {message: disk full}, retry: {attempts: 2, backoff: 1ms}}
""")

TENANTED = parse("""
id: api-tenanted
version: "1.0"
title: API tenanted
steps:
  - {name: only, action: noop, params: {tenant: "{{ run.tenant_id }}"}}
""")

AMY = Principal("amy", frozenset({Role.ADMIN, Role.GOVERNANCE}))


@pytest.fixture
def worker(db: Database) -> Iterator[Worker]:
    w = Worker(db, builtin_actions(), poll_seconds=0.01)
    yield w
    w.stop()


def start(db: Database, loaded: Loaded, *, tenant_id: str | None = None, **inputs: Any) -> str:
    with db.write() as session:
        run = engine.start_run(
            session, loaded=loaded, actor=AMY, tenant_id=tenant_id, inputs=inputs
        )
        return run.id


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def new_tenant(client: TestClient, auth: TokenFactory) -> dict[str, Any]:
    r = client.post("/api/v1/tenants", json=tenant_body(), headers=auth("am", "account_manager"))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# --- reading ----------------------------------------------------------------


def test_a_finished_run_shows_steps_inputs_outputs_evidence_attempts_and_sla(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    run_id = start(db, DEMO, who="world")
    drain(worker)
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=auth("ada", "auditor")))

    assert run["status"] == "succeeded"
    assert run["runbook_id"] == "api-demo"
    assert run["runbook_version"] == "1.0"
    assert run["runbook_hash"] == DEMO.hash
    assert run["started_by"] == "amy"
    assert run["inputs"] == {"who": "world"}
    assert (run["steps_done"], run["steps_total"], run["current_step"]) == (2, 2, None)
    assert run["sla"]["breached"] is False
    assert run["sla"]["remaining_seconds"] is None  # finished: the clock stopped

    hello, again = run["steps"]
    assert (hello["name"], hello["kind"], hello["action"]) == ("hello", "action", "noop")
    assert hello["status"] == "succeeded"
    assert hello["inputs"] == {"greeting": "hello world"}
    assert hello["output"] == {"echo": {"greeting": "hello world"}}
    assert hello["idempotency_key"] == f"{run_id}/hello"
    assert hello["duration_seconds"] >= 0
    assert [a["status"] for a in hello["attempts"]] == ["succeeded"]
    assert hello["attempts"][0]["worker"] == worker.name
    assert again["inputs"] == {"prev": "hello world"}
    assert again["sla"]["breached"] is False
    assert again["sla"]["deadline"] > again["started_at"]


def test_a_running_run_counts_down_its_sla_and_shows_the_breach(
    client: TestClient, db: Database, auth: TokenFactory
) -> None:
    run_id = start(db, DEMO, who="world")
    ada = auth("ada", "auditor")
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=ada))
    assert run["status"] == "running"
    assert run["current_step"] == "hello"
    assert 3500 < run["sla"]["remaining_seconds"] <= 3600

    later = utcnow() + timedelta(hours=2)
    set_clock(lambda: later)
    try:
        with db.write() as session:
            engine.check_deadlines(session)
        run = ok(client.get(f"/api/v1/runs/{run_id}", headers=ada))
    finally:
        set_clock(None)
    assert run["sla"]["breached"] is True
    assert run["sla"]["breached_at"] is not None
    assert run["sla"]["remaining_seconds"] < 0


def test_list_filters_by_runbook_status_and_tenant_and_pages_with_a_cursor(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    tenant = new_tenant(client, auth)
    done = start(db, DEMO, who="a")
    drain(worker)
    running = [start(db, DEMO, who=str(n)) for n in range(3)]
    mine = start(db, TENANTED, tenant_id=tenant["id"])
    ada = auth("ada", "auditor")

    page = ok(client.get("/api/v1/runs", params={"runbook": "api-demo"}, headers=ada))
    assert [r["id"] for r in page["items"]] == [*reversed(running), done]  # newest first

    page = ok(
        client.get(
            "/api/v1/runs", params={"runbook": "api-demo", "status": "succeeded"}, headers=ada
        )
    )
    assert [r["id"] for r in page["items"]] == [done]

    for ref in (tenant["name"], tenant["id"]):
        page = ok(
            client.get(
                "/api/v1/runs", params={"tenant": ref, "runbook": "api-tenanted"}, headers=ada
            )
        )
        assert [(r["id"], r["tenant_name"]) for r in page["items"]] == [(mine, tenant["name"])]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"runbook": "api-demo", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = ok(client.get("/api/v1/runs", params=params, headers=ada))
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*reversed(running), done]

    problem(client.get("/api/v1/runs", params={"cursor": "nonsense"}, headers=ada), 422)
    problem(client.get("/api/v1/runs", params={"status": "sleeping"}, headers=ada), 422)
    problem(client.get("/api/v1/runs", params={"tenant": "nobody"}, headers=ada), 404)


def test_unknown_run_and_unauthenticated_calls_are_problems(
    client: TestClient, auth: TokenFactory
) -> None:
    body = problem(
        client.get("/api/v1/runs/0190aaaa-0000-7000-8000-000000000000", headers=auth("a", "qa")),
        404,
    )
    assert "no run" in body["detail"]
    problem(client.get("/api/v1/runs"), 401)


# --- tenant owners ----------------------------------------------------------


def test_a_tenant_owner_sees_only_the_runs_of_their_tenant(
    client: TestClient, db: Database, auth: TokenFactory
) -> None:
    ours, theirs = new_tenant(client, auth), new_tenant(client, auth)
    our_run = start(db, TENANTED, tenant_id=ours["id"])
    their_run = start(db, TENANTED, tenant_id=theirs["id"])
    no_tenant = start(db, DEMO, who="x")
    owner = auth("olga", "tenant_owner", tenant=ours["name"])

    page = ok(client.get("/api/v1/runs", headers=owner))
    assert our_run in [r["id"] for r in page["items"]]
    assert {r["tenant_id"] for r in page["items"]} == {ours["id"]}

    assert ok(client.get(f"/api/v1/runs/{our_run}", headers=owner))["id"] == our_run
    for hidden in (their_run, no_tenant):
        body = problem(client.get(f"/api/v1/runs/{hidden}", headers=owner), 404)
        assert body["detail"] == f"no run {hidden!r}"
    problem(client.get("/api/v1/runs", params={"tenant": theirs["name"]}, headers=owner), 404)

    nobody = auth("nina", "tenant_owner", tenant="gone")
    assert ok(client.get("/api/v1/runs", headers=nobody))["items"] == []


# --- gates ------------------------------------------------------------------


def test_a_gate_refuses_the_starter_and_the_wrong_role_then_opens_for_governance(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    run_id = start(db, GATED)
    drain(worker)
    gate = f"/api/v1/runs/{run_id}/gates/sign-off"
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=auth("ada", "auditor")))
    assert run["status"] == "waiting"
    assert run["steps"][1]["status"] == "waiting"
    assert run["steps"][1]["gate"] == {
        "roles": ["governance"],
        "prompt": "Looks right?",
        "signal": None,
    }

    body = problem(
        client.post(gate, json={"decision": "approve"}, headers=auth("amy", "governance")), 403
    )
    assert body["type"].endswith("/segregation-of-duties")
    body = problem(
        client.post(gate, json={"decision": "approve"}, headers=auth("quinn", "qa")), 403
    )
    assert "governance" in body["detail"]
    problem(client.post(gate, json={"decision": "approve"}, headers=auth("ada", "auditor")), 403)
    problem(client.post(gate, json={"decision": "maybe"}, headers=auth("gus", "governance")), 422)
    problem(
        client.post(f"/api/v1/runs/{run_id}/gates/prepare", json={"decision": "approve"},
                    headers=auth("gus", "governance")),
        422,
    )  # fmt: skip
    problem(
        client.post(f"/api/v1/runs/{run_id}/gates/nope", json={"decision": "approve"},
                    headers=auth("gus", "governance")),
        404,
    )  # fmt: skip

    run = ok(
        client.post(
            gate, json={"decision": "approve", "comment": "fine"}, headers=auth("gus", "governance")
        )
    )
    step = run["steps"][1]
    assert step["status"] == "succeeded"
    assert step["decided_by"] == "gus"
    assert step["evidence"]["comment"] == "fine"
    assert run["status"] == "running"
    drain(worker)
    assert (
        ok(client.get(f"/api/v1/runs/{run_id}", headers=auth("gus", "governance")))["status"]
        == "succeeded"
    )
    problem(client.post(gate, json={"decision": "approve"}, headers=auth("gia", "governance")), 409)


def test_a_rejected_gate_fails_the_run_and_an_early_decision_is_kept(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    rejected, early = start(db, GATED), start(db, GATED)
    gov = auth("gus", "governance")
    # Decided before the run reaches the gate: kept, applied when it opens.
    run = ok(
        client.post(
            f"/api/v1/runs/{early}/gates/sign-off", json={"decision": "approve"}, headers=gov
        )
    )
    assert run["steps"][1]["status"] == "pending"
    drain(worker)
    run = ok(client.post(f"/api/v1/runs/{rejected}/gates/sign-off",
                         json={"decision": "reject", "comment": "no"}, headers=gov))  # fmt: skip
    assert run["status"] == "failed"
    assert "rejected by gus" in run["error"]
    assert ok(client.get(f"/api/v1/runs/{early}", headers=gov))["status"] == "succeeded"


# --- cancel and retry -------------------------------------------------------


def test_ops_cancels_a_run_once_with_a_reason(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    run_id = start(db, GATED)
    drain(worker)
    cancel = f"/api/v1/runs/{run_id}/cancel"
    problem(client.post(cancel, json={"reason": "no"}, headers=auth("gus", "governance")), 403)
    problem(client.post(cancel, json={}, headers=auth("oli", "ops_engineer")), 422)

    run = ok(
        client.post(
            cancel, json={"reason": "customer withdrew"}, headers=auth("oli", "ops_engineer")
        )
    )
    assert run["status"] == "cancelled"
    assert run["error"] == "customer withdrew"
    assert [s["status"] for s in run["steps"]] == ["succeeded", "cancelled", "cancelled"]

    body = problem(
        client.post(cancel, json={"reason": "again"}, headers=auth("oli", "ops_engineer")), 409
    )
    assert "cancelled" in body["detail"]
    problem(
        client.post(f"/api/v1/runs/{run_id}/gates/sign-off", json={"decision": "approve"},
                    headers=auth("gus", "governance")),
        409,
    )  # fmt: skip


def test_a_failed_run_is_retried_from_its_failed_step(
    client: TestClient, db: Database, auth: TokenFactory, worker: Worker
) -> None:
    run_id = start(db, FLAKY)
    drain(worker)
    ops = auth("oli", "ops_engineer")
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=ops))
    assert run["status"] == "failed"
    assert run["current_step"] == "breaks"
    breaks = run["steps"][1]
    assert breaks["error"] == "disk full — gave up after 2 tries"
    assert [(a["status"], a["error"]) for a in breaks["attempts"]] == [("failed", "disk full")] * 2
    assert (breaks["tries"], breaks["attempt"], breaks["max_attempts"]) == (2, 2, 2)

    problem(client.post(f"/api/v1/runs/{run_id}/retry", headers=auth("ada", "auditor")), 403)
    run = ok(client.post(f"/api/v1/runs/{run_id}/retry", headers=ops))
    assert run["status"] == "running"
    assert [s["status"] for s in run["steps"]] == ["succeeded", "ready"]
    drain(worker)
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=ops))
    assert run["status"] == "failed"
    assert len(run["steps"][1]["attempts"]) == 4  # two more tries, the first step not re-run
    # The maximum bounds a round; the attempts go on counting across it.
    assert (run["steps"][1]["tries"], run["steps"][1]["attempt"]) == (2, 4)
    assert len(run["steps"][0]["attempts"]) == 1

    done = start(db, DEMO, who="x")
    drain(worker)
    body = problem(client.post(f"/api/v1/runs/{done}/retry", headers=ops), 409)
    assert "only a failed run" in body["detail"]


# --- the library ------------------------------------------------------------


def test_the_library_lists_every_shipped_runbook_and_shows_one(
    client: TestClient, auth: TokenFactory
) -> None:
    who = auth("ada", "auditor")
    listed = ok(client.get("/api/v1/runbooks", headers=who))
    for item in listed:
        shown = ok(client.get(f"/api/v1/runbooks/{item['id']}", headers=who))
        assert shown["hash"] == item["hash"]
        assert shown["document"]["id"] == item["id"]
        assert len(shown["document"]["steps"]) == item["steps"]
    body = problem(client.get("/api/v1/runbooks/no-such-runbook", headers=who), 404)
    assert "no-such-runbook" in body["detail"]
