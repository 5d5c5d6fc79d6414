"""``notify.page``: a runbook step triggers, acknowledges and resolves one PagerDuty alert."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions
from tenantops.runbooks.actions import ActionContext, StepFailed


@pytest.fixture
def pagerduty() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local Events API v2: records each event, answers 202 as PagerDuty does."""
    events: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            events.append({"path": self.path, **body})
            answer = json.dumps(
                {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}
            ).encode()
            self.send_response(202)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", events
    server.shutdown()
    server.server_close()


def ctx(step: str, **params: Any) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_name=step,
        tenant_id="tenant-1",
        params=params,
        idempotency_key=f"run-1/{step}",
        attempt=1,
        actor="system:engine",
        inputs={},
    )


def test_a_playbook_pages_then_resolves_the_same_alert(
    db: Database, tmp_path: Path, pagerduty: tuple[str, list[dict[str, Any]]]
) -> None:
    url, events = pagerduty
    settings = Settings(
        data_dir=tmp_path,
        channels={"pagerduty": {"finops": {"routing_key": "R0UT1NG", "base_url": url}}},
    )
    page = driver_actions(settings, db)["notify.page"]

    opened = page.run(
        ctx("page", service="finops", incident="cost-overrun", summary="acme over budget",
            severity="warning", details={"ratio": 1.2})
    )  # fmt: skip
    page.run(ctx("close", service="finops", incident="cost-overrun", action="resolve"))

    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"tenantops/tenant-1/cost-overrun"}
    assert all(e["routing_key"] == "R0UT1NG" for e in events)
    trigger = events[0]["payload"]
    assert trigger["summary"] == "acme over budget"
    assert trigger["severity"] == "warning"
    assert trigger["custom_details"] == {"run_id": "run-1", "tenant_id": "tenant-1", "ratio": 1.2}
    assert opened.evidence == {
        "service": "finops",
        "action": "trigger",
        "dedup_key": "tenantops/tenant-1/cost-overrun",
        "paged_by": "pagerduty",
    }


def test_without_pagerduty_on_call_is_paged_by_message_and_the_evidence_says_so(
    db: Database, tmp_path: Path
) -> None:
    page = driver_actions(Settings(data_dir=tmp_path), db)["notify.page"]

    sent = page.run(ctx("page", summary="acme over budget", details={"ratio": 1.2}))

    assert sent.evidence["paged_by"] == "notification"
    assert "no PagerDuty service 'default'" in sent.evidence["reason"]
    assert sent.evidence["to"] == ["oncall@localhost"]
    assert sent.evidence["subject"] == "[Page] acme over budget"
    # Nothing to acknowledge or resolve by message: done, and saying why.
    closed = page.run(ctx("close", action="resolve"))
    assert closed.evidence["skipped"] is True
    assert "nothing to resolve" in closed.evidence["reason"]


def test_a_page_without_a_summary_fails_the_step_for_good(db: Database, tmp_path: Path) -> None:
    page = driver_actions(Settings(data_dir=tmp_path), db)["notify.page"]
    with pytest.raises(StepFailed, match="needs a summary") as failed:
        page.run(ctx("page"))
    assert not failed.value.retriable
