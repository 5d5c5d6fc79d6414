"""The secret-store port's contract, run against every adapter that can run here.

The local adapter (on SQLite and PostgreSQL) and the Vault adapter must behave
alike for a runbook. No Vault server runs here, so the Vault adapter talks to a
small HTTP server on 127.0.0.1 that replays the request/response pairs recorded
in ``tests/drivers/contracts/vault/*.json`` from Vault's API documentation: it
checks each request against its recorded shape (method, path, JSON keys, an
``X-Vault-Token``) and answers the recorded response, keeping just enough state
(KV metadata, policies, revoked lease prefixes) for what was written to be read
back. Then what only Vault shows: the documented calls it makes, what each error
answer means for a retry, ``doctor``, and that the token is never shown.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import SecretStr

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, local_drivers
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec, SecretStore, StoreState
from tenantops.drivers.secrets.settings import VaultSettings
from tenantops.drivers.secrets.vault import VaultError, VaultSecretStore
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, StepFailed
from tests.conftest import Clock

CONTRACTS = Path(__file__).parent / "contracts" / "vault"
TOKEN = "hvs.CAESIJ-test-token-never-shown-9f8e7d"  # a test token
MOUNT = "secret"


def recordings(name: str) -> dict[str, dict[str, Any]]:
    loaded = json.loads((CONTRACTS / f"{name}.json").read_text())
    return {x["name"]: x for x in loaded["exchanges"]}


ERRORS = recordings("errors")


# The replaying Vault ----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    token: bool
    body: Any
    namespace: str | None = None


@dataclass
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    required: tuple[str, ...]
    allowed: tuple[str, ...] | None


def _route(x: dict[str, Any]) -> Route:
    req = x["request"]
    parts = re.split(r"(\{[a-z]+\})", req["path"])
    regex = "".join(
        "(?P<mount>[^/]+)"
        if p == "{mount}"
        else "(?P<rest>.+)"
        if p.startswith("{")
        else re.escape(p)
        for p in parts
    )
    return Route(
        x["name"],
        req["method"],
        re.compile(f"^{regex}$"),
        tuple(req.get("required_keys", ())),
        tuple(req["allowed_keys"]) if "allowed_keys" in req else None,
    )


@dataclass
class Vault:
    """What the replaying server holds and saw; tests script failures through it."""

    token: str = TOKEN
    exchanges: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    # KV versions an owner wrote (``<mount>/data/``, which the adapter never calls):
    # path -> version -> created_time, answered in the metadata's ``versions``.
    versions: dict[str, dict[int, str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    revoked_prefixes: list[str] = field(default_factory=list)
    capabilities: dict[str, list[str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    script: list[tuple[str, str]] = field(default_factory=list)  # (path part, error name)
    sealed: bool = False
    url: str = ""

    def __post_init__(self) -> None:
        for name in ("kv2-metadata", "policies", "leases", "health", "token", "capabilities"):
            for x in recordings(name).values():
                self.exchanges[x["name"]] = x
                answered_by_state = {
                    "read_metadata_missing",
                    "read_metadata_versions",
                    "list_missing",
                    "sealed",
                }
                if x["name"] not in answered_by_state and "verdict" not in x:
                    self.routes.append(_route(x))

    def fail(self, error: str, *, on: str = "") -> None:
        """Answer the next request whose path contains ``on`` with the recorded ``error``."""
        self.script.append((on, error))

    def answer(
        self, method: str, path: str, token: str | None, raw: bytes, namespace: str | None = None
    ) -> dict[str, Any]:
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(method, path, token is not None, body, namespace))
        if "/data/" in path and f"/{MOUNT}/" in path:
            self.problems.append(f"{method} {path}: a secret's value was touched")
        for i, (on, error) in enumerate(self.script):
            if on in path:
                del self.script[i]
                return ERRORS[error]["response"]
        if token is None:
            self.problems.append(f"{method} {path}: no X-Vault-Token")
        if token != self.token and path != "/v1/sys/health":  # health is unauthenticated
            return ERRORS["permission_denied"]["response"]
        route = next((r for r in self.routes if r.method == method and r.pattern.match(path)), None)
        if route is None:
            self.problems.append(f"{method} {path}: no documented route")
            return ERRORS["no_such_mount"]["response"]
        keys = set(body) if isinstance(body, dict) else set()
        missing = set(route.required) - keys
        extra = keys - set(route.allowed) if route.allowed is not None else set()
        if missing or extra:
            self.problems.append(f"{method} {path}: missing {missing}, unexpected {extra}")
            return ERRORS["bad_request"]["response"]
        match = route.pattern.match(path)
        assert match is not None
        return self._state(route.name, match.groupdict(), body)

    def _reply(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.exchanges[name]["response"])

    def _state(self, name: str, g: dict[str, str], body: Any) -> dict[str, Any]:
        if g.get("mount") not in (None, MOUNT):
            return ERRORS["no_such_mount"]["response"]
        rest = g.get("rest", "")
        if name == "write_metadata":
            self.metadata[rest] = dict(body["custom_metadata"])
        elif name == "read_metadata":
            if rest not in self.metadata:
                return self._reply("read_metadata_missing")
            reply = self._reply(name)
            reply["body"]["data"]["custom_metadata"] = dict(self.metadata[rest])
            if rest in self.versions:
                written = self._reply("read_metadata_versions")["body"]["data"]
                written["current_version"] = max(self.versions[rest])
                written["versions"] = {
                    str(v): {**written["versions"]["1"], "created_time": at}
                    for v, at in self.versions[rest].items()
                }
                reply["body"]["data"].update(
                    {k: written[k] for k in ("current_version", "oldest_version", "versions")}
                )
            return reply
        elif name == "list":
            folder = rest.rstrip("/") + "/"
            keys = sorted(
                {
                    p[len(folder) :].split("/")[0] + ("/" if "/" in p[len(folder) :] else "")
                    for p in self.metadata
                    if p.startswith(folder)
                }
            )
            if not keys:
                return self._reply("list_missing")
            reply = self._reply(name)
            reply["body"]["data"]["keys"] = keys
            return reply
        elif name == "write_policy":
            self.policies[rest] = body["policy"]
        elif name == "revoke_prefix":
            self.revoked_prefixes.append(rest)
        elif name == "active" and self.sealed:
            return self._reply("sealed")
        elif name == "lookup_self":
            reply = self._reply(name)
            reply["body"]["data"]["id"] = self.token  # Vault echoes the token it was sent
            return reply
        elif name == "capabilities_self":
            full = ["create", "read", "update", "list", "sudo"]
            answer = {p: self.capabilities.get(p, full) for p in body["paths"]}
            if len(body["paths"]) == 1:
                answer["capabilities"] = answer[body["paths"][0]]
            return {"status": 200, "headers": {"Content-Type": "application/json"}, "body": answer}
        return self._reply(name)

    def calls(self) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in self.seen]


def _handler(vault: Vault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            path = self.path.split("?")[0]
            method = "LIST" if "list=true" in self.path else self.command
            reply = vault.answer(
                method,
                path,
                self.headers.get("X-Vault-Token"),
                raw,
                self.headers.get("X-Vault-Namespace"),
            )
            data = b"" if "body" not in reply else json.dumps(reply["body"]).encode()
            self.send_response(reply["status"])
            for k, v in reply.get("headers", {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_LIST = do_DELETE = handle_any  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def vault() -> Iterator[Vault]:
    state = Vault()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert state.problems == []


Make = Callable[..., VaultSecretStore]


@pytest.fixture
def make(db: Database, vault: Vault) -> Iterator[Make]:
    made: list[VaultSecretStore] = []

    def build(**changes: Any) -> VaultSecretStore:
        settings = VaultSettings.model_validate(
            {"url": vault.url, "token": SecretStr(TOKEN), "timeout_seconds": 5, **changes}
        )
        made.append(VaultSecretStore(db, settings))
        return made[-1]

    yield build
    for adapter in made:
        adapter.close()


@pytest.fixture
def vs(make: Make) -> VaultSecretStore:
    return make()


class Secrets(SecretStore, Protocol):
    def effect_count(self, *, tenant_id: str | None = None) -> int: ...


@pytest.fixture(params=["local", "vault"])
def secrets(request: pytest.FixtureRequest, db: Database) -> Secrets:
    if request.param == "local":
        return LocalSecrets(db)
    adapter: VaultSecretStore = request.getfixturevalue("vs")
    return adapter


# The contract -----------------------------------------------------------------------------


def view(state: StoreState | None) -> object:
    """What a runbook sees of a store, whichever backend holds it."""
    if state is None:
        return None
    return (
        state.tenant_name,
        state.prefix,
        state.status,
        [(p.path, p.status, p.version, dict(p.metadata)) for p in state.paths],
    )


def make_store(secrets: Secrets, name: str = "acme", key: str = "c") -> str:
    tid = new_id()
    secrets.create_store(
        tenant_id=tid,
        tenant_name=name,
        paths=[PathSpec("app/database", {"owner": "team-a"}), PathSpec("app/queue")],
        idempotency_key=key,
    )
    return tid


def test_a_store_holds_path_references_under_the_tenant_prefix(secrets: Secrets) -> None:
    tid = make_store(secrets)
    state = secrets.get_store(tenant_id=tid)

    assert view(state) == (
        "acme",
        "tenants/acme/",
        "active",
        [
            ("tenants/acme/app/database", "active", 1, {"owner": "team-a"}),
            ("tenants/acme/app/queue", "active", 1, {}),
        ],
    )
    assert state is not None
    assert state.store_ref.endswith("/tenants/acme/")


def test_a_tenant_without_a_store_has_none(secrets: Secrets) -> None:
    assert secrets.get_store(tenant_id=new_id()) is None


def test_create_returns_what_get_reads_and_converges_when_run_again(secrets: Secrets) -> None:
    tid = new_id()
    paths = [PathSpec("app/database", {"owner": "team-a"})]
    first = secrets.create_store(
        tenant_id=tid, tenant_name="acme", paths=paths, idempotency_key="c1"
    )
    read = secrets.get_store(tenant_id=tid)
    again = secrets.create_store(
        tenant_id=tid,
        tenant_name="acme",
        paths=[*paths, PathSpec("app/queue")],
        idempotency_key="c2",
    )

    assert view(first) == view(read)
    assert [(p.path, p.version) for p in again.paths] == [
        ("tenants/acme/app/database", 1),
        ("tenants/acme/app/queue", 1),
    ]


def test_revoke_cuts_every_reference_of_the_tenant_and_only_its(secrets: Secrets) -> None:
    acme = make_store(secrets, "acme", "a")
    other = make_store(secrets, "acme-two", "b")  # its prefix starts like acme's

    revoked = secrets.revoke(tenant_id=acme, idempotency_key="rev")

    assert revoked.status == "revoked"
    assert {p.status for p in revoked.paths} == {"revoked"}
    assert view(secrets.get_store(tenant_id=acme)) == view(revoked)
    untouched = secrets.get_store(tenant_id=other)
    assert untouched is not None
    assert untouched.status == "active"
    assert {p.status for p in untouched.paths} == {"active"}


def test_restore_brings_revoked_references_back_as_new_versions(secrets: Secrets) -> None:
    tid = make_store(secrets)
    secrets.revoke(tenant_id=tid, idempotency_key="rev")

    restored = secrets.restore(tenant_id=tid, idempotency_key="res")

    assert restored.status == "active"
    assert [(p.status, p.version) for p in restored.paths] == [("active", 2), ("active", 2)]
    assert view(secrets.get_store(tenant_id=tid)) == view(restored)


def test_restore_keeps_when_each_secret_was_rotated_and_when_the_store_was_revoked(
    secrets: Secrets, clock: Clock
) -> None:
    tid = make_store(secrets)
    created = secrets.get_store(tenant_id=tid)
    assert created is not None
    assert created.revoked_at is None
    clock.advance(days=10)
    revoked_at = clock.now
    secrets.revoke(tenant_id=tid, idempotency_key="rev")
    clock.advance(days=2)

    restored = secrets.restore(tenant_id=tid, idempotency_key="res")

    # Its value never changed: a restore is no rotation (what was revoked may have leaked).
    assert [p.rotated_at for p in restored.paths] == [p.rotated_at for p in created.paths]
    assert restored.revoked_at == revoked_at
    assert view(secrets.get_store(tenant_id=tid)) == view(restored)
    assert secrets.restore(tenant_id=tid, idempotency_key="res") == restored  # as recorded


def test_a_path_added_to_a_revoked_store_is_revoked_too(secrets: Secrets) -> None:
    tid = make_store(secrets)
    secrets.revoke(tenant_id=tid, idempotency_key="rev")

    state = secrets.add_path(
        tenant_id=tid, path=PathSpec("app/cache", {"owner": "team-b"}), idempotency_key="add"
    )

    added = [p for p in state.paths if p.path == "tenants/acme/app/cache"]
    assert [(p.status, p.version, dict(p.metadata)) for p in added] == [
        ("revoked", 1, {"owner": "team-b"})
    ]


def test_add_path_updates_metadata_and_empty_metadata_keeps_it(secrets: Secrets) -> None:
    tid = make_store(secrets)

    updated = secrets.add_path(
        tenant_id=tid, path=PathSpec("app/database", {"owner": "team-b"}), idempotency_key="a1"
    )
    kept = secrets.add_path(tenant_id=tid, path=PathSpec("app/database"), idempotency_key="a2")

    assert updated.paths[0].metadata == {"owner": "team-b"}
    assert view(kept) == view(updated)


def test_a_replayed_step_returns_its_record_and_changes_nothing(secrets: Secrets) -> None:
    tid = make_store(secrets)
    first = secrets.revoke(tenant_id=tid, idempotency_key="rev")
    secrets.restore(tenant_id=tid, idempotency_key="res")

    replay = secrets.revoke(tenant_id=tid, idempotency_key="rev")

    assert replay == first
    now = secrets.get_store(tenant_id=tid)
    assert now is not None
    assert now.status == "active"
    assert secrets.effect_count(tenant_id=tid) == 3


def test_rotate_makes_a_new_generation_of_one_path_and_says_when(
    secrets: Secrets, clock: Clock
) -> None:
    tid = make_store(secrets)
    clock.advance(days=30)

    rotated = secrets.rotate(tenant_id=tid, path="app/database", idempotency_key="rot")

    database, queue = rotated.paths
    assert (database.version, queue.version) == (2, 1)
    assert database.rotated_at == clock.now
    assert queue.rotated_at is None or queue.rotated_at < clock.now
    read = secrets.get_store(tenant_id=tid)
    assert read is not None
    assert view(read) == view(rotated)
    assert read.paths[0].rotated_at == clock.now
    assert secrets.rotate(tenant_id=tid, path="app/database", idempotency_key="rot") == rotated
    assert secrets.effect_count(tenant_id=tid) == 2


def test_rotating_a_path_the_store_does_not_hold_is_permanent(secrets: Secrets) -> None:
    tid = make_store(secrets)
    with pytest.raises(DriverError) as refused:
        secrets.rotate(tenant_id=tid, path="app/nothing", idempotency_key="rot")
    assert refused.value.retry is Retry.PERMANENT
    assert "app/nothing" in str(refused.value)


def test_a_key_reused_for_another_operation_is_refused(secrets: Secrets) -> None:
    tid = make_store(secrets, key="k")
    before = view(secrets.get_store(tenant_id=tid))

    with pytest.raises(DriverError) as caught:
        secrets.revoke(tenant_id=tid, idempotency_key="k")

    assert caught.value.retry is Retry.PERMANENT
    assert view(secrets.get_store(tenant_id=tid)) == before


def test_revoking_a_tenant_without_a_store_needs_a_human(secrets: Secrets) -> None:
    tid = new_id()
    for call in (secrets.revoke, secrets.restore):
        with pytest.raises(DriverError) as caught:
            call(tenant_id=tid, idempotency_key=f"{call.__name__}-k")
        assert caught.value.retry is Retry.NEEDS_HUMAN
    assert secrets.effect_count(tenant_id=tid) == 0


@pytest.mark.parametrize(
    "spec",
    [
        PathSpec("../etc"),
        PathSpec("App/Upper"),
        PathSpec("a//b"),
        PathSpec("app/db", {"password": "hunter2"}),
        PathSpec("app/db", {"api_token": "hunter2"}),
    ],
)
def test_a_bad_path_or_value_like_metadata_is_refused_before_anything_changes(
    secrets: Secrets, spec: PathSpec
) -> None:
    tid = new_id()
    with pytest.raises(DriverError) as caught:
        secrets.create_store(tenant_id=tid, tenant_name="acme", paths=[spec], idempotency_key="c")
    assert caught.value.retry is Retry.PERMANENT
    assert secrets.get_store(tenant_id=tid) is None
    assert secrets.effect_count(tenant_id=tid) == 0


# Vault only: the documented calls ---------------------------------------------------------


def test_the_lifecycle_is_made_of_documented_metadata_policy_and_lease_calls(
    vault: Vault, vs: VaultSecretStore
) -> None:
    tid = make_store(vs)
    policy = "tenant-acme"
    active = vault.policies[policy]
    vs.revoke(tenant_id=tid, idempotency_key="r")
    denied = vault.policies[policy]
    vs.restore(tenant_id=tid, idempotency_key="s")

    assert 'path "secret/data/tenants/acme/*"' in active
    assert 'path "secret/metadata/tenants/acme/*"' in active
    assert "deny" not in active
    assert denied.count('["deny"]') == 2
    assert vault.policies[policy] == active
    assert vault.revoked_prefixes == ["auth/token/create/tenant-acme"]
    assert ("PUT", "/v1/sys/leases/revoke-prefix/auth/token/create/tenant-acme") in vault.calls()
    assert ("LIST", "/v1/secret/metadata/tenants/acme") in vault.calls()
    assert all(s.token for s in vault.seen)
    assert not [c for c in vault.calls() if "/data/" in c[1]]
    # The store record: status in custom_metadata, never in the tenant's own prefix.
    assert vault.metadata[f"tenantops/stores/{tid}"]["status"] == "active"
    # Restoring is a new generation of the reference, not a rotation: the value did not
    # change, so no rotation is recorded; the store record keeps when it was revoked.
    restored = dict(vault.metadata["tenants/acme/app/database"])
    assert "tenantops_rotated_at" not in restored
    revoked_at = vault.metadata[f"tenantops/stores/{tid}"]["revoked_at"]
    assert datetime.fromisoformat(revoked_at).tzinfo is not None
    assert restored == {
        "owner": "team-a",
        "tenantops_status": "active",
        "tenantops_version": "2",
    }


def test_a_value_its_owner_wrote_counts_as_the_last_rotation_and_none_before(
    vault: Vault, vs: VaultSecretStore, clock: Clock
) -> None:
    tid = make_store(vs)
    # The owner wrote two versions of the database secret (vault kv put); none of the queue's.
    vault.versions["tenants/acme/app/database"] = {
        1: "2029-10-01T08:00:00.123456789Z",
        2: "2029-12-24T17:30:00.5Z",
    }

    state = vs.get_store(tenant_id=tid)
    assert state is not None
    assert [p.rotated_at for p in state.paths] == [
        datetime(2029, 12, 24, 17, 30, 0, 500000, tzinfo=UTC),
        None,
    ]
    # A rotation recorded later than the last version wins; an earlier one would not.
    rotated = vs.rotate(tenant_id=tid, path="app/database", idempotency_key="rot")
    assert rotated.paths[0].rotated_at == clock.now
    assert rotated.paths[0].metadata == {"owner": "team-a"}
    assert not [c for c in vault.calls() if "/data/" in c[1]]


def test_a_namespace_goes_with_every_call(vault: Vault, make: Make) -> None:
    make_store(make(namespace="team-a"))
    assert {s.namespace for s in vault.seen} == {"team-a"}


def test_a_replayed_step_does_not_call_vault(vault: Vault, vs: VaultSecretStore) -> None:
    tid = make_store(vs)
    vs.revoke(tenant_id=tid, idempotency_key="r")
    calls = len(vault.seen)

    vs.revoke(tenant_id=tid, idempotency_key="r")

    assert len(vault.seen) == calls


def test_metadata_written_outside_is_kept_and_our_keys_are_reserved(
    vault: Vault, vs: VaultSecretStore
) -> None:
    with pytest.raises(DriverError) as caught:
        vs.create_store(
            tenant_id=new_id(),
            tenant_name="acme",
            paths=[PathSpec("app/db", {"tenantops_status": "active"})],
            idempotency_key="c",
        )
    assert caught.value.retry is Retry.PERMANENT
    assert vault.seen == []


# Vault only: what an error means ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_recorded_error_maps_to_its_verdict_and_records_nothing(
    vault: Vault, vs: VaultSecretStore, name: str
) -> None:
    tid = make_store(vs)
    vault.fail(name, on="/sys/policies/acl/")

    with pytest.raises(VaultError) as caught:
        vs.revoke(tenant_id=tid, idempotency_key="r")

    recorded = ERRORS[name]
    assert caught.value.retry.value == recorded["verdict"]
    assert caught.value.status == recorded["response"]["status"]
    assert caught.value.retry_after == recorded.get("retry_after")
    assert vs.effect_count(tenant_id=tid) == 1  # only the create
    assert TOKEN not in str(caught.value)


def test_a_rate_limit_is_retried_after_what_vault_asks(vault: Vault, vs: VaultSecretStore) -> None:
    vault.fail("rate_limited", on="/metadata/")

    with pytest.raises(VaultError) as caught:
        make_store(vs)

    assert caught.value.retriable
    assert caught.value.retry_after == 7
    assert "retry after 7s" in str(caught.value)


def test_a_step_that_failed_half_way_converges_when_run_again(
    vault: Vault, vs: VaultSecretStore
) -> None:
    tid = make_store(vs)
    vault.fail("internal_error", on="/sys/leases/revoke-prefix/")  # after the policy went deny

    with pytest.raises(VaultError) as caught:
        vs.revoke(tenant_id=tid, idempotency_key="r")
    again = vs.revoke(tenant_id=tid, idempotency_key="r")

    assert caught.value.retriable
    assert again.status == "revoked"
    assert {p.status for p in again.paths} == {"revoked"}
    assert vault.revoked_prefixes == ["auth/token/create/tenant-acme"]


def test_a_missing_mount_on_write_is_permanent(make: Make) -> None:
    store = make(kv_mount="nosuchmount")
    with pytest.raises(VaultError) as caught:
        make_store(store)
    assert caught.value.retry is Retry.PERMANENT
    assert caught.value.status == 404


def test_a_wrong_token_needs_a_human_and_is_never_shown(make: Make) -> None:
    bad = make(token=SecretStr("hvs.not-the-token-xyz"))
    with pytest.raises(VaultError) as caught:
        make_store(bad)
    rows = bad.check()

    assert caught.value.retry is Retry.NEEDS_HUMAN
    shown = f"{caught.value} {rows} {bad!r} {bad.settings!r}"
    assert "not-the-token-xyz" not in shown
    assert [(r.check, r.ok) for r in rows] == [
        ("vault reachable", True),
        ("vault unsealed", True),
        ("vault token valid", False),
    ]


def test_an_unreachable_vault_is_worth_a_retry(make: Make) -> None:
    down = make(url="http://127.0.0.1:1")
    for call in (lambda: make_store(down), lambda: down.get_store(tenant_id="t")):
        with pytest.raises(VaultError) as caught:
            call()
        assert caught.value.retry is Retry.RETRIABLE
    assert down.effect_count() == 0
    rows = down.check()
    assert [(r.check, r.ok) for r in rows] == [("vault reachable", False)]


def test_the_token_never_reaches_logs_errors_or_reprs(
    vault: Vault, vs: VaultSecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tid = make_store(vs)
    vs.revoke(tenant_id=tid, idempotency_key="r")
    vault.fail("permission_denied")
    with pytest.raises(VaultError) as caught:
        vs.restore(tenant_id=tid, idempotency_key="s")
    rows = vs.check()  # lookup-self answers with the token itself in data.id

    shown = f"{caplog.text} {caught.value} {caught.value!r} {rows} {vs!r} {vs.settings!r}"
    assert TOKEN not in shown
    assert vs.settings.token.get_secret_value() == TOKEN


# Vault only: doctor -----------------------------------------------------------------------


def test_doctor_passes_with_every_capability(vs: VaultSecretStore) -> None:
    rows = vs.check()
    assert [r for r in rows if not r.ok] == []
    assert [r.check for r in rows][:3] == ["vault reachable", "vault unsealed", "vault token valid"]
    assert "approle-tenantops" in rows[2].detail
    assert {
        "vault may write path references",
        "vault may write store records",
        "vault may write tenant policies",
        "vault may revoke leases",
    } <= {r.check for r in rows}


def test_doctor_says_when_vault_is_sealed(vault: Vault, vs: VaultSecretStore) -> None:
    vault.sealed = True
    rows = vs.check()
    assert [(r.check, r.ok) for r in rows] == [("vault reachable", True), ("vault unsealed", False)]
    assert "unseal" in rows[1].fix


def test_doctor_names_a_missing_capability_and_its_fix(vault: Vault, vs: VaultSecretStore) -> None:
    vault.capabilities["sys/leases/revoke-prefix/auth/token/create/tenant-doctor-probe"] = [
        "update"
    ]
    rows = vs.check()

    failed = {r.check: r for r in rows if not r.ok}
    assert set(failed) == {"vault may revoke leases"}
    assert "sudo" in failed["vault may revoke leases"].detail
    assert 'path "sys/leases/revoke-prefix/*"' in failed["vault may revoke leases"].fix


# Vault behind the runbook actions ----------------------------------------------------------


def test_the_runbook_actions_run_on_vault_and_keep_its_verdicts(
    vault: Vault, vs: VaultSecretStore, db: Database, settings: Settings
) -> None:
    drivers = dataclasses.replace(local_drivers(settings, db), secrets=vs)
    actions = driver_actions(settings, db, drivers=drivers)
    tenant = {"id": new_id(), "name": "acme", "business_owner": "o@acme.example"}

    def run(action: str, key: str) -> dict[str, Any]:
        ctx = ActionContext(
            run_id="run-1",
            step_name="secrets",
            tenant_id=tenant["id"],
            params={},
            idempotency_key=key,
            attempt=1,
            actor="amy",
            inputs={"tenant": tenant},
        )
        return dict(actions[action].run(ctx).evidence)

    created = run("secrets.create_store", "c")
    vault.fail("sealed", on="/sys/policies/acl/")
    with pytest.raises(StepFailed) as sealed:
        run("secrets.revoke", "r")
    revoked = run("secrets.revoke", "r")  # the step's retry, once Vault is unsealed
    vault.fail("permission_denied")
    with pytest.raises(StepFailed) as denied:
        run("secrets.restore", "s")

    assert created["store"] == "vault://secret/tenants/acme/"
    assert set(created["paths"]) == {
        "tenants/acme/app/config",
        "tenants/acme/app/database",
        "tenants/acme/app/queue",
    }
    assert sealed.value.retriable
    assert revoked["status"] == "revoked"
    assert not denied.value.retriable
    assert "needs_human" in str(denied.value)
    assert TOKEN not in f"{sealed.value} {denied.value}"
