"""Cost Overrun end to end: real Prometheus, Alertmanager, Redis and a tenantops server.

Cost is imported as a FOCUS file through the API; Prometheus scrapes the
server's own ``/metrics`` (``tenantops_tenant_budget_ratio``) and evaluates the
shipped rule file (deploy/prometheus/tenantops-finops.rules.yml, its ``for``
shortened to 0s so the test does not wait a minute); Alertmanager posts to the
receiver with its bearer token. The playbook pages a PagerDuty-shaped Events
API v2 on 127.0.0.1, waits for finance, sets the token bucket in the real
Redis, books the measures; raising the budget resolves the alert, which lifts
the limit and resolves the page. Every wait is a bounded poll.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tenantops.db import Database
from tenantops.finops.costs import Month
from tests.drivers.test_notify import Inbox, smtp_server
from tests.drivers.test_notify_page import pagerduty
from tests.factories import tenant_body
from tests.finops.focusdata import line, write_csv
from tests.promstack import PromStack, Webhook, binaries, wait_for
from tests.servers import bearer, mint_token, serve_process, tenantops_env

# The fixtures: a local Events API v2 that records each event, a real SMTP server (aiosmtpd).
__all__ = ["pagerduty", "smtp_server"]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alertmanager-e2e-token"


def shipped_rules() -> dict[str, Any]:
    """The shipped rule file, every ``for`` cut to 0s (the rules themselves unchanged)."""
    rules: dict[str, Any] = yaml.safe_load(
        (ROOT / "deploy" / "prometheus" / "tenantops-finops.rules.yml").read_text()
    )
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    return rules


def focus_csv(path: Path, tenant: str, now: datetime) -> bytes:
    """This month's cost of ``tenant``: 150 EUR on day 1, two services."""
    month = Month.parse(None, now=now)
    start = datetime.combine(month.first, time(), tzinfo=UTC)
    following = datetime.combine(month.after, time(), tzinfo=UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    period = {
        "BillingPeriodStart": start.strftime(stamp),
        "BillingPeriodEnd": following.strftime(stamp),
        "ChargePeriodStart": start.strftime(stamp),
        "ChargePeriodEnd": start.replace(hour=1).strftime(stamp),
        "Tags": f'{{"tenant": "{tenant}"}}',
    }
    rows = [
        line(BilledCost="110.00", EffectiveCost="110.00", ServiceName="Object Storage", **period),
        line(BilledCost="40.00", EffectiveCost="40.00", ServiceName="Virtual Machines", **period),
    ]
    return write_csv(path, rows).read_bytes()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"e2e{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_a_budget_alert_runs_cost_overrun_through_the_real_stack(
    tmp_path: Path,
    pagerduty: tuple[str, list[dict[str, Any]]],
    smtp_server: tuple[Inbox, int],
    redis_prefix: str,
) -> None:
    binaries()  # skip (laptop) or fail (CI) before starting anything
    pd_url, pages = pagerduty
    inbox, smtp_port = smtp_server
    env = tenantops_env(
        data_dir=str(tmp_path / "data"),
        bootstrap_admin="false",
        log_json="false",
        worker__poll_seconds="0.05",
        alerts__bearer_token=TOKEN,
        access__adapter="redis",
        access__redis__url="redis://127.0.0.1:6379/0",
        access__redis__key_prefix=redis_prefix,
        channels__pagerduty__finops__routing_key="R0UT1NG",
        channels__pagerduty__finops__base_url=pd_url,
        smtp__host="127.0.0.1",
        smtp__port=str(smtp_port),
        smtp__sender="finops@tenantops.example",
    )
    (tmp_path / "data").mkdir()
    with serve_process(env, tmp_path / "server.log") as url:
        db = Database(f"sqlite:///{tmp_path / 'data' / 'tenantops.db'}")
        finance = bearer(mint_token(db, "fiona", "finance"))
        am = bearer(mint_token(db, "amy", "account_manager"))
        api = httpx.Client(base_url=f"{url}/api/v1", timeout=30)
        tenant = api.post("/tenants", json=tenant_body(), headers=am).json()

        r = api.put(
            f"/tenants/{tenant['id']}/budget",
            json={"amount": "100.00", "currency": "EUR"},
            headers=finance,
        )
        assert r.status_code == 200, r.text
        body = focus_csv(tmp_path / "cost.csv", tenant["name"], datetime.now(UTC))
        r = api.post(
            "/finops/imports", content=body, headers={**finance, "content-type": "text/csv"}
        )
        assert r.status_code == 201, r.text

        def overrun(status: str) -> dict[str, Any] | None:
            runs = api.get("/runs", params={"tenant": tenant["id"]}, headers=finance).json()
            found = [
                x
                for x in runs["items"]
                if x["runbook_id"] == "cost-overrun" and x["status"] == status
            ]
            return found[0] if found else None

        def run(run_id: str) -> dict[str, Any]:
            detail: dict[str, Any] = api.get(f"/runs/{run_id}", headers=finance).json()
            return detail

        stack = PromStack(
            tmp_path / "promstack",
            rules=shipped_rules(),
            targets=[url.removeprefix("http://")],
            webhook=Webhook(url=f"{url}/api/v1/webhooks/alertmanager", bearer=TOKEN),
        )
        with stack:
            started = wait_for("the cost-overrun run", lambda: overrun("waiting"), logs=stack.logs)
            detail = wait_for(
                "the finance approval gate",
                lambda: (lambda d: d if d["current_step"] == "approval" else None)(
                    run(started["id"])
                ),
                logs=stack.logs,
            )
            steps = {s["name"]: s["evidence"] for s in detail["steps"]}
            assert steps["page-finops"]["paged_by"] == "pagerduty"
            assert steps["assess"]["ratio"] == "1.5000"
            assert steps["assess"]["hotspots"][0]["service"] == "Object Storage"
            assert [p["event_action"] for p in pages] == ["trigger"]
            assert pages[0]["routing_key"] == "R0UT1NG"

            r = api.post(
                f"/runs/{started['id']}/gates/approval",
                json={"decision": "approve", "comment": "storage runaway"},
                headers=finance,
            )
            assert r.status_code == 200, r.text
            wait_for(
                "the run waiting for the resolution",
                lambda: run(started["id"])["current_step"] == "resolved" or None,
                logs=stack.logs,
            )
            bucket = redis.Redis.from_url("redis://127.0.0.1:6379/0")
            key = f"{redis_prefix}_ratelimit:{tenant['id']}"
            assert bucket.exists(key), "the token bucket is in Redis"
            told = {rcpt for m in inbox.messages for rcpt in m.rcpt_tos}
            assert tenant_body()["business_owner"] in told  # the tenant owner's notice
            booked = api.get(f"/tenants/{tenant['id']}/ledger", headers=finance).json()
            assert {"alert", "action", "follow_up"} <= {e["kind"] for e in booked["items"]}

            # Finance raises the budget: the ratio drops, the alert resolves, the loop closes.
            r = api.put(
                f"/tenants/{tenant['id']}/budget",
                json={"amount": "10000.00", "currency": "EUR"},
                headers=finance,
            )
            assert r.status_code == 200, r.text
            done = wait_for(
                "the run finished by the resolution",
                lambda: overrun("succeeded"),
                within=90,
                logs=stack.logs,
            )
            assert done["id"] == started["id"]
            assert not bucket.exists(key), "the limit is lifted"
            assert [p["event_action"] for p in pages] == ["trigger", "resolve"]
            bucket.close()
        api.close()
        db.dispose()
