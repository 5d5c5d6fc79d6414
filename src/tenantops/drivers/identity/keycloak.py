"""``IdentityProvider`` on a Keycloak realm through python-keycloak's ``KeycloakAdmin``.

A tenant is one top-level group ``<prefix><tenant name>`` whose attributes
carry ``tenant_id``, ``tenant_name``, ``managed_by=tenantops``, the access
switch ``tenantops_enabled`` and the grants ``tenantops_grants``
(``subject=permission`` values). Permissions are a group attribute rather than
three subgroups: one group, one read gives the whole state, and a client maps
the attribute into tokens with a group-attribute mapper; membership itself is
real Keycloak group membership (``PUT /users/{id}/groups/{group}``), so
group-based role mappings and the ``groups`` claim work unchanged. Members are
found by exact username, then exact email.

Keycloak pages its lists: ``GET /groups`` and ``GET /groups/{id}/members``
answer at most ``max`` entries (100 when not given) from offset ``first``. Every
list is read through ``_all``, page after page until a short one: a suspension
that saw only the first page would leave the members beyond it enabled.

Disabling access sets ``enabled=false`` on every member's account and the
group's switch to false, and keeps the ids of the accounts it switched off in
``tenantops_disabled``; enabling switches on exactly those (an account someone
else disabled, say at offboarding, stays off). Keycloak groups have no
sign-in switch of their own, and removing members would lose the grants;
disabling the account also ends its sessions at their next refresh. A user who
belongs to two tenants is locked out of both, which an emergency suspension
wants. Every change is applied once per idempotency key through the identity
effect log (``apply_once``); each call converges (an existing group or
membership is success), so a step run again after a crash repeats nothing.

Login: the service-account client (client credentials) needs the
``realm-management`` roles ``manage-users``, ``view-users`` and ``query-groups``.
The client secret and the bearer token never appear in errors, logs or reprs.
python-keycloak holds the connection and the token (fetching, refreshing on 401);
calls go through its raw methods so the status and ``Retry-After`` of each
answer reach the error mapping in ``settings``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from requests import Response
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import CheckRow, Retry
from tenantops.drivers.identity.local import _from_record
from tenantops.drivers.identity.models import IdentityEffect
from tenantops.drivers.identity.port import Grant, GroupState, Permission
from tenantops.drivers.identity.settings import (
    IdentityError,
    KeycloakSettings,
    failure,
    verdict,
)

ROLES_FIX = (
    "give the client's service account the realm-management roles "
    "manage-users, view-users and query-groups (Service account roles tab)"
)
HINTS = {
    401: "the client's token was refused; check client id/secret (`tenantops doctor`)",
    403: f"Keycloak refused the call; {ROLES_FIX}",
}
Attributes = dict[str, list[str]]
PAGE = 100  # entries asked per page of a list (Keycloak's own default ``max``)
RE_READS = 4  # reads of the members when switching them off (see ``_set_enabled``)


def _subject(value: str) -> str:
    return value.strip().lower()


class KeycloakIdentity:
    """``IdentityProvider`` on Keycloak groups and users."""

    page_size = PAGE

    def __init__(
        self, db: Database, settings: KeycloakSettings, *, admin: KeycloakAdmin | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self._admin = admin

    def __repr__(self) -> str:
        s = self.settings
        return f"KeycloakIdentity(url={s.server_url!r}, realm={s.realm!r}, client={s.client_id!r})"

    def close(self) -> None:
        """Let go of the connection (python-keycloak closes its session when it goes)."""
        self._admin = None

    # HTTP ----------------------------------------------------------------------------------

    @property
    def admin(self) -> KeycloakAdmin:
        if self._admin is None:
            s = self.settings
            connection = KeycloakOpenIDConnection(
                server_url=s.server_url.rstrip("/") + "/",
                realm_name=s.realm,
                client_id=s.client_id,
                client_secret_key=s.client_secret.get_secret_value(),
                grant_type="client_credentials",
                timeout=int(s.timeout_seconds) or 1,
                max_retries=0,  # the runbook step retries, with its backoff
            )
            self._admin = KeycloakAdmin(connection=connection)
        return self._admin

    def _login(self) -> KeycloakOpenIDConnection:
        connection = self.admin.connection
        if connection.token is None:
            try:
                connection.get_token()
            except KeycloakConnectionError:
                raise IdentityError(
                    "Keycloak token endpoint unreachable", retry=Retry.RETRIABLE
                ) from None
            except KeycloakError as exc:
                status = exc.response_code or 0
                kind = Retry.NEEDS_HUMAN if status in (400, 401, 403) else verdict(status)
                raise IdentityError(
                    f"Keycloak refused the client credentials: HTTP {status}",
                    retry=kind,
                    status=status,
                ) from None
        return connection

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        ok: Callable[[Response], bool] = lambda r: False,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        **params: str,
    ) -> Response:
        """Call the Admin REST API of the realm; a 2xx or an ``ok`` answer is returned."""
        connection = self._login()
        url = f"admin/realms/{self.settings.realm}{path}"
        data = json.dumps(body) if body is not None else None
        try:
            if method == "GET":
                response = connection.raw_get(url, **(query or {}), **params)
            elif method == "POST":
                response = connection.raw_post(url, data=data or "{}")
            elif method == "PUT":
                response = connection.raw_put(url, data=data or "{}")
            else:
                response = connection.raw_delete(url)
        except KeycloakConnectionError:
            raise IdentityError(f"{what}: Keycloak unreachable", retry=Retry.RETRIABLE) from None
        except KeycloakError as exc:  # a refresh of the token failed
            status = exc.response_code or 0
            raise IdentityError(
                f"{what}: token refresh refused (HTTP {status})",
                retry=Retry.NEEDS_HUMAN if status in (400, 401, 403) else verdict(status),
                status=status,
            ) from None
        if 200 <= response.status_code < 300 or ok(response):
            return response
        if response.status_code == 409:
            raise IdentityError(f"{what}: HTTP 409 conflict", retry=Retry.PERMANENT, status=409)
        hint = HINTS.get(response.status_code, "")
        raise failure(what, response.status_code, response.headers.get("Retry-After"), hint)

    def _all(self, path: str, what: str, **params: str) -> list[dict[str, Any]]:
        """Every entry of a list Keycloak pages with ``first``/``max``, one page at a time.

        A page shorter than ``max`` is the last; each page goes through ``_call``, so a
        failure on any page fails the read (never a partial list taken as the whole). A
        full page of nothing new means the server ignored ``first``: refused, not looped.
        """
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        while True:
            query = {**params, "first": str(len(found)), "max": str(self.page_size)}
            page = self._call("GET", path, what, query=query).json()
            if not isinstance(page, list):
                raise IdentityError(f"{what}: Keycloak answered no list", retry=Retry.PERMANENT)
            ids = {str(x.get("id")) for x in page}
            if page and ids <= seen:
                raise IdentityError(
                    f"{what}: Keycloak answered the same page again (first={len(found)})",
                    retry=Retry.PERMANENT,
                )
            seen |= ids
            found.extend(dict(x) for x in page)
            if len(page) < self.page_size:
                return found

    # Keycloak objects ----------------------------------------------------------------------

    def _find_group(self, tenant_id: str) -> dict[str, Any] | None:
        found = self._all(
            "/groups",
            "find the tenant group",
            q=f"tenant_id:{tenant_id}",
            exact="true",
            briefRepresentation="false",
        )
        for group in found:
            if group.get("attributes", {}).get("tenant_id") == [tenant_id]:
                return dict(group)
        return None

    def _existing(self, tenant_id: str) -> dict[str, Any]:
        group = self._find_group(tenant_id)
        if group is None:
            raise IdentityError(
                f"tenant {tenant_id} has no Keycloak group; create it first",
                retry=Retry.NEEDS_HUMAN,
            )
        return group

    def _user(self, subject: str) -> dict[str, Any] | None:
        name = _subject(subject)
        found = self._call("GET", "/users", "look up the user", username=name, exact="true")
        users = found.json()
        if not users and "@" in name:
            found = self._call("GET", "/users", "look up the user", email=name, exact="true")
            users = found.json()
        return dict(users[0]) if users else None

    def _save(self, group: dict[str, Any], attributes: Attributes) -> None:
        self._call(
            "PUT",
            f"/groups/{group['id']}",
            "update the group's attributes (group not found)",
            body={"name": group["name"], "attributes": attributes},
        )
        group["attributes"] = attributes

    def _add(self, group: dict[str, Any], grant: Grant, enabled: bool) -> str | None:
        """Make ``grant.subject`` a member; the account id if it was switched off with it."""
        user = self._user(grant.subject)
        if user is None:
            raise IdentityError(
                f"no Keycloak user {_subject(grant.subject)!r}; create it first",
                retry=Retry.PERMANENT,
                status=404,
            )
        user_id = str(user["id"])
        self._call(
            "PUT",
            f"/users/{user_id}/groups/{group['id']}",
            "add the member (user or group not found)",
            ok=lambda r: r.status_code == 409,
        )
        if enabled or user.get("enabled") is False:
            return None
        # Joins a suspended tenant: stays out until enable_access.
        self._call("PUT", f"/users/{user_id}", "disable the account", body={"enabled": False})
        return user_id

    @staticmethod
    def _grants(group: dict[str, Any]) -> dict[str, Permission]:
        values = group.get("attributes", {}).get("tenantops_grants", [])
        pairs = (v.rsplit("=", 1) for v in values if "=" in v)
        return {s: Permission(p) for s, p in pairs if p in Permission.__members__.values()}

    @staticmethod
    def _off(group: dict[str, Any]) -> set[str]:
        """Accounts tenantops switched off for this tenant (only these are switched back on)."""
        return set(group.get("attributes", {}).get("tenantops_disabled", []))

    @staticmethod
    def _attributes(
        tenant_id: str,
        tenant_name: str,
        enabled: bool,
        grants: dict[str, Permission],
        off: set[str] | None = None,
    ) -> Attributes:
        return {
            "tenant_id": [tenant_id],
            "tenant_name": [tenant_name],
            "managed_by": ["tenantops"],
            "tenantops_enabled": ["true" if enabled else "false"],
            "tenantops_grants": [f"{s}={p.value}" for s, p in sorted(grants.items())],
            "tenantops_disabled": sorted(off or ()),
        }

    @staticmethod
    def _state(group: dict[str, Any]) -> GroupState:
        attributes = group.get("attributes", {})
        return GroupState(
            tenant_id=attributes["tenant_id"][0],
            tenant_name=attributes.get("tenant_name", [""])[0],
            group=str(group["name"]),
            enabled=attributes.get("tenantops_enabled", ["true"]) != ["false"],
            members=tuple(Grant(s, p) for s, p in sorted(KeycloakIdentity._grants(group).items())),
        )

    def _change(
        self, *, key: str, operation: str, tenant_id: str, change: Callable[[], dict[str, Any]]
    ) -> GroupState:
        def run(session: Session) -> GroupState:
            return self._state(change())

        return apply_once(
            self.db,
            IdentityEffect,
            key=key,
            operation=operation,
            tenant_id=tenant_id,
            change=run,
            recorded=_from_record,
            what="identity",
        )

    # The port ------------------------------------------------------------------------------

    def create_group(
        self, *, tenant_id: str, tenant_name: str, grants: Sequence[Grant], idempotency_key: str
    ) -> GroupState:
        name = f"{self.settings.group_prefix}{tenant_name}"

        def change() -> dict[str, Any]:
            group = self._find_group(tenant_id)
            if group is None:
                attributes = self._attributes(tenant_id, tenant_name, True, {})
                created = self._call(
                    "POST",
                    "/groups",
                    "create the tenant group",
                    ok=lambda r: r.status_code == 409,  # a concurrent create won
                    body={"name": name, "attributes": attributes},
                )
                if created.status_code == 409:
                    group = self._existing(tenant_id)
                else:
                    group_id = created.headers.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
                    group = {"id": group_id, "name": name, "attributes": attributes}
            state, current, off = self._state(group), self._grants(group), self._off(group)
            for grant in grants:
                if (switched := self._add(group, grant, state.enabled)) is not None:
                    off.add(switched)
                current[_subject(grant.subject)] = grant.permission
            self._save(group, self._attributes(tenant_id, tenant_name, state.enabled, current, off))
            return group

        return self._change(
            key=idempotency_key, operation="create_group", tenant_id=tenant_id, change=change
        )

    def add_member(self, *, tenant_id: str, grant: Grant, idempotency_key: str) -> GroupState:
        def change() -> dict[str, Any]:
            group = self._existing(tenant_id)
            state, current, off = self._state(group), self._grants(group), self._off(group)
            if (switched := self._add(group, grant, state.enabled)) is not None:
                off.add(switched)
            current[_subject(grant.subject)] = grant.permission
            self._save(
                group, self._attributes(tenant_id, state.tenant_name, state.enabled, current, off)
            )
            return group

        return self._change(
            key=idempotency_key, operation="add_member", tenant_id=tenant_id, change=change
        )

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        def change() -> dict[str, Any]:
            group = self._existing(tenant_id)
            state = self._state(group)
            user = self._user(subject)
            if user is not None:
                self._call(
                    "DELETE",
                    f"/users/{user['id']}/groups/{group['id']}",
                    "remove the member",
                    ok=lambda r: r.status_code == 404,  # not a member: already removed
                )
            current = self._grants(group)
            current.pop(_subject(subject), None)
            off = self._off(group)  # a member removed while suspended is switched back on later
            self._save(
                group, self._attributes(tenant_id, state.tenant_name, state.enabled, current, off)
            )
            return group

        return self._change(
            key=idempotency_key, operation="remove_member", tenant_id=tenant_id, change=change
        )

    def _set_enabled(self, tenant_id: str, enabled: bool, key: str) -> GroupState:
        def change() -> dict[str, Any]:
            group = self._existing(tenant_id)
            state, off = self._state(group), self._off(group)
            if enabled:
                for user_id in sorted(off):  # only what tenantops switched off
                    self._call(
                        "PUT",
                        f"/users/{quote(user_id)}",
                        "enable the account",
                        ok=lambda r: r.status_code == 404,  # deleted since: nothing to enable
                        body={"enabled": True},
                    )
                off = set()
            else:
                # Offset pages shift when someone leaves the group while they are read,
                # and a member at a page's edge is missed: read again after switching
                # off, until a whole read finds nobody left on (``RE_READS`` at most).
                for _ in range(RE_READS):
                    members = self._all(  # every page: all of them are read before any change
                        f"/groups/{group['id']}/members",
                        "read the group's members (group not found)",
                        briefRepresentation="true",
                    )
                    # One disabled by others stays theirs.
                    on = [u for u in members if u.get("enabled") is not False]
                    if not on:
                        break
                    # Intent first: if a call below fails, the step's retry finds these
                    # already off and must still know tenantops switched them off, or a
                    # reactivation would leave them disabled.
                    off |= {str(u["id"]) for u in on}
                    self._save(
                        group,
                        self._attributes(
                            tenant_id, state.tenant_name, enabled, self._grants(group), off
                        ),
                    )
                    for user in on:
                        self._call(
                            "PUT",
                            f"/users/{quote(str(user['id']))}",
                            "disable the account (user not found)",
                            body={"enabled": False},
                        )
            self._save(
                group,
                self._attributes(tenant_id, state.tenant_name, enabled, self._grants(group), off),
            )
            return group

        operation = "enable_access" if enabled else "disable_access"
        return self._change(key=key, operation=operation, tenant_id=tenant_id, change=change)

    def disable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, False, idempotency_key)

    def enable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, True, idempotency_key)

    def get_group(self, *, tenant_id: str) -> GroupState | None:
        group = self._find_group(tenant_id)
        return None if group is None else self._state(group)

    def list_groups(self) -> list[GroupState]:
        found = self._all(
            "/groups",
            "list the tenant groups",
            q="managed_by:tenantops",
            exact="true",
            briefRepresentation="false",
        )
        states = [self._state(g) for g in found if "tenant_id" in g.get("attributes", {})]
        return sorted(states, key=lambda s: s.tenant_name)

    # Doctor --------------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Token obtainable, groups readable, and the roles to create groups granted."""
        s = self.settings
        try:
            self._login()
        except IdentityError as exc:
            fix = (
                "create a confidential client with 'Service accounts roles' on and set "
                "TENANTOPS_IDENTITY__KEYCLOAK__CLIENT_ID/CLIENT_SECRET"
            )
            return [CheckRow("keycloak token", False, str(exc), fix)]
        rows = [CheckRow("keycloak token", True, f"realm {s.realm} at {s.server_url}", "")]
        try:
            self._call("GET", "/groups", "read groups", max="1", briefRepresentation="true")
        except IdentityError as exc:
            return [*rows, CheckRow("keycloak read groups", False, str(exc), ROLES_FIX)]
        rows.append(CheckRow("keycloak read groups", True, "GET /groups", ""))
        # Creating groups needs manage-users: read the roles the token carries.
        roles = _client_roles(self.admin.connection.token)
        ok = "manage-users" in roles
        rows.append(
            CheckRow(
                "keycloak manage groups",
                ok,
                "manage-users granted" if ok else "token lacks realm-management manage-users",
                "" if ok else ROLES_FIX,
            )
        )
        return rows


def _client_roles(token: dict[str, Any] | None) -> set[str]:
    """The realm-management roles of the (unverified) access token, to name what is missing."""
    access = (token or {}).get("access_token", "")
    if not isinstance(access, str) or access.count(".") != 2:
        return set()
    part = access.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError):
        return set()
    roles = claims.get("resource_access", {}).get("realm-management", {}).get("roles", [])
    return {str(r) for r in roles}
