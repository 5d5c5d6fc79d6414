"""The Argo CD adapter: its REST API over httpx with a bearer token.

``POST /api/v1/applications/{name}/sync`` starts a sync; ``GET
/api/v1/applications/{name}`` is read for ``status.sync.status``,
``status.health.status``, ``status.operationState`` and ``status.history``.
``wait`` polls with a doubling delay (capped) until the Application is Synced
and Healthy, and stops at its timeout — the sleep and the clock are injected, so
tests poll a bounded number of times without waiting.

What an Argo CD answer means for a retry (errors come from its gRPC gateway as
``{"error", "code", "message"}``):

======================================================  ==================
401 (no/expired token), 403 (RBAC: permission denied)   ``needs_human``
TLS verification failed                                 ``needs_human``
Degraded health, a sync operation Failed/Errored        ``needs_human``
400 (bad request), 404 (no such Application), other     ``permanent``
409, 412, 429 (``Retry-After`` kept), 5xx               ``retriable``
no connection, HTTP timeout, wait timeout               ``retriable``
======================================================  ==================

A sync refused because "another operation is already in progress" is not an
error: that operation is the one a re-executed step started, so ``sync``
returns the state and ``wait`` follows it. ``wait`` also keeps polling through
404 until its timeout: right after the GitOps commit the tenant's Application
may not exist yet (the root app creates it on its next sync).

Waiting for a revision (the step's GitOps commit) is done at that commit or at
any later one whose history holds it — another change may have been committed
on top before Argo CD looked — decided by ``contains``, the GitOps repository's
ancestry check. Without it only the very revision counts. An Application still
at an older revision is read with ``?refresh=normal`` on the next poll, so Argo
CD looks at the repository now instead of at its next polling interval.

The token never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tenantops.drivers.argocd.port import DEGRADED, OUT_OF_SYNC, HistoryEntry, SyncState
from tenantops.drivers.argocd.settings import ArgoCDSettings
from tenantops.drivers.errors import CheckRow, DriverError, Retry, retry_after
from tenantops.drivers.http import send

IN_PROGRESS = "another operation is already in progress"


class ArgoCDError(DriverError):
    """Argo CD refused or missed a call; ``status`` and ``retry_after`` when known."""


def verdict(status: int) -> Retry:
    """What an Argo CD error status means for trying again."""
    if status in (401, 403):
        return Retry.NEEDS_HUMAN
    if status in (409, 412, 429) or status >= 500:
        return Retry.RETRIABLE
    return Retry.PERMANENT


HINTS = {
    401: " — the Argo CD token is missing, invalid or expired (`tenantops doctor`)",
    403: " — the token's role lacks this permission on the Application (`tenantops doctor`)",
    404: " — no such Application (has the GitOps root app created it?)",
}


def parse_state(app: str, body: Mapping[str, Any], *, history: int) -> SyncState:
    """An Application resource (``GET /api/v1/applications/{name}``) as a ``SyncState``."""
    status = body.get("status") or {}
    sync = status.get("sync") or {}
    operation = status.get("operationState") or {}
    entries = [
        HistoryEntry(
            id=int(h.get("id", 0)),
            revision=str(h.get("revision", "")),
            deployed_at=str(h.get("deployedAt", "")),
            deploy_started_at=h.get("deployStartedAt"),
        )
        for h in status.get("history") or []
    ]
    entries.sort(key=lambda h: h.id, reverse=True)
    return SyncState(
        app=app,
        sync_status=str(sync.get("status") or "Unknown"),
        health=str((status.get("health") or {}).get("status") or "Unknown"),
        revision=sync.get("revision") or None,
        operation_phase=operation.get("phase") or None,
        operation_message=operation.get("message") or None,
        history=tuple(entries[:history]),
    )


class ArgoCDRest:
    """``ArgoCD`` on the Argo CD REST API."""

    def __init__(
        self,
        settings: ArgoCDSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        contains: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._sleep, self._clock = sleep, clock
        self._contains = contains
        self._client = httpx.Client(
            base_url=settings.url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": "application/json",
            },
            verify=settings.verify(),
            timeout=settings.timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ArgoCDRest({self.settings.url})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # The port ---------------------------------------------------------------------------

    def sync(self, app: str, *, revision: str | None = None, prune: bool = True) -> SyncState:
        """Start a sync; an operation already running (this step's, re-run) is followed."""
        body: dict[str, Any] = {"name": app, "prune": prune, "dryRun": False}
        if revision:
            body["revision"] = revision
        try:
            answer = self._call("POST", f"{_app_path(app)}/sync", json=body)
        except ArgoCDError as e:
            if e.status in (400, 409, 412) and IN_PROGRESS in str(e):
                return self.status(app)
            raise
        return parse_state(app, answer, history=self.settings.history_entries)

    def status(self, app: str, *, refresh: bool = False) -> SyncState:
        """The Application's sync status, health, operation and newest history entries;
        ``refresh`` has Argo CD compare it with the repository first."""
        params = {"refresh": "normal"} if refresh else None
        answer = self._call("GET", _app_path(app), params=params)
        return parse_state(app, answer, history=self.settings.history_entries)

    def wait(
        self, app: str, *, timeout: float, revision: str | None = None, resync: bool = False
    ) -> SyncState:
        """Poll with backoff until Synced and Healthy (at ``revision`` or a later commit
        that holds it), or raise; with ``resync``, sync once more an Application left
        OutOfSync with nothing running (see the port)."""
        deadline = self._clock() + timeout
        delay = self.settings.poll_initial_seconds
        last = "not read yet"
        behind = False
        idle_out_of_sync = 0
        while True:
            pause = delay
            try:
                state = self.status(app, refresh=behind)
            except ArgoCDError as e:
                if not (e.retriable or e.status == 404):
                    raise
                last = f"last answer: {e}"
                pause = max(delay, e.retry_after or 0.0)
            else:
                last = f"last state: {state.describe()}"
                if state.health == DEGRADED:
                    raise ArgoCDError(
                        f"Argo CD Application {app} is Degraded ({state.describe()}): "
                        "look at its resources in Argo CD",
                        retry=Retry.NEEDS_HUMAN,
                    )
                if state.operation_phase in ("Failed", "Error"):
                    raise ArgoCDError(
                        f"Argo CD sync of {app} {state.operation_phase.lower()}: "
                        f"{state.operation_message or 'no message'}",
                        retry=Retry.NEEDS_HUMAN,
                    )
                try:
                    reached = self._reached(state, revision)
                except DriverError as e:  # the GitOps history could not say (yet)
                    if not e.retriable:
                        raise
                    reached, last = False, f"{last}; GitOps history: {e}"
                if state.done and reached:
                    return state
                behind = not reached
                idle = state.operation_phase in (None, "Succeeded")
                out_of_sync = state.sync_status == OUT_OF_SYNC and idle
                idle_out_of_sync = idle_out_of_sync + 1 if out_of_sync else 0
                if resync and idle_out_of_sync == 2:  # no automated sync: nobody else will
                    self.sync(app)
                    resync, last = False, f"{last}; asked to sync again"  # once per wait
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ArgoCDError(
                    f"Argo CD Application {app} not Synced/Healthy"
                    f"{f' at {revision[:12]}' if revision else ''} after {timeout:g}s; {last}",
                    retry=Retry.RETRIABLE,
                )
            self._sleep(min(pause, remaining))
            delay = min(delay * 2, self.settings.poll_max_seconds)

    def _reached(self, state: SyncState, revision: str | None) -> bool:
        if revision is None or state.revision == revision:
            return True
        if state.revision is None or self._contains is None:
            return False
        return self._contains(state.revision, revision)

    # Doctor -----------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable (``/api/version``), token valid (session userinfo), can list applications."""
        try:
            version = self._call("GET", "/api/version")
        except ArgoCDError as e:
            return [CheckRow("argocd reachable", False, str(e), self._fix_network(e))]
        rows = [CheckRow("argocd reachable", True, str(version.get("Version", "?")), "")]
        try:
            who = self._call("GET", "/api/v1/session/userinfo")
        except ArgoCDError as e:
            return [*rows, CheckRow("argocd token valid", False, str(e), FIX_LOGIN)]
        if not who.get("loggedIn"):
            return [*rows, CheckRow("argocd token valid", False, "not logged in", FIX_LOGIN)]
        rows.append(CheckRow("argocd token valid", True, str(who.get("username", "?")), ""))
        try:
            apps = self._call(
                "GET", "/api/v1/applications", params={"fields": "items.metadata.name"}
            )
        except ArgoCDError as e:
            return [*rows, CheckRow("argocd can read applications", False, str(e), FIX_RBAC)]
        count = len(apps.get("items") or [])
        rows.append(CheckRow("argocd can read applications", True, f"{count} visible", ""))
        return rows

    def _fix_network(self, error: ArgoCDError) -> str:
        if error.retry is Retry.NEEDS_HUMAN and error.status is None:
            return "set TENANTOPS_ARGOCD__CA_PATH to the CA bundle that signed the server"
        return f"check that {self.settings.url} is the Argo CD API server and is reachable"

    # HTTP -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        what = f"Argo CD {method} {path}"
        response = send(
            self._client, method, path, json=json, params=params, what=what, error=ArgoCDError
        )
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                raise ArgoCDError(f"{what}: answer is not JSON", retry=Retry.RETRIABLE) from None
            return body if isinstance(body, dict) else {}
        status = response.status_code
        raise ArgoCDError(
            f"{what}: HTTP {status} {_message(response)}{HINTS.get(status, '')}",
            retry=verdict(status),
            status=status,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )


FIX_LOGIN = (
    "set TENANTOPS_ARGOCD__TOKEN to a valid token "
    "(argocd account generate-token, or a project role token)"
)
FIX_RBAC = "grant the token's role `applications, get` and `applications, sync` (argocd-rbac-cm)"


def _app_path(app: str) -> str:
    return f"/api/v1/applications/{quote(app, safe='')}"


def _message(response: httpx.Response) -> str:
    """The gateway's ``message`` (or ``error``), cut short; never a header."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        text = body.get("message") or body.get("error") or response.reason_phrase
        return str(text)[:300]
    return response.reason_phrase
