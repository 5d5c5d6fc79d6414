"""The runs list and the live run page, through the browser-like ``web`` client.

Runs are started through the engine with small runbooks of the builtin
``noop``/``fail`` actions and driven one batch at a time by a real worker (as
``tests/runbooks/test_api.py`` does), so each page is read in a known state;
one real ``tenant-onboarding`` run is driven to completion with the product's
actions. The pages must say what the runs API says, to whom the API says it.
Both stores.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, local_drivers
from tenantops.drivers.health.local import HttpHealth
from tenantops.runbooks import engine, windows
from tenantops.runbooks import service as runs
from tenantops.runbooks.actions import builtin_actions
from tenantops.runbooks.schemas import GateDecisionCreate
from tenantops.runbooks.spec import Loaded, parse
from tenantops.runbooks.worker import Worker
from tenantops.web.run_view import fields
from tenantops.wiring import build_actions
from tests.conftest import Actors, Clock
from tests.flows import approve, drain, request_tenant
from tests.web.conftest import UserFactory, sign_in

PLAIN = parse("""
id: web-plain
version: "1.0"
title: Web plain
tenant: false
inputs: {who: {type: string}}
sla: {within: 1h}
steps:
  - {name: hello, action: noop, params: {greeting: "hello {{ inputs.who }}"}, evidence: [echo]}
  - {name: again, action: noop, params: {run_id: "{{ run.id }}"}, evidence: [echo],
     sla: {within: 2h}}
""")

GATED = parse("""
id: web-gated
version: "1.0"
title: Web gated
tenant: false
sla: {within: 1h}
steps:
  - {name: prepare, action: noop, params: {x: 1}}
  - {name: sign-off, gate: {roles: [governance], prompt: "Looks right?"}}
  - {name: finish, action: noop, params: {x: 2}}
""")

BROKEN = parse("""
id: web-broken
version: "1.0"
title: Web broken
tenant: false
sla: {within: 1h}
steps:
  - {name: first, action: noop}
  - {name: breaks, action: fail, params: {message: disk full, retriable: false}}
""")

TENANTED = parse("""
id: web-tenanted
version: "1.0"
title: Web tenanted
steps:
  - {name: only, action: noop}
""")

AMY = Principal("amy", frozenset({Role.ADMIN}))
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))
ROW = re.compile(r'<tr data-run="([^"]+)"')


@pytest.fixture
def worker(db: Database) -> Iterator[Worker]:
    w = Worker(db, builtin_actions(), poll_seconds=0.01)
    yield w
    w.stop()


def start(db: Database, loaded: Loaded, *, tenant_id: str | None = None, **inputs: Any) -> str:
    with db.write() as session:
        return engine.start_run(
            session, loaded=loaded, actor=AMY, tenant_id=tenant_id, inputs=inputs
        ).id


def status_of(db: Database, run_id: str) -> str:
    with db.read() as session:
        return runs.read_run(session, principal=AMY, run_id=run_id).status


def rows(page: httpx.Response) -> list[str]:
    return ROW.findall(page.text)


def steps_fragment(web: TestClient, run_id: str) -> httpx.Response:
    r = web.get(f"/runs/{run_id}/steps", headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    return r


def signed_in(web: TestClient, user: UserFactory, name: str, *roles: str, **kw: Any) -> str:
    user(name, *roles, **kw)
    web.cookies.clear()  # whoever was signed in before
    return sign_in(web, name)


# --- the list -----------------------------------------------------------------------------


def test_the_list_pages_by_50_newest_first_as_the_api_and_filters(
    web: TestClient, db: Database, user: UserFactory, actors: Actors, worker: Worker
) -> None:
    broken = [start(db, BROKEN) for _ in range(2)]
    drain(worker)
    plain = [start(db, PLAIN, who=str(i)) for i in range(53)]
    tenant = request_tenant(web, actors.am, name="listed")  # starts its onboarding run
    tenanted = start(db, TENANTED, tenant_id=tenant["id"])
    signed_in(web, user, "oli", "ops_engineer")

    first = web.get("/runs")
    assert first.status_code == 200
    api = web.get("/api/v1/runs", params={"limit": 200}, headers=actors.ops).json()["items"]
    everything = [r["id"] for r in api]
    assert len(everything) == 57
    assert rows(first) == everything[:50]  # newest first, as the API orders them
    assert 'data-page="first"' not in first.text
    next_link = re.search(r'href="([^"]+)" data-page="next"', first.text)
    assert next_link
    second = web.get(next_link.group(1).replace("&amp;", "&"))
    assert rows(second) == everything[50:]
    assert 'data-page="next"' not in second.text
    assert 'data-page="first"' in second.text

    failed = web.get("/runs", params={"state": "failed"})
    assert sorted(rows(failed)) == sorted(broken)
    assert 'class="run-state rs-failed"' in failed.text
    by_runbook = web.get("/runs", params={"runbook": "web-plain"})
    assert len(rows(by_runbook)) == 50
    assert set(rows(by_runbook)) <= set(plain)
    paged = web.get("/runs", params={"runbook": "web-plain", "state": "running"})
    assert len(rows(paged)) == 50
    assert "runbook=web-plain" in paged.text
    assert "state=running" in paged.text
    by_tenant = web.get("/runs", params={"tenant": "listed"})
    onboarding = [r["id"] for r in api if r["runbook_id"] == "tenant-onboarding"]
    assert sorted(rows(by_tenant)) == sorted([tenanted, *onboarding])
    assert 'href="/tenants/listed"' in by_tenant.text

    nobody = web.get("/runs", params={"tenant": "no-such-tenant"})
    assert nobody.status_code == 404
    assert rows(nobody) == []
    wrong = web.get("/runs", params={"state": "exploded"})
    assert wrong.status_code == 422
    assert "exploded" in wrong.text
    forged = web.get("/runs", params={"cursor": "not a cursor!"})
    assert forged.status_code == 422
    assert "cursor is not one this API issued" in forged.text  # on the page, not a JSON error


def test_a_tenant_owner_sees_only_their_tenants_runs(
    web: TestClient, db: Database, user: UserFactory, actors: Actors, worker: Worker
) -> None:
    mine = request_tenant(web, actors.am, name="mine")
    theirs = request_tenant(web, actors.am, name="theirs")
    own_run = start(db, TENANTED, tenant_id=mine["id"])
    other_run = start(db, TENANTED, tenant_id=theirs["id"])
    untenanted = start(db, PLAIN, who="x")
    drain(worker)
    signed_in(web, user, "olga", "tenant_owner", tenant=mine["id"])

    listed = rows(web.get("/runs"))
    assert own_run in listed
    assert other_run not in listed
    assert untenanted not in listed
    assert 'id="f-tenant"' not in web.get("/runs").text  # no tenant filter to play with
    # Asking for the other tenant by name shows nothing of it: the API's 404.
    other = web.get("/runs", params={"tenant": "theirs"})
    assert other.status_code == 404
    assert rows(other) == []
    assert rows(web.get("/runs", params={"tenant": "mine"})) == listed
    assert len(listed) == 2  # their onboarding run and the one above

    assert web.get(f"/runs/{own_run}").status_code == 200
    for run_id in (other_run, untenanted):
        page = web.get(f"/runs/{run_id}")
        assert page.status_code == 404
        assert 'data-step="only"' not in page.text
        assert web.get(f"/runs/{run_id}/steps").status_code == 404


def test_without_a_session_the_pages_send_to_the_login(web: TestClient, db: Database) -> None:
    run_id = start(db, PLAIN, who="x")
    for path in ("/runs", f"/runs/{run_id}", f"/runs/{run_id}/steps"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")
    polled = web.get(f"/runs/{run_id}/steps", headers={"HX-Request": "true"})
    assert polled.headers["HX-Redirect"] == f"/login?next=%2Fruns%2F{run_id}"


# --- the run page -------------------------------------------------------------------------


def approve_gate(db: Database, run_id: str, comment: str | None = None) -> None:
    with db.write() as session:
        runs.decide_gate(
            session,
            principal=GUS,
            run_id=run_id,
            step="sign-off",
            data=GateDecisionCreate(decision="approve", comment=comment),
        )


def test_the_run_page_shows_the_run_its_steps_evidence_and_sla(
    web: TestClient, db: Database, user: UserFactory, worker: Worker
) -> None:
    run_id = start(db, GATED)
    drain(worker)
    approve_gate(db, run_id, comment="fine by me")
    drain(worker)
    signed_in(web, user, "ada", "auditor")

    page = web.get(f"/runs/{run_id}")
    assert page.status_code == 200
    text = page.text
    assert "web-gated" in text
    assert "v1.0" in text
    assert GATED.hash in text
    assert "<dd>amy</dd>" in text  # who started it
    assert 'data-state="succeeded"' in text
    assert text.count('data-status="succeeded"') == 3
    assert text.index('data-step="prepare"') < text.index('data-step="sign-off"')
    assert text.index('data-step="sign-off"') < text.index('data-step="finish"')
    assert "1 of 3" in text  # attempts
    # The run's SLA in words, with its deadline.
    assert 'data-sla="met"' in text
    assert "met: finished before the deadline" in text
    assert re.search(r"\(deadline \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", text)
    # The gate's evidence as labelled values.
    assert "<dt>decision</dt>" in text
    assert "<code>approve</code>" in text
    assert "<dt>by</dt>" in text
    assert "<code>gus</code>" in text
    assert "<code>fine by me</code>" in text
    assert f'href="/api/v1/runs/{run_id}"' in text
    assert "hx-trigger" not in text  # finished: nothing polls


def test_a_step_held_for_its_maintenance_window_says_so(
    web: TestClient, db: Database, user: UserFactory, worker: Worker, clock: Clock
) -> None:
    with db.write() as session:
        windows.put_window(
            session,
            principal=AMY,
            name="night",
            days=["tue"],
            start="22:00",
            end="23:00",
            timezone="UTC",
        )
    windowed = parse(
        "id: web-windowed\nversion: '1.0'\ntitle: W\ntenant: false\nsteps:\n"
        "  - {name: change, action: noop, window: night}\n"
    )
    run_id = start(db, windowed)
    drain(worker)
    signed_in(web, user, "ada", "auditor")

    text = steps_fragment(web, run_id).text
    assert re.search(r"<dd data-step-window>night <span[^>]*>\(starts only inside it\)", text)
    assert "<dt>Due at</dt><dd>2030-01-01 22:00:00 UTC</dd>" in text


def test_evidence_values_that_name_something_link_to_it() -> None:
    shown = {
        f.label: f
        for f in fields(
            {
                "run_id": "r-1",
                "tenant": "acme",
                "tenant_id": "t-1",
                "message_id": "m-1",
                "month": "2030-01",
                "pdf": "/data/reports/2030-01.pdf",
                "link": "https://itsm.example.com/INC1",
                "manifest_digest": "sha256:abc",
                "applied": False,
                "hotspots": [{"service": "db", "cost": 3}],
                "nested": {"run": "r-2"},
                "javascript": "javascript:alert(1)",
            },
            tenant="acme",
        )
    }
    assert shown["run id"].href == "/runs/r-1"
    assert shown["tenant"].href == "/tenants/acme"
    assert shown["tenant id"].href == "/api/v1/tenants/t-1"
    assert shown["message id"].href == "/api/v1/notifications/m-1"
    assert shown["pdf"].href == "/api/v1/finops/reports/cost?month=2030-01&format=pdf&tenant=acme"
    assert shown["pdf"].text == "/data/reports/2030-01.pdf"
    assert shown["link"].href == "https://itsm.example.com/INC1"
    assert shown["manifest digest"].href is None
    assert shown["applied"].text == "no"
    (first,) = shown["hotspots"].children
    assert [(c.label, c.text) for c in first.children] == [("service", "db"), ("cost", "3")]
    assert shown["nested"].children[0].href == "/runs/r-2"
    assert shown["javascript"].href is None


def test_the_steps_poll_while_the_run_is_unfinished_and_stop_when_it_finishes(
    web: TestClient, db: Database, user: UserFactory, worker: Worker, clock: Clock
) -> None:
    run_id = start(db, GATED)
    drain(worker)
    signed_in(web, user, "ada", "auditor")

    page = web.get(f"/runs/{run_id}")
    assert 'hx-get="/runs/' + run_id + '/steps" hx-trigger="every 2s"' in page.text
    live = steps_fragment(web, run_id)
    assert 'hx-trigger="every 2s"' in live.text
    assert "<html" not in live.text  # a fragment, not a page
    assert 'data-state="waiting"' in live.text
    assert "data-gate-waiting" in live.text
    assert 'href="/approvals"' in live.text
    assert "Looks right?" in live.text
    assert "1 h 0 min left" in live.text  # the clock is frozen at the run's start

    clock.advance(minutes=56)
    soon = steps_fragment(web, run_id)
    assert "4 min 0 s left" in soon.text
    assert 'data-sla="soon"' in soon.text
    clock.advance(minutes=9)
    late = steps_fragment(web, run_id)
    assert "breached 5 min 0 s ago" in late.text
    assert 'data-sla="breached"' in late.text
    assert 'hx-trigger="every 2s"' in late.text  # late, but still unfinished

    approve_gate(db, run_id)
    drain(worker)
    done = steps_fragment(web, run_id)
    assert 'data-state="succeeded"' in done.text
    assert "hx-trigger" not in done.text
    assert 'data-finished="yes"' in done.text
    assert "Decided by" in done.text
    assert "gus" in done.text
    assert 'data-sla="breached"' in done.text  # it finished after its deadline
    assert 'id="run-actions"' in done.text
    assert 'hx-swap-oob="true"' in done.text


def test_the_page_of_a_real_onboarding_run_driven_to_completion(
    web: TestClient, db: Database, settings: Settings, user: UserFactory, actors: Actors
) -> None:
    def probe(request: httpx.Request) -> httpx.Response:
        # The health checks call this app's built-in probe, over the ASGI client.
        answer = web.request(
            request.method,
            request.url.path,
            content=request.content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    drivers = local_drivers(settings, db)
    drivers = dataclasses.replace(
        drivers,
        health=HttpHealth(
            db,
            url_template="http://127.0.0.1/probe/tenants/{tenant}",
            identity=drivers.identity,
            transport=httpx.MockTransport(probe),
        ),
    )
    actions = build_actions(settings, db) | driver_actions(settings, db, drivers=drivers)
    worker = Worker(db, actions, poll_seconds=0.01)
    try:
        tenant = request_tenant(web, actors.am, name="onboarded")
        drain(worker)
        approve(web, "onboarded", "governance", actors.gov)
        approve(web, "onboarded", "security", actors.sec)
        drain(worker, rounds=80)
    finally:
        worker.stop()
    listed = web.get(
        "/api/v1/runs",
        params={"tenant": tenant["id"], "runbook": "tenant-onboarding"},
        headers=actors.ops,
    )
    (run,) = listed.json()["items"]
    detail = web.get(f"/api/v1/runs/{run['id']}", headers=actors.ops).json()
    assert detail["status"] == "succeeded", detail
    commit = next(s for s in detail["steps"] if s["name"] == "gitops")["evidence"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    signed_in(web, user, "oli", "ops_engineer")

    page = web.get(f"/runs/{run['id']}")
    assert page.status_code == 200
    text = page.text
    assert 'data-state="succeeded"' in text
    assert text.count('data-status="succeeded"') == len(detail["steps"]) == 14
    assert 'data-status="failed"' not in text
    assert f"<code>{commit}</code>" in text  # the commit SHA, as recorded
    assert "manifest digest" in text
    assert 'href="/tenants/onboarded"' in text
    assert 'href="/api/v1/notifications/' in text  # the onboarding pack's message
    assert "hx-trigger" not in text
    assert 'data-action="cancel"' not in text
    assert 'data-action="retry"' not in text


# --- retry and cancel ---------------------------------------------------------------------


def test_ops_retries_a_failed_run_and_an_auditor_may_not(
    web: TestClient, db: Database, user: UserFactory, worker: Worker
) -> None:
    run_id = start(db, BROKEN)
    drain(worker)
    assert status_of(db, run_id) == "failed"

    csrf = signed_in(web, user, "ada", "auditor")
    page = web.get(f"/runs/{run_id}")
    assert "Error: disk full" in page.text  # the step's error
    assert "ended (failed) before the deadline" in page.text  # failing in time is no SLA met
    assert 'data-sla="met"' not in page.text
    attempt = r"#1 by \S+: failed, [^<]* — <span class=\"error\">disk full</span>"
    assert re.search(attempt, page.text)
    assert 'data-action="retry"' not in page.text
    refused = web.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    assert "do not allow you to retry" in refused.text
    assert status_of(db, run_id) == "failed"

    csrf = signed_in(web, user, "oli", "ops_engineer")
    assert 'data-action="retry"' in web.get(f"/runs/{run_id}").text
    assert web.post(f"/runs/{run_id}/retry", data={}).status_code == 403  # no CSRF token
    assert status_of(db, run_id) == "failed"
    done = web.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/runs/{run_id}"
    assert status_of(db, run_id) == "running"
    after = web.get(f"/runs/{run_id}")
    assert 'data-action="retry"' not in after.text
    assert 'hx-trigger="every 2s"' in after.text
    # A new round: its tries against the maximum, and every try since the start.
    assert "<dd data-step-tries>0 of 3 (1 in all)</dd>" in after.text

    # Retrying a run that is not failed is refused inline, and changes nothing.
    again = web.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert again.status_code == 409
    assert "data-error" in again.text
    assert status_of(db, run_id) == "running"

    drain(worker)
    again_failed = web.get(f"/runs/{run_id}").text
    assert "<dd data-step-tries>1 of 3 (2 in all), 1 failed</dd>" in again_failed
    assert "<dd data-step-tries>1 of 3</dd>" in again_failed  # the first step, run once


def test_ops_cancels_a_waiting_run_with_a_reason_and_an_auditor_may_not(
    web: TestClient, db: Database, user: UserFactory, worker: Worker
) -> None:
    run_id = start(db, GATED)
    drain(worker)
    assert status_of(db, run_id) == "waiting"

    csrf = signed_in(web, user, "ada", "auditor")
    assert 'data-action="cancel"' not in web.get(f"/runs/{run_id}").text
    refused = web.post(
        f"/runs/{run_id}/cancel", data={"csrf_token": csrf, "reason": "x"}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert status_of(db, run_id) == "waiting"

    csrf = signed_in(web, user, "oli", "ops_engineer")
    page = web.get(f"/runs/{run_id}")
    assert 'data-action="cancel"' in page.text
    assert '<label for="cancel-reason">' in page.text
    no_token = web.post(f"/runs/{run_id}/cancel", data={"reason": "stop"})
    assert no_token.status_code == 403
    assert status_of(db, run_id) == "waiting"
    no_reason = web.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf, "reason": "  "})
    assert no_reason.status_code == 422
    assert "Say why" in no_reason.text
    assert status_of(db, run_id) == "waiting"

    done = web.post(
        f"/runs/{run_id}/cancel",
        data={"csrf_token": csrf, "reason": "wrong tenant"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert status_of(db, run_id) == "cancelled"
    after = web.get(f"/runs/{run_id}")
    assert 'data-state="cancelled"' in after.text
    assert "ended (cancelled) before the deadline" in after.text
    assert 'data-action="cancel"' not in after.text
    assert "hx-trigger" not in after.text
    late = web.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf, "reason": "again"})
    assert late.status_code == 409
    assert status_of(db, run_id) == "cancelled"


def test_ops_closes_a_failed_run_which_stays_failed_and_offers_no_retry(
    web: TestClient, db: Database, user: UserFactory, worker: Worker
) -> None:
    run_id = start(db, BROKEN)
    drain(worker)
    csrf = signed_in(web, user, "oli", "ops_engineer")
    page = web.get(f"/runs/{run_id}").text
    assert 'data-action="retry"' in page
    assert "Close the run</button>" in page
    assert "Reason for closing it without a retry" in page

    done = web.post(
        f"/runs/{run_id}/cancel",
        data={"csrf_token": csrf, "reason": "disk replaced by hand"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert status_of(db, run_id) == "failed"
    after = web.get(f"/runs/{run_id}").text
    assert re.search(
        r"<p class=\"small\" data-run-closed>Closed [^<]*: disk replaced by hand", after
    )
    assert 'data-action="retry"' not in after
    assert 'data-action="cancel"' not in after
    refused = web.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 409
    assert "was closed (disk replaced by hand)" in refused.text
    listed = web.get("/runs").text
    assert re.search(
        rf'<tr data-run="{run_id}">.*?failed</span> <span class="small" data-closed>closed',
        listed,
        re.S,
    )


def test_retry_and_cancel_of_a_run_that_does_not_exist_are_404(
    web: TestClient, user: UserFactory
) -> None:
    csrf = signed_in(web, user, "oli", "ops_engineer")
    missing = "01890000-0000-7000-8000-000000000000"
    r = web.post(f"/runs/{missing}/cancel", data={"csrf_token": csrf, "reason": "x"})
    assert r.status_code == 404
