"""The Budget Review refuses what it could not record: a decision that is none, a month not begun.

The ``decide`` gate's check (``budget_review.decision``) refuses, before
anything is written, an approval whose comment does not start with ``keep``,
``raise`` or ``lower``; a review of a month that has not begun is refused at
its start (API, CLI and the tenant page share the one service function).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.app import create_app
from tenantops.audit.models import AuditEntry
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.finops.actions import ensure_begun, review_outcome
from tenantops.finops.costs import Month
from tenantops.finops.models import LedgerEntry
from tenantops.runbooks.models import RunSignal
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import TokenFactory, invoke
from tests.finops.test_reports import seeded  # noqa: F401 (fixture)
from tests.flows import drain, ok, problem
from tests.servers import HOST, free_port, in_thread, mint_token

REVIEWS = "/api/v1/tenants/blue/budget-reviews"


def approve(client: TestClient, who: dict[str, str], run_id: str, step: str, comment: str) -> Any:
    body: dict[str, Any] = {"decision": "approve"}
    if comment:
        body["comment"] = comment
    return client.post(f"/api/v1/runs/{run_id}/gates/{step}", json=body, headers=who)


def waiting_at_decide(
    client: TestClient, auth: TokenFactory, worker: Worker, month: str = "2030-01"
) -> tuple[str, dict[str, str]]:
    """A review of blue's ``month``, its first two gates approved: waiting at ``decide``."""
    started = ok(client.post(REVIEWS, json={"month": month}, headers=auth("frank", "finance")), 201)
    reviewer = auth("fiona", "finance")
    drain(worker)
    ok(approve(client, reviewer, started["id"], "review-spend", "850 of 1000 EUR"))
    ok(approve(client, reviewer, started["id"], "review-forecast", "forecast over budget"))
    run = ok(client.get(f"/api/v1/runs/{started['id']}", headers=reviewer))
    assert (run["status"], run["current_step"]) == ("waiting", "decide")
    return started["id"], reviewer


def decide_signals(db: Database, run_id: str) -> tuple[list[RunSignal], list[AuditEntry]]:
    with db.read() as session:
        signals = list(
            session.execute(
                select(RunSignal).where(RunSignal.run_id == run_id, RunSignal.step_name == "decide")
            ).scalars()
        )
        audits = [
            a
            for a in session.execute(
                select(AuditEntry).where(AuditEntry.action == "run.gate.signal")
            ).scalars()
            if a.detail["run_id"] == run_id and a.detail["step"] == "decide"
        ]
    return signals, audits


def review_note(db: Database, month: str) -> dict[str, Any]:
    with db.read() as session:
        entry = session.execute(
            select(LedgerEntry).where(LedgerEntry.ref == f"budget-review:{month}")
        ).scalar_one()
    assert entry.data is not None
    return entry.data


# ------------------------------------------------------------------------ the grammar


@pytest.mark.parametrize(
    ("comment", "outcome"),
    [
        ("keep", "keep"),
        ("Keep: within budget", "keep"),
        ("RAISE to 3000 EUR: new batch workload", "raise"),
        ("raise, batch jobs grew", "raise"),
        ("lower. Half the nodes are gone", "lower"),
        ("  lower to 500 EUR", "lower"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_a_decision_starts_with_keep_raise_or_lower(comment: str | None, outcome: str) -> None:
    assert review_outcome(comment) == outcome


@pytest.mark.parametrize(
    "comment", ["whatever", "keeping it", "raise/lower later", "no change", "increase to 3000"]
)
def test_any_other_first_word_is_refused_naming_the_words(comment: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        review_outcome(comment)
    assert "must start with keep, raise or lower" in refused.value.detail
    assert repr(comment) in refused.value.detail


def test_a_month_is_reviewable_once_it_has_begun() -> None:
    now = datetime(2030, 1, 11, tzinfo=UTC)
    ensure_begun(Month.parse("2029-12"), now)
    ensure_begun(Month.parse("2030-01"), now)  # the current month: month to date
    with pytest.raises(Unprocessable) as refused:
        ensure_begun(Month.parse("2030-02"), now)
    assert refused.value.detail.startswith("2030-02 has not begun")
    ensure_begun(Month.parse("2030-02"), datetime(2030, 2, 1, tzinfo=UTC))


# ------------------------------------------------------------------------ the gate, over the API


def test_a_comment_that_is_no_decision_is_refused_and_nothing_is_decided(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    seeded: dict[str, str],  # noqa: F811
) -> None:
    worker = Worker(db, build_actions(settings, db))
    run_id, reviewer = waiting_at_decide(client, auth, worker)

    refused = problem(approve(client, reviewer, run_id, "decide", "whatever"), 422)
    assert "must start with keep, raise or lower" in refused["detail"]
    assert "'whatever'" in refused["detail"]
    drain(worker)
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))
    assert (run["status"], run["current_step"]) == ("waiting", "decide")
    assert {s["name"]: s["status"] for s in run["steps"]}["decide"] == "waiting"
    assert decide_signals(db, run_id) == ([], [])  # no signal row, no audit entry

    # Corrected at the gate, the review goes on to the ledger.
    ok(approve(client, reviewer, run_id, "decide", "keep: the batch workload ended"))
    drain(worker)
    assert ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))["status"] == "succeeded"
    signals, audits = decide_signals(db, run_id)
    assert [s.comment for s in signals] == ["keep: the batch workload ended"]
    assert [a.detail["comment"] for a in audits] == ["keep: the batch workload ended"]
    note = review_note(db, "2030-01")
    assert (note["decision"], note["outcome"]) == ("keep: the batch workload ended", "keep")


@pytest.mark.parametrize(
    ("comment", "outcome"),
    [
        ("Keep: within budget", "keep"),
        ("RAISE to 3000 EUR: new batch workload", "raise"),
        ("lower, to 500 EUR: half the nodes are gone", "lower"),
        ("", None),  # no comment: no decision written, as `runbooks test` approves
    ],
)
def test_each_decision_is_accepted_and_recorded(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    seeded: dict[str, str],  # noqa: F811
    comment: str,
    outcome: str | None,
) -> None:
    worker = Worker(db, build_actions(settings, db))
    run_id, reviewer = waiting_at_decide(client, auth, worker, month="2029-12")
    ok(approve(client, reviewer, run_id, "decide", comment))
    drain(worker)
    assert ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))["status"] == "succeeded"
    note = review_note(db, "2029-12")
    assert (note["decision"], note["outcome"], note["decided_by"]) == (comment, outcome, "fiona")


def test_a_rejection_of_the_decision_is_not_checked(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    seeded: dict[str, str],  # noqa: F811
) -> None:
    worker = Worker(db, build_actions(settings, db))
    run_id, reviewer = waiting_at_decide(client, auth, worker)
    rejected = client.post(
        f"/api/v1/runs/{run_id}/gates/decide",
        json={"decision": "reject", "comment": "snapshot looks wrong"},
        headers=reviewer,
    )
    ok(rejected)
    drain(worker)
    assert ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))["status"] == "failed"
    assert [s.decision for s in decide_signals(db, run_id)[0]] == ["reject"]


# ------------------------------------------------------------------------ the month


def test_a_month_not_begun_is_refused_and_a_past_one_accepted(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    seeded: dict[str, str],  # noqa: F811
) -> None:
    finance = auth("frank", "finance")
    future = problem(client.post(REVIEWS, json={"month": "2030-02"}, headers=finance), 422)
    assert future["detail"].startswith("2030-02 has not begun, so it has no spend to review")
    assert "review 2030-01 (month to date) or an earlier month" in future["detail"]
    far = problem(client.post(REVIEWS, json={"month": "2031-01"}, headers=finance), 422)
    assert far["detail"].startswith("2031-01 has not begun")
    assert (
        ok(client.get("/api/v1/runs", params={"runbook": "budget-review"}, headers=finance))[
            "items"
        ]
        == []
    )

    past = ok(client.post(REVIEWS, json={"month": "2029-12"}, headers=finance), 201)
    assert past["inputs"]["month"] == "2029-12"
    current = ok(client.post(REVIEWS, json={}, headers=finance), 201)
    assert current["inputs"]["month"] == "2030-01"  # the default: this month, to date


# ------------------------------------------------------------------------ the CLI


@pytest.fixture
def served(
    db: Database,
    settings: Settings,
    seeded: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """This app (the test store, the test clock) on a free port, as ``TENANTOPS_URL``."""
    port = free_port()
    with in_thread(create_app(settings.model_copy(update={"port": port}), db=db), port):
        monkeypatch.setenv("TENANTOPS_URL", f"http://{HOST}:{port}")
        yield f"http://{HOST}:{port}"


@pytest.mark.usefixtures("served")
def test_the_cli_refuses_a_month_not_begun_and_a_decision_that_is_none(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(db, "frank", "finance"))
    future = invoke(capsys, "finops", "review", "start", "blue", "--month", "2030-02")
    assert future.code == 1
    assert future.out == ""
    assert future.err.startswith("error: ")
    assert "2030-02 has not begun" in future.err
    assert future.err.count("\n") == 1

    started = invoke(capsys, "finops", "review", "start", "blue", "--month", "2029-12")
    assert started.code == 0, started
    run_id = started.out.split("started: run ")[1].split()[0]

    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(db, "fiona", "finance"))
    refused = invoke(capsys, "runs", "approve", run_id, "decide", "--comment", "whatever")
    assert refused.code == 1
    assert refused.err.startswith("error: ")
    assert "must start with keep, raise or lower" in refused.err
    assert refused.err.count("\n") == 1
    assert decide_signals(db, run_id) == ([], [])

    accepted = invoke(capsys, "runs", "approve", run_id, "decide", "--comment", "lower to 500")
    assert accepted.code == 0, accepted
    assert [s.comment for s in decide_signals(db, run_id)[0]] == ["lower to 500"]
