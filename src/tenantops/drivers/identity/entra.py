"""``IdentityProvider`` on Microsoft Entra ID through Microsoft Graph v1.0 over httpx.

A tenant is one security group (``<prefix><tenant name>``, not mail-enabled)
whose description carries the tenant id, so it is found again by id. Members
are users looked up by user principal name; membership is read from Graph.
Graph groups hold no per-member attributes, so an open extension on the group
(``com.tenantops.identity``) keeps each member's permission, the tenant's
access switch and the accounts tenantops switched off.

Disabling access sets every member's ``accountEnabled`` to false (Graph has no
per-group sign-in switch; Conditional Access could be one, but it needs a
licence and a policy per tenant) and notes the accounts it switched off;
enabling switches on exactly those, so an account someone else disabled (say at
offboarding) stays off. A user in two tenants' groups is locked out of both,
which an emergency suspension wants. Grants are never touched.

Graph pages its lists: ``GET /groups`` and ``GET /groups/{id}/members`` answer
100 entries unless ``$top`` asks for more (up to 999, and some queries answer
fewer than asked) and carry ``@odata.nextLink`` while more remain. Lists are
read through ``_pages``, which asks ``$top=999`` and follows every nextLink as
given (opaque: never parsed) until none comes back; a suspension that saw only
the first page would leave the members beyond it enabled. A nextLink is only
followed under the configured ``graph_url``: the bearer token goes nowhere else.

Every change is applied once per idempotency key through the identity effect
log (``apply_once``), and each Graph call converges (an existing group or
membership is success), so a step run again after a crash between Graph and
the log commit repeats nothing.

Token: OAuth2 client credentials at ``{login_url}/{tenant}/oauth2/v2.0/token``
with scope ``https://graph.microsoft.com/.default``; application permissions
``Group.ReadWrite.All``, ``GroupMember.ReadWrite.All``, ``User.ReadWrite.All``
(``User.EnableDisableAccount.All`` + ``User.Read.All`` suffice for the
accounts). The secret and the bearer token never appear in errors, logs or reprs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import CheckRow, Retry
from tenantops.drivers.identity.local import _from_record
from tenantops.drivers.identity.models import IdentityEffect
from tenantops.drivers.identity.port import Grant, GroupState, Permission
from tenantops.drivers.identity.settings import EntraSettings, IdentityError, failure

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MARKER = "tenantops tenant "  # the group's description: MARKER + tenant id
EXTENSION = "com.tenantops.identity"  # the open extension holding grants and the switch
PERMISSIONS_FIX = (
    "grant the app registration the Microsoft Graph application permissions "
    "Group.ReadWrite.All, GroupMember.ReadWrite.All and User.ReadWrite.All "
    "(or User.Read.All + User.EnableDisableAccount.All), then an admin consents"
)
TOP = "999"  # entries asked per page of a list: Graph's maximum ``$top``
HINTS = {
    401: "the app's credentials were refused; check client id/secret (`tenantops doctor`)",
    403: f"Graph refused the call; {PERMISSIONS_FIX}",
}


def _already(response: httpx.Response) -> bool:
    """Graph's answer that a reference (member) or object already exists."""
    if response.status_code == 409:
        return True
    if response.status_code != 400:
        return False
    try:
        message = str(response.json().get("error", {}).get("message", ""))
    except ValueError:
        return False
    return "already exist" in message


def _upn(subject: str) -> str:
    return subject.strip().lower()


@dataclass
class Access:
    """What Graph groups cannot hold natively, kept in the group's open extension."""

    tenant_id: str
    enabled: bool = True
    grants: dict[str, Permission] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)  # accounts tenantops switched off
    stored: bool = field(default=False, compare=False)  # the group's extension exists

    @classmethod
    def read(cls, body: dict[str, Any]) -> Access:
        pairs = (str(v).rsplit("=", 1) for v in body.get("grants", []) if "=" in str(v))
        return cls(
            tenant_id=str(body.get("tenantId", "")),
            enabled=body.get("enabled", True) is not False,
            grants={s: Permission(p) for s, p in pairs if p in {x.value for x in Permission}},
            disabled={str(x) for x in body.get("disabled", [])},
            stored=True,
        )

    def body(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "enabled": self.enabled,
            "grants": [f"{s}={p.value}" for s, p in sorted(self.grants.items())],
            "disabled": sorted(self.disabled),
        }


class EntraIdentity:
    """``IdentityProvider`` on Entra ID groups and users."""

    def __init__(
        self,
        db: Database,
        settings: EntraSettings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self._http = httpx.Client(timeout=settings.timeout_seconds, transport=transport)
        self._token: str | None = None

    def __repr__(self) -> str:
        return (
            f"EntraIdentity(tenant={self.settings.tenant_id!r}, client={self.settings.client_id!r})"
        )

    def close(self) -> None:
        self._http.close()

    # HTTP ----------------------------------------------------------------------------------

    def _fetch_token(self) -> str:
        s = self.settings
        url = f"{s.login_url.rstrip('/')}/{s.tenant_id}/oauth2/v2.0/token"
        try:
            response = self._http.post(
                url,
                data={
                    "client_id": s.client_id,
                    "client_secret": s.client_secret.get_secret_value(),
                    "grant_type": "client_credentials",
                    "scope": GRAPH_SCOPE,
                },
            )
        except httpx.HTTPError as exc:
            raise IdentityError(
                f"Entra token endpoint unreachable: {type(exc).__name__}", retry=Retry.RETRIABLE
            ) from None
        if response.status_code in (400, 401) and "invalid_client" in response.text:
            raise IdentityError(
                "Entra refused the client credentials (invalid_client); check client id/secret",
                retry=Retry.NEEDS_HUMAN,
                status=response.status_code,
            )
        if response.status_code != 200:
            raise failure("Entra token", response.status_code, response.headers.get("Retry-After"))
        token = response.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise IdentityError("Entra token answer had no access_token", retry=Retry.PERMANENT)
        return token

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        ok: Callable[[httpx.Response], bool] = lambda r: False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Call Graph; a 2xx or an answer ``ok`` accepts is returned, anything else raised.

        ``path`` is relative to ``graph_url``, or an absolute URL under it (a nextLink).
        """
        url = self._under_graph(path, what) if "://" in path else f"{self._base}{path}"
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._fetch_token()
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise IdentityError(
                    f"{what}: Graph unreachable ({type(exc).__name__})", retry=Retry.RETRIABLE
                ) from None
            if response.status_code == 401 and attempt == 1:
                self._token = None  # expired: one fresh token, then the verdict stands
                continue
            if response.is_success or ok(response):
                return response
            if response.status_code == 409:
                raise IdentityError(f"{what}: HTTP 409 conflict", retry=Retry.PERMANENT, status=409)
            hint = HINTS.get(response.status_code, "")
            raise failure(what, response.status_code, response.headers.get("Retry-After"), hint)
        raise AssertionError("unreachable")  # pragma: no cover

    # Graph objects -------------------------------------------------------------------------

    def _marker(self, tenant_id: str) -> str:
        return f"{MARKER}{tenant_id}"

    def _find_group(self, tenant_id: str) -> dict[str, Any] | None:
        literal = self._marker(tenant_id).replace("'", "''")  # an OData string literal
        response = self._call(
            "GET",
            "/groups",
            "find the tenant group",
            params={
                "$filter": f"description eq '{literal}'",
                "$select": "id,displayName,description",
            },
        )
        found = response.json().get("value", [])
        return found[0] if found else None

    @property
    def _base(self) -> str:
        return self.settings.graph_url.rstrip("/")

    def _under_graph(self, link: str, what: str) -> str:
        """``link`` if it is an absolute URL under ``graph_url``: the token goes nowhere else."""
        if link.startswith(f"{self._base}/") or link.startswith(f"{self._base}?"):
            return link
        where = urlsplit(link)
        shown = f"{where.scheme}://{where.hostname}" if where.hostname else "a relative URL"
        raise IdentityError(
            f"{what}: Graph returned a next page outside the configured graph_url "
            f"({shown}, not under {self._base}); not following it with the token "
            "(check TENANTOPS_IDENTITY__ENTRA__GRAPH_URL)",
            retry=Retry.NEEDS_HUMAN,
        )

    def _pages(self, path: str, what: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every entry of a Graph list: ``$top=999``, then each ``@odata.nextLink`` as given.

        Each page goes through ``_call`` (token refresh, error mapping, the graph_url
        check), so a failure on any page fails the read: never a partial list.
        """
        found: list[dict[str, Any]] = []
        link: str | None = path
        query: dict[str, str] | None = {**params, "$top": TOP}
        followed: set[str] = set()
        while link is not None:
            body = self._call("GET", link, what, params=query).json()
            found.extend(dict(x) for x in body.get("value", []))
            following = body.get("@odata.nextLink")
            if following is not None and not isinstance(following, str):
                raise IdentityError(
                    f"{what}: Graph answered a malformed nextLink", retry=Retry.PERMANENT
                )
            if following in followed:  # a proxy or server answering in a circle: never loop
                raise IdentityError(
                    f"{what}: Graph answered a nextLink it had already given", retry=Retry.PERMANENT
                )
            if following:
                followed.add(following)
            # Opaque: sent as given (it carries the query), only checked to be under graph_url.
            link = self._under_graph(following, what) if following else None
            query = None
        return found

    def _user(self, subject: str, what: str) -> dict[str, Any] | None:
        response = self._call(
            "GET",
            f"/users/{quote(_upn(subject), safe='@')}",  # '#EXT#' in a guest's UPN
            what,
            ok=lambda r: r.status_code == 404,
            params={"$select": "id,userPrincipalName,accountEnabled"},
        )
        return None if response.status_code == 404 else dict(response.json())

    def _members(self, group_id: str) -> list[dict[str, Any]]:
        members = self._pages(
            f"/groups/{group_id}/members",
            "read the group's members",
            {"$select": "id,userPrincipalName,accountEnabled"},
        )
        return [m for m in members if m.get("userPrincipalName")]

    def _set_account(self, user_id: str, enabled: bool) -> None:
        self._call(
            "PATCH",
            f"/users/{user_id}",
            "set the account's accountEnabled (user not found)",
            json={"accountEnabled": enabled},
        )

    # State: an open extension on the group -----------------------------------------------

    def _extension(self, group_id: str) -> Access | None:
        response = self._call(
            "GET",
            f"/groups/{group_id}/extensions/{EXTENSION}",
            "read the group's tenantops extension",
            ok=lambda r: r.status_code == 404,
        )
        return None if response.status_code == 404 else Access.read(response.json())

    def _save(self, group_id: str, access: Access) -> None:
        """Write ``access`` to the group's extension: created the first time, updated after."""
        if access.stored:
            self._call(
                "PATCH",
                f"/groups/{group_id}/extensions/{EXTENSION}",
                "update the group's tenantops extension (group not found)",
                json=access.body(),
            )
            return
        created = self._call(
            "POST",
            f"/groups/{group_id}/extensions",
            "create the group's tenantops extension (group not found)",
            ok=lambda r: r.status_code == 409,  # written by a concurrent run: update it
            json={
                "@odata.type": "microsoft.graph.openTypeExtension",
                "extensionName": EXTENSION,
                **access.body(),
            },
        )
        access.stored = True
        if created.status_code == 409:  # written by a concurrent run: update it
            self._save(group_id, access)

    def _state(self, tenant_id: str, group: dict[str, Any], access: Access) -> GroupState:
        subjects = sorted(_upn(m["userPrincipalName"]) for m in self._members(group["id"]))
        return GroupState(
            tenant_id=tenant_id,
            tenant_name=str(group["displayName"]).removeprefix(self.settings.group_prefix),
            group=str(group["displayName"]),
            enabled=access.enabled,
            members=tuple(Grant(s, access.grants.get(s, Permission.READ)) for s in subjects),
        )

    def _change(
        self,
        *,
        key: str,
        operation: str,
        tenant_id: str,
        change: Callable[[dict[str, Any], Access], None],
        create: Callable[[], dict[str, Any]] | None = None,
    ) -> GroupState:
        def run(session: Session) -> GroupState:
            group = self._find_group(tenant_id)
            if group is None and create is not None:
                group = create()
            if group is None:
                raise IdentityError(
                    f"tenant {tenant_id} has no Entra group; create it first",
                    retry=Retry.NEEDS_HUMAN,
                )
            found = self._extension(group["id"])
            access = found if found is not None else Access(tenant_id=tenant_id)
            change(group, access)
            self._save(group["id"], access)
            return self._state(tenant_id, group, access)

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

    def _add(self, group_id: str, grant: Grant, access: Access) -> None:
        user = self._user(grant.subject, "look up the user")
        if user is None:
            raise IdentityError(
                f"no Entra user {_upn(grant.subject)!r}; create or invite them first",
                retry=Retry.PERMANENT,
                status=404,
            )
        ref = f"{self.settings.graph_url.rstrip('/')}/directoryObjects/{user['id']}"
        self._call(
            "POST",
            f"/groups/{group_id}/members/$ref",
            "add the member (group not found)",
            ok=_already,
            json={"@odata.id": ref},
        )
        access.grants[_upn(grant.subject)] = grant.permission
        if not access.enabled and user.get("accountEnabled") is not False:
            self._set_account(str(user["id"]), False)  # joins a suspended tenant: stays out
            access.disabled.add(str(user["id"]))

    # The port ------------------------------------------------------------------------------

    def create_group(
        self, *, tenant_id: str, tenant_name: str, grants: Sequence[Grant], idempotency_key: str
    ) -> GroupState:
        name = f"{self.settings.group_prefix}{tenant_name}"

        def create() -> dict[str, Any]:
            response = self._call(
                "POST",
                "/groups",
                "create the tenant group",
                ok=lambda r: r.status_code == 409,  # a concurrent create won
                json={
                    "displayName": name,
                    "description": self._marker(tenant_id),
                    "mailEnabled": False,
                    "mailNickname": name,
                    "securityEnabled": True,
                },
            )
            if response.status_code != 409:
                return dict(response.json())
            group = self._find_group(tenant_id)
            if group is None:
                raise IdentityError(
                    "Graph answered 409 creating the group but none carries this tenant's id",
                    retry=Retry.NEEDS_HUMAN,
                    status=409,
                )
            return group

        def change(group: dict[str, Any], access: Access) -> None:
            for grant in grants:
                self._add(group["id"], grant, access)

        return self._change(
            key=idempotency_key,
            operation="create_group",
            tenant_id=tenant_id,
            change=change,
            create=create,
        )

    def add_member(self, *, tenant_id: str, grant: Grant, idempotency_key: str) -> GroupState:
        def change(group: dict[str, Any], access: Access) -> None:
            self._add(group["id"], grant, access)

        return self._change(
            key=idempotency_key, operation="add_member", tenant_id=tenant_id, change=change
        )

    def remove_member(self, *, tenant_id: str, subject: str, idempotency_key: str) -> GroupState:
        def change(group: dict[str, Any], access: Access) -> None:
            user = self._user(subject, "look up the user")
            if user is not None:
                self._call(
                    "DELETE",
                    f"/groups/{group['id']}/members/{user['id']}/$ref",
                    "remove the member",
                    ok=lambda r: r.status_code == 404,  # not a member: already removed
                )
            # A member removed while suspended keeps its place in ``disabled``: enable
            # switches it back on.
            access.grants.pop(_upn(subject), None)

        return self._change(
            key=idempotency_key, operation="remove_member", tenant_id=tenant_id, change=change
        )

    def _set_enabled(self, tenant_id: str, enabled: bool, key: str) -> GroupState:
        def change(group: dict[str, Any], access: Access) -> None:
            if enabled:
                for user_id in sorted(access.disabled):  # only what tenantops switched off
                    self._call(
                        "PATCH",
                        f"/users/{user_id}",
                        "enable the account",
                        ok=lambda r: r.status_code == 404,  # deleted since: nothing to enable
                        json={"accountEnabled": True},
                    )
                access.disabled = set()
            else:
                # One disabled by others stays theirs.
                on = [m for m in self._members(group["id"]) if m.get("accountEnabled") is not False]
                if on:
                    # Intent first: if a call below fails, the step's retry finds these
                    # already off and must still know tenantops switched them off, or a
                    # reactivation would leave them disabled.
                    access.disabled |= {str(m["id"]) for m in on}
                    self._save(group["id"], access)
                for member in on:
                    self._set_account(str(member["id"]), False)
            access.enabled = enabled

        operation = "enable_access" if enabled else "disable_access"
        return self._change(key=key, operation=operation, tenant_id=tenant_id, change=change)

    def disable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, False, idempotency_key)

    def enable_access(self, *, tenant_id: str, idempotency_key: str) -> GroupState:
        return self._set_enabled(tenant_id, True, idempotency_key)

    def get_group(self, *, tenant_id: str) -> GroupState | None:
        group = self._find_group(tenant_id)
        if group is None:
            return None
        access = self._extension(group["id"]) or Access(tenant_id=tenant_id)
        return self._state(tenant_id, group, access)

    def list_groups(self) -> list[GroupState]:
        groups = self._pages(
            "/groups",
            "list the tenant groups",
            {
                "$filter": f"startswith(description,'{MARKER}')",
                "$select": "id,displayName,description",
            },
        )
        states = []
        for group in groups:
            tenant_id = str(group.get("description", "")).removeprefix(MARKER)
            access = self._extension(group["id"]) or Access(tenant_id=tenant_id)
            states.append(self._state(tenant_id, group, access))
        return sorted(states, key=lambda s: s.tenant_name)

    # Doctor --------------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Token obtainable, groups readable, and the permissions to change them granted."""
        rows: list[CheckRow] = []
        try:
            self._token = self._fetch_token()
        except IdentityError as exc:
            fix = "set TENANTOPS_IDENTITY__ENTRA__TENANT_ID/CLIENT_ID/CLIENT_SECRET to a valid app"
            return [CheckRow("entra token", False, str(exc), fix)]
        rows.append(CheckRow("entra token", True, f"tenant {self.settings.tenant_id}", ""))
        try:
            self._call("GET", "/groups", "read groups", params={"$top": "1", "$select": "id"})
        except IdentityError as exc:
            return [*rows, CheckRow("entra read groups", False, str(exc), PERMISSIONS_FIX)]
        rows.append(CheckRow("entra read groups", True, "GET /groups", ""))
        # Creating a group needs an application role: read the roles the token carries.
        roles = set(_claims(self._token).get("roles", []))
        needed = {"Group.ReadWrite.All", "GroupMember.ReadWrite.All"}
        users = {"User.ReadWrite.All", "User.EnableDisableAccount.All"}
        missing = sorted(needed - roles) + ([] if roles & users else ["User.ReadWrite.All"])
        rows.append(
            CheckRow(
                "entra create groups and disable accounts",
                not missing,
                "roles granted" if not missing else f"missing {', '.join(missing)}",
                "" if not missing else PERMISSIONS_FIX,
            )
        )
        return rows


def _claims(token: str | None) -> dict[str, Any]:
    """The unverified claims of a Graph access token (only to name missing roles)."""
    if not token or token.count(".") != 2:
        return {}
    part = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
