"""The KPI service and ``GET /api/v1/kpis``; the dashboard shows the API's numbers."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import DateTime, insert, literal, select

from tenantops.audit.models import AuditEntry
from tenantops.db import Database
from tenantops.finops.models import Budget, CostImport, CostMonthly
from tenantops.itil.models import ItilRecord
from tenantops.kit.sqltime import epoch_micros, seconds
from tenantops.kpis.schemas import SORT_KEYS
from tenantops.kpis.service import percentile
from tenantops.runbooks.models import Run, RunStep
from tenantops.tenants.models import Tenant
from tenantops.web.routes import HERE
from tests.conftest import Actors, Clock, TokenFactory
from tests.finops.focusdata import tagged, write_csv
from tests.flows import approve, ok, request_tenant, step, suspend
from tests.web.conftest import UserFactory, sign_in

KPIS = "/api/v1/kpis"


def activate(client: TestClient, actors: Actors, tenant: str) -> None:
    step(client, tenant, "start_provisioning", actors.ops)
    step(client, tenant, "provisioned", actors.ops)
    step(client, tenant, "verified", actors.qa)


@pytest.fixture
def fleet(
    web: TestClient, actors: Actors, auth: TokenFactory, clock: Clock, tmp_path: Path
) -> dict[str, str]:
    """alpha: active 5 min after approval; beta: active 40 min after, then suspended;
    gamma: only requested. alpha has 60 EUR of cost this month against 100."""
    ids: dict[str, str] = {}
    alpha = request_tenant(web, actors.am, name="alpha", tier="premium", monthly_budget=100)
    ids["alpha"] = alpha["id"]
    clock.advance(minutes=10)
    approve(web, ids["alpha"], "governance", actors.gov)
    approve(web, ids["alpha"], "security", actors.sec)
    clock.advance(minutes=5)
    activate(web, actors, ids["alpha"])

    beta = request_tenant(web, actors.am, name="beta", region="us-east-1")
    ids["beta"] = beta["id"]
    approve(web, ids["beta"], "governance", actors.gov)
    approve(web, ids["beta"], "security", actors.sec)
    clock.advance(minutes=40)
    activate(web, actors, ids["beta"])
    ok(suspend(web, ids["beta"], actors.ops))

    ids["gamma"] = request_tenant(web, actors.am, name="gamma")["id"]
    finance = auth("fiona", "finance")
    path = write_csv(tmp_path / "jan.csv", [tagged("alpha", "60")])
    r = web.post(
        "/api/v1/finops/imports",
        content=path.read_bytes(),
        headers={**finance, "content-type": "text/csv"},
        params={"filename": path.name},
    )
    assert r.status_code == 201, r.text
    return ids


TEMPLATES = HERE / "templates"


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in report["tenants"]}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 90) == 4.0
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "–"),
        (0.4, "0 s"),
        (6.4, "6 s"),
        (59.4, "59 s"),
        (59.6, "1.0 min"),
        (60, "1.0 min"),
        (1500, "25.0 min"),
        (7200, "2.0 h"),
        (172800, "2.0 d"),
    ],
)
def test_durations_read_in_the_unit_that_fits(seconds: float | None, shown: str) -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    macro = env.from_string('{% from "_macros.html" import duration %}{{ duration(s) }}')
    assert macro.render(s=seconds) == shown


def test_the_kpis_of_a_small_fleet(web: TestClient, actors: Actors, fleet: dict[str, str]) -> None:
    report = ok(web.get(KPIS, headers=actors.gov))
    tenants = by_name(report)
    overall = report["overall"]

    assert report["month"] == "2030-01"
    assert overall["tenants"] == 3
    assert overall["by_state"] == {"active": 1, "requested": 1, "suspended": 1}
    assert tenants["alpha"]["activation_seconds"] == 15 * 60
    assert tenants["beta"]["activation_seconds"] == 40 * 60
    assert tenants["gamma"]["activation_seconds"] is None
    assert overall["activation_median_seconds"] == 15 * 60
    assert overall["activation_p90_seconds"] == 40 * 60
    assert tenants["alpha"]["provisioning_seconds"] == 5 * 60
    assert [tenants[n]["sla"] for n in ("alpha", "beta", "gamma")] == ["met", "missed", None]
    assert (overall["sla_met"], overall["sla_missed"], overall["sla_attainment"]) == (1, 1, 0.5)
    assert tenants["beta"]["suspensions"] == 1
    assert overall["suspensions"] == 1
    # Nothing ran beta's suspension runbook, so no incident record was opened: the
    # suspension is a signal, not an incident (decision 0041).
    assert (overall["incidents"], overall["open_incidents"]) == (0, 0)
    assert tenants["beta"]["incidents"] == 0
    assert tenants["alpha"]["cost_mtd"] == "60.00"
    assert tenants["alpha"]["budget"] == "100.00"
    assert tenants["alpha"]["budget_ratio"] == "0.6000"
    assert tenants["gamma"]["cost_mtd"] is None
    assert overall["cost_mtd"] == {"EUR": "60.00"}


def test_filters_and_sort(web: TestClient, actors: Actors, fleet: dict[str, str]) -> None:
    gold = ok(web.get(KPIS, params={"tier": "premium"}, headers=actors.gov))
    assert [t["name"] for t in gold["tenants"]] == ["alpha"]
    assert gold["overall"]["tenants"] == 1
    us = ok(web.get(KPIS, params={"region": "us-east-1"}, headers=actors.gov))
    assert [t["name"] for t in us["tenants"]] == ["beta"]
    requested = ok(web.get(KPIS, params={"state": "requested"}, headers=actors.gov))
    assert [t["name"] for t in requested["tenants"]] == ["gamma"]

    slowest = ok(web.get(KPIS, params={"sort": "-activation_seconds"}, headers=actors.gov))
    # A tenant without a value goes last either way.
    assert [t["name"] for t in slowest["tenants"]] == ["beta", "alpha", "gamma"]
    names = ok(web.get(KPIS, params={"sort": "-name"}, headers=actors.gov))
    assert [t["name"] for t in names["tenants"]] == ["gamma", "beta", "alpha"]

    bad = web.get(KPIS, params={"sort": "password"}, headers=actors.gov)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_a_tenant_owner_gets_only_their_tenant(
    web: TestClient, auth: TokenFactory, fleet: dict[str, str]
) -> None:
    owner = auth("olga", "tenant_owner", tenant=fleet["beta"])
    report = ok(web.get(KPIS, headers=owner))
    assert [t["name"] for t in report["tenants"]] == ["beta"]
    assert report["overall"]["tenants"] == 1
    assert report["overall"]["cost_mtd"] == {}
    assert ok(web.get(KPIS, params={"tier": "premium"}, headers=owner))["tenants"] == []


def test_the_kpis_need_a_token(web: TestClient) -> None:
    assert web.get(KPIS).status_code == 401


def _shown(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-kpi="([a-z0-9_]+)">([^<]*)<', page))


def test_the_dashboard_shows_the_apis_numbers(
    web: TestClient, actors: Actors, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("gus-web", "governance")
    sign_in(web, "gus-web")
    for params in ({}, {"tier": "premium"}, {"state": "requested"}):
        page = web.get("/", params=params)
        assert page.status_code == 200, page.text
        api = ok(web.get(KPIS, params=params, headers=actors.gov))
        o = api["overall"]
        shown = _shown(page.text)
        assert shown["incidents"] == str(o["incidents"])
        assert shown["open_incidents"] == str(o["open_incidents"])
        assert shown["runs_in_progress"] == str(o["runs_in_progress"])
        assert shown["runs_stalled"] == str(o["runs_stalled"])
        attainment = o["sla_attainment"]
        assert shown["sla_attainment"] == (
            "–" if attainment is None else f"{round(attainment * 100, 1)}%"
        )
        cost = ", ".join(f"{v} {k}" for k, v in o["cost_mtd"].items()) or "–"
        assert shown["cost_mtd"] == cost
        rows = re.findall(r'<tr data-tenant="([^"]+)">', page.text)
        assert rows == [t["name"] for t in api["tenants"]]
        for t in api["tenants"]:
            row = page.text.split(f'<tr data-tenant="{t["name"]}">')[1].split("</tr>")[0]
            cells = dict(re.findall(r'data-col="([a-z_]+)">([^<]*)<', row))
            assert cells["incidents"] == str(t["incidents"])
            assert cells["open_incidents"] == str(t["open_incidents"])
            assert cells["runs"] == str(t["runs_in_progress"])
            assert cells["sla"] == (t["sla"] or "–")
            assert cells["cost"] == (
                "–" if t["cost_mtd"] is None else f"{t['cost_mtd']} {t['currency']}"
            )


def test_the_dashboard_sorts_without_javascript(
    web: TestClient, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("ann", "admin")
    sign_in(web, "ann")
    page = web.get("/", params={"sort": "-name"}).text
    assert re.findall(r'<tr data-tenant="([^"]+)">', page) == ["gamma", "beta", "alpha"]
    assert 'aria-sort="descending"' in page
    # The header link flips the order.
    assert 'href="?sort=name" data-sort="name"' in page
    # An unknown sort falls back to the name rather than failing the page.
    assert web.get("/", params={"sort": "bogus"}).status_code == 200


def test_the_dashboard_links_each_tenant_and_says_its_runs_are_in_progress(
    web: TestClient, user: UserFactory, actors: Actors, fleet: dict[str, str]
) -> None:
    user("ann", "admin")
    sign_in(web, "ann")
    page = web.get("/").text
    for name in ("alpha", "beta", "gamma"):
        row = page.split(f'<tr data-tenant="{name}">')[1].split("</tr>")[0]
        assert f'<th scope="row"><a href="/tenants/{name}">{name}</a>' in row
    assert web.get("/tenants/beta").status_code == 200
    # The column counts runs running or waiting, not all runs; the API keeps its field name.
    header = re.search(r'data-sort="runs_in_progress">([^<]*)<', page)
    assert header
    assert header.group(1) == "Runs in progress"
    assert "runs_in_progress" in ok(web.get(KPIS, headers=actors.gov))["tenants"][0]


def test_a_tenant_owner_sees_only_their_tenant_on_the_dashboard(
    web: TestClient, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("olga", "tenant_owner", tenant=fleet["alpha"])
    sign_in(web, "olga")
    page = web.get("/").text
    assert re.findall(r'<tr data-tenant="([^"]+)">', page) == ["alpha"]
    assert '<a href="/tenants/alpha">alpha</a>' in page
    assert web.get("/tenants/alpha").status_code == 200
    assert "beta" not in page
    assert "gamma" not in page


def test_a_limit_cuts_the_table_not_the_overall_numbers(
    web: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    full = ok(web.get(KPIS, headers=actors.gov))
    cut = ok(web.get(KPIS, params={"limit": 1, "sort": "-name"}, headers=actors.gov))
    assert [t["name"] for t in cut["tenants"]] == ["gamma"]
    assert cut["truncated"] is True
    assert full["truncated"] is False
    assert cut["overall"] == full["overall"]


def test_cost_is_shown_only_to_those_who_may_read_it(
    web: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    """Staff without a FinOps role see every KPI but cost, as the cost API refuses them."""
    report = ok(web.get(KPIS, headers=actors.qa))
    assert by_name(report)["alpha"]["cost_mtd"] is None
    assert by_name(report)["alpha"]["budget_ratio"] is None
    assert report["overall"]["cost_mtd"] == {}
    assert by_name(ok(web.get(KPIS, headers=actors.gov)))["alpha"]["cost_mtd"] == "60.00"


def test_a_filter_with_a_control_character_is_a_422(web: TestClient, actors: Actors) -> None:
    r = web.get(KPIS, params={"tier": "premium\x00"}, headers=actors.gov)
    assert r.status_code == 422, r.text


# --- a fleet written straight to the tables, its numbers worked out by hand --------------

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)  # the frozen clock
T0 = NOW - timedelta(hours=25)
JANUARY, DECEMBER = date(2030, 1, 1), date(2029, 12, 1)


MILESTONES = {"tenant.approved": "approved_at", "tenant.step.verified": "activated_at"}


class Rows:
    """Rows for the tenant, audit, run, ITIL record, budget and cost tables, inserted in one go."""

    def __init__(self) -> None:
        self.tenants: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.budgets: list[dict[str, Any]] = []
        self.imports: list[dict[str, Any]] = []
        self.costs: list[dict[str, Any]] = []
        self.ids: dict[str, str] = {}

    def tenant(
        self, name: str, created: datetime, state: str = "active", currency: str = "EUR"
    ) -> str:
        tid = str(uuid.uuid4())
        self.ids[name] = tid
        self.tenants.append(
            {
                **{"id": tid, "name": name, "display_name": name.title(), "state": state},
                **{"business_owner": "o@example.com", "compliance_classification": "internal"},
                **{"region": "eu-central-1", "tier": "standard", "contacts": []},
                **{"monthly_budget": Decimal(100), "currency": currency, "ticket_ref": None},
                **{"requested_by": "amy", "created_at": created, "updated_at": created},
                **{"approved_at": None, "activated_at": None, "version": 1},
            }
        )
        return tid

    def entry(self, name: str, action: str, at: datetime) -> None:
        """An audit entry; the two that mark milestones also set them, as the service does."""
        milestone = MILESTONES.get(action)
        tenant = next(t for t in self.tenants if t["id"] == self.ids[name])
        if milestone is not None and tenant.get(milestone) is None:
            tenant[milestone] = at
        seq = 1000 + len(self.audit)
        self.audit.append(
            {
                **{"seq": seq, "id": str(uuid.uuid4()), "at": at, "actor": "x"},
                **{"actor_roles": [], "action": action, "tenant_id": self.ids[name]},
                **{"request_id": None, "changes": {}, "detail": {}},
                **{"prev_hash": "0", "hash": "0"},
            }
        )

    def run(self, name: str, status: str, **times: datetime | None) -> None:
        """A run; ``due``: its current step is ready from then (a timer, a backoff)."""
        at = times.pop("updated", T0)
        due = times.pop("due", None)
        self.runs.append(
            {
                **{"id": str(uuid.uuid4()), "runbook_id": times.pop("runbook", None)},
                **{"runbook_version": "1", "runbook_hash": "0", "document": {}},
                **{"tenant_id": self.ids[name], "status": status, "inputs": {}},
                **{"started_by": "amy", "created_at": T0, "updated_at": at, "error": None},
                "finished_at": times.get("finished"),
                "sla_deadline": times.get("deadline"),
                "sla_breached_at": times.get("breached"),
            }
        )
        if self.runs[-1]["runbook_id"] is None:
            self.runs[-1]["runbook_id"] = "tenant-onboarding"
        if due is not None:
            self.steps.append(
                {
                    **{"id": str(uuid.uuid4()), "run_id": self.runs[-1]["id"], "position": 0},
                    **{"name": "next", "kind": "action", "status": "ready", "attempt": 0},
                    **{"failures": 0, "max_attempts": 1, "wake_at": due},
                    **{"idempotency_key": str(uuid.uuid4())},
                }
            )

    def record(
        self, name: str | None, kind: str, state: str, opened: datetime = T0, priority: int = 3
    ) -> None:
        """An ITIL record of the tenant ``name`` (None: of the platform)."""
        seq = 1 + sum(1 for r in self.records if r["kind"] == kind)
        prefix = {"incident": "INC", "change": "CHG", "problem": "PRB"}[kind]
        resolved = opened + timedelta(hours=1) if state in ("resolved", "closed") else None
        self.records.append(
            {
                **{"id": str(uuid.uuid4()), "kind": kind, "seq": seq},
                **{"number": f"{prefix}{seq:07d}", "title": f"{kind} {seq}", "description": ""},
                **{"tenant_id": self.ids[name] if name else None, "tenant_name": name},
                **{"state": state, "priority": priority, "source": "manual", "fields": {}},
                **{"opened_by": "olly", "opened_at": opened, "updated_at": opened},
                **{"resolved_at": resolved, "version": 1},
            }
        )

    def cost(self, name: str, amount: str, currency: str = "EUR", **kw: Any) -> None:
        import_id = str(uuid.uuid4())
        self.imports.append(
            {
                **{"id": import_id, "sha256": uuid.uuid4().hex * 2, "filename": "f.csv"},
                **{"format": "csv", "billing_account_id": "acct", "currency": currency},
                **{"billing_period_start": T0, "billing_period_end": NOW, "rows": 1},
                **{"allocated_rows": 1, "unallocated_rows": 0, "billed_cost": Decimal(amount)},
                **{"effective_cost": Decimal(amount), "unallocated_cost": Decimal(0)},
                **{"summary": {}, "imported_by": "fiona", "imported_at": NOW},
                "superseded_by": kw.get("superseded_by"),
            }
        )
        self.costs.append(
            {
                **{"import_id": import_id, "tenant_id": self.ids[name], "lines": 1},
                **{"month": kw.get("month", JANUARY), "currency": currency},
                **{"billed_cost": Decimal(amount), "effective_cost": Decimal(amount)},
            }
        )

    def write(self, db: Database) -> None:
        with db.write() as session:
            for model, rows in (
                (Tenant, self.tenants),
                (AuditEntry, self.audit),
                (Run, self.runs),
                (RunStep, self.steps),
                (ItilRecord, self.records),
                (Budget, self.budgets),
                (CostImport, self.imports),
                (CostMonthly, self.costs),
            ):
                if rows:
                    session.execute(insert(model), rows)


@pytest.fixture
def ledger(db: Database, clock: Clock) -> dict[str, str]:
    """Seven tenants; what each one shows is in the comments, worked out by hand."""
    r = Rows()
    # a: approved after 10 min, active after 25: activation 1500 s, provisioning 900 s, met.
    r.tenant("a-met", T0)
    r.entry("a-met", "tenant.approved", T0 + timedelta(minutes=10))
    r.entry("a-met", "tenant.step.verified", T0 + timedelta(minutes=25))
    r.entry("a-met", "tenant.step.verified", T0 + timedelta(hours=3))  # only the first counts
    r.run(
        "a-met",
        "succeeded",
        finished=T0 + timedelta(minutes=25),
        deadline=T0 + timedelta(minutes=40),
    )
    # b: 45 min from approval to active: missed; suspended since, one break-glass opening.
    # Its FinOps budget is 200 USD: only its USD cost counts.
    r.tenant("b-slow", T0, state="suspended")
    r.entry("b-slow", "tenant.approved", T0)
    r.entry("b-slow", "tenant.step.verified", T0 + timedelta(minutes=45))
    r.entry("b-slow", "tenant.suspended", T0 + timedelta(hours=2))
    r.entry("b-slow", "breakglass.opened", T0 + timedelta(hours=3))
    # c: active 10 min after approval, but its onboarding run breached its SLA: missed.
    r.tenant("c-breach", T0)
    r.entry("c-breach", "tenant.approved", T0 + timedelta(minutes=5))
    r.entry("c-breach", "tenant.step.verified", T0 + timedelta(minutes=15))
    r.entry("c-breach", "run.sla_breached", T0 + timedelta(minutes=14))
    r.run(
        "c-breach",
        "succeeded",
        finished=T0 + timedelta(minutes=15),
        deadline=T0 + timedelta(minutes=10),
        breached=T0 + timedelta(minutes=14),
    )
    # d: approved 10 min ago, not active yet: pending; one run in progress, on time.
    r.tenant("d-pending", NOW - timedelta(minutes=20), state="provisioning")
    r.entry("d-pending", "tenant.approved", NOW - timedelta(minutes=10))
    r.run(
        "d-pending",
        "running",
        updated=NOW - timedelta(minutes=5),
        deadline=NOW + timedelta(minutes=20),
    )
    # e: approved 2 h ago, never active: missed. Two open runs, both stalled: the onboarding
    # run is past its deadline (not yet marked breached), the other has been idle 2 h.
    r.tenant("e-late", NOW - timedelta(hours=3), state="provisioning")
    r.entry("e-late", "tenant.approved", NOW - timedelta(hours=2))
    r.run(
        "e-late", "waiting", updated=NOW - timedelta(minutes=1), deadline=NOW - timedelta(hours=1)
    )
    r.run(
        "e-late",
        "running",
        runbook="cost-overrun",
        updated=NOW - timedelta(hours=2),
        due=NOW - timedelta(hours=2),
    )
    # Asleep on a timer for days (a weekly report's chain): in progress, not stalled.
    r.run(
        "d-pending",
        "running",
        runbook="weekly-sla-report",
        updated=NOW - timedelta(days=2),
        due=NOW + timedelta(days=5),
    )
    # f: only requested: no SLA, no activation.
    r.tenant("f-new", NOW - timedelta(hours=1), state="requested")
    # g: to the microsecond: activation 90.000001 s, provisioning 60.000001 s, met.
    created = T0 + timedelta(microseconds=250_000)
    r.tenant("g-micro", created)
    r.entry("g-micro", "tenant.approved", created + timedelta(seconds=30))
    r.entry("g-micro", "tenant.step.verified", created + timedelta(seconds=90, microseconds=1))
    r.budgets.append(
        {
            **{"tenant_id": r.ids["b-slow"], "amount": Decimal(200), "currency": "USD"},
            **{"thresholds": [80], "updated_by": "fiona", "updated_at": T0, "version": 1},
        }
    )
    # Incident records: b has two (one resolved, opened a year ago: the count is all-time,
    # as /records lists) and a change; c one cancelled (counted, not open); a a problem;
    # the platform an open incident and a change. Nobody's suspension, SLA breach or
    # break-glass opening is an incident unless a record was opened for it.
    r.record("b-slow", "incident", "resolved", opened=T0 - timedelta(days=365))
    r.record("b-slow", "incident", "in_progress", opened=T0 + timedelta(hours=2), priority=2)
    r.record("b-slow", "change", "scheduled")
    r.record("c-breach", "incident", "cancelled")
    r.record("a-met", "problem", "assess")
    r.record(None, "incident", "new", priority=1)
    r.record(None, "change", "new")
    r.cost("a-met", "60")
    r.cost("a-met", "500", superseded_by="newer")  # a superseded import: not counted
    r.cost("a-met", "7", month=DECEMBER)  # last month: not counted
    r.cost("b-slow", "50", currency="USD")
    r.cost("b-slow", "999")  # EUR, not the budget's currency
    r.cost("g-micro", "10.005")  # half a cent: rounds up
    r.write(db)
    return r.ids


HAND = {
    "activation_seconds": {
        "a-met": 1500.0,
        "b-slow": 2700.0,
        "c-breach": 900.0,
        "g-micro": 90.000001,
    },
    "provisioning_seconds": {
        "a-met": 900.0,
        "b-slow": 2700.0,
        "c-breach": 600.0,
        "g-micro": 60.000001,
    },
    "sla": {
        "a-met": "met",
        "b-slow": "missed",
        "c-breach": "missed",
        "d-pending": "pending",
        "e-late": "missed",
        "g-micro": "met",
    },
    "incidents": {"b-slow": 2, "c-breach": 1},
    "open_incidents": {"b-slow": 1},
    "suspensions": {"b-slow": 1},
    "sla_breaches": {"c-breach": 1},
    "security_events": {"b-slow": 1},
    "runs_in_progress": {"d-pending": 2, "e-late": 2},
    "runs_stalled": {"e-late": 2},
    "cost_mtd": {"a-met": "60.00", "b-slow": "50.00", "g-micro": "10.01"},
    "budget_ratio": {"a-met": "0.6000", "b-slow": "0.2500", "g-micro": "0.1001"},
}


def _expected(name: str, key: str) -> Any:
    counts = (
        "incidents",
        "open_incidents",
        "suspensions",
        "sla_breaches",
        "security_events",
        "runs_in_progress",
        "runs_stalled",
    )
    return HAND[key].get(name, 0 if key in counts else None)


def test_the_numbers_of_a_hand_built_fleet(
    web: TestClient, actors: Actors, ledger: dict[str, str]
) -> None:
    report = ok(web.get(KPIS, headers=actors.gov))
    tenants = by_name(report)
    assert sorted(tenants) == sorted(ledger)
    for name, row in tenants.items():
        for key in HAND:
            assert row[key] == _expected(name, key), (name, key)
    assert tenants["b-slow"]["currency"] == "USD"
    assert tenants["b-slow"]["budget"] == "200.00"
    assert (tenants["b-slow"]["suspensions"], tenants["b-slow"]["security_events"]) == (1, 1)
    assert report["overall"] == {
        "tenants": 7,
        "by_state": {"active": 3, "provisioning": 2, "requested": 1, "suspended": 1},
        "activated": 4,
        # 90.000001, 900, 1500, 2700: ranks 2 and 4 (nearest rank of 50 % and 90 % of 4).
        "activation_median_seconds": 900.0,
        "activation_p90_seconds": 2700.0,
        "sla_met": 2,
        "sla_missed": 3,
        "sla_pending": 1,
        "sla_attainment": 0.4,
        # b's 2 and c's 1, and the platform's open one: every incident record there is.
        "incidents": 4,
        "open_incidents": 2,
        "platform_incidents": 1,
        "platform_open_incidents": 1,
        "suspensions": 1,
        "sla_breaches": 1,
        "security_events": 1,
        "runs_in_progress": 4,
        "runs_stalled": 2,
        "cost_mtd": {"EUR": "70.01", "USD": "50.00"},  # 60 + 10.005, rounded once
        # f-new is a request: its 100 EUR is not granted yet (kpis.queries.HOLDS_BUDGET).
        "budget": {"EUR": "500.00", "USD": "200.00"},
    }
    activations = [t["activation_seconds"] for t in tenants.values() if t["activation_seconds"]]
    assert report["overall"]["activation_p90_seconds"] == percentile(activations, 90)


def _reference_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    """The order the table promises: by value, ties by name the same way; no value last."""
    key = sort.removeprefix("-")

    def value(row: dict[str, Any]) -> Any:
        v = row[key]
        return Decimal(v) if key in ("cost_mtd", "budget_ratio") and v is not None else v

    present = sorted(
        (r for r in rows if r[key] is not None),
        key=lambda r: (value(r), r["name"]),
        reverse=sort.startswith("-"),
    )
    missing = sorted((r for r in rows if r[key] is None), key=lambda r: r["name"])
    return [r["name"] for r in present + missing]


@pytest.mark.parametrize("sort", [*SORT_KEYS, *(f"-{k}" for k in SORT_KEYS)])
def test_every_column_sorts_in_the_database_as_promised(
    web: TestClient, actors: Actors, ledger: dict[str, str], sort: str
) -> None:
    rows = ok(web.get(KPIS, params={"sort": sort}, headers=actors.gov))["tenants"]
    assert [r["name"] for r in rows] == _reference_order(rows, sort)
    cut = ok(web.get(KPIS, params={"sort": sort, "limit": 3}, headers=actors.gov))
    assert [r["name"] for r in cut["tenants"]] == [r["name"] for r in rows[:3]]
    assert cut["truncated"] is True


def test_a_tenant_owner_gets_the_numbers_of_their_tenant_alone(
    web: TestClient, auth: TokenFactory, ledger: dict[str, str]
) -> None:
    owner = auth("bob", "tenant_owner", tenant=ledger["b-slow"])
    overall = ok(web.get(KPIS, headers=owner))["overall"]
    assert overall["tenants"] == 1
    assert (overall["activation_median_seconds"], overall["activation_p90_seconds"]) == (
        2700.0,
        2700.0,
    )
    assert (overall["sla_missed"], overall["incidents"], overall["runs_in_progress"]) == (1, 2, 0)
    # Not the platform's incidents: a tenant owner may not read them, nor count them.
    assert (overall["open_incidents"], overall["platform_incidents"]) == (1, None)
    assert overall["cost_mtd"] == {"USD": "50.00"}
    assert overall["budget"] == {"USD": "200.00"}


def test_staff_without_a_finops_role_get_no_cost_totals(
    web: TestClient, actors: Actors, ledger: dict[str, str]
) -> None:
    report = ok(web.get(KPIS, params={"sort": "-cost_mtd"}, headers=actors.qa))
    assert report["overall"]["cost_mtd"] == {}
    assert report["overall"]["budget"] == {"EUR": "500.00", "USD": "200.00"}
    assert all(t["cost_mtd"] is None and t["budget_ratio"] is None for t in report["tenants"])
    # Nobody has a value: the order is by name.
    assert [t["name"] for t in report["tenants"]] == sorted(ledger)


def test_the_dashboard_shows_the_hand_built_numbers(
    web: TestClient, actors: Actors, user: UserFactory, ledger: dict[str, str]
) -> None:
    user("gus-web", "governance")
    sign_in(web, "gus-web")
    page = web.get("/", params={"sort": "-activation_seconds"})
    assert page.status_code == 200, page.text
    shown = _shown(page.text)
    assert (shown["incidents"], shown["open_incidents"]) == ("4", "2")
    assert shown["platform_incidents"] == "1"
    assert (shown["runs_in_progress"], shown["runs_stalled"]) == ("4", "2")
    assert shown["sla_attainment"] == "40.0%"
    assert shown["cost_mtd"] == "70.01 EUR, 50.00 USD"
    rows = re.findall(r'<tr data-tenant="([^"]+)">', page.text)
    assert rows == ["b-slow", "a-met", "c-breach", "g-micro", "d-pending", "e-late", "f-new"]
    api = ok(web.get(KPIS, params={"sort": "-activation_seconds"}, headers=actors.gov))
    assert rows == [t["name"] for t in api["tenants"]]


def test_the_incident_counts_link_to_the_records_for_those_who_may_read_them(
    web: TestClient, user: UserFactory, ledger: dict[str, str]
) -> None:
    user("gus-web", "governance")
    sign_in(web, "gus-web")
    page = web.get("/").text
    assert 'href="/records?kind=incident&amp;tenant=b-slow" data-col="incidents">2<' in page
    assert 'href="/records?kind=incident&amp;open=1" data-kpi="open_incidents">2<' in page
    # No incident, no link.
    assert '<span data-col="incidents">0</span>' in page
    # Under a filter the overall figures count only the tenants shown, which /records
    # cannot list: no link to a listing whose count would differ.
    filtered = web.get("/", params={"state": "suspended"}).text  # b-slow, with 2
    assert re.search(r'<span data-kpi="incidents">[1-9]\d*</span>', filtered)
    assert 'href="/records?kind=incident"' not in filtered
    assert 'href="/records?kind=incident&amp;open=1"' not in filtered
    web.cookies.clear()
    user("quinn-web", "qa")  # QA reads the KPIs, not the records
    sign_in(web, "quinn-web")
    page = web.get("/").text
    assert "/records?" not in page
    assert '<span data-kpi="incidents">4</span>' in page


@pytest.mark.parametrize(
    ("at", "later"),
    [
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), timedelta(seconds=90, microseconds=1)),
        (datetime(1999, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC), timedelta(microseconds=500_001)),
        (datetime(2024, 2, 28, 22, 0, 0, 250_000, tzinfo=UTC), timedelta(days=2, hours=3)),
        # SQLite's strftime rounds .9995 s and more up to the next second.
        (datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), timedelta(microseconds=1)),
        (datetime(2024, 5, 1, 12, 0, 0, 999_500, tzinfo=UTC), timedelta(seconds=1)),
    ],
)
def test_epoch_micros_differences_are_exact_on_the_store(
    db: Database, at: datetime, later: timedelta
) -> None:
    """``kit.sqltime``: the store's difference, as seconds, is ``total_seconds()``."""
    stamp = DateTime(timezone=True)
    with db.read() as s:
        start = s.scalar(select(epoch_micros(literal(at, stamp))))
        micros = s.scalar(
            select(epoch_micros(literal(at + later, stamp)) - epoch_micros(literal(at, stamp)))
        )
    assert start == (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert seconds(micros) == later.total_seconds()
    assert seconds(None) is None
