"""Switching to real systems is configuration only (issue 5, point 8).

The standard onboarding and suspension runbooks (1.1) run end to end — the
public API, approvals with segregation of duties, the app's in-process worker
under uvicorn — once with every adapter switched to a real system through
``Settings`` alone, and once with the default ``Settings`` (the local drivers).
Same runbook files, same code; only the configuration differs.

Switched, each system is the real thing where it runs here and a replay of the
vendor's documented API where it does not:

- Redis (the real server on 127.0.0.1:6379, user and key prefixes of the test's own),
  SMTP (a real ``aiosmtpd`` server), a signed notification webhook (a local
  receiver that verifies each signature);
- Kubernetes, Argo CD, Vault and Keycloak: local HTTP servers answering by route
  (method + path pattern) from the exchanges recorded in
  ``tests/drivers/contracts/<vendor>/``, adapted to this test's tenant. Every
  request they saw is kept; one that matches no recorded exchange, or differs
  from it, is a problem, and the test ends with none. Vault and Keycloak are
  the stateful replays of their contract tests.

Then the test asserts what each system saw. It runs on SQLite and PostgreSQL
(the ``db`` fixture): the runbook steps record their effects in the store, so
both stores are worth the few seconds.

The tenant's health endpoint is configured (``health.base_url``) as a real
installation's would be; ``test_the_built_in_probe_sees_what_the_remote_adapters_provisioned``
checks that the built-in probe asks the configured adapters, not the local tables.
"""

from __future__ import annotations

import copy
import email
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
import uvicorn
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry

from tenantops.app import create_app
from tenantops.config import (
    AccessSettings,
    HealthSettings,
    IdentitySettings,
    NotifySettings,
    SecretsSettings,
    Settings,
    SMTPSettings,
    WorkerSettings,
)
from tenantops.db import Database
from tenantops.drivers.access.settings import RedisAccessSettings
from tenantops.drivers.actions import driver_actions
from tenantops.drivers.argocd.settings import ArgoCDSettings
from tenantops.drivers.kubernetes.rest import APPLY_PATCH
from tenantops.drivers.kubernetes.settings import KubernetesSettings
from tenantops.drivers.notify.settings import ChannelsSettings, WebhookChannel
from tenantops.drivers.secrets.settings import VaultSettings
from tenantops.runbooks.actions import ActionContext
from tenantops.runbooks.spec import load_library
from tests.conftest import Actors
from tests.drivers.test_argocd import Seen, contract, request_problems
from tests.drivers.test_identity_contract import REALM, Keycloak, keycloak_settings
from tests.drivers.test_identity_contract import _serve as serve_identity
from tests.drivers.test_notify import Inbox
from tests.drivers.test_notify_channels import WHSEC, webhook_problems
from tests.drivers.test_notify_channels import Request as Posted
from tests.drivers.test_secrets_contract import TOKEN as VAULT_TOKEN
from tests.drivers.test_secrets_contract import Vault, _handler
from tests.factories import tenant_body
from tests.servers import HOST, free_port

DEADLINE = 90.0  # seconds a runbook may take on a loaded 2-core machine
REDIS_URL = "redis://127.0.0.1:6379/0"
BEARER = "eyJhbGciOiJSUzI1NiJ9.c3dpdGNoaW5n.signature"  # Kubernetes and Argo CD
RECORDED_TENANT = "acme"  # the tenant the Argo CD and Kubernetes exchanges were recorded for
KEYCLOAK_VARIANTS = frozenset(
    {"group_exists", "group_not_found", "user_not_found", "invalid_client"}
    | {"token_without_manage_users"}
)


def wait_for(get: Callable[[], Any], what: str) -> Any:
    """Poll ``get()`` until it returns something truthy, for at most DEADLINE seconds."""
    until = time.monotonic() + DEADLINE
    while time.monotonic() < until:
        value = get()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# Replays answering by route ---------------------------------------------------------------


def adapted(exchange: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A recorded exchange with the recorded tenant's name replaced by ``tenant``."""
    text = json.dumps(exchange).replace(RECORDED_TENANT, tenant)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@dataclass
class Route:
    """A recorded exchange answering every request whose method and path fit it."""

    method: str
    pattern: re.Pattern[str]
    exchange: dict[str, Any]
    effect: Callable[[Seen, dict[str, Any]], dict[str, Any]] | None = None


@dataclass
class Routes:
    """One vendor's API from its recordings: what it saw, and what did not fit."""

    vendor: str
    routes: list[Route] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, seen: Seen) -> dict[str, Any]:
        with self.lock:
            self.seen.append(seen)
            route = next(
                (
                    r
                    for r in self.routes
                    if r.method == seen.method and r.pattern.fullmatch(seen.path)
                ),
                None,
            )
            if route is None:
                self.problems.append(
                    f"{self.vendor}: nothing recorded for {seen.method} {seen.path}"
                )
                return {"status": 404, "headers": {}, "body": {"message": "not recorded"}}
            request = route.exchange["request"]
            found = request_problems(request, seen)
            wanted_type = request.get("content_type")
            if wanted_type and seen.headers.get("content-type") != wanted_type:
                found.append(f"content type {seen.headers.get('content-type')!r}")
            if found:
                self.problems += [f"{self.vendor} {seen.method} {seen.path}: {p}" for p in found]
                return {"status": 400, "headers": {}, "body": {"message": "; ".join(found)}}
            reply = copy.deepcopy(route.exchange["response"])
            return route.effect(seen, reply) if route.effect else reply

    def calls(self) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in self.seen]


class ArgoCD(Routes):
    """Argo CD syncing the tenant's Application to the GitOps head, as a real one would."""

    def __init__(self, tenant: str, head: Callable[[], str]) -> None:
        super().__init__("argocd")
        recorded = contract("argocd", "application")["exchanges"]
        self.head = head
        self.synced: list[str] = []
        app = r"/api/v1/applications/[a-z0-9-]+"
        self.routes += [
            Route(
                "POST",
                re.compile(app + "/sync"),
                adapted(recorded["sync_started"], tenant),
                self._sync,
            ),
            Route("GET", re.compile(app), adapted(recorded["synced_healthy"], tenant), self._state),
        ]

    def _sync(self, seen: Seen, reply: dict[str, Any]) -> dict[str, Any]:
        self.synced.append(self.head())
        reply["body"]["status"]["operationState"]["operation"]["sync"]["revision"] = self.synced[-1]
        return reply

    def _state(self, seen: Seen, reply: dict[str, Any]) -> dict[str, Any]:
        status = reply["body"]["status"]
        if self.synced:
            status["sync"]["revision"] = self.synced[-1]
            newest = max(status["history"], key=lambda h: h["id"])
            status["history"].append(
                {**newest, "id": newest["id"] + 1, "revision": self.synced[-1]}
            )
        return reply


class Kubernetes(Routes):
    """The API server taking server-side applies of NetworkPolicies."""

    def __init__(self, tenant: str) -> None:
        super().__init__("kubernetes")
        recorded = contract("kubernetes", "apply")["exchanges"]
        policies = r"/apis/networking\.k8s\.io/v1/namespaces/[a-z0-9-]+/networkpolicies/[a-z0-9-]+"
        self.routes.append(
            Route("PATCH", re.compile(policies), adapted(recorded["isolate"], tenant))
        )


def _seen(handler: BaseHTTPRequestHandler) -> Seen:
    split = urlsplit(handler.path)
    raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Seen(
        method=handler.command,
        path=split.path,
        query={k: v[0] for k, v in parse_qs(split.query).items()},
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=body,
    )


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a free 127.0.0.1 port in a thread; yields its URL, always stopped."""
    server = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def replaying(routes: Routes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            reply = routes.answer(_seen(self))
            data = json.dumps(reply.get("body")).encode()
            self.send_response(reply["status"])
            for name, value in {"Content-Type": "application/json", **reply["headers"]}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url


@contextmanager
def vault_replay() -> Iterator[Vault]:
    state = Vault()
    with serving(_handler(state)) as url:
        state.url = url
        yield state


@dataclass
class Receiver:
    """A webhook endpoint: keeps each POST, answers 204 when its signature verifies."""

    posts: list[Posted] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@contextmanager
def webhook_receiver() -> Iterator[tuple[Receiver, str]]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            post = Posted("hook", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            got.posts.append(post)
            problems = webhook_problems(post)
            got.problems += problems
            self.send_response(401 if problems else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield got, url


@contextmanager
def workload() -> Iterator[tuple[list[str], str]]:
    """The tenant's own health endpoint (``{base}/{tenant}/healthz``), as deployed: serving."""
    seen: list[str] = []
    values: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(f"GET {self.path}")
            if self.path.endswith("/synthetic"):
                self._reply({"value": values.get(self.path)})
            else:
                self._reply({"state": "active", "serving": True, "checks": {"workload": True}})

        def do_PUT(self) -> None:
            seen.append(f"PUT {self.path}")
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            values[self.path] = json.loads(raw)["value"]
            self._reply({"written": True, "value": values[self.path]})

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield seen, url


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@contextmanager
def served(settings: Settings, db: Database) -> Iterator[httpx.Client]:
    """The app with its in-process worker under uvicorn on ``settings.port``; an API client."""
    config = uvicorn.Config(
        create_app(settings, db=db), host=HOST, port=settings.port, log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < until, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.05)
    api = httpx.Client(base_url=f"http://{HOST}:{settings.port}/api/v1", timeout=30)
    try:
        yield api
    finally:
        api.close()
        server.should_exit = True
        thread.join(30)


# Redis -------------------------------------------------------------------------------------


def connect(**kwargs: Any) -> redis.Redis:
    """A client that reports a dropped connection instead of reconnecting behind our back."""
    return redis.Redis.from_url(
        REDIS_URL,
        decode_responses=True,
        socket_timeout=5,
        retry=RedisRetry(NoBackoff(), 0),
        **kwargs,
    )


def command(client: redis.Redis, *args: str) -> Any:
    """One raw command (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture
def redis_names() -> Iterator[tuple[redis.Redis, RedisAccessSettings]]:
    """The real Redis and prefixes of this test's own; its users and keys go after."""
    admin = connect()
    try:
        admin.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}", pytrace=False)
    tag = uuid.uuid4().hex[:10]
    names = RedisAccessSettings(
        url=SecretStr(REDIS_URL),
        user_prefix=f"test-{tag}-",
        key_prefix=f"tenantops-test-{tag}:",
        socket_timeout_seconds=5,
        retries=0,
    )
    try:
        yield admin, names
    finally:
        for user in command(admin, "ACL", "USERS"):
            if str(user).startswith(names.user_prefix):
                admin.acl_deluser(user)
        for key in admin.scan_iter(match=f"{names.key_prefix}*"):
            admin.delete(key)
        admin.close()


# The runbooks through the API --------------------------------------------------------------


def runs(api: httpx.Client, actors: Actors, tenant: str, runbook: str) -> list[dict[str, Any]]:
    page = api.get("/runs", params={"tenant": tenant, "runbook": runbook}, headers=actors.ops)
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def finished(api: httpx.Client, actors: Actors, tenant: str, runbook: str) -> dict[str, Any]:
    """The run of ``runbook`` once it ended, with its steps by name (``steps``)."""

    def done() -> dict[str, Any] | None:
        ended = [
            r for r in runs(api, actors, tenant, runbook) if r["status"] in ("succeeded", "failed")
        ]
        return ended[0] if ended else None

    run = wait_for(done, f"{runbook} of {tenant} to finish")
    detail: dict[str, Any] = api.get(f"/runs/{run['id']}", headers=actors.ops).json()
    detail["steps"] = {s["name"]: s for s in detail["steps"]}
    trouble = {
        n: (s["status"], s["error"], [a.get("error") for a in s["attempts"]])
        for n, s in detail["steps"].items()
        if s["status"] != "succeeded"
    }
    assert run["status"] == "succeeded", trouble
    assert trouble == {}  # every step, gates included
    return detail


def onboard(api: httpx.Client, actors: Actors, body: dict[str, Any]) -> dict[str, Any]:
    """Request the tenant, approve it (governance, then security), wait for onboarding."""
    name = body["name"]
    r = api.post("/tenants", json=body, headers=actors.am)
    assert r.status_code == 201, r.text
    wait_for(lambda: runs(api, actors, name, "tenant-onboarding"), "the onboarding run")
    for who, role in [(actors.gov, "governance"), (actors.sec, "security")]:
        r = api.post(
            f"/tenants/{name}/approvals", json={"role": role, "decision": "approve"}, headers=who
        )
        assert r.status_code == 200, r.text
    run = finished(api, actors, name, "tenant-onboarding")
    assert api.get(f"/tenants/{name}", headers=actors.am).json()["state"] == "active"
    return run


def suspend(api: httpx.Client, actors: Actors, name: str) -> dict[str, Any]:
    r = api.post(
        f"/tenants/{name}/suspend",
        json={"reason": "payment breach", "incident_ref": "INC4711"},
        headers=actors.ops,
    )
    assert r.status_code == 200, r.text
    return finished(api, actors, name, "tenant-suspension")


def evidence(run: dict[str, Any], step: str) -> dict[str, Any]:
    found: dict[str, Any] = run["steps"][step]["evidence"]
    return found


def git_head(repo: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def mailed(inbox: Inbox) -> list[tuple[set[str], str]]:
    """Each message the SMTP server took: its envelope recipients and its subject."""
    found = []
    for envelope in inbox.messages:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        found.append((set(envelope.rcpt_tos), str(message["Subject"])))
    return found


# The test ----------------------------------------------------------------------------------


def test_switching_to_real_systems_is_configuration_only(
    db: Database,
    actors: Actors,
    tmp_path: Path,
    redis_names: tuple[redis.Redis, RedisAccessSettings],
) -> None:
    admin, names = redis_names
    name = "initech"
    body = tenant_body(name=name, contacts=["ops@acme.example"])
    owner = body["business_owner"]
    data = tmp_path / "switched"
    argocd = ArgoCD(name, head=lambda: git_head(data / "gitops"))
    cluster = Kubernetes(name)
    with (
        replaying(argocd) as argocd_url,
        replaying(cluster) as cluster_url,
        vault_replay() as vault,
        contextmanager(serve_identity)(
            Keycloak("keycloak", {"realm": REALM}, KEYCLOAK_VARIANTS)
        ) as keycloak,
        smtp_server() as (inbox, smtp_port),
        webhook_receiver() as (hook, hook_url),
        workload() as (probed, workload_url),
    ):
        assert isinstance(keycloak, Keycloak)
        switched = Settings(
            data_dir=data,
            port=free_port(),
            log_json=False,
            worker=WorkerSettings(in_process=True, poll_seconds=0.1),
            access=AccessSettings(adapter="redis", redis=names),
            smtp=SMTPSettings(
                host=HOST, port=smtp_port, sender="ops@tenantops.example", backoff_seconds=0
            ),
            notify=NotifySettings(
                legal=["legal@corp.example", "webhook:legal"], finance=["finance@corp.example"]
            ),
            channels=ChannelsSettings(
                webhooks={"legal": WebhookChannel(url=hook_url + "/legal", secret=SecretStr(WHSEC))}
            ),
            kubernetes=KubernetesSettings(api_url=cluster_url, token=SecretStr(BEARER)),
            argocd=ArgoCDSettings(
                url=argocd_url,
                token=SecretStr(BEARER),
                wait_seconds=30,
                poll_initial_seconds=0.05,
                poll_max_seconds=0.2,
            ),
            secrets=SecretsSettings(
                adapter="vault",
                vault=VaultSettings(url=vault.url, token=SecretStr(VAULT_TOKEN), timeout_seconds=5),
            ),
            identity=IdentitySettings(adapter="keycloak", keycloak=keycloak_settings(keycloak)),
            health=HealthSettings(base_url=workload_url + "/{tenant}/healthz"),
        )
        with served(switched, db) as api:
            onboarding = onboard(api, actors, body)
            tenant = api.get(f"/tenants/{name}", headers=actors.am).json()
            # What Vault and Keycloak held once onboarding was done.
            onboarded_refs = copy.deepcopy(vault.metadata)
            onboarded_revoked = list(vault.revoked_prefixes)
            onboarded_enabled = {u["username"]: u["enabled"] for u in keycloak.users.values()}
            # The platform's provisioning gives the tenant its Redis user (tenantops only
            # ever pauses and resumes it); the tenant is connected when it is suspended.
            user, password = f"{names.user_prefix}{name}", "s3cret-initech"
            assert user not in command(admin, "ACL", "USERS")  # onboarding leaves Redis alone
            queue = f"{names.key_prefix}{name}:jobs"
            pattern = f"{names.key_prefix}{name}:*"
            command(
                admin,
                "ACL", "SETUSER", user, "on", f">{password}", f"~{pattern}", f"&{pattern}",
                "+@all", "-@dangerous",
            )  # fmt: skip
            connected = connect(username=user, password=password, single_connection_client=True)
            connected.rpush(queue, "job-1")
            calls_before_suspension = len(cluster.seen)
            suspension = suspend(api, actors, name)

        # Argo CD: one sync per GitOps commit, each waited for until Synced/Healthy.
        synced = [s for s in argocd.seen if s.method == "POST"]
        assert [s.path for s in synced] == [f"/api/v1/applications/tenant-{name}/sync"] * 2
        assert all(s.body["name"] == f"tenant-{name}" and s.body["prune"] for s in synced)
        assert not any("revision" in s.body for s in synced)  # to the target: no rollback
        assert argocd.synced == [
            evidence(onboarding, "gitops")["commit"],
            evidence(suspension, "isolate-network")["commit"],
        ]
        for run in (onboarding, suspension):
            state = evidence(run, "argocd-sync")
            assert state["observed_by"] == "argocd"
            assert (state["sync_status"], state["health"]) == ("Synced", "Healthy")
        assert evidence(onboarding, "argocd-sync")["revision"] == argocd.synced[0]
        assert evidence(suspension, "argocd-sync")["revision"] == argocd.synced[1]
        assert evidence(onboarding, "terraform")["skipped"] is True  # not chosen

        # Kubernetes: nothing at onboarding; the deny-all applied at once at suspension.
        assert calls_before_suspension == 0
        (patch,) = cluster.seen
        assert (patch.method, patch.path) == (
            "PATCH",
            f"/apis/networking.k8s.io/v1/namespaces/{name}/networkpolicies/isolate",
        )
        assert patch.query == {"fieldManager": "tenantops", "force": "true"}
        assert patch.headers["content-type"] == APPLY_PATCH
        assert patch.body["kind"] == "NetworkPolicy"
        assert patch.body["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        isolated = evidence(suspension, "isolate-now")
        assert (isolated["kind"], isolated["name"], isolated["namespace"]) == (
            "NetworkPolicy",
            "isolate",
            name,
        )
        assert isolated["uid"]
        assert "skipped" not in isolated

        # Vault: the tenant's policy and path references, then the policy denied, the
        # tokens minted from its role revoked and every reference marked revoked.
        policy_name = f"tenant-{name}"
        created = {p: m for p, m in onboarded_refs.items() if p.startswith(f"tenants/{name}/")}
        assert {m["tenantops_status"] for m in created.values()} == {"active"}
        assert onboarded_revoked == []
        assert 'capabilities = ["deny"]' in vault.policies[policy_name]
        assert vault.revoked_prefixes == [f"auth/token/create/{policy_name}"]
        refs = {p: m for p, m in vault.metadata.items() if p.startswith(f"tenants/{name}/")}
        assert sorted(refs) == [f"tenants/{name}/app/{p}" for p in ("config", "database", "queue")]
        assert {m["tenantops_status"] for m in refs.values()} == {"revoked"}
        assert {m["owner"] for m in refs.values()} == {owner}
        assert vault.metadata[f"tenantops/stores/{tenant['id']}"]["status"] == "revoked"
        assert evidence(onboarding, "secret-store")["store"] == f"vault://secret/tenants/{name}/"
        written = [s.body["policy"] for s in vault.seen if s.path.endswith(f"/acl/{policy_name}")]
        assert 'capabilities = ["create", "read", "update", "patch", "delete"]' in written[0]
        assert vault.problems == []

        # Keycloak: the group with the owner and the contact, whose accounts are disabled.
        (group,) = keycloak.groups.values()
        assert group["name"] == f"tenant-{name}"
        members = {keycloak.users[u]["username"] for u in keycloak.members[group["id"]]}
        assert members == {owner, "ops@acme.example"}
        assert all(onboarded_enabled.values())
        assert not keycloak.user(owner)["enabled"]
        assert not keycloak.user("ops@acme.example")["enabled"]
        assert keycloak.user("sre@acme.example")["enabled"]  # not a member: untouched
        assert evidence(onboarding, "identity")["group"] == f"tenant-{name}"

        # Redis: the user is off and the open connection was closed by the server.
        assert "off" in command(admin, "ACL", "GETUSER", user)["flags"]
        with pytest.raises(redis.ConnectionError):
            connected.rpush(queue, "job-2")
        connected.close()
        clients = command(admin, "CLIENT", "LIST").splitlines()
        assert not [c for c in clients if f" user={user} " in c]
        assert admin.lrange(queue, 0, -1) == ["job-1"]  # paused, not emptied
        assert evidence(suspension, "pause-queues")["queues_paused"] is True

        # SMTP: the onboarding pack to the owner, the suspension notices to each stakeholder.
        got = mailed(inbox)
        assert [to for to, _ in got] == [
            {owner},
            {"legal@corp.example"},
            {"finance@corp.example"},
            {owner},
        ]
        assert all(name in subject for _, subject in got)

        # The webhook channel: legal's notice, signed, naming the tenant and the template.
        assert hook.problems == []
        (post,) = hook.posts
        assert post.path == "/legal"
        assert (post.json["audience"], post.json["template"], post.json["tenant"]) == (
            "legal",
            "suspension",
            name,
        )
        assert evidence(suspension, "notify-legal")["to"] == ["legal@corp.example", "webhook:legal"]
        assert evidence(onboarding, "handover")["status"] == "sent"  # delivered, not only stored

        # The tenant's own health endpoint was what verification checked.
        assert evidence(onboarding, "health-check")["url"] == f"{workload_url}/{name}/healthz"
        assert f"GET /{name}/healthz" in probed

        assert argocd.problems == []
        assert cluster.problems == []

    # The contrast: the same runbook files on the default Settings (the local drivers).
    local = Settings(
        data_dir=tmp_path / "local",
        port=free_port(),
        log_json=False,
        worker=WorkerSettings(in_process=True, poll_seconds=0.1),
    )
    with served(local, db) as api:
        local_onboarding = onboard(api, actors, tenant_body(name="umbrella"))
        local_suspension = suspend(api, actors, "umbrella")
    assert evidence(local_onboarding, "argocd-sync")["observed_by"] == "local (no cluster)"
    assert evidence(local_suspension, "isolate-now")["skipped"] is True
    assert evidence(local_suspension, "pause-queues")["queues_paused"] is True
    assert evidence(local_onboarding, "handover")["status"] == "stored"  # the outbox is the mailbox
    library = load_library()
    for switched_run, local_run in [(onboarding, local_onboarding), (suspension, local_suspension)]:
        runbook = library[switched_run["runbook_id"]]
        assert switched_run["runbook_hash"] == local_run["runbook_hash"] == runbook.hash
        version = runbook.runbook.version
        assert switched_run["runbook_version"] == local_run["runbook_version"] == version
        assert list(switched_run["steps"]) == list(local_run["steps"])


def test_the_built_in_probe_sees_what_the_remote_adapters_provisioned(
    db: Database, actors: Actors, tmp_path: Path
) -> None:
    with (
        vault_replay() as vault,
        contextmanager(serve_identity)(
            Keycloak("keycloak", {"realm": REALM}, KEYCLOAK_VARIANTS)
        ) as keycloak,
    ):
        assert isinstance(keycloak, Keycloak)
        settings = Settings(
            data_dir=tmp_path,
            log_json=False,
            worker=WorkerSettings(in_process=False),
            secrets=SecretsSettings(
                adapter="vault",
                vault=VaultSettings(url=vault.url, token=SecretStr(VAULT_TOKEN), timeout_seconds=5),
            ),
            identity=IdentitySettings(adapter="keycloak", keycloak=keycloak_settings(keycloak)),
        )
        with TestClient(create_app(settings, db=db)) as client:
            tenant = client.post("/api/v1/tenants", json=tenant_body(), headers=actors.am).json()
            actions = driver_actions(settings, db)
            for step, action in [
                ("identity", "identity.create_group"),
                ("secrets", "secrets.create_store"),
            ]:
                actions[action].run(
                    ActionContext(
                        run_id="run-1",
                        step_name=step,
                        tenant_id=tenant["id"],
                        params={},
                        idempotency_key=f"run-1/{step}",
                        attempt=1,
                        actor="oli",
                        inputs={"tenant": tenant},
                    )
                )
            probed = client.get(f"/probe/tenants/{tenant['name']}").json()
        assert keycloak.groups
        assert vault.policies
    assert probed["checks"]["identity"] is True
    assert probed["checks"]["secrets"] is True
