"""The ServiceNow adapter: incident, change and problem records through the Table API.

``open`` first asks ``GET /api/now/table/<table>?sysparm_query=correlation_id=<key>``
and returns the record found there (``replayed``); only when there is none does
it ``POST /api/now/table/<table>``. ``correlation_id`` is the step's
idempotency key (hashed when it is longer than the field's 100 characters or
holds characters an encoded query would read as syntax), so a re-executed step
finds the record it made instead of opening a second one. ``correlation_display``
reads ``<correlation_display>:<tenant>`` — the link back to the tenant — and
``tenant_field`` (a custom ``u_`` field) gets the tenant's name too when set.
``update`` is ``PATCH /api/now/table/<table>/<sys_id>``; a work note carries the
step's key as a marker, and is left out when the record's journal
(``sys_journal_field``) already holds that marker — a re-run step does not post
it twice (where the user may not read the journal, it may, recognisably).
Every answer carries the record's ``sys_mod_count`` (``Ticket.version``): the
mirror orders answers by it, not by any host's clock (decision 0043).

What a ServiceNow answer means for a retry (errors come as
``{"error": {"message", "detail"}, "status": "failure"}``):

=================================================  ==================
401 (bad credentials), 403 (ACL, role missing)     ``needs_human``
TLS verification failed                            ``needs_human``
400 (bad field/table), 404 (no such record), other ``permanent``
409, 429 (``Retry-After`` kept), 5xx               ``retriable``
no connection, HTTP timeout                        ``retriable``
=================================================  ==================

Neither the password nor the token appears in a message, a repr or a log line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tenantops.drivers.errors import CheckRow, DriverError, Retry, retry_after
from tenantops.drivers.http import send
from tenantops.drivers.itsm.port import Ticket, TicketKind
from tenantops.drivers.itsm.settings import ServiceNowSettings
from tenantops.itil import states
from tenantops.itil.states import Kind

TABLES = {
    TicketKind.INCIDENT: "incident",
    TicketKind.CHANGE: "change_request",
    TicketKind.PROBLEM: "problem",
}
RESERVED = {"sys_id", "number", "correlation_id", "correlation_display", "sys_mod_count"}
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
# sys_mod_count: the instance's count of the record's updates, the order of its answers.
FIELDS = "sys_id,number,state,short_description,correlation_id,correlation_display,sys_mod_count"


class ServiceNowError(DriverError):
    """ServiceNow refused or missed a call; ``status`` and ``retry_after`` when known."""


def verdict(status: int) -> Retry:
    """What a ServiceNow error status means for trying again."""
    if status in (401, 403):
        return Retry.NEEDS_HUMAN
    if status in (409, 429) or status >= 500:
        return Retry.RETRIABLE
    return Retry.PERMANENT


HINTS = {
    401: " — the ServiceNow credentials are wrong or expired (`tenantops doctor`)",
    403: " — the integration user lacks a role or an ACL allows it not (`tenantops doctor`)",
}


def correlation_of(idempotency_key: str) -> str:
    """The ``correlation_id`` for a key: the key itself when it fits, else its hash."""
    if PLAIN_KEY.fullmatch(idempotency_key):
        return idempotency_key
    return "tenantops-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:48]


class ServiceNowItsm:
    """``Itsm`` on the ServiceNow Table API."""

    def __init__(
        self, settings: ServiceNowSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base = settings.instance_url.rstrip("/")
        token = settings.token.get_secret_value()
        auth: httpx.Auth | None = None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        else:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self._client = httpx.Client(
            base_url=self.base,
            headers=headers,
            auth=auth,
            timeout=settings.timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ServiceNowItsm({self.base})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # The port ---------------------------------------------------------------------------

    def open(
        self,
        kind: TicketKind,
        *,
        tenant: str,
        short_description: str,
        description: str,
        idempotency_key: str,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """The record this key opened before, or a new one linked to ``tenant``."""
        extra = _checked(fields)
        table = TABLES[kind]
        correlation = correlation_of(idempotency_key)
        found = self._call(
            "GET",
            f"/api/now/table/{table}",
            params={
                "sysparm_query": f"correlation_id={correlation}^ORDERBYsys_created_on",
                "sysparm_limit": "1",
                "sysparm_fields": self._fields(extra),
                "sysparm_exclude_reference_link": "true",
            },
        )
        records = found.get("result") or []
        if records:
            return self._ticket(kind, records[0], extra, replayed=True)
        body: dict[str, str] = {
            **extra,
            "short_description": short_description[:160],
            "description": description,
            "correlation_id": correlation,
            "correlation_display": f"{self.settings.correlation_display}:{tenant}"[:100],
        }
        if self.settings.tenant_field:
            body[self.settings.tenant_field] = tenant
        made = self._call(
            "POST",
            f"/api/now/table/{table}",
            json=body,
            params={
                "sysparm_fields": self._fields(extra),
                "sysparm_exclude_reference_link": "true",
            },
        )
        return self._ticket(kind, made.get("result") or {}, extra)

    def update(
        self,
        ticket: Ticket,
        *,
        idempotency_key: str,
        state: str | None = None,
        work_notes: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Set ``state``/``fields`` (idempotent) and add ``work_notes`` marked with the key."""
        extra = _checked(fields)
        body = dict(extra)
        if state is not None:
            # Runbooks name states as the ITIL records do; the instance wants its codes.
            body["state"] = states.code_of(Kind(ticket.kind.value), state) or state
        if work_notes:
            marker = f"[tenantops {correlation_of(idempotency_key)}]"
            if not self._noted(ticket, marker):
                body["work_notes"] = f"{work_notes}\n{marker}"
        kept = {**ticket.fields, **extra}
        answer = self._call(
            "PATCH",
            self._record_path(ticket),
            json=body,
            params={
                "sysparm_fields": self._fields(kept),
                "sysparm_exclude_reference_link": "true",
            },
        )
        return self._ticket(ticket.kind, answer.get("result") or {}, kept)

    def _noted(self, ticket: Ticket, marker: str) -> bool:
        """Whether a work note with ``marker`` is already in the record's journal.

        Reading ``sys_journal_field`` takes a role many integration users lack;
        without it the note is posted (a re-run may then post it twice).
        """
        try:
            found = self._call(
                "GET",
                "/api/now/table/sys_journal_field",
                params={
                    "sysparm_query": f"element_id={ticket.id}^element=work_notes^valueLIKE{marker}",
                    "sysparm_limit": "1",
                    "sysparm_fields": "sys_id",
                },
            )
        except ServiceNowError as e:
            if e.status in (403, 404):
                return False
            raise
        return bool(found.get("result"))

    def get(self, ticket: Ticket) -> Ticket:
        """The record as it is now."""
        answer = self._call(
            "GET",
            self._record_path(ticket),
            params={
                "sysparm_fields": self._fields(ticket.fields),
                "sysparm_exclude_reference_link": "true",
            },
        )
        return self._ticket(ticket.kind, answer.get("result") or {}, ticket.fields)

    # Doctor -----------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable and logged in, then read access to each of the three tables.

        Write access cannot be checked without writing; the first ``open``
        shows it (a 403 there is ``needs_human``).
        """
        rows: list[CheckRow] = []
        for kind, table in TABLES.items():
            try:
                self._call(
                    "GET",
                    f"/api/now/table/{table}",
                    params={"sysparm_limit": "1", "sysparm_fields": "sys_id"},
                )
            except ServiceNowError as e:
                if not rows:
                    if e.status is None:
                        fix = f"check that {self.base} is the instance and is reachable"
                        return [CheckRow("servicenow reachable", False, str(e), fix)]
                    if e.status == 401:
                        rows.append(CheckRow("servicenow reachable", True, self.base, ""))
                        return [*rows, CheckRow("servicenow login", False, str(e), FIX_LOGIN)]
                    rows.append(CheckRow("servicenow reachable", True, self.base, ""))
                    rows.append(CheckRow("servicenow login", True, self._who(), ""))
                rows.append(CheckRow(f"servicenow can read {table}", False, str(e), FIX_ROLES))
                continue
            if not rows:
                rows.append(CheckRow("servicenow reachable", True, self.base, ""))
                rows.append(CheckRow("servicenow login", True, self._who(), ""))
            rows.append(CheckRow(f"servicenow can read {table}", True, kind.value, ""))
        return rows

    def _who(self) -> str:
        return self.settings.username or "OAuth token"

    # HTTP -------------------------------------------------------------------------------

    def _record_path(self, ticket: Ticket) -> str:
        return f"/api/now/table/{TABLES[ticket.kind]}/{quote(ticket.id, safe='')}"

    def _fields(self, extra: Mapping[str, str]) -> str:
        names = [FIELDS, *extra]
        if self.settings.tenant_field:
            names.append(self.settings.tenant_field)
        return ",".join(names)

    def _ticket(
        self,
        kind: TicketKind,
        record: Mapping[str, Any],
        extra: Mapping[str, str],
        *,
        replayed: bool = False,
    ) -> Ticket:
        sys_id = str(record.get("sys_id") or "")
        if not sys_id:
            raise ServiceNowError(
                "ServiceNow answered without a sys_id", retry=Retry.RETRIABLE, status=None
            )
        display = str(record.get("correlation_display") or "")
        prefix = f"{self.settings.correlation_display}:"
        tenant = display[len(prefix) :] if display.startswith(prefix) else ""
        if self.settings.tenant_field and record.get(self.settings.tenant_field):
            tenant = str(record[self.settings.tenant_field])
        table = TABLES[kind]
        return Ticket(
            kind=kind,
            id=sys_id,
            number=str(record.get("number") or ""),
            state=str(record.get("state") or ""),
            tenant=tenant,
            correlation_id=str(record.get("correlation_id") or ""),
            link=f"{self.base}/nav_to.do?uri={table}.do?sys_id={sys_id}",
            replayed=replayed,
            fields={k: str(record.get(k) or "") for k in ("short_description", *extra)},
            version=_mod_count(record.get("sys_mod_count")),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        what = f"ServiceNow {method} {path}"
        response = send(
            self._client, method, path, json=json, params=params, what=what, error=ServiceNowError
        )
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                # A hibernating developer instance answers 200 with an HTML page.
                raise ServiceNowError(
                    f"{what}: answer is not JSON (instance hibernating?)", retry=Retry.RETRIABLE
                ) from None
            return body if isinstance(body, dict) else {}
        status = response.status_code
        raise ServiceNowError(
            f"{what}: HTTP {status} {_message(response)}{HINTS.get(status, '')}",
            retry=verdict(status),
            status=status,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )


FIX_LOGIN = "set TENANTOPS_SERVICENOW__USERNAME/__PASSWORD (or __TOKEN) to a valid integration user"
FIX_ROLES = "give the integration user itil (incident, problem) and change roles"


def _checked(fields: Mapping[str, str] | None) -> dict[str, str]:
    """Caller's extra fields: plain column names, none of the ones this adapter owns."""
    extra = dict(fields or {})
    for name in extra:
        if name in RESERVED or not FIELD_NAME.fullmatch(name):
            raise ServiceNowError(f"field {name!r} cannot be set", retry=Retry.PERMANENT)
    return extra


def _mod_count(value: object) -> int | None:
    """``sys_mod_count`` as a number (a string in JSON); None when missing or not one (a
    field ACL may hide it: the answer is then applied unordered, as the mirror allows)."""
    text = str(value if value is not None else "").strip()
    return int(text) if text.isdigit() else None


def _message(response: httpx.Response) -> str:
    """ServiceNow's ``error.message: error.detail``, cut short; never a header."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text = str(error.get("message") or "")
        if error.get("detail"):
            text += f": {error['detail']}"
        return text[:300] or response.reason_phrase
    return response.reason_phrase
