"""The weekly-sla-report runbook chain, and ``tenantops reports sla|schedule``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tenantops.config import NotifySettings, Settings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.notifications.models import OutboxMessage
from tenantops.reports.actions import (
    SCHEDULER,
    WEEKLY_RUNBOOK,
    due_at,
    report_actions,
    schedule_week,
)
from tenantops.reports.weeks import IsoWeek
from tenantops.runbooks import engine, spec
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepFailed
from tenantops.runbooks.models import Run
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import CliResult, Clock, invoke
from tests.flows import drain
from tests.reports.fleet import Fleet, at
from tests.servers import mint_token, serve_process, tenantops_env

W02 = IsoWeek.parse("2030-W02")


def weekly_runs(db: Database) -> dict[str, list[Run]]:
    with db.read() as session:
        runs = session.execute(
            select(Run).where(Run.runbook_id == WEEKLY_RUNBOOK).order_by(Run.created_at)
        ).scalars()
        found: dict[str, list[Run]] = {}
        for run in runs:
            session.expunge(run)
            found.setdefault(run.inputs["week"], []).append(run)
        return found


def mails(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        rows = session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.template == "sla_report")
            .order_by(OutboxMessage.created_at)
        ).scalars()
        found = list(rows)
        for row in found:
            session.expunge(row)
        return found


def test_the_weekly_report_is_mailed_to_governance_and_the_next_run_starts_once(
    db: Database, fleet: dict[str, str], settings: Settings, clock: Clock
) -> None:
    configured = settings.model_copy(
        update={"notify": NotifySettings(governance=["board@corp.example"])}
    )
    worker = Worker(db, build_actions(configured, db))
    clock.now = datetime(2030, 1, 14, 6, tzinfo=UTC)
    with db.write() as session:
        run, started = schedule_week(session, W02, actor=SCHEDULER)
        first_id = run.id
    with db.write() as session:
        again, started_again = schedule_week(session, W02, actor=SCHEDULER)
    assert (started, started_again, again.id) == (True, False, first_id)

    drain(worker)
    folder = settings.data_dir / "reports" / "2030-W02"
    html = folder / "sla-report-2030-W02.html"
    digest = hashlib.sha256(html.read_bytes()).hexdigest()
    [mail] = mails(db)
    assert mail.recipients == ["board@corp.example"]
    assert mail.audience == "governance"
    assert "2030-W02" in mail.subject
    assert "Run deadlines met: 2 of 5 (40.00%)" in mail.body
    assert "Breaches: 5" in mail.body
    assert f"HTML {digest}" in mail.body
    assert "/api/v1/reports/sla?week=2030-W02&format=html" in mail.body
    with db.read() as session:
        steps = {s.name: s for s in engine.steps_of(session, first_id)}
        assert (steps["report"].evidence or {})["sha256"]["html"] == digest
        assert (steps["next"].output or {})["due"] == "2030-01-21T06:00:00+00:00"
        assert steps["until-due"].status == "ready"  # the durable timer, not yet due
        assert steps["schedule"].status == "pending"
    assert list(weekly_runs(db)) == ["2030-W02"]

    clock.now = datetime(2030, 1, 21, 5, 59, tzinfo=UTC)
    drain(worker)
    assert list(weekly_runs(db)) == ["2030-W02"]

    clock.now = datetime(2030, 1, 21, 6, 1, tzinfo=UTC)
    drain(worker)
    runs = weekly_runs(db)
    assert list(runs) == ["2030-W02", "2030-W03"]
    assert [r.status for r in runs["2030-W02"]] == ["succeeded"]
    assert (settings.data_dir / "reports" / "2030-W03" / "sla-report-2030-W03.csv").exists()
    assert len(mails(db)) == 2

    # The schedule step run again (a worker that died after it) starts nothing more.
    ctx = ActionContext(
        run_id=first_id,
        step_name="schedule",
        tenant_id=None,
        params={"week": "2030-W03"},
        idempotency_key=f"{first_id}/schedule",
        attempt=2,
        actor="system:engine",
    )
    schedule = report_actions(settings, db)["reports.schedule_next"]
    assert isinstance(schedule, FunctionAction)
    result = schedule.run(ctx)
    with db.write() as session:
        schedule.apply(session, ctx, result)
    assert result.output == {"week": "2030-W03", "run_id": runs["2030-W03"][0].id, "started": False}


def test_the_report_after_week_53_is_due_on_the_first_monday_of_the_year() -> None:
    assert due_at(IsoWeek.parse("2026-W53")) == datetime(2027, 1, 4, 6, tzinfo=UTC)
    assert IsoWeek.parse("2026-W53").next().label == "2027-W01"
    assert due_at(W02) == datetime(2030, 1, 14, 6, tzinfo=UTC)


def test_a_step_without_a_valid_week_fails_for_good(settings: Settings, db: Database) -> None:
    action = report_actions(settings, db)["reports.next_week"]
    for params in ({}, {"week": "2025-W53"}):
        ctx = ActionContext(
            run_id="r",
            step_name="next",
            tenant_id=None,
            params=params,
            idempotency_key="r/next",
            attempt=1,
            actor="system:engine",
        )
        with pytest.raises(StepFailed) as failed:
            action.run(ctx)
        assert not failed.value.retriable


# ----------------------------------------------------------------------------- CLI


def test_reports_schedule_sla_starts_the_chain_once(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    clock.now = datetime(2030, 1, 14, 6, tzinfo=UTC)
    first = cli("reports", "schedule", "--sla")
    assert first.code == 0, first
    assert "scheduled: run" in first.out
    assert "reports 2030-W02" in first.out
    assert "catching up" not in first.out  # the last full week: nothing follows at once
    again = cli("reports", "schedule", "--week", "2030-W03")
    assert again.code == 0
    assert again.out.startswith("already scheduled")
    assert list(weekly_runs(db)) == ["2030-W02"]


def test_a_week_not_over_is_not_scheduled(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    # Its first run would report at once: a partial report mailed as final.
    clock.now = datetime(2030, 1, 20, 23, 59, tzinfo=UTC)  # the last minute of 2030-W03
    for _ in range(2):
        refused = cli("reports", "schedule", "--sla", "--week", "2030-W03")
        assert refused.code == 2
        assert refused.out == ""
        [line] = refused.err.strip().splitlines()
        assert line.startswith("error: ")
        assert "2030-W03 is not over until 2030-01-21 00:00 UTC" in line
    assert weekly_runs(db) == {}
    with db.write() as session, pytest.raises(Unprocessable):
        schedule_week(session, IsoWeek.parse("2030-W03"), actor=SCHEDULER)

    clock.now = datetime(2030, 1, 21, tzinfo=UTC)  # over: scheduled
    done = cli("reports", "schedule", "--week", "2030-W03")
    assert done.code == 0, done
    assert "reports 2030-W03" in done.out
    assert list(weekly_runs(db)) == ["2030-W03"]


def test_a_run_started_by_hand_for_a_week_not_over_fails_and_mails_nothing(
    db: Database, settings: Settings, clock: Clock
) -> None:
    clock.now = datetime(2030, 1, 16, 9, tzinfo=UTC)  # in 2030-W03
    with db.write() as session:
        run = engine.start_run(
            session,
            loaded=spec.get(spec.shipped(), WEEKLY_RUNBOOK),
            actor=SCHEDULER,
            inputs={"week": "2030-W03"},
        )
        run_id = run.id
    drain(Worker(db, build_actions(settings, db)))
    with db.read() as session:
        assert engine.get_run(session, run_id).status == "failed"
        steps = {s.name: s for s in engine.steps_of(session, run_id)}
        assert "2030-W03 is not over" in (steps["report"].error or "")
    assert mails(db) == []
    assert not (settings.data_dir / "reports" / "2030-W03").exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("reports", "sla", "--week", "2025-W53"), "2025 has weeks W01 to W52"),
        (("reports", "sla", "--week", "last"), "YYYY-Www"),
        (("reports", "sla", "--format", "pdf"), "--format"),
        (("reports", "schedule", "--sla", "--month", "2030-01"), "--week"),
        (("reports", "schedule", "--week", "2030-W99"), "W01 to W52"),
    ],
)
def test_wrong_input_is_one_line_and_a_non_zero_exit(
    cli: Callable[..., CliResult], argv: tuple[str, ...], says: str
) -> None:
    done = cli(*argv)
    assert done.code == 2
    assert done.out == ""
    lines = done.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert says in lines[0]


@dataclass
class Server:
    url: str
    db: Database


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("sla-cli")
    env = tenantops_env(data_dir=str(tmp), bootstrap_admin="false")
    with serve_process(env, tmp / "server.log") as url:
        db = Database(f"sqlite:///{tmp / 'tenantops.db'}")
        f = Fleet()
        f.tenant("alpha")
        # 2026-W02 (5 to 12 January 2026) is over by the server's wall clock.
        f.run(
            "tenant-onboarding",
            "alpha",
            created=at(6, 10, year=2026),
            finished=at(6, 11, year=2026),
            deadline=at(6, 10, 30, year=2026),
        )
        f.write(db)
        yield Server(url=url, db=db)
        db.dispose()


def test_the_cli_downloads_the_report_to_a_file(
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "gus", "governance"))
    target = tmp_path / "w02.csv"
    done = invoke(
        capsys, "reports", "sla", "--week", "2026-W02", "--format", "csv", "-o", str(target)
    )
    assert done.code == 0, done
    assert done.out.startswith(f"wrote {target}")
    assert "2026-W02,breach,tenant-onboarding" in target.read_text().replace("\r\n", "\n")
    monkeypatch.chdir(tmp_path)
    named = invoke(capsys, "reports", "sla", "--week", "2026-W02")
    assert named.code == 0, named
    assert "Weekly SLA/SLO report 2026-W02" in (tmp_path / "sla-report-2026-W02.html").read_text()
    as_json = invoke(capsys, "reports", "sla", "--week", "2026-W02", "--format", "json")
    assert as_json.code == 0, as_json
    assert '"week": "2026-W02"' in (tmp_path / "sla-report-2026-W02.json").read_text()

    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "fiona", "finance"))
    refused = invoke(capsys, "reports", "sla", "--week", "2026-W02")
    assert refused.code == 1
    assert len(refused.err.strip().splitlines()) == 1
    assert refused.err.startswith("error: Not allowed")


def test_a_week_long_past_says_the_weeks_after_it_follow_at_once(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    clock.now = datetime(2030, 1, 14, 6, tzinfo=UTC)  # the last full week is 2030-W02
    first = cli("reports", "schedule", "--week", "2029-W50")
    assert first.code == 0, first
    assert "catching up: the 4 week(s) after it, up to 2030-W02, are over too" in first.out
