"""The Alertmanager receiver through the API: auth, payload, store, dedupe, dispatch, resolve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.alerts.auth import SIGNATURE_HEADER, sign
from tenantops.alerts.models import Alert
from tenantops.app import create_app
from tenantops.audit.models import AuditEntry
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.actions import builtin_actions
from tenantops.runbooks.models import Run, RunSignal
from tenantops.runbooks.worker import Worker
from tests.alerts.conftest import AM, HMAC_SECRET, configured
from tests.alerts.payloads import alert, notification, resolved
from tests.conftest import Actors
from tests.flows import drain

URL = "/api/v1/webhooks/alertmanager"
PROBLEM = "application/problem+json"


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post(URL, json=body, headers=AM if headers is None else headers)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def stored(db: Database) -> list[Alert]:
    with db.read() as session:
        return list(session.execute(select(Alert).order_by(Alert.id)).scalars())


def runs(db: Database, tenant_id: str, runbook: str = "alert-test") -> list[Run]:
    with db.read() as session:
        return [r for r in engine.runs_of(session, tenant_id=tenant_id) if r.runbook_id == runbook]


@pytest.fixture
def worker(db: Database) -> Iterator[Worker]:
    w = Worker(db, builtin_actions(), poll_seconds=0.01)
    yield w
    w.stop()


# --- authentication -------------------------------------------------------------


def test_nothing_configured_is_a_503_never_open(client: TestClient, db: Database) -> None:
    body = problem(post(client, notification(alert()), headers={}), 503)
    assert body["title"] == "Receiver not configured"
    assert "TENANTOPS_ALERTS__BEARER_TOKEN" in body["detail"]
    problem(post(client, notification(alert()), headers=AM), 503)
    assert stored(db) == []


def test_a_wrong_or_missing_bearer_token_is_a_401(receiver: TestClient, db: Database) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        body = problem(post(receiver, notification(alert()), headers=headers), 401)
        assert "nope" not in body["detail"]
    assert stored(db) == []


def test_the_bearer_token_is_accepted(receiver: TestClient, db: Database) -> None:
    r = post(receiver, notification(alert(tenant=None, playbook=None)))
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1


def test_an_hmac_signature_over_the_raw_body_is_accepted(
    receiver: TestClient, db: Database
) -> None:
    raw = json.dumps(notification(alert(tenant=None, playbook=None))).encode()
    good = {SIGNATURE_HEADER: sign(HMAC_SECRET.encode(), raw), "Content-Type": "application/json"}
    assert receiver.post(URL, content=raw, headers=good).status_code == 200
    tampered = raw.replace(b"TenantBudgetExceeded", b"SomethingElseEntirely")
    problem(receiver.post(URL, content=tampered, headers=good), 401)
    wrong = {SIGNATURE_HEADER: sign(b"other", raw), "Content-Type": "application/json"}
    problem(receiver.post(URL, content=raw, headers=wrong), 401)
    assert len(stored(db)) == 1


def test_the_token_is_never_logged(
    receiver: TestClient, tenant: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    post(receiver, notification(alert(tenant["name"], playbook="no-such-playbook")))
    post(receiver, notification(alert()), headers={"Authorization": "Bearer guessed-token"})
    out = capsys.readouterr()
    assert "alertmanager-test-token" not in out.out + out.err
    assert "guessed-token" not in out.out + out.err


# --- the payload ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({**notification(alert()), "version": "3"}, "version"),
        ({k: v for k, v in notification(alert()).items() if k != "groupKey"}, "groupKey"),
        (notification(), "alerts"),
        (notification({**alert(), "status": "pending"}), "status"),
        (notification({**alert(), "startsAt": "yesterday"}), "startsAt"),
        (notification({**alert(), "labels": {"tenant": "acme"}}), "alertname"),
        ([notification(alert())], "body"),
    ],
    ids=[
        "version-3",
        "no-group-key",
        "no-alerts",
        "bad-status",
        "bad-time",
        "no-alertname",
        "list",
    ],
)
def test_anything_but_a_version_4_payload_is_a_422_and_stores_nothing(
    receiver: TestClient, db: Database, body: Any, says: str
) -> None:
    found = problem(post(receiver, body), 422)
    assert says in found["detail"]
    assert found["errors"]
    assert stored(db) == []


def test_a_body_that_is_not_json_is_a_422(receiver: TestClient) -> None:
    r = receiver.post(URL, content=b"{not json", headers={**AM, "Content-Type": "application/json"})
    assert "not JSON" in problem(r, 422)["detail"]


# --- store, dedupe, dispatch ----------------------------------------------------


def test_a_firing_alert_is_stored_and_starts_its_playbook_once(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    firing = alert(tenant["name"])
    r = post(receiver, notification(firing))
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    assert len(r.json()["runs_started"]) == 1
    [row] = stored(db)
    assert (row.status, row.tenant_id, row.playbook) == ("firing", tenant["id"], "alert-test")
    assert row.labels["tenant"] == tenant["name"]
    assert row.ends_at is None
    [run] = runs(db, tenant["id"])
    assert row.run_id == run.id
    assert run.started_by == "system:alertmanager"
    assert run.inputs["tenant"]["name"] == tenant["name"]
    assert run.inputs["alert"]["fingerprint"] == firing["fingerprint"]
    assert run.inputs["alert"]["value"] == "1.5"

    # Alertmanager's repeat_interval and its retries: the same alert state again.
    again = post(receiver, notification(firing))
    assert again.json() == {
        "received": 1,
        "stored": 0,
        "duplicates": 1,
        "runs_started": [],
        "dispatch_errors": [],
    }
    assert len(stored(db)) == 1
    assert len(runs(db, tenant["id"])) == 1


def test_a_new_firing_of_an_alert_whose_run_is_open_joins_that_run(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    post(receiver, notification(alert(tenant["name"])))
    later = alert(tenant["name"], starts_at="2030-01-01T09:30:00Z")
    r = post(receiver, notification(later))
    assert r.json()["stored"] == 1
    assert r.json()["runs_started"] == []
    first, second = stored(db)
    assert second.run_id == first.run_id
    assert "still open" in (second.note or "")
    assert len(runs(db, tenant["id"])) == 1


def test_the_alertname_mapping_names_the_playbook_when_no_label_does(
    db: Database, settings: Settings, actors: Actors, tenant: dict[str, str]
) -> None:
    mapped = configured(settings, playbooks={"TenantBudgetExceeded": "alert-test"})
    with TestClient(create_app(mapped, db=db), raise_server_exceptions=False) as c:
        r = post(c, notification(alert(tenant["name"], playbook=None)))
    assert r.status_code == 200
    assert len(r.json()["runs_started"]) == 1
    assert stored(db)[0].playbook == "alert-test"


def test_an_unknown_tenant_is_stored_with_a_note_and_starts_nothing(
    receiver: TestClient, db: Database
) -> None:
    r = post(receiver, notification(alert("nobody-knows")))
    assert r.status_code == 200
    [row] = stored(db)
    assert row.tenant_id is None
    assert row.tenant_label == "nobody-knows"
    assert "unknown tenant 'nobody-knows'" in (row.note or "")
    assert "no known tenant" in (row.dispatch_error or "")


def test_an_unknown_playbook_is_recorded_and_answered_200(
    receiver: TestClient, db: Database, tenant: dict[str, str], actors: Actors
) -> None:
    r = post(receiver, notification(alert(tenant["name"], playbook="no-such-playbook")))
    assert r.status_code == 200, r.text
    assert "no runbook 'no-such-playbook'" in r.json()["dispatch_errors"][0]
    listed = receiver.get("/api/v1/alerts", headers=actors.ops).json()["items"]
    assert "no runbook 'no-such-playbook'" in listed[0]["dispatch_error"]
    assert runs(db, tenant["id"], "no-such-playbook") == []


def test_a_label_cannot_make_the_server_read_a_file(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    path = str(__import__("pathlib").Path(__file__).parent / "runbooks" / "alert-test.yaml")
    r = post(receiver, notification(alert(tenant["name"], playbook=path)))
    assert r.status_code == 200
    assert "no runbook" in r.json()["dispatch_errors"][0]
    assert runs(db, tenant["id"]) == []


def test_every_stored_alert_is_audited(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    post(receiver, notification(alert(tenant["name"])))
    post(receiver, notification(alert(tenant["name"])))  # a duplicate: no entry
    with db.read() as session:
        actions = list(
            session.execute(select(AuditEntry.action).order_by(AuditEntry.seq)).scalars()
        )
    assert actions.count("alert.firing") == 1
    assert "run.started" in actions


# --- resolved closes the loop ---------------------------------------------------


def test_resolved_closes_the_alert_and_signals_its_run(
    receiver: TestClient, db: Database, tenant: dict[str, str], worker: Worker
) -> None:
    firing = alert(tenant["name"])
    post(receiver, notification(firing))
    drain(worker)
    [run] = runs(db, tenant["id"])
    assert run.status == "waiting"  # at the until-resolved gate

    r = post(receiver, notification(resolved(firing)))
    assert r.status_code == 200
    assert r.json()["stored"] == 1
    first, closing = stored(db)
    assert first.closed_at is not None
    assert closing.status == "resolved"
    assert closing.run_id == run.id
    assert "alert_resolved sent" in (closing.note or "")
    drain(worker)
    [run] = runs(db, tenant["id"])
    assert run.status == "succeeded"

    # A re-sent resolution changes nothing.
    assert post(receiver, notification(resolved(firing))).json()["duplicates"] == 1


def test_a_resolution_before_the_gate_opens_is_kept(
    receiver: TestClient, db: Database, tenant: dict[str, str], worker: Worker
) -> None:
    firing = alert(tenant["name"])
    post(receiver, notification(firing))
    post(receiver, notification(resolved(firing)))  # no worker ran: gate not open yet
    [run] = runs(db, tenant["id"])
    with db.read() as session:
        kept = session.execute(select(RunSignal).where(RunSignal.run_id == run.id)).scalars()
        assert [(s.step_name, s.decision) for s in kept] == [("until-resolved", "approve")]
    drain(worker)
    assert runs(db, tenant["id"])[0].status == "succeeded"


def test_a_run_without_a_resolution_gate_just_records_it(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    firing = alert(tenant["name"], playbook="alert-no-gate")
    post(receiver, notification(firing))
    post(receiver, notification(resolved(firing)))
    first, closing = stored(db)
    assert first.closed_at is not None
    assert "has no alert_resolved gate" in (closing.note or "")
    assert runs(db, tenant["id"], "alert-no-gate")[0].status == "waiting"


def test_a_resolution_of_an_unknown_alert_is_stored(receiver: TestClient, db: Database) -> None:
    r = post(receiver, notification(resolved(alert(tenant=None, playbook=None))))
    assert r.status_code == 200
    [row] = stored(db)
    assert row.status == "resolved"
    assert "no open firing alert" in (row.note or "")


def test_each_alert_on_a_tenant_is_booked_in_its_ledger_and_announced(
    receiver: TestClient, db: Database, tenant: dict[str, str], actors: Actors
) -> None:
    from tenantops.finops import ledger
    from tests.events.test_outbox import events

    firing = alert(tenant["name"], severity="critical")
    post(receiver, notification(firing))
    post(receiver, notification(firing))  # a repeat books nothing more
    post(receiver, notification(resolved(firing)))

    with db.read() as session:
        booked, _ = ledger.entries(session, tenant_id=tenant["id"], kinds=["alert"])
    assert [(e.data or {}).get("status") for e in reversed(booked)] == ["firing", "resolved"]
    assert {e.ref for e in booked} == {firing["fingerprint"]}
    announced = [e for e in events(db, tenant["id"]) if ".alert." in e.type]
    assert [e.type.rsplit(".", 1)[1] for e in announced] == ["fired", "resolved"]
    assert announced[0].topic == "tenant.billing"
    assert announced[0].data["severity"] == "critical"
    assert announced[0].data["playbook"] == "alert-test"
    assert announced[0].data["run_id"]


def test_an_empty_secret_is_no_secret_the_receiver_stays_closed(
    db: Database, settings: Settings
) -> None:
    from tenantops.alerts.auth import sign as hmac_sign

    app = create_app(configured(settings, bearer_token="", hmac_secret=" "), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        raw = json.dumps(notification(alert("acme"))).encode()
        r = client.post(
            URL,
            content=raw,
            headers={"content-type": "application/json", SIGNATURE_HEADER: hmac_sign(b"", raw)},
        )
    assert r.status_code == 503, r.text
    assert stored(db) == []


def test_a_huge_body_is_refused_before_it_is_read(receiver: TestClient, db: Database) -> None:
    r = receiver.post(
        URL,
        content=b"{" + b" " * (11 * 2**20) + b"}",
        headers={**AM, "content-type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert stored(db) == []


def test_over_long_and_nul_labels_are_stored_not_a_500(
    receiver: TestClient, db: Database, tenant: dict[str, str]
) -> None:
    odd = {**alert("x" * 300, playbook="p" * 300), "fingerprint": "f1"}
    nul = {**alert(tenant["name"] + "\x00"), "fingerprint": "f2"}
    r = post(receiver, notification(odd, nul))
    assert r.status_code == 200, r.text
    rows = {a.fingerprint: a for a in stored(db)}
    assert rows["f1"].tenant_label == "x" * 200
    assert rows["f1"].playbook is None
    assert "over 200 characters" in (rows["f1"].dispatch_error or "")
    assert rows["f2"].tenant_id == tenant["id"]  # the NUL is dropped, the tenant found


def test_an_alert_firing_again_after_it_resolved_starts_a_new_run(
    receiver: TestClient, db: Database, tenant: dict[str, str], worker: Worker
) -> None:
    first = alert(tenant["name"])
    post(receiver, notification(first))
    drain(worker)
    post(receiver, notification(resolved(first)))
    drain(worker)
    again = {**first, "startsAt": "2030-01-01T10:00:00Z"}
    r = post(receiver, notification(again))
    assert len(r.json()["runs_started"]) == 1
    drain(worker)
    old, new = sorted(runs(db, tenant["id"]), key=lambda run: run.created_at)
    assert old.status == "succeeded"
    assert new.status == "waiting"  # for its own resolution
