"""Health checks over real HTTP: the built-in probe of this server, and a configured URL.

The server is the real app under uvicorn on 127.0.0.1 (a thread of the test);
the configured URL is a small stdlib HTTP server that keeps the same contract.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tenantops.app import create_app
from tenantops.config import HealthSettings, Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, health_url_template
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.health.local import HttpHealth
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.identity.port import Grant, Permission
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, Registry, StepFailed
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors
from tests.flows import suspend, tenant_in
from tests.servers import HOST, free_port, in_thread


@pytest.fixture
def server(db: Database, settings: Settings) -> Iterator[Settings]:
    """This app served on a free port; yields the settings that point at it."""
    port = free_port()
    # A generous timeout: on a loaded CI machine the in-thread server may take seconds.
    served = settings.model_copy(
        update={"port": port, "host": HOST, "health": HealthSettings(timeout_seconds=60)}
    )
    with in_thread(create_app(served, db=db), port):
        yield served


def ctx(tenant: dict[str, Any], key: str, **params: Any) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_name="verify",
        tenant_id=tenant["id"],
        params=params,
        idempotency_key=key,
        attempt=1,
        actor="quinn",
        inputs={"tenant": tenant},
    )


def provisioned(actions: Registry, tenant: dict[str, Any]) -> None:
    """What onboarding provisions before verification: the group and the secret store."""
    actions["identity.create_group"].run(ctx(tenant, f"{tenant['id']}/identity"))
    actions["secrets.create_store"].run(ctx(tenant, f"{tenant['id']}/secrets"))


@pytest.fixture
def active(client: TestClient, actors: Actors) -> dict[str, Any]:
    return tenant_in(client, actors, TenantState.ACTIVE, contacts=["ops@acme.example"])


# The built-in probe ----------------------------------------------------------------------


def test_an_active_provisioned_tenant_passes_check_and_synthetic_over_http(
    db: Database, server: Settings, active: dict[str, Any]
) -> None:
    actions = driver_actions(server, db)
    provisioned(actions, active)

    checked = actions["health.check"].run(ctx(active, "run-1/health-check"))
    synthetic = actions["health.synthetic"].run(ctx(active, "run-1/synthetic"))

    url = f"http://{HOST}:{server.port}/probe/tenants/{active['name']}"
    assert checked.evidence["url"] == url
    assert checked.evidence["status"] == 200
    assert checked.evidence["latency_ms"] >= 0
    assert checked.evidence["state"] == "active"
    assert checked.evidence["checks"] == {
        "state": True,
        "identity": True,
        "secrets": True,
        "queues": True,
    }
    assert synthetic.evidence["url"] == url + "/synthetic"
    assert synthetic.evidence["read_back"] is True


def test_a_tenant_not_yet_provisioned_fails_the_check_retriably(
    db: Database, server: Settings, active: dict[str, Any]
) -> None:
    actions = driver_actions(server, db)
    with pytest.raises(StepFailed) as caught:
        actions["health.check"].run(ctx(active, "k"))
    assert caught.value.retriable
    assert '"identity":false' in str(caught.value)


def test_isolation_steps_make_the_probe_fail(
    db: Database, server: Settings, active: dict[str, Any]
) -> None:
    actions = driver_actions(server, db)
    provisioned(actions, active)
    actions["access.pause_queues"].run(ctx(active, "pause"))

    with pytest.raises(StepFailed) as paused:
        actions["health.check"].run(ctx(active, "check-1"))
    with pytest.raises(StepFailed) as synthetic:
        actions["health.synthetic"].run(ctx(active, "synthetic-1"))
    actions["access.resume_queues"].run(ctx(active, "resume"))
    passed = actions["health.check"].run(ctx(active, "check-2"))

    assert paused.value.retriable
    assert '"queues":false' in str(paused.value)
    assert synthetic.value.retriable
    assert passed.evidence["status"] == 200


def test_a_suspended_tenant_is_not_serving(
    db: Database, server: Settings, active: dict[str, Any], client: TestClient, actors: Actors
) -> None:
    actions = driver_actions(server, db)
    provisioned(actions, active)
    assert suspend(client, active["id"], actors.ops).status_code == 200

    probe = httpx.get(f"http://{HOST}:{server.port}/probe/tenants/{active['name']}").json()
    with pytest.raises(StepFailed):
        actions["health.check"].run(ctx(active, "k"))
    assert probe["state"] == "suspended"
    assert probe["serving"] is False


def test_a_passing_check_is_recorded_once_per_key(
    db: Database, server: Settings, active: dict[str, Any]
) -> None:
    actions = driver_actions(server, db)
    provisioned(actions, active)
    first = actions["health.check"].run(ctx(active, "run-1/health-check"))
    actions["access.pause_queues"].run(ctx(active, "pause"))

    # The step ran again after a crash: the recorded pass stands, nothing is re-checked.
    replay = actions["health.check"].run(ctx(active, "run-1/health-check"))

    assert replay.output == first.output


def test_the_probe_of_an_unknown_tenant_says_it_is_not_serving(
    client: TestClient,
) -> None:
    probe = client.get("/probe/tenants/nobody")
    written = client.put("/probe/tenants/nobody/synthetic", json={"value": "x"})
    read = client.get("/probe/tenants/nobody/synthetic")

    assert probe.json() == {"tenant": "nobody", "state": None, "serving": False, "checks": {}}
    assert written.json()["written"] is False
    assert read.json()["value"] is None


def test_the_built_in_probe_is_the_default_url(settings: Settings) -> None:
    served = settings.model_copy(update={"host": "0.0.0.0", "port": 9999})  # noqa: S104
    assert health_url_template(served) == "http://127.0.0.1:9999/probe/tenants/{tenant}"
    configured = settings.model_copy(
        update={"health": HealthSettings(base_url="https://{tenant}.apps.example/healthz")}
    )
    assert health_url_template(configured) == "https://{tenant}.apps.example/healthz"


# A configured URL ------------------------------------------------------------------------


class Workload(BaseHTTPRequestHandler):
    """A tenant's own endpoint: ``/{tenant}`` answers, ``/{tenant}/synthetic`` keeps a value."""

    values: dict[str, str] = {}
    down: set[str] = set()
    forgetful = False
    # tenant -> (status, content type, body) it answers instead, as a web server in front may
    pages: dict[str, tuple[int, str, str]] = {}

    def _page(self, tenant: str) -> bool:
        if tenant not in self.pages:
            return False
        status, kind, text = self.pages[tenant]
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        tenant, _, rest = self.path.strip("/").partition("/")
        if tenant == "unsupported":
            self.send_error(501)  # the stdlib server's own HTML error page
        elif self._page(tenant):
            pass
        elif tenant in self.down:
            self._answer(503, {"error": "down"})
        elif rest == "synthetic":
            value = None if self.forgetful else self.values.get(tenant)
            self._answer(200, {"value": value})
        else:
            self._answer(200, {"ok": True})

    def do_PUT(self) -> None:
        tenant, _, _ = self.path.strip("/").partition("/")
        length = int(self.headers.get("Content-Length", "0"))
        if self._page(tenant):
            return
        self.values[tenant] = json.loads(self.rfile.read(length))["value"]
        self._answer(200, {"written": True})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def workload() -> Iterator[str]:
    Workload.values, Workload.down, Workload.forgetful, Workload.pages = {}, set(), False, {}
    httpd = ThreadingHTTPServer((HOST, 0), Workload)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}/{{tenant}}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def checker(db: Database, url: str) -> HttpHealth:
    return HttpHealth(db, url_template=url, identity=LocalIdentity(db), timeout_seconds=5)


def test_a_configured_url_is_checked_and_written_through(db: Database, workload: str) -> None:
    health = checker(db, workload)
    tid = new_id()

    checked = health.check(tenant_id=tid, tenant_name="acme", idempotency_key="c")
    synthetic = health.synthetic(tenant_id=tid, tenant_name="acme", idempotency_key="s")

    assert checked.status == 200
    assert checked.url == workload.replace("{tenant}", "acme")
    assert synthetic.passed
    assert Workload.values["acme"]  # the value really went through the URL


def test_a_configured_url_that_fails_is_retriable_and_not_recorded(
    db: Database, workload: str
) -> None:
    health = checker(db, workload)
    Workload.down.add("acme")
    with pytest.raises(DriverError) as down:
        health.check(tenant_id=new_id(), tenant_name="acme", idempotency_key="c")
    Workload.down.clear()
    Workload.forgetful = True
    with pytest.raises(DriverError) as forgot:
        health.synthetic(tenant_id=new_id(), tenant_name="acme", idempotency_key="s")
    Workload.forgetful = False
    # The same keys check again, for real, now that the workload is well.
    again = health.check(tenant_id=new_id(), tenant_name="acme", idempotency_key="c")

    assert down.value.retry is Retry.RETRIABLE
    assert message(down.value).endswith('answered 503: {"error": "down"}')  # JSON as sent
    assert forgot.value.retry is Retry.RETRIABLE
    assert "not the value written" in str(forgot.value)
    assert again.passed


def message(error: DriverError) -> str:
    """The error's own message, without the retry class ``str`` appends."""
    return str(error.args[0])


HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title>\n"
    "<style>body { font-family: sans-serif; }</style></head>\n"
    "<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n"
    + "<!-- padding so the page is long -->\n" * 20
    + "<p>"
    + "The upstream &amp; its replicas did not answer. " * 10
    + "</p>\n</body></html>\n"
)


def test_an_html_error_page_is_told_in_one_short_line(db: Database, workload: str) -> None:
    health = checker(db, workload)
    with pytest.raises(DriverError) as unsupported:
        health.check(tenant_id=new_id(), tenant_name="unsupported", idempotency_key="c1")
    Workload.pages["acme"] = (502, "text/html; charset=utf-8", HTML_PAGE)
    with pytest.raises(DriverError) as gateway:
        health.check(tenant_id=new_id(), tenant_name="acme", idempotency_key="c2")
    with pytest.raises(DriverError) as synthetic:
        health.synthetic(tenant_id=new_id(), tenant_name="acme", idempotency_key="s")

    url = workload.replace("{tenant}", "acme")
    assert unsupported.value.retry is Retry.RETRIABLE  # as before: a retry may help
    assert "answered 501 (text/html): Error response" in message(unsupported.value)
    assert message(gateway.value).startswith(
        f"GET {url} answered 502 (text/html): 502 Bad Gateway 502 Bad Gateway nginx "
        "The upstream & its replicas"
    )
    assert message(synthetic.value).startswith(f"PUT {url}/synthetic answered 502 (text/html): 502")
    for error in (unsupported.value, gateway.value, synthetic.value):
        said = message(error).partition("(text/html): ")[2]
        assert error.retry is Retry.RETRIABLE
        assert "<" not in message(error)
        assert "\n" not in message(error)
        assert "font-family" not in message(error)
        assert len(said) <= 120
    assert message(gateway.value).endswith("…")


def test_a_plain_or_empty_body_is_told_in_one_short_line(db: Database, workload: str) -> None:
    health = checker(db, workload)
    Workload.pages["acme"] = (503, "text/plain", "maintenance\n" + "until later " * 30)
    Workload.pages["quiet"] = (503, "text/plain", "")
    with pytest.raises(DriverError) as plain:
        health.check(tenant_id=new_id(), tenant_name="acme", idempotency_key="c1")
    with pytest.raises(DriverError) as empty:
        health.check(tenant_id=new_id(), tenant_name="quiet", idempotency_key="c2")

    said = message(plain.value).partition("answered 503: ")[2]
    assert said.startswith("maintenance until later until later")
    assert said.endswith("…")
    assert len(said) == 120
    assert message(empty.value).endswith("answered 503 with an empty body")
    assert plain.value.retry is empty.value.retry is Retry.RETRIABLE


def test_a_url_nobody_answers_is_retriable(db: Database) -> None:
    health = checker(db, f"http://{HOST}:{free_port()}/{{tenant}}")
    with pytest.raises(DriverError) as caught:
        health.check(tenant_id=new_id(), tenant_name="acme", idempotency_key="c")
    assert caught.value.retry is Retry.RETRIABLE


# The access review -----------------------------------------------------------------------


def snapshot() -> dict[str, Any]:
    return {
        "id": new_id(),
        "name": "acme",
        "business_owner": "owner@acme.example",
        "contacts": ["ops@acme.example", "fin@acme.example"],
    }


def test_the_review_passes_when_owner_writes_and_contacts_read(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    tenant = snapshot()
    actions["identity.create_group"].run(ctx(tenant, "g"))

    reviewed = actions["access.review"].run(ctx(tenant, "review"))

    assert reviewed.evidence["passed"] is True
    assert reviewed.evidence["grants"] == [
        {"subject": "fin@acme.example", "permission": "read"},
        {"subject": "ops@acme.example", "permission": "read"},
        {"subject": "owner@acme.example", "permission": "write"},
    ]


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        (Grant("ops@acme.example", Permission.WRITE), "contact ops@acme.example has write"),
        (Grant("owner@acme.example", Permission.READ), "owner owner@acme.example has read"),
        (Grant("stranger@evil.example", Permission.READ), "stranger@evil.example holds read"),
    ],
)
def test_the_review_finds_grants_that_do_not_match_the_record(
    db: Database, settings: Settings, change: Grant, finding: str
) -> None:
    actions = driver_actions(settings, db)
    tenant = snapshot()
    actions["identity.create_group"].run(ctx(tenant, "g"))
    LocalIdentity(db).add_member(tenant_id=tenant["id"], grant=change, idempotency_key="drift")

    with pytest.raises(StepFailed) as caught:
        actions["access.review"].run(ctx(tenant, "review"))

    assert not caught.value.retriable
    assert finding in str(caught.value)


def test_the_review_of_a_disabled_or_missing_group_fails(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    tenant = snapshot()
    with pytest.raises(StepFailed, match="no group"):
        actions["access.review"].run(ctx(tenant, "r1"))
    actions["identity.create_group"].run(ctx(tenant, "g"))
    actions["identity.disable_access"].run(ctx(tenant, "d"))
    with pytest.raises(StepFailed, match="disabled"):
        actions["access.review"].run(ctx(tenant, "r2"))
