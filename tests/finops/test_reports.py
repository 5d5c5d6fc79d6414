"""Cost reports from the database: figures, files, API formats and scoping, the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.auth.principal import Principal, Role
from tenantops.config import NotifySettings, Settings, SMTPSettings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.finops import budgets, ledger
from tenantops.finops.actions import (
    MONTHLY_RUNBOOK,
    SCHEDULER,
    due_at,
    finops_actions,
    month_after,
    schedule_month,
)
from tenantops.finops.costs import Month
from tenantops.finops.importer import import_file
from tenantops.finops.report_render import Scope
from tenantops.finops.reports import build_report, previous_month, write_report
from tenantops.finops.settings import FinOpsSettings
from tenantops.runbooks import engine, spec
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepFailed
from tenantops.runbooks.models import Run
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import CliResult, Clock, TokenFactory, invoke
from tests.finops.focusdata import make_tenant, tagged, write_csv
from tests.flows import drain
from tests.servers import free_port, mint_token, serve_process, tenantops_env

FIN = Principal("fiona", frozenset({Role.FINANCE}))
JAN = Month.parse("2030-01")


def day(n: int, month: str = "2030-01") -> dict[str, str]:
    start = f"{month}-{n:02d}T00:00:00Z"
    end = f"{month}-{n + 1:02d}T00:00:00Z"
    return {"ChargePeriodStart": start, "ChargePeriodEnd": end}


def december(**overrides: str) -> dict[str, str]:
    return {
        "BillingPeriodStart": "2029-12-01T00:00:00Z",
        "BillingPeriodEnd": "2030-01-01T00:00:00Z",
        "ChargePeriodStart": "2029-12-05T00:00:00Z",
        "ChargePeriodEnd": "2029-12-06T00:00:00Z",
        **overrides,
    }


@pytest.fixture
def seeded(db: Database, clock: Clock, tmp_path: Path) -> dict[str, str]:
    """blue (budget 1000 EUR, over 80 %), green (no cost), red (no budget, cost)."""
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)
    with db.write() as session:
        ids = {
            "blue": make_tenant(session, "blue", monthly_budget=1000, currency="EUR"),
            "green": make_tenant(session, "green", monthly_budget=500, currency="EUR"),
            "red": make_tenant(session, "red", monthly_budget=0, currency="EUR"),
            "idle": make_tenant(session, "idle", monthly_budget=0, currency="EUR"),
        }
    rows = [
        tagged("blue", "500", ServiceName="Compute", **day(2)),
        tagged("blue", "250", ServiceName="Storage", **day(3)),
        tagged("blue", "100", ServiceName="Network", **day(3)),
        tagged("red", "30", ServiceName="Compute", **day(4)),
        tagged("blue", "40", BillingCurrency="USD", BillingAccountId="acct-us"),
    ]
    with db.write() as session:
        settings = FinOpsSettings()
        import_file(
            session,
            path=write_csv(tmp_path / "eur.csv", rows[:4]),
            principal=FIN,
            settings=settings,
        )
        import_file(
            session,
            path=write_csv(tmp_path / "usd.csv", rows[4:]),
            principal=FIN,
            settings=settings,
        )
        import_file(
            session,
            path=write_csv(tmp_path / "dec.csv", [tagged("blue", "700", **december())]),
            principal=FIN,
            settings=settings,
        )
        ledger.append(
            session, ids["blue"], "alert", actor=FIN, ref="fp-1", data={"summary": "80 % of budget"}
        )
    return ids


def test_the_report_has_the_figures_of_budget_status(db: Database, seeded: dict[str, str]) -> None:
    now = datetime(2030, 1, 11, tzinfo=UTC)
    with db.read() as session:
        report = build_report(session, month=JAN, tenant_id=None, now=now)
        status = budgets.budget_status(session, seeded["blue"], JAN, now=now)
    assert report.scope is Scope.ALL
    assert report.currency == "EUR"
    by_name = {t.name: t for t in report.tenants}
    # idle has neither cost nor budget: left out.
    assert set(by_name) == {"blue", "green", "red"}
    blue = by_name["blue"]
    assert blue.cost_mtd == status.cost == Decimal("850.00")
    assert blue.forecast == status.forecast
    assert blue.budget == status.budget
    assert blue.ratio_exact == status.ratio
    assert list(blue.thresholds_crossed) == status.crossed == [50, 80]
    assert list(blue.top_services) == [(s, c) for s, c in status.top_services]
    assert [d.day for d, _ in blue.daily] == [2, 3]
    assert dict(blue.daily)[JAN.first.replace(day=3)] == Decimal(350)
    assert list(blue.previous_months) == [("2029-12", Decimal(700))]
    assert [a.kind for a in blue.actions] == ["alert"]
    assert "80 % of budget" in blue.actions[0].summary
    assert by_name["red"].budget is None
    assert by_name["green"].cost_mtd == 0
    assert report.total_cost == Decimal("880.00")


def test_a_month_without_cost_is_an_empty_report(db: Database, seeded: dict[str, str]) -> None:
    with db.read() as session:
        report = build_report(session, month=Month.parse("2029-06"), tenant_id=None)
    assert not report.has_cost_data
    assert report.total_cost == 0


def test_write_report_writes_every_format_and_rewrites_the_same_bytes(
    db: Database, seeded: dict[str, str], settings: Settings
) -> None:
    now = datetime(2030, 2, 1, 6, tzinfo=UTC)
    with db.read() as session:
        first = write_report(settings, session, "2030-01", now=now)
        again = write_report(settings, session, JAN, now=now)
        one = write_report(settings, session, JAN, tenant_id="blue", formats=("csv",), now=now)
    folder = settings.data_dir / "reports" / "2030-01"
    assert first.paths == {
        "html": folder / "cost-report-2030-01-all.html",
        "csv": folder / "cost-report-2030-01-all.csv",
        "pdf": folder / "cost-report-2030-01-all.pdf",
    }
    assert first.sha256 == again.sha256
    for fmt, path in first.paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first.sha256[fmt]
    assert first.paths["pdf"].read_bytes().startswith(b"%PDF")
    assert one.paths == {"csv": folder / f"cost-report-2030-01-{seeded['blue']}.csv"}
    assert one.report.scope is Scope.TENANT
    assert one.total == Decimal("850.00")


def test_the_default_month_is_the_previous_one() -> None:
    assert previous_month(datetime(2030, 1, 3, tzinfo=UTC)).label == "2029-12"
    assert previous_month(datetime(2030, 3, 31, tzinfo=UTC)).label == "2030-02"


# ----------------------------------------------------------------------------- monthly schedule

HOST = "127.0.0.1"


class Inbox:
    """An aiosmtpd handler that keeps what it accepts."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def monthly_runs(db: Database) -> dict[str, list[Run]]:
    with db.read() as session:
        runs = session.execute(
            select(Run).where(Run.runbook_id == MONTHLY_RUNBOOK).order_by(Run.created_at)
        ).scalars()
        found: dict[str, list[Run]] = {}
        for run in runs:
            session.expunge(run)
            found.setdefault(run.inputs["month"], []).append(run)
        return found


def test_the_monthly_report_is_mailed_to_finance_and_the_next_run_starts_once(
    db: Database,
    seeded: dict[str, str],
    settings: Settings,
    clock: Clock,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    smtp = SMTPSettings(host=HOST, port=port, sender="ops@tenantops.example", backoff_seconds=0)
    configured = settings.model_copy(
        update={"smtp": smtp, "notify": NotifySettings(finance=["ap@corp.example"])}
    )
    actions = build_actions(configured, db)
    worker = Worker(db, actions)
    clock.now = datetime(2030, 2, 1, 6, tzinfo=UTC)
    with db.write() as session:
        run, started = schedule_month(session, JAN, actor=SCHEDULER)
        first_id = run.id
    with db.write() as session:
        again, started_again = schedule_month(session, JAN, actor=SCHEDULER)
    assert started
    assert not started_again
    assert again.id == first_id

    drain(worker)
    folder = settings.data_dir / "reports" / "2030-01"
    assert (folder / "cost-report-2030-01-all.pdf").read_bytes().startswith(b"%PDF")
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.rcpt_tos == ["ap@corp.example"]
    assert isinstance(envelope.content, bytes)
    mail = message_from_bytes(envelope.content, policy=policy.default)
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "2030-01" in str(mail["Subject"])
    assert "Total: 880.00 EUR" in text
    assert str(folder / "cost-report-2030-01-all.pdf") in text
    assert "/api/v1/finops/reports/cost?month=2030-01&format=html" in text
    with db.read() as session:
        steps = {s.name: s for s in engine.steps_of(session, first_id)}
        evidence = steps["report"].evidence or {}
        assert evidence["total"] == "880.00"
        assert (
            evidence["sha256"]["pdf"]
            == hashlib.sha256((folder / "cost-report-2030-01-all.pdf").read_bytes()).hexdigest()
        )
        assert (steps["next"].output or {})["due"] == "2030-03-01T06:00:00+00:00"
        assert steps["until-due"].status == "ready"  # the durable timer, not yet due
        assert steps["schedule"].status == "pending"
    assert list(monthly_runs(db)) == ["2030-01"]

    clock.now = datetime(2030, 3, 1, 5, 59, tzinfo=UTC)
    drain(worker)
    assert list(monthly_runs(db)) == ["2030-01"]

    clock.now = datetime(2030, 3, 1, 6, 1, tzinfo=UTC)
    drain(worker)
    runs = monthly_runs(db)
    assert list(runs) == ["2030-01", "2030-02"]
    assert [r.status for r in runs["2030-01"]] == ["succeeded"]
    february = runs["2030-02"]
    assert len(february) == 1
    assert (settings.data_dir / "reports" / "2030-02" / "cost-report-2030-02-all.csv").exists()
    assert len(inbox.messages) == 2

    # The schedule step run again (a worker that died after it) starts nothing more.
    ctx = ActionContext(
        run_id=first_id,
        step_name="schedule",
        tenant_id=None,
        params={"month": "2030-02"},
        idempotency_key=f"{first_id}/schedule",
        attempt=2,
        actor="system:engine",
    )
    schedule = actions["finops.schedule_next"]
    result = schedule.run(ctx)
    with db.write() as session:
        assert isinstance(schedule, FunctionAction)
        schedule.apply(session, ctx, result)
    assert result.output == {"month": "2030-02", "run_id": february[0].id, "started": False}
    assert [r.id for r in monthly_runs(db)["2030-02"]] == [february[0].id]


# ----------------------------------------------------------------------------- API and CLI


def test_the_api_renders_each_format_with_its_type_and_file_name(
    client: TestClient, auth: TokenFactory, seeded: dict[str, str]
) -> None:
    finance = auth("fiona", "finance")
    expected = {
        "html": ("text/html; charset=utf-8", b"<!DOCTYPE html"),
        "csv": ("text/csv; charset=utf-8", b""),
        "pdf": ("application/pdf", b"%PDF"),
    }
    for fmt, (content_type, start) in expected.items():
        response = client.get(
            "/api/v1/finops/reports/cost",
            params={"month": "2030-01", "format": fmt},
            headers=finance,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == content_type
        assert response.headers["content-disposition"] == (
            f'attachment; filename="cost-report-2030-01-all.{fmt}"'
        )
        assert response.content.lower().startswith(start.lower())
    csv_text = client.get(
        "/api/v1/finops/reports/cost",
        params={"month": "2030-01", "format": "csv", "tenant": "blue"},
        headers=finance,
    ).text
    assert "850.00" in csv_text
    for month in ("2030-13", "0000-01", "9999-12"):
        bad = client.get("/api/v1/finops/reports/cost", params={"month": month}, headers=finance)
        assert bad.status_code == 422, month
    assert (
        client.get("/api/v1/finops/reports/cost", headers=auth("oli", "ops_engineer")).status_code
        == 403
    )


def test_a_tenant_owner_reads_only_their_own_tenants_report(
    client: TestClient, auth: TokenFactory, seeded: dict[str, str]
) -> None:
    owner = auth("bob", "tenant_owner", tenant=seeded["blue"])
    own = client.get(
        "/api/v1/finops/reports/cost",
        params={"month": "2030-01", "format": "csv", "tenant": "blue"},
        headers=owner,
    )
    assert own.status_code == 200, own.text
    assert f"cost-report-2030-01-{seeded['blue']}.csv" in own.headers["content-disposition"]
    # Without a tenant: their own, never all tenants.
    default = client.get(
        "/api/v1/finops/reports/cost", params={"month": "2030-01", "format": "csv"}, headers=owner
    )
    assert default.status_code == 200
    assert "red" not in default.text
    other = client.get(
        "/api/v1/finops/reports/cost",
        params={"month": "2030-01", "tenant": "red"},
        headers=owner,
    )
    assert other.status_code == 404


def test_an_empty_month_is_a_report_that_says_so(
    client: TestClient, auth: TokenFactory, seeded: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/finops/reports/cost",
        params={"month": "2029-06", "format": "html"},
        headers=auth("fiona", "finance"),
    )
    assert response.status_code == 200
    assert "No cost data for 2029-06" in response.text


@dataclass
class Server:
    url: str
    db: Database


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("reports-cli")
    env = tenantops_env(data_dir=str(tmp), bootstrap_admin="false")
    with serve_process(env, tmp / "server.log") as url:
        db = Database(f"sqlite:///{tmp / 'tenantops.db'}")
        with db.write() as session:
            make_tenant(session, "cli-blue", monthly_budget=100, currency="EUR")
        path = write_csv(tmp / "jan.csv", [tagged("cli-blue", "42")])
        with db.write() as session:
            import_file(session, path=path, principal=FIN, settings=FinOpsSettings())
        yield Server(url=url, db=db)
        db.dispose()


def test_the_cli_downloads_a_report_to_a_file(
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "fiona", "finance"))
    target = tmp_path / "jan.pdf"
    done = invoke(
        capsys, "reports", "cost", "--month", "2030-01", "--format", "pdf", "-o", str(target)
    )
    assert done.code == 0, done
    assert done.out.startswith(f"wrote {target}")
    assert target.read_bytes().startswith(b"%PDF")
    monkeypatch.chdir(tmp_path)
    named = invoke(
        capsys, "reports", "cost", "--month", "2030-01", "--format", "csv", "--tenant", "cli-blue"
    )
    assert named.code == 0, named
    written = list(tmp_path.glob("cost-report-2030-01-*.csv"))
    assert len(written) == 1
    assert "42.00" in written[0].read_text()
    missing = invoke(capsys, "reports", "cost", "--month", "2030-01", "--tenant", "nobody")
    assert missing.code == 1
    assert missing.err.strip().startswith("error: Not found")
    assert len(missing.err.strip().splitlines()) == 1


def test_reports_schedule_starts_the_chain_once(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    clock.now = datetime(2030, 2, 1, 6, tzinfo=UTC)
    first = cli("reports", "schedule")
    assert first.code == 0, first
    assert "scheduled: run" in first.out
    assert "reports 2030-01" in first.out
    again = cli("reports", "schedule")
    assert again.code == 0
    assert again.out.startswith("already scheduled")
    assert list(monthly_runs(db)) == ["2030-01"]


def test_a_month_not_over_is_not_scheduled(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    # Its first run would report at once: a partial report mailed to finance as final.
    clock.now = datetime(2030, 1, 31, 23, 59, tzinfo=UTC)  # the last minute of 2030-01
    for _ in range(2):
        refused = cli("reports", "schedule", "--month", "2030-01")
        assert refused.code == 2
        assert refused.out == ""
        [line] = refused.err.strip().splitlines()
        assert line.startswith("error: ")
        assert "2030-01 is not over until 2030-02-01 00:00 UTC" in line
    assert monthly_runs(db) == {}
    with db.write() as session, pytest.raises(Unprocessable):
        schedule_month(session, JAN, actor=SCHEDULER)

    clock.now = datetime(2030, 2, 1, tzinfo=UTC)  # over: scheduled
    done = cli("reports", "schedule", "--month", "2030-01")
    assert done.code == 0, done
    assert "reports 2030-01" in done.out
    assert list(monthly_runs(db)) == ["2030-01"]


def test_a_run_started_by_hand_for_a_month_not_over_fails_and_mails_nothing(
    db: Database, settings: Settings, clock: Clock
) -> None:
    clock.now = datetime(2030, 1, 16, 9, tzinfo=UTC)
    with db.write() as session:
        run_id = engine.start_run(
            session,
            loaded=spec.get(spec.shipped(), MONTHLY_RUNBOOK),
            actor=SCHEDULER,
            inputs={"month": "2030-01"},
        ).id
    drain(Worker(db, build_actions(settings, db)))
    with db.read() as session:
        assert engine.get_run(session, run_id).status == "failed"
        steps = {s.name: s for s in engine.steps_of(session, run_id)}
        assert "2030-01 is not over" in (steps["report"].error or "")
        assert steps["mail"].status == "pending"
    assert not (settings.data_dir / "reports" / "2030-01").exists()


def test_a_schedule_step_run_early_fails_to_be_retried(
    settings: Settings, db: Database, clock: Clock
) -> None:
    clock.now = datetime(2030, 2, 20, tzinfo=UTC)
    ctx = ActionContext(
        run_id="r",
        step_name="schedule",
        tenant_id=None,
        params={"month": "2030-02"},
        idempotency_key="r/schedule",
        attempt=1,
        actor="system:engine",
    )
    with pytest.raises(StepFailed) as failed:
        finops_actions(settings, db)["finops.schedule_next"].run(ctx)
    assert failed.value.retriable
    assert "2030-02 is not over" in str(failed.value)
    assert monthly_runs(db) == {}


def test_a_months_report_is_due_at_six_on_the_first_of_the_next() -> None:
    assert due_at(Month.parse("2030-02")) == datetime(2030, 3, 1, 6, tzinfo=UTC)
    assert month_after(Month.parse("2030-12")).label == "2031-01"
    assert due_at(Month.parse("2030-12")) == datetime(2031, 1, 1, 6, tzinfo=UTC)


def test_a_step_without_a_valid_month_fails_for_good(settings: Settings, db: Database) -> None:
    action = finops_actions(settings, db)["finops.next_month"]
    for params in ({}, {"month": "2030-13"}):
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


def test_a_month_long_past_says_the_months_after_it_follow_at_once(
    cli: Callable[..., CliResult], db: Database, clock: Clock
) -> None:
    clock.now = datetime(2030, 2, 1, 6, tzinfo=UTC)  # the previous month is 2030-01
    first = cli("reports", "schedule", "--month", "2029-10")
    assert first.code == 0, first
    assert "catching up: the 3 month(s) after it, up to 2030-01, are over too" in first.out
    again = cli("reports", "schedule", "--month", "2030-01")
    assert "catching up" not in again.out
