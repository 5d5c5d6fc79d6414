"""Cost reports from the database: figures, files, API formats and scoping, the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import select

from tenantops.auth.principal import Principal, Role
from tenantops.config import NotifySettings, Settings, SMTPSettings
from tenantops.db import Database
from tenantops.finops import budgets, ledger
from tenantops.finops.actions import MONTHLY_RUNBOOK, SCHEDULER, schedule_month
from tenantops.finops.costs import Month
from tenantops.finops.importer import import_file
from tenantops.finops.report_render import Scope
from tenantops.finops.reports import build_report, previous_month, write_report
from tenantops.finops.settings import FinOpsSettings
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, FunctionAction
from tenantops.runbooks.models import Run
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions
from tests.conftest import Clock
from tests.finops.focusdata import make_tenant, tagged, write_csv
from tests.servers import free_port

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


def drain(worker: Worker) -> None:
    idle = 0
    for _ in range(60):
        idle = idle + 1 if worker.run_once() == 0 else 0
        if idle >= 3:
            return


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
    mail = message_from_bytes(envelope.content or b"", policy=policy.default)
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "2030-01" in str(mail["Subject"])
    assert "Total: 880.00 EUR" in text
    assert str(folder / "cost-report-2030-01-all.pdf") in text
    assert "/api/v1/finops/reports/cost?month=2030-01&format=html" in text
    with db.read() as session:
        steps = {s.name: s for s in engine.steps_of(session, first_id)}
        assert steps["report"].evidence["total"] == "880.00"
        assert (
            steps["report"].evidence["sha256"]["pdf"]
            == hashlib.sha256((folder / "cost-report-2030-01-all.pdf").read_bytes()).hexdigest()
        )
        assert steps["next"].output["due"] == "2030-03-01T06:00:00+00:00"
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
