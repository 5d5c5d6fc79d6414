"""The identity-provider port's contract, run against every adapter that can run here.

The local adapter (on SQLite and PostgreSQL), the Keycloak adapter and the Entra
adapter must behave alike for a runbook. No Keycloak or Entra ID runs here, so
each remote adapter talks to a small HTTP server on 127.0.0.1 that replays the
request/response pairs recorded in ``tests/drivers/contracts/{keycloak,entra}/``
from the vendors' API documentation. The server checks every request against
its recorded shape (method, path, query and body keys, a bearer token) and
answers the recorded response, keeping just enough state (groups, users,
membership) for what was written to be read back; anything off-contract is
collected in ``problems`` and fails the test. Both page their lists as the
vendors do: Keycloak answers ``first``/``max`` slices (``max`` 100 when absent),
Graph 100 entries unless ``$top`` (at most 999, or the fake's lower ``max_top``)
and an ``@odata.nextLink`` with a ``$skiptoken`` while more remain. Then what
only a vendor shows: the documented calls, paging past the first page, what each
error answer means for a retry, ``doctor``, and that neither the client secret
nor the bearer token is ever shown.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest
from pydantic import SecretStr

from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry, retry_after
from tenantops.drivers.identity.entra import EntraIdentity
from tenantops.drivers.identity.keycloak import KeycloakIdentity
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.identity.port import Grant, IdentityProvider, Permission
from tenantops.drivers.identity.settings import EntraSettings, IdentityError, KeycloakSettings
from tenantops.kit.ids import new_id

CONTRACTS = Path(__file__).parent / "contracts"
SECRET = "kc-and-entra-client-secret-never-shown-0d9c"
REALM = "tenants"
DIRECTORY = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USERS = ("owner@acme.example", "ops@acme.example", "sre@acme.example")

OWNER = Grant("Owner@Acme.example", Permission.WRITE)
CONTACT = Grant("ops@acme.example", Permission.READ)
SRE = "sre@acme.example"


def recordings(vendor: str, name: str) -> dict[str, dict[str, Any]]:
    loaded = json.loads((CONTRACTS / vendor / f"{name}.json").read_text())
    return {x["name"]: x for x in loaded["exchanges"]}


# The replaying servers --------------------------------------------------------------------


@dataclass
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    request: dict[str, Any]


def _route(x: dict[str, Any], fixed: dict[str, str]) -> Route:
    req = x["request"]
    parts = re.split(r"(\{[a-z]+\})", req["path"])
    regex = "".join(
        re.escape(fixed[p[1:-1]])
        if p.startswith("{") and p[1:-1] in fixed
        else f"(?P<{p[1:-1]}>[^/]+)"
        if p.startswith("{")
        else re.escape(p)
        for p in parts
    )
    return Route(x["name"], req["method"], re.compile(f"^{regex}$"), req)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any
    status: int = 0


Reply = dict[str, Any]


@dataclass
class Replay:
    """A vendor's API replayed from its recordings; tests script failures through it."""

    vendor: str
    fixed: dict[str, str]
    variants: frozenset[str]
    exchanges: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    script: list[tuple[str, str, Reply]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    token_exchange: str = "token"
    base: str = ""

    def __post_init__(self) -> None:
        for name in ("token", "groups", "users"):
            for x in recordings(self.vendor, name).values():
                self.exchanges[x["name"]] = x
                if x["name"] not in self.variants:
                    self.routes.append(_route(x, self.fixed))
        self.errors = recordings(self.vendor, "errors")

    def fail(self, error: str, *, on: str = "", method: str = "", times: int = 1) -> None:
        """Answer the next ``times`` requests whose ``path?query`` holds ``on`` with ``error``."""
        reply = self.errors[error]["response"]
        self.script.extend([(method, on, reply)] * times)

    def answer_once(self, reply: Reply, *, on: str, method: str = "") -> None:
        self.script.append((method, on, reply))

    def reply(self, name: str) -> Reply:
        return copy.deepcopy(self.exchanges[name]["response"])

    def error(self, name: str) -> Reply:
        """The recorded error answer ``name`` (errors.json)."""
        reply: Reply = self.errors[name]["response"]
        return reply

    def answer(
        self, method: str, path: str, query: dict[str, str], auth: str | None, body: Any
    ) -> Reply:
        seen = Seen(method, path, query, auth, body)
        self.seen.append(seen)
        target = f"{path}?{'&'.join(f'{k}={v}' for k, v in query.items())}"
        for i, (m, on, reply) in enumerate(self.script):
            if on in target and m in ("", method):
                del self.script[i]
                return reply
        route = next((r for r in self.routes if r.method == method and r.pattern.match(path)), None)
        if route is None:
            self.problems.append(f"{method} {path}: no documented route")
            return self.error("not_found")
        req = route.request
        if req.get("auth", True):
            if auth is None:
                self.problems.append(f"{method} {path}: no Authorization header")
                return self.error("unauthorized")
            if not auth.startswith("Bearer ") or auth[7:] not in self.issued:
                return self.error("unauthorized")
        elif auth is not None and "Bearer" in auth:
            self.problems.append(f"{method} {path}: a bearer token sent to the token endpoint")
        extra_query = set(query) - set(req.get("query_keys", ()))
        if extra_query:
            self.problems.append(f"{method} {path}: undocumented query {extra_query}")
        keys = set(body) if isinstance(body, dict) else set()
        missing = set(req.get("required_keys", ())) - keys
        extra = keys - set(req["allowed_keys"]) if "allowed_keys" in req else set()
        wrong = {
            k
            for k, v in req.get("values", {}).items()
            if isinstance(body, dict) and body.get(k) != v
        }
        if missing or extra or wrong:
            self.problems.append(
                f"{method} {path}: missing {missing}, extra {extra}, wrong {wrong}"
            )
        if req.get("form") and not isinstance(body, dict):
            self.problems.append(f"{method} {path}: not a form")
        match = route.pattern.match(path)
        assert match is not None
        groups = {k: unquote(v) for k, v in match.groupdict().items()}
        if route.name == "token":
            if not isinstance(body, dict) or body.get("client_secret") != SECRET:
                return self.reply("invalid_client")
            reply = self.reply(self.token_exchange)
            self.issued.add(reply["body"]["access_token"])
            return reply
        return self.state(route.name, groups, query, body)

    def state(self, name: str, g: dict[str, str], query: dict[str, str], body: Any) -> Reply:
        raise NotImplementedError

    def enabled(self) -> dict[str, bool]:
        """Whether each account (by id) may sign in."""
        raise NotImplementedError

    def calls(self) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in self.seen]


@dataclass
class Keycloak(Replay):
    """Keycloak's Admin REST API: groups with attributes, users, membership."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    page_size: int = 100  # what a list answers when ``max`` is not given

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in USERS:
            self.add_user(name)

    def add_user(self, name: str) -> dict[str, Any]:
        uid = str(uuid.uuid4())
        self.users[uid] = {"id": uid, "username": name, "email": name, "enabled": True}
        return self.users[uid]

    def user(self, name: str) -> dict[str, Any]:
        return next(u for u in self.users.values() if u["username"] == name)

    def enabled(self) -> dict[str, bool]:
        return {uid: bool(u["enabled"]) for uid, u in self.users.items()}

    def page(self, found: list[Any], query: dict[str, str]) -> list[Any]:
        """One page as Keycloak answers it: ``found[first:first + max]``."""
        first, size = int(query.get("first", "0")), int(query.get("max", str(self.page_size)))
        if first < 0 or size < 0:
            self.problems.append(f"a negative first/max {query}")
        return found[first : first + size]

    def state(self, name: str, g: dict[str, str], query: dict[str, str], body: Any) -> Reply:
        reply = self.reply(name)
        if name == "search_groups":
            found = list(self.groups.values())
            if "q" in query:
                key, _, value = query["q"].partition(":")
                found = [x for x in found if x["attributes"].get(key) == [value]]
            template = reply["body"][0]
            reply["body"] = [{**template, **copy.deepcopy(x)} for x in self.page(found, query)]
        elif name == "create_group":
            if any(x["name"] == body["name"] for x in self.groups.values()):
                return self.reply("group_exists")
            gid = str(uuid.uuid4())
            self.groups[gid] = {
                "id": gid,
                "name": body["name"],
                "path": f"/{body['name']}",
                "attributes": copy.deepcopy(body.get("attributes", {})),
            }
            self.members[gid] = set()
            reply["headers"]["Location"] = f"{self.base}/admin/realms/{REALM}/groups/{gid}"
        elif name == "update_group":
            if g["id"] not in self.groups:
                return self.reply("group_not_found")
            self.groups[g["id"]].update(name=body["name"], attributes=body.get("attributes", {}))
        elif name == "group_members":
            if g["id"] not in self.groups:
                return self.reply("group_not_found")
            template = reply["body"][0]
            members = self.page(sorted(self.members[g["id"]]), query)
            reply["body"] = [{**template, **self.users[u]} for u in members]
        elif name == "find_users":
            key = "username" if "username" in query else "email"
            if query.get("exact") != "true":
                self.problems.append("a user looked up without exact=true")
            template = reply["body"][0]
            reply["body"] = [{**template, **u} for u in self.users.values() if u[key] == query[key]]
        elif name == "update_user":
            if g["id"] not in self.users:
                return self.reply("user_not_found")
            self.users[g["id"]]["enabled"] = body["enabled"]
        elif name in ("join_group", "leave_group"):
            if g["id"] not in self.users:
                return self.reply("user_not_found")
            if g["group"] not in self.groups:
                return self.reply("group_not_found")
            change = self.members[g["group"]]
            change.add(g["id"]) if name == "join_group" else change.discard(g["id"])
        return reply


@dataclass
class Graph(Replay):
    """Microsoft Graph v1.0: security groups, users, membership references."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    extensions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    page_size: int = 100  # a page without $top
    max_top: int = 999  # the most a page holds, whatever $top asks (some queries: fewer)
    skiptokens: dict[str, tuple[str, dict[str, str], int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in USERS:
            self.add_user(name)

    def add_user(self, name: str) -> dict[str, Any]:
        uid = str(uuid.uuid4())
        self.users[uid] = {"id": uid, "userPrincipalName": name, "accountEnabled": True}
        return self.users[uid]

    def user(self, name: str) -> dict[str, Any]:
        return next(u for u in self.users.values() if u["userPrincipalName"] == name)

    def enabled(self) -> dict[str, bool]:
        return {uid: bool(u["accountEnabled"]) for uid, u in self.users.items()}

    def page(
        self, name: str, path: str, found: list[Any], query: dict[str, str], reply: Reply
    ) -> tuple[list[Any], Reply]:
        """One page as Graph answers it, with ``@odata.nextLink`` while more remain.

        The next link is absolute and carries the original query and a ``$skiptoken``
        the fake keeps; a follow-up must send it back unchanged.
        """
        asked = {k: v for k, v in query.items() if k != "$skiptoken"}
        start = 0
        if "$skiptoken" in query:
            kept = self.skiptokens.get(query["$skiptoken"])
            if kept is None or kept[:2] != (path, asked):
                self.problems.append(f"GET {path}: a nextLink not sent as given {query}")
            start = kept[2] if kept is not None else 0
        top = int(query.get("$top", str(self.page_size)))
        if not 1 <= top <= 999:
            self.problems.append(f"GET {path}: $top={top} outside 1..999")
        size = min(top, self.max_top)
        if start + size < len(found):
            token = uuid.uuid4().hex
            self.skiptokens[token] = (path, asked, start + size)
            reply = {**reply, "body": self.reply(f"{name}_next_page")["body"]}
            link = urlencode({**asked, "$skiptoken": token}, quote_via=quote, safe="$,'()")
            reply["body"]["@odata.nextLink"] = f"{self.base}{path}?{link}"
        return found[start : start + size], reply

    def _filter(self, expression: str) -> list[dict[str, Any]]:
        eq = re.fullmatch(r"description eq '([^']*)'", expression)
        starts = re.fullmatch(r"startswith\(description,'([^']*)'\)", expression)
        if eq:
            return [x for x in self.groups.values() if x["description"] == eq.group(1)]
        if starts:
            return [x for x in self.groups.values() if x["description"].startswith(starts.group(1))]
        self.problems.append(f"unsupported $filter {expression!r}")
        return []

    def state(self, name: str, g: dict[str, str], query: dict[str, str], body: Any) -> Reply:
        reply = self.reply(name)
        if name == "list_groups":
            found = (
                self._filter(query["$filter"]) if "$filter" in query else list(self.groups.values())
            )
            found, reply = self.page(name, "/v1.0/groups", found, query, reply)
            reply["body"]["value"] = copy.deepcopy(found)
        elif name == "create_group":
            gid = str(uuid.uuid4())
            keep = ("displayName", "description", "mailNickname", "mailEnabled", "securityEnabled")
            self.groups[gid] = {"id": gid, **{k: body.get(k) for k in keep}}
            self.members[gid] = set()
            reply["body"].update(self.groups[gid])
        elif name == "add_member":
            if g["id"] not in self.groups:
                return self.error("not_found")
            uid = str(body["@odata.id"]).rsplit("/directoryObjects/", 1)[-1]
            if not str(body["@odata.id"]).startswith(self.base + "/v1.0/directoryObjects/"):
                self.problems.append(f"@odata.id {body['@odata.id']!r} is not a directoryObject")
            if uid not in self.users:
                return self.error("not_found")
            if uid in self.members[g["id"]]:
                return self.reply("member_exists")
            self.members[g["id"]].add(uid)
        elif name == "remove_member":
            if g["member"] not in self.members.get(g["id"], set()):
                return self.reply("not_a_member")
            self.members[g["id"]].discard(g["member"])
        elif name == "list_members":
            if g["id"] not in self.groups:
                return self.error("not_found")
            template = reply["body"]["value"][0]
            path, ids = f"/v1.0/groups/{g['id']}/members", sorted(self.members[g["id"]])
            members, reply = self.page(name, path, ids, query, reply)
            reply["body"]["value"] = [{**template, **self.users[u]} for u in members]
        elif name == "get_user":
            user = next(
                (u for u in self.users.values() if g["upn"] in (u["id"], u["userPrincipalName"])),
                None,
            )
            if user is None:
                return self.reply("user_not_found")
            reply["body"].update(user)
        elif name == "update_user":
            if g["upn"] not in self.users:
                return self.error("not_found")
            self.users[g["upn"]]["accountEnabled"] = body["accountEnabled"]
        elif name in ("create_extension", "get_extension", "update_extension"):
            return self._extension(name, g, body, reply)
        return reply

    def _extension(self, name: str, g: dict[str, str], body: Any, reply: Reply) -> Reply:
        if g["id"] not in self.groups:
            return self.error("not_found")
        own = {"@odata.type", "extensionName", "id"}
        if name == "create_extension":
            key = (g["id"], body["extensionName"])
            if key in self.extensions:
                return self.reply("extension_exists")
            self.extensions[key] = {k: v for k, v in body.items() if k not in own}
        else:
            key = (g["id"], g["extension"])
            if key not in self.extensions:
                return self.reply("extension_not_found")
            if name == "update_extension":
                self.extensions[key].update({k: v for k, v in body.items() if k not in own})
                return reply
        kept = {k: v for k, v in reply["body"].items() if k.startswith("@") or k in own}
        reply["body"] = {**kept, **copy.deepcopy(self.extensions[key])}
        return reply


def _serve(replay: Replay) -> Iterator[Replay]:
    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body: Any = None
            if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            elif raw:
                body = json.loads(raw)
            reply = replay.answer(
                self.command, url.path, query, self.headers.get("Authorization"), body
            )
            replay.seen[-1].status = reply["status"]
            payload = reply.get("body")
            data = b""
            if payload is not None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(reply["status"])
            for name, value in reply.get("headers", {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any  # noqa: N815 - http.server names

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    replay.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield replay
    finally:
        server.shutdown()
        server.server_close()
    assert replay.problems == [], replay.problems


@pytest.fixture
def keycloak() -> Iterator[Keycloak]:
    variants = frozenset(
        {"group_exists", "group_not_found", "user_not_found", "invalid_client"}
        | {"token_without_manage_users"}
    )
    yield from _serve(Keycloak("keycloak", {"realm": REALM}, variants))  # type: ignore[misc]


@pytest.fixture
def graph() -> Iterator[Graph]:
    variants = frozenset(
        {"member_exists", "not_a_member", "user_not_found", "invalid_client", "token_without_roles"}
        | {"extension_exists", "extension_not_found", "list_groups_next_page"}
        | {"list_members_next_page"}
    )
    yield from _serve(Graph("entra", {"tenant": DIRECTORY}, variants))  # type: ignore[misc]


def keycloak_settings(server: Replay, secret: str = SECRET) -> KeycloakSettings:
    return KeycloakSettings(
        server_url=server.base,
        realm=REALM,
        client_id="tenantops",
        client_secret=SecretStr(secret),
        timeout_seconds=5,
    )


def entra_settings(server: Replay, secret: str = SECRET) -> EntraSettings:
    return EntraSettings(
        tenant_id=DIRECTORY,
        client_id="c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        client_secret=SecretStr(secret),
        graph_url=f"{server.base}/v1.0",
        login_url=server.base,
        timeout_seconds=5,
    )


# The contract: every adapter ---------------------------------------------------------------


@pytest.fixture(params=["local", "keycloak", "entra"])
def idp(request: pytest.FixtureRequest, db: Database) -> Iterator[IdentityProvider]:
    if request.param == "local":
        yield LocalIdentity(db)
    elif request.param == "keycloak":
        server = request.getfixturevalue("keycloak")
        yield KeycloakIdentity(db, keycloak_settings(server))
    else:
        server = request.getfixturevalue("graph")
        adapter = EntraIdentity(db, entra_settings(server))
        yield adapter
        adapter.close()


def test_a_group_holds_the_owner_as_writer_and_contacts_as_readers(idp: IdentityProvider) -> None:
    tid = new_id()
    state = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key=f"{tid}-c"
    )

    assert state.group == "tenant-acme"
    assert state.tenant_id == tid
    assert state.tenant_name == "acme"
    assert state.enabled
    assert state.permission_of("owner@acme.example") is Permission.WRITE
    assert state.permission_of("ops@acme.example") is Permission.READ
    assert idp.get_group(tenant_id=tid) == state
    assert tid in {g.tenant_id for g in idp.list_groups()}


def test_the_same_key_returns_the_recorded_state_and_changes_nothing(
    idp: IdentityProvider,
) -> None:
    tid = new_id()
    first = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=f"{tid}-k"
    )
    disabled = idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-d")
    again = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key=f"{tid}-k"
    )

    assert again == first  # the recorded result, not a second effect
    assert not disabled.enabled
    current = idp.get_group(tenant_id=tid)
    assert current is not None
    assert not current.enabled
    assert current.permission_of("ops@acme.example") is None


def test_a_key_reused_for_another_operation_is_refused(idp: IdentityProvider) -> None:
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=f"{tid}")

    with pytest.raises(DriverError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}")

    assert caught.value.retry is Retry.PERMANENT
    state = idp.get_group(tenant_id=tid)
    assert state is not None
    assert state.enabled


def test_disable_then_enable_keeps_the_grants(idp: IdentityProvider) -> None:
    tid = new_id()
    idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key=f"{tid}-c"
    )

    off = idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    on = idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")
    replayed_off = idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert not off.enabled
    assert on.enabled
    assert on.members == off.members
    assert not replayed_off.enabled  # what was recorded then
    now = idp.get_group(tenant_id=tid)
    assert now is not None
    assert now.enabled


def test_members_are_added_changed_and_removed(idp: IdentityProvider) -> None:
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=f"{tid}-c")

    added = idp.add_member(
        tenant_id=tid, grant=Grant(SRE, Permission.ADMIN), idempotency_key=f"{tid}-a"
    )
    changed = idp.add_member(
        tenant_id=tid, grant=Grant(SRE, Permission.READ), idempotency_key=f"{tid}-b"
    )
    removed = idp.remove_member(tenant_id=tid, subject=SRE.upper(), idempotency_key=f"{tid}-r")
    again = idp.remove_member(tenant_id=tid, subject=SRE, idempotency_key=f"{tid}-r2")

    assert added.permission_of(SRE) is Permission.ADMIN
    assert changed.permission_of(SRE) is Permission.READ
    assert removed.permission_of(SRE) is None
    assert again == removed  # removing a non-member changes nothing
    assert removed.permission_of("owner@acme.example") is Permission.WRITE


def test_creating_again_with_a_new_key_converges_on_one_group(idp: IdentityProvider) -> None:
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=f"{tid}-1")
    second = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[CONTACT], idempotency_key=f"{tid}-2"
    )

    assert second.permission_of("owner@acme.example") is Permission.WRITE
    assert second.permission_of("ops@acme.example") is Permission.READ
    assert [g.tenant_id for g in idp.list_groups()].count(tid) == 1


def test_changing_a_tenant_without_a_group_needs_a_human(idp: IdentityProvider) -> None:
    with pytest.raises(DriverError) as caught:
        idp.disable_access(tenant_id=new_id(), idempotency_key=new_id())

    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert idp.get_group(tenant_id=new_id()) is None


# Keycloak only -----------------------------------------------------------------------------


def test_keycloak_gets_the_documented_calls(db: Database, keycloak: Keycloak) -> None:
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    (group,) = keycloak.groups.values()
    owner = keycloak.user("owner@acme.example")
    assert group["name"] == "tenant-acme"
    assert group["attributes"]["tenant_id"] == [tid]
    assert group["attributes"]["tenantops_grants"] == ["owner@acme.example=write"]
    assert keycloak.members[group["id"]] == {owner["id"]}
    assert owner["enabled"] is False  # the member's account is what is switched off
    assert keycloak.user("ops@acme.example")["enabled"] is True  # not a member: untouched
    token = keycloak.seen[0]
    assert (token.method, token.path) == ("POST", f"/realms/{REALM}/protocol/openid-connect/token")
    assert token.body["grant_type"] == "client_credentials"
    assert ("PUT", f"/admin/realms/{REALM}/users/{owner['id']}/groups/{group['id']}") in (
        keycloak.calls()
    )
    assert all(s.authorization for s in keycloak.seen[1:])


def test_keycloak_enable_switches_on_only_the_accounts_disable_switched_off(
    db: Database, keycloak: Keycloak
) -> None:
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    tid = new_id()
    idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key=tid
    )
    keycloak.user("ops@acme.example")["enabled"] = False  # offboarded by someone else

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    joined = idp.add_member(
        tenant_id=tid, grant=Grant(SRE, Permission.READ), idempotency_key=f"{tid}-sre"
    )
    assert keycloak.user(SRE)["enabled"] is False  # joined a suspended tenant: stays out
    assert not joined.enabled
    idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")

    assert keycloak.user("owner@acme.example")["enabled"] is True
    assert keycloak.user(SRE)["enabled"] is True
    assert keycloak.user("ops@acme.example")["enabled"] is False
    (group,) = keycloak.groups.values()
    assert group["attributes"]["tenantops_disabled"] == []


def test_a_user_keycloak_does_not_know_is_a_permanent_error(
    db: Database, keycloak: Keycloak
) -> None:
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[], idempotency_key=tid)

    with pytest.raises(IdentityError) as caught:
        idp.add_member(
            tenant_id=tid, grant=Grant("nobody@acme.example", Permission.READ), idempotency_key="x"
        )

    assert caught.value.retry is Retry.PERMANENT
    assert "nobody@acme.example" in str(caught.value)


def test_a_concurrent_keycloak_create_409_converges_on_the_existing_group(
    db: Database, keycloak: Keycloak
) -> None:
    tid = new_id()
    KeycloakIdentity(db, keycloak_settings(keycloak)).create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="first"
    )
    keycloak.answer_once({"status": 200, "body": []}, on="/groups", method="GET")

    state = KeycloakIdentity(db, keycloak_settings(keycloak)).create_group(
        tenant_id=tid, tenant_name="acme", grants=[CONTACT], idempotency_key="second"
    )

    assert 409 in [s.status for s in keycloak.seen]
    assert len(keycloak.groups) == 1
    assert state.permission_of("ops@acme.example") is Permission.READ


def test_a_keycloak_409_on_joining_the_group_means_already_a_member(
    db: Database, keycloak: Keycloak
) -> None:
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[], idempotency_key=tid)
    keycloak.fail("conflict", on="/groups/", method="PUT")

    state = idp.add_member(tenant_id=tid, grant=OWNER, idempotency_key="a")

    assert state.permission_of("owner@acme.example") is Permission.WRITE


# Keycloak: lists past the first page ----------------------------------------------------------

MANY = 250  # members or groups: more than two pages of 100


def _crowd(server: Keycloak | Graph, group_id: str) -> set[str]:
    """``MANY`` members in the group (the owner already in it): their account ids."""
    for i in range(MANY - len(server.members[group_id])):
        server.members[group_id].add(server.add_user(f"member{i:03}@acme.example")["id"])
    return set(server.members[group_id])


def _crowded_keycloak_group(
    db: Database, keycloak: Keycloak
) -> tuple[KeycloakIdentity, str, dict[str, Any], set[str]]:
    """A tenant's group with ``MANY`` members: the adapter, tenant id, group and account ids."""
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (group,) = keycloak.groups.values()
    return idp, tid, group, _crowd(keycloak, group["id"])


def test_keycloak_suspension_disables_members_beyond_the_first_page(
    db: Database, keycloak: Keycloak
) -> None:
    idp, tid, group, crowd = _crowded_keycloak_group(db, keycloak)

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert {u["id"] for u in keycloak.users.values() if not u["enabled"]} == crowd
    assert set(group["attributes"]["tenantops_disabled"]) == crowd
    pages = [s.query for s in keycloak.seen if s.path.endswith("/members")]
    # Read, switched off, read again to find nobody left on.
    assert [(q["first"], q["max"]) for q in pages] == 2 * [
        ("0", "100"),
        ("100", "100"),
        ("200", "100"),
    ]

    idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")

    assert all(keycloak.users[u]["enabled"] for u in crowd)
    assert group["attributes"]["tenantops_disabled"] == []


def test_a_keycloak_member_missed_as_the_pages_shift_is_switched_off_on_the_next_read(
    db: Database, keycloak: Keycloak, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, tid, group, _ = _crowded_keycloak_group(db, keycloak)
    members = keycloak.members[group["id"]]
    edge = sorted(members)[100]  # first on the second page, until someone leaves
    left: list[str] = []
    paged = keycloak.page

    def someone_leaves(found: list[Any], query: dict[str, str]) -> list[Any]:
        if query.get("first") == "100" and not left:
            left.append(min(members))  # leaves between the first and the second page
            members.discard(left[0])
            found = [x for x in found if x != left[0]]
        return paged(found, query)

    monkeypatch.setattr(keycloak, "page", someone_leaves)

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert left
    assert not keycloak.users[edge]["enabled"]  # the first read skipped it; the second did not
    assert not [u for u in members if keycloak.users[u]["enabled"]]


def test_keycloak_lists_every_tenant_group_past_the_first_page(
    db: Database, keycloak: Keycloak
) -> None:
    idp = KeycloakIdentity(db, keycloak_settings(keycloak))
    for i in range(MANY):
        gid = str(uuid.uuid4())
        attributes = KeycloakIdentity._attributes(f"t{i:03}", f"acme{i:03}", True, {})
        keycloak.groups[gid] = {"id": gid, "name": f"tenant-acme{i:03}", "attributes": attributes}
        keycloak.members[gid] = set()

    listed = idp.list_groups()

    assert [g.tenant_id for g in listed] == [f"t{i:03}" for i in range(MANY)]
    assert idp.get_group(tenant_id=f"t{MANY - 1:03}") is not None


def test_a_keycloak_failure_on_a_later_page_changes_no_account(
    db: Database, keycloak: Keycloak
) -> None:
    idp, tid, _, crowd = _crowded_keycloak_group(db, keycloak)
    keycloak.fail("unavailable", on="/members?briefRepresentation=true&first=200", method="GET")

    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert caught.value.retry is Retry.RETRIABLE
    assert all(keycloak.users[u]["enabled"] for u in crowd)  # every page read before a change
    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")  # the step's retry
    assert not any(keycloak.users[u]["enabled"] for u in crowd)


def test_a_keycloak_that_ignores_first_is_refused_not_looped(
    db: Database, keycloak: Keycloak, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, tid, _, crowd = _crowded_keycloak_group(db, keycloak)
    monkeypatch.setattr(keycloak, "page", lambda found, query: found[: int(query["max"])])

    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert caught.value.retry is Retry.PERMANENT
    assert "same page" in str(caught.value)
    assert all(keycloak.users[u]["enabled"] for u in crowd)


# Entra only --------------------------------------------------------------------------------


def test_entra_gets_the_documented_calls(db: Database, graph: Graph) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    idp.close()

    (group,) = graph.groups.values()
    owner = graph.user("owner@acme.example")
    assert group["securityEnabled"] is True
    assert group["mailEnabled"] is False
    assert group["mailNickname"] == "tenant-acme"
    assert graph.members[group["id"]] == {owner["id"]}
    assert owner["accountEnabled"] is False
    assert graph.user("ops@acme.example")["accountEnabled"] is True
    token = graph.seen[0]
    assert (token.method, token.path) == ("POST", f"/{DIRECTORY}/oauth2/v2.0/token")
    assert token.body["scope"] == "https://graph.microsoft.com/.default"
    assert ("GET", "/v1.0/users/owner@acme.example") in graph.calls()
    assert ("PATCH", f"/v1.0/users/{owner['id']}") in graph.calls()


def test_entra_enable_switches_on_only_the_accounts_disable_switched_off(
    db: Database, graph: Graph
) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key=tid
    )
    graph.user("ops@acme.example")["accountEnabled"] = False  # offboarded by someone else

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    joined = idp.add_member(
        tenant_id=tid, grant=Grant(SRE, Permission.READ), idempotency_key=f"{tid}-sre"
    )
    assert graph.user(SRE)["accountEnabled"] is False  # joined a suspended tenant: stays out
    assert not joined.enabled
    idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")
    idp.close()

    assert graph.user("owner@acme.example")["accountEnabled"] is True
    assert graph.user(SRE)["accountEnabled"] is True
    assert graph.user("ops@acme.example")["accountEnabled"] is False
    (extension,) = graph.extensions.values()
    assert extension["disabled"] == []
    assert extension["grants"] == [
        "ops@acme.example=read",
        "owner@acme.example=write",
        "sre@acme.example=read",
    ]


def test_entra_adding_an_existing_member_is_success(db: Database, graph: Graph) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)

    state = idp.add_member(
        tenant_id=tid, grant=Grant("owner@acme.example", Permission.ADMIN), idempotency_key="a"
    )
    idp.close()

    assert 400 in [s.status for s in graph.seen]  # Graph's "references already exist"
    assert state.permission_of("owner@acme.example") is Permission.ADMIN


def test_a_concurrent_entra_create_409_converges_on_the_existing_group(
    db: Database, graph: Graph
) -> None:
    tid = new_id()
    idp = EntraIdentity(db, entra_settings(graph))
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="first")
    graph.answer_once({"status": 200, "body": {"value": []}}, on="/groups", method="GET")
    graph.fail("conflict", on="/groups", method="POST")

    state = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[CONTACT], idempotency_key="second"
    )
    idp.close()

    assert len(graph.groups) == 1
    assert state.permission_of("ops@acme.example") is Permission.READ


def test_a_user_entra_does_not_know_is_a_permanent_error(db: Database, graph: Graph) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[], idempotency_key=tid)

    with pytest.raises(IdentityError) as caught:
        idp.add_member(
            tenant_id=tid, grant=Grant("nobody@acme.example", Permission.READ), idempotency_key="x"
        )
    idp.close()

    assert caught.value.retry is Retry.PERMANENT
    assert caught.value.status == 404


# Entra: lists past the first page -------------------------------------------------------------


def test_entra_suspension_follows_next_links_to_every_member(db: Database, graph: Graph) -> None:
    graph.max_top = 100  # pages of 100 whatever $top asks, as some Graph queries answer
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (gid,) = graph.groups
    crowd = _crowd(graph, gid)
    before = len(graph.seen)

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")

    assert not any(graph.users[u]["accountEnabled"] for u in crowd)
    (extension,) = graph.extensions.values()
    assert set(extension["disabled"]) == crowd
    pages = [s.query for s in graph.seen[before:] if s.path.endswith("/members")]
    assert pages[0]["$top"] == "999"
    assert ["$skiptoken" in q for q in pages[:3]] == [False, True, True]

    idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")
    idp.close()

    assert all(graph.users[u]["accountEnabled"] for u in crowd)


def test_entra_get_group_lists_every_member(db: Database, graph: Graph) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (gid,) = graph.groups
    crowd = _crowd(graph, gid)

    graph.max_top = 100
    paged = idp.get_group(tenant_id=tid)
    graph.max_top = 999
    whole = idp.get_group(tenant_id=tid)  # $top=999: one page
    idp.close()

    assert paged is not None
    assert len(paged.members) == len(crowd) == MANY
    assert paged.permission_of("owner@acme.example") is Permission.WRITE
    assert paged.permission_of(f"member{MANY - 2:03}@acme.example") is Permission.READ
    assert whole == paged


def test_entra_lists_every_tenant_group_past_the_first_page(db: Database, graph: Graph) -> None:
    graph.max_top = 10
    idp = EntraIdentity(db, entra_settings(graph))
    for i in range(25):
        gid = str(uuid.uuid4())
        graph.groups[gid] = {
            "id": gid,
            "displayName": f"tenant-acme{i:02}",
            "description": f"tenantops tenant t{i:02}",
            "mailNickname": f"tenant-acme{i:02}",
            "mailEnabled": False,
            "securityEnabled": True,
        }
        graph.members[gid] = set()

    listed = idp.list_groups()
    idp.close()

    assert [g.tenant_id for g in listed] == [f"t{i:02}" for i in range(25)]
    follow_ups = [s for s in graph.seen if s.path == "/v1.0/groups" and "$skiptoken" in s.query]
    assert len(follow_ups) == 2
    assert all(
        s.query["$filter"] == "startswith(description,'tenantops tenant ')" for s in follow_ups
    )


def test_entra_next_pages_go_through_the_token_refresh_and_the_error_mapping(
    db: Database, graph: Graph
) -> None:
    graph.max_top = 100
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (gid,) = graph.groups
    crowd = _crowd(graph, gid)

    graph.fail("unavailable", on="$skiptoken", method="GET")
    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    assert caught.value.retry is Retry.RETRIABLE
    assert caught.value.retry_after == 4.0
    assert all(graph.users[u]["accountEnabled"] for u in crowd)  # all read before a change

    graph.fail("unauthorized", on="$skiptoken", method="GET")  # the token expired mid-list
    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")  # the step's retry
    idp.close()

    assert not any(graph.users[u]["accountEnabled"] for u in crowd)
    assert len(graph.issued) == 1  # the recorded token again: the refresh happened
    assert sum(1 for s in graph.seen if s.path.endswith("/oauth2/v2.0/token")) == 2


@pytest.mark.parametrize(
    "link",
    [
        "https://graph.evil.example/v1.0/groups/{gid}/members?$skiptoken=x",
        "{base}/beta/groups/{gid}/members?$skiptoken=x",  # the same host, outside graph_url
        "{base}/v1.0.evil.example/members?$skiptoken=x",
        "/v1.0/groups/{gid}/members?$skiptoken=x",  # not absolute
    ],
)
def test_entra_refuses_a_next_link_outside_the_graph_url(
    link: str, db: Database, graph: Graph
) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (gid,) = graph.groups
    elsewhere = link.format(base=graph.base, gid=gid)
    page = {"value": [], "@odata.nextLink": elsewhere}
    graph.answer_once({"status": 200, "body": page}, on="/members", method="GET")

    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    idp.close()

    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert "outside the configured graph_url" in str(caught.value)
    last = graph.seen[-1]  # the page that carried the link; nothing was sent after it
    assert (last.method, last.path, "$skiptoken" in last.query) == (
        "GET",
        f"/v1.0/groups/{gid}/members",
        False,
    )
    (token,) = graph.issued
    assert token not in str(caught.value)
    assert graph.user("owner@acme.example")["accountEnabled"] is True


def test_entra_refuses_a_next_link_it_was_already_given(db: Database, graph: Graph) -> None:
    idp = EntraIdentity(db, entra_settings(graph))
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    (gid,) = graph.groups
    circle = {
        "value": [],
        "@odata.nextLink": f"{graph.base}/v1.0/groups/{gid}/members?$skiptoken=x",
    }
    graph.answer_once({"status": 200, "body": circle}, on="/members", method="GET")
    graph.answer_once({"status": 200, "body": circle}, on="$skiptoken=x", method="GET")

    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    idp.close()

    assert caught.value.retry is Retry.PERMANENT
    assert "already given" in str(caught.value)
    assert graph.user("owner@acme.example")["accountEnabled"] is True


# Both: what each error answer means ----------------------------------------------------------


def _remote(kind: str, db: Database, request: pytest.FixtureRequest) -> tuple[Any, Replay]:
    if kind == "keycloak":
        server: Replay = request.getfixturevalue("keycloak")
        return KeycloakIdentity(db, keycloak_settings(server)), server
    server = request.getfixturevalue("graph")
    return EntraIdentity(db, entra_settings(server)), server


@pytest.mark.parametrize("kind", ["keycloak", "entra"])
def test_a_suspension_that_fails_midway_still_knows_whom_it_switched_off(
    kind: str, db: Database, request: pytest.FixtureRequest
) -> None:
    """A retry finds the first accounts already off; reactivation must switch them on again."""
    idp, server = _remote(kind, db, request)
    tid = new_id()
    grants = [OWNER, CONTACT, Grant(SRE, Permission.READ)]
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=grants, idempotency_key=tid)
    state = server.enabled()
    first, second, _ = sorted(state)
    method = "PUT" if kind == "keycloak" else "PATCH"
    server.fail("unavailable", on=f"/users/{second}", method=method)

    with pytest.raises(IdentityError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")
    assert caught.value.retry is Retry.RETRIABLE
    assert server.enabled() == {**state, first: False}

    idp.disable_access(tenant_id=tid, idempotency_key=f"{tid}-off")  # the step's retry
    assert not any(server.enabled().values())
    idp.enable_access(tenant_id=tid, idempotency_key=f"{tid}-on")
    assert all(server.enabled().values())
    idp.close()


ERROR_CASES = [
    (vendor, x["name"], x["verdict"], x.get("retry_after"))
    for vendor in ("keycloak", "entra")
    for x in recordings(vendor, "errors").values()
]


@pytest.mark.parametrize(("vendor", "error", "verdict", "wait"), ERROR_CASES)
def test_each_recorded_error_answer_maps_to_its_verdict(
    vendor: str,
    error: str,
    verdict: str,
    wait: int | None,
    db: Database,
    request: pytest.FixtureRequest,
) -> None:
    idp, server = _remote(vendor, db, request)
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[], idempotency_key=f"{tid}-c")
    # The group lookup fails (a 409 there cannot mean "already done"); 401 twice: both
    # clients fetch a fresh token once before the verdict stands.
    server.fail(error, on="/groups", method="GET", times=2 if error == "unauthorized" else 1)

    with pytest.raises(IdentityError) as caught:
        idp.add_member(tenant_id=tid, grant=OWNER, idempotency_key=f"{tid}-a")
    server.script.clear()

    assert caught.value.retry is Retry(verdict)
    assert caught.value.retry_after == (float(wait) if wait is not None else None)
    # The failed step recorded nothing: the same key, retried, applies the change once.
    state = idp.add_member(tenant_id=tid, grant=OWNER, idempotency_key=f"{tid}-a")
    assert state.permission_of("owner@acme.example") is Permission.WRITE


@pytest.mark.parametrize("vendor", ["keycloak", "entra"])
def test_an_unreachable_provider_is_retriable(vendor: str, db: Database) -> None:
    dead = Replay.__new__(Replay)
    dead.base = "http://127.0.0.1:9"  # discard port: nothing listens
    idp: Any = (
        KeycloakIdentity(db, keycloak_settings(dead))
        if vendor == "keycloak"
        else EntraIdentity(db, entra_settings(dead))
    )

    with pytest.raises(IdentityError) as caught:
        idp.get_group(tenant_id=new_id())

    assert caught.value.retry is Retry.RETRIABLE


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("12") == 12.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert retry_after("soon") is None
    assert retry_after(None) is None


# Both: doctor, and secrets never shown ---------------------------------------------------------


@pytest.mark.parametrize("vendor", ["keycloak", "entra"])
def test_doctor_passes_with_the_roles_and_names_them_when_missing(
    vendor: str, db: Database, request: pytest.FixtureRequest
) -> None:
    idp, server = _remote(vendor, db, request)
    assert all(row.ok for row in idp.check()), idp.check()

    fresh, _ = _remote(vendor, db, request)
    server.token_exchange = (
        "token_without_manage_users" if vendor == "keycloak" else "token_without_roles"
    )
    rows = fresh.check()

    assert [r.ok for r in rows] == [True, True, False]
    assert "manage-users" in rows[-1].fix or "Group.ReadWrite.All" in rows[-1].fix


@pytest.mark.parametrize("vendor", ["keycloak", "entra"])
def test_doctor_says_when_the_client_credentials_are_refused(
    vendor: str, db: Database, request: pytest.FixtureRequest
) -> None:
    server: Replay = request.getfixturevalue("keycloak" if vendor == "keycloak" else "graph")
    wrong = "wrong-secret-also-never-shown"
    idp: Any = (
        KeycloakIdentity(db, keycloak_settings(server, wrong))
        if vendor == "keycloak"
        else EntraIdentity(db, entra_settings(server, wrong))
    )

    (row,) = idp.check()

    assert not row.ok
    assert "CLIENT_SECRET" in row.fix
    assert wrong not in f"{row}"
    with pytest.raises(IdentityError) as caught:
        idp.get_group(tenant_id=new_id())
    assert caught.value.retry is Retry.NEEDS_HUMAN


@pytest.mark.parametrize("vendor", ["keycloak", "entra"])
def test_neither_the_secret_nor_the_token_shows_in_errors_logs_or_reprs(
    vendor: str,
    db: Database,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    idp, server = _remote(vendor, db, request)
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key=tid)
    errors: list[str] = []
    for error in ("unauthorized", "forbidden", "rate_limited", "unavailable"):
        server.fail(error, on="/", times=2)
        with pytest.raises(IdentityError) as caught:
            idp.get_group(tenant_id=tid)
        errors += [str(caught.value), repr(caught.value)]
        server.script.clear()
    (token,) = server.issued

    shown = "\n".join([*errors, repr(idp), repr(idp.settings), str(idp.settings), caplog.text])
    assert SECRET not in shown
    assert token not in shown
    assert "**********" in repr(idp.settings)
