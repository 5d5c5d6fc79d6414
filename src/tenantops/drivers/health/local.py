"""Health checks over real HTTP (httpx), and the access review against the identity port.

The URL of a tenant comes from ``url_template`` (``{tenant}`` is its name):
a configured ``settings.health.base_url`` or, in the embedded default, this
server's built-in probe ``/probe/tenants/{tenant}``. Passing results are
recorded in ``health_results`` under the step's idempotency key.

A failing answer is described in one short line (``_said``): the error lands
in ``runs show``, the run page and on-call page summaries, where a web
server's HTML error page would drown everything else.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import ssl
import time
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError

from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.health.models import HealthResult
from tenantops.drivers.health.port import CheckResult
from tenantops.drivers.identity.port import IdentityProvider, access_findings
from tenantops.kit.clock import utcnow


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


JSON_LIMIT = 300  # a JSON verdict (the probe's ``checks``) is worth reading whole
TEXT_LIMIT = 120  # any other body: enough to recognise the page, short enough for a summary
_INVISIBLE = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _said(response: httpx.Response) -> str:
    """What a failing endpoint answered, as one short line to append to the error.

    A JSON body is kept as sent (up to ``JSON_LIMIT``) since it usually says
    which check failed; any other body loses its tags and line breaks and is
    cut to ``TEXT_LIMIT``, its content type named when it is an HTML page.
    """
    text = response.text
    if not text.strip():
        return " with an empty body"
    media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        json.loads(text)
    except ValueError:
        pass
    else:
        return f": {_cut(text, JSON_LIMIT)}"
    page = "html" in media or text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))
    if page:
        text = html.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", text)))
    shown = _cut(text, TEXT_LIMIT) or "no text"
    return f" ({media or 'html'}): {shown}" if page else f": {shown}"


def _client(
    timeout_seconds: float, tls: ssl.SSLContext, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    return httpx.Client(
        timeout=timeout_seconds, transport=transport, follow_redirects=False, verify=tls
    )


def _request(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise DriverError(f"{method} {url} failed: {exc}", retry=Retry.RETRIABLE) from exc
    return response, round((time.perf_counter() - started) * 1000, 1)


def _url_of(url_template: str, tenant_name: str) -> str:
    if "{tenant}" not in url_template:
        raise ValueError("the health URL needs a {tenant} placeholder")
    return url_template.replace("{tenant}", tenant_name)


def reach(url_template: str, *, tenant_name: str, timeout_seconds: float) -> httpx.Response:
    """One GET of a tenant's health URL exactly as the checks make it (same TLS, no
    redirects, same timeout), whatever it answers: ``tenantops doctor`` proves with it that
    the URL is reachable before an onboarding depends on it.

    Raises ``ValueError`` for a template without ``{tenant}`` and a retriable
    ``DriverError`` when nothing answers (refused, timed out, TLS failed).
    """
    url = _url_of(url_template, tenant_name)
    with _client(timeout_seconds, ssl.create_default_context()) as client:
        return _request(client, "GET", url)[0]


class HttpHealth:
    """``HealthChecker`` making real HTTP calls; state (passing results) in the database."""

    def __init__(
        self,
        db: Database,
        *,
        url_template: str,
        identity: IdentityProvider,
        timeout_seconds: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _url_of(url_template, "")  # refuses a template without a placeholder
        self.db = db
        self.url_template = url_template
        self.identity = identity
        self.timeout = timeout_seconds
        # Building an SSL context loads the CA bundle (milliseconds of CPU); one
        # per driver, not one per check.
        self._tls = ssl.create_default_context()
        self.transport = transport

    def url_of(self, tenant_name: str) -> str:
        return _url_of(self.url_template, tenant_name)

    def _recorded(self, key: str, kind: str) -> CheckResult | None:
        with self.db.read() as session:
            row = session.get(HealthResult, key)
            if row is None:
                return None
            if row.kind != kind:
                raise DriverError(
                    f"idempotency key {key!r} was used for a {row.kind} check, not {kind}",
                    retry=Retry.PERMANENT,
                )
            r = row.result
            return CheckResult(
                kind=r["kind"],
                tenant_id=r["tenant_id"],
                url=r["url"],
                passed=r["passed"],
                status=r["status"],
                latency_ms=r["latency_ms"],
                detail=r["detail"],
            )

    def _record(self, key: str, result: CheckResult) -> CheckResult:
        try:
            with self.db.write() as session:
                session.add(
                    HealthResult(
                        idempotency_key=key,
                        kind=result.kind,
                        tenant_id=result.tenant_id,
                        result=result.as_dict(),
                        at=utcnow(),
                    )
                )
        except IntegrityError:
            # A concurrent run of the same step recorded first: that record stands.
            recorded = self._recorded(key, result.kind)
            if recorded is not None:
                return recorded
            raise
        return result

    def _client(self) -> httpx.Client:
        return _client(self.timeout, self._tls, self.transport)

    def check(self, *, tenant_id: str, tenant_name: str, idempotency_key: str) -> CheckResult:
        recorded = self._recorded(idempotency_key, "check")
        if recorded is not None:
            return recorded
        url = self.url_of(tenant_name)
        with self._client() as client:
            response, ms = _request(client, "GET", url)
        body = _json(response)
        if not response.is_success or body.get("serving") is False:
            raise DriverError(
                f"GET {url} answered {response.status_code}{_said(response)}",
                retry=Retry.RETRIABLE,
            )
        detail: dict[str, Any] = {k: body[k] for k in ("state", "serving", "checks") if k in body}
        return self._record(
            idempotency_key,
            CheckResult(
                kind="check",
                tenant_id=tenant_id,
                url=url,
                passed=True,
                status=response.status_code,
                latency_ms=ms,
                detail=detail,
            ),
        )

    def synthetic(self, *, tenant_id: str, tenant_name: str, idempotency_key: str) -> CheckResult:
        recorded = self._recorded(idempotency_key, "synthetic")
        if recorded is not None:
            return recorded
        url = self.url_of(tenant_name).rstrip("/") + "/synthetic"
        nonce = secrets.token_hex(16)
        with self._client() as client:
            wrote, write_ms = _request(client, "PUT", url, json={"value": nonce})
            if not wrote.is_success or _json(wrote).get("written") is False:
                raise DriverError(
                    f"PUT {url} answered {wrote.status_code}{_said(wrote)}",
                    retry=Retry.RETRIABLE,
                )
            read, read_ms = _request(client, "GET", url)
        got = _json(read).get("value")
        if not read.is_success or got != nonce:
            raise DriverError(
                f"GET {url} answered {read.status_code} with {got!r}, not the value written",
                retry=Retry.RETRIABLE,
            )
        return self._record(
            idempotency_key,
            CheckResult(
                kind="synthetic",
                tenant_id=tenant_id,
                url=url,
                passed=True,
                status=read.status_code,
                latency_ms=round(write_ms + read_ms, 1),
                detail={"write_ms": write_ms, "read_ms": read_ms, "read_back": True},
            ),
        )

    def review_access(
        self,
        *,
        tenant_id: str,
        owner: str,
        contacts: Sequence[str],
        idempotency_key: str,
    ) -> CheckResult:
        recorded = self._recorded(idempotency_key, "review")
        if recorded is not None:
            return recorded
        group = self.identity.get_group(tenant_id=tenant_id)
        if group is None:
            raise DriverError(f"tenant {tenant_id} has no group to review", retry=Retry.NEEDS_HUMAN)
        findings = access_findings(group, owner=owner, contacts=contacts)
        grants = [{"subject": g.subject, "permission": g.permission.value} for g in group.members]
        if findings:
            raise DriverError(
                "access review failed: " + "; ".join(findings), retry=Retry.NEEDS_HUMAN
            )
        return self._record(
            idempotency_key,
            CheckResult(
                kind="review",
                tenant_id=tenant_id,
                url=None,
                passed=True,
                detail={"group": group.group, "grants": grants, "findings": []},
            ),
        )
