"""The weekly SLA/SLO report: figures against runs with known times, weeks, files, the API."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.kpis.service import percentile
from tenantops.reports.service import build_report, render, write_report
from tenantops.reports.weeks import IsoWeek
from tenantops.runbooks.models import Run, RunStep
from tests.conftest import Clock, TokenFactory
from tests.reports.fleet import Fleet, at

W02 = IsoWeek.parse("2030-W02")  # Monday 7 to Monday 14 January 2030
AFTER = datetime(2030, 1, 20, tzinfo=UTC)


def test_the_figures_of_a_week_against_runs_with_known_times(
    db: Database, fleet: dict[str, str]
) -> None:
    with db.read() as session:
        report = build_report(session, week=W02, now=AFTER)
    this = report.this_week
    assert report.complete
    assert report.cutoff == W02.end
    o = this.overall
    assert (o.started, o.finished, o.succeeded, o.failed, o.cancelled) == (7, 6, 4, 1, 1)
    assert (o.runs.met, o.runs.missed, o.runs.ratio) == (2, 3, 0.4)
    # gitops late, and the suspension's approval gate still waiting past its deadline
    assert (o.steps.met, o.steps.missed, o.steps.ratio) == (1, 2, 0.3333)
    by_id = {r.runbook_id: r for r in this.runbooks}
    assert sorted(by_id) == [
        "cost-overrun",
        "monthly-cost-report",
        "policy-violation",
        "resource-exhaustion",
        "tenant-onboarding",
        "tenant-suspension",
    ]
    overrun = by_id["cost-overrun"]
    assert (overrun.started, overrun.finished, overrun.succeeded, overrun.failed) == (1, 2, 1, 1)
    assert (overrun.runs.met, overrun.runs.missed) == (1, 1)
    assert by_id["monthly-cost-report"].runs.judged == 0
    assert by_id["policy-violation"].runs.judged == 0
    assert by_id["resource-exhaustion"].runs.judged == 0
    onboarding = by_id["tenant-onboarding"]
    assert (onboarding.runs.met, onboarding.runs.missed) == (1, 1)
    assert (onboarding.steps.met, onboarding.steps.missed) == (1, 1)

    # Activation: second approval -> active, of alpha (20 min), beta (60), gamma (5).
    minutes = [20 * 60.0, 60 * 60.0, 5 * 60.0]
    a = this.activation
    assert (a.activated, a.within_sla) == (3, 2)
    assert a.p50_seconds == percentile(minutes, 50) == 1200
    assert a.p90_seconds == percentile(minutes, 90) == 3600

    assert [(b.run_id, b.step, b.late_seconds) for b in report.breaches] == [
        (fleet["r1"], "gitops", 300),
        (fleet["r2"], None, 1800),
        (fleet["r3"], "approve", (W02.end - at(9, 11, 30)).total_seconds()),
        (fleet["r3"], None, (W02.end - at(9, 12)).total_seconds()),
        (fleet["r6"], None, None),
    ]
    r3 = report.breaches[3]
    assert (r3.tenant_name, r3.status, r3.finished_at) == ("alpha", "open", None)

    budgets = [
        (e.tenant_name, e.runbook_id, e.judged, e.missed, e.consumed) for e in report.error_budgets
    ]
    assert budgets == [
        ("alpha", "tenant-suspension", 1, 1, 20.0),
        ("beta", "tenant-onboarding", 1, 1, 20.0),
        ("beta", "cost-overrun", 2, 1, 10.0),
        ("alpha", "tenant-onboarding", 2, 0, 0.0),
    ]
    assert [e.exhausted for e in report.error_budgets] == [True, True, True, False]

    [overdue] = report.overdue_approvals
    assert (overdue.run_id, overdue.step, overdue.tenant_name) == (fleet["r3"], "approve", "alpha")
    assert overdue.overdue_seconds == (W02.end - at(9, 11, 30)).total_seconds()


def test_the_change_on_the_week_before(db: Database, fleet: dict[str, str]) -> None:
    with db.read() as session:
        report = build_report(session, week=W02, now=AFTER)
    last = report.previous_week
    assert last.week == "2030-W01"
    assert (last.overall.started, last.overall.finished) == (2, 1)
    assert (last.overall.runs.met, last.overall.runs.missed) == (1, 0)
    assert last.activation.p50_seconds == last.activation.p90_seconds == 2400
    overall = report.change[0]
    assert overall.runbook_id == "*"
    assert (overall.started, overall.finished, overall.runs_missed) == (5, 5, 3)
    assert overall.run_attainment_points == -60.0
    assert overall.step_attainment_points is None  # no step deadline in W01
    onboarding = next(c for c in report.change if c.runbook_id == "tenant-onboarding")
    assert (onboarding.started, onboarding.run_attainment_points) == (1, -50.0)


def test_a_past_weeks_report_does_not_change_when_its_open_runs_finish_later(
    db: Database, fleet: dict[str, str], settings: Settings
) -> None:
    def bodies() -> dict[str, bytes]:
        with db.read() as session:
            report = build_report(session, week=W02, now=AFTER)
        return {fmt: render(report, fmt) for fmt in ("json", "html", "csv")}

    def files() -> dict[str, str]:
        with db.read() as session:
            return write_report(settings, session, W02, now=AFTER).sha256

    before, digests = bodies(), files()
    # r3 was running past its deadline, its approval gate waiting, at W02's end;
    # in W03 the gate is decided and the run fails (or finishes any other way).
    with db.write() as session:
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == fleet["r3"], RunStep.name == "approve")
            .values(status="succeeded", finished_at=at(15, 8))
        )
        session.execute(
            update(Run)
            .where(Run.id == fleet["r3"])
            .values(status="failed", finished_at=at(15, 9), updated_at=at(15, 9))
        )
    after = bodies()
    assert after == before  # the API's answer, byte for byte
    assert files() == digests  # a re-run of the report step: the same .sha256
    with db.read() as session:
        report = build_report(session, week=W02, now=AFTER)
    run_breach = next(b for b in report.breaches if b.run_id == fleet["r3"] and b.step is None)
    assert (run_breach.status, run_breach.finished_at) == ("open", None)
    assert run_breach.late_seconds == (W02.end - at(9, 12)).total_seconds()
    assert "open at cut-off" in after["html"].decode()


def test_a_week_not_over_is_cut_off_at_now(db: Database) -> None:
    f = Fleet()
    f.tenant("alpha")
    late = f.run(
        "tenant-suspension", "alpha", created=at(9, 8), status="running", deadline=at(9, 9)
    )
    f.run("tenant-suspension", "alpha", created=at(9, 8), status="running", deadline=at(9, 14))
    f.write(db)
    with db.read() as session:
        report = build_report(session, week=W02, now=at(9, 12))
    assert not report.complete
    assert report.cutoff == at(9, 12)
    assert (report.this_week.overall.runs.met, report.this_week.overall.runs.missed) == (0, 1)
    assert [(b.run_id, b.late_seconds) for b in report.breaches] == [(late, 3 * 3600)]
    assert "the week is not over" in render(report, "html").decode()


def test_an_empty_week(db: Database) -> None:
    with db.read() as session:
        report = build_report(session, week=IsoWeek.parse("2030-W30"), now=AFTER)
    assert report.this_week.runbooks == []
    assert report.this_week.overall.runs.ratio is None
    assert report.this_week.activation.p50_seconds is None
    assert report.breaches == report.error_budgets == report.overdue_approvals == []
    assert [c.run_attainment_points for c in report.change] == [None]
    page = render(report, "html").decode()
    assert "No deadline missed this week." in page
    assert "No runs this week or the week before." in page
    rows = list(csv.reader(io.StringIO(render(report, "csv").decode())))
    assert rows[0][:3] == ["week", "section", "runbook_id"]
    assert {r[1] for r in rows[1:]} == {
        "summary",
        "week",
        "week_activation",
        "previous_week",
        "previous_week_activation",
        "change",
    }


def test_week_53_and_the_new_year(db: Database) -> None:
    f = Fleet()
    f.tenant("alpha")
    for finished in (
        datetime(2026, 12, 28, 0, 0, tzinfo=UTC),  # the first instant of 2026-W53
        datetime(2027, 1, 3, 23, 59, 59, tzinfo=UTC),  # its last second
        datetime(2027, 1, 4, 0, 0, tzinfo=UTC),  # 2027-W01
    ):
        f.run("tenant-onboarding", "alpha", created=finished, finished=finished, deadline=finished)
    f.write(db)
    now = datetime(2027, 2, 1, tzinfo=UTC)
    with db.read() as session:
        w53 = build_report(session, week=IsoWeek.parse("2026-W53"), now=now)
        w01 = build_report(session, week=IsoWeek.parse("2027-W01"), now=now)
    assert (w53.this_week.overall.finished, w53.this_week.overall.runs.met) == (2, 2)
    assert w01.previous_week.week == "2026-W53"
    assert (w01.this_week.overall.finished, w01.previous_week.overall.finished) == (1, 2)
    assert w01.change[0].finished == -1


def test_the_files_and_their_digests(
    db: Database, fleet: dict[str, str], settings: Settings
) -> None:
    with db.read() as session:
        first = write_report(settings, session, W02, now=AFTER)
    folder = settings.data_dir / "reports" / "2030-W02"
    assert set(first.paths) == {"html", "csv"}
    for fmt, path in first.paths.items():
        assert path.parent == folder
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first.sha256[fmt]
    sums = (folder / "sla-report-2030-W02.sha256").read_text().splitlines()
    assert sums == [
        f"{first.sha256['html']}  sla-report-2030-W02.html",
        f"{first.sha256['csv']}  sla-report-2030-W02.csv",
    ]
    with db.read() as session:
        again = write_report(settings, session, W02, now=AFTER)
    assert again.sha256 == first.sha256  # a re-run rewrites the same bytes
    page = first.paths["html"].read_text()
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # works offline
    assert fleet["r3"] in page


# ----------------------------------------------------------------------------- API

SLA = "/api/v1/reports/sla"


def test_the_api_serves_json_html_and_csv(
    client: TestClient, auth: TokenFactory, fleet: dict[str, str], clock: Clock
) -> None:
    clock.now = AFTER
    gov = auth("gus", "governance")
    r = client.get(SLA, params={"week": "2030-W02"}, headers=gov)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["week"] == "2030-W02"
    assert body["this_week"]["overall"]["runs"] == {
        "met": 2,
        "missed": 3,
        "judged": 5,
        "ratio": 0.4,
    }
    assert [(b["run_id"], b["step"]) for b in body["breaches"]] == [
        (fleet["r1"], "gitops"),
        (fleet["r2"], None),
        (fleet["r3"], "approve"),
        (fleet["r3"], None),
        (fleet["r6"], None),
    ]
    assert body["error_budgets"][0]["exhausted"] is True

    html = client.get(SLA, params={"week": "2030-W02", "format": "html"}, headers=gov)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert 'filename="sla-report-2030-W02.html"' in html.headers["content-disposition"]
    assert "Weekly SLA/SLO report 2030-W02" in html.text

    text = client.get(SLA, params={"week": "2030-W02", "format": "csv"}, headers=gov)
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    missed = [
        r
        for r in rows
        if (r["section"], r["runbook_id"], r["metric"]) == ("week", "*", "runs_missed")
    ]
    assert [r["value"] for r in missed] == ["3"]
    late = {
        r["run_id"]: r["value"]
        for r in rows
        if r["section"] == "breach" and r["metric"] == "late_seconds" and not r["step"]
    }
    assert late[fleet["r2"]] == "1800.0"
    assert late[fleet["r6"]] == ""


@pytest.mark.parametrize("week", ["2025-W53", "2030-W54", "2030-13", "next week"])
def test_a_bad_week_is_a_problem(client: TestClient, auth: TokenFactory, week: str) -> None:
    r = client.get(SLA, params={"week": week}, headers=auth("gus", "governance"))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 422
    assert week in problem["detail"]


def test_a_bad_format_is_a_422(client: TestClient, auth: TokenFactory) -> None:
    r = client.get(SLA, params={"format": "pdf"}, headers=auth("gus", "governance"))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (("governance",), 200),
        (("auditor",), 200),
        (("ops_engineer",), 200),
        (("admin",), 200),
        (("finance",), 403),
        (("account_manager",), 403),
    ],
)
def test_who_may_read_the_report(
    client: TestClient, auth: TokenFactory, roles: tuple[str, ...], status: int
) -> None:
    r = client.get(SLA, params={"week": "2030-W02"}, headers=auth("x", *roles))
    assert r.status_code == status


def test_tenant_owners_and_anonymous_callers_are_refused(
    client: TestClient, auth: TokenFactory, fleet: dict[str, str]
) -> None:
    owner = auth("tina", "tenant_owner", tenant="alpha")
    assert client.get(SLA, headers=owner).status_code == 403
    assert client.get(SLA).status_code == 401


def test_the_default_week_is_the_last_full_one(
    client: TestClient, auth: TokenFactory, clock: Clock
) -> None:
    clock.now = datetime(2027, 1, 4, 0, 0, 1, tzinfo=UTC)
    r = client.get(SLA, headers=auth("gus", "governance"))
    assert r.status_code == 200
    body = r.json()
    assert (body["week"], body["complete"]) == ("2026-W53", True)
    assert body["previous_week"]["week"] == "2026-W52"
