"""Driving a tenant through the API as its users do: the one set of steps every test takes.

The plain calls (``create``, ``decide``, ``send_event``, ``suspend`` …) return
the response, for a test that looks at a refusal. ``request_tenant``, ``approve``
and ``step`` assert that the call succeeded and return its JSON body; ``ok`` and
``problem`` check any response. ``tenant_in`` brings a fresh tenant to any state
of the lifecycle; ``reactivated`` records what a reactivation run's last step
does. ``client`` is a ``TestClient``, or an ``httpx.Client`` whose
``base_url`` is a real server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.worker import Worker
from tenantops.tenants import service as tenants
from tenantops.tenants.actions import ENGINE as RUNBOOK_ENGINE
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors, Headers
from tests.factories import tenant_body

S = TenantState
TENANTS = "/api/v1/tenants"


class Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


class Client(Protocol):
    def post(self, url: str, *, json: Any = ..., headers: Headers | None = ...) -> Any: ...


PROBLEM = "application/problem+json"


def ok(response: Response, status: int = 200) -> dict[str, Any]:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: Response, status: int) -> dict[str, Any]:
    """The RFC 9457 problem of a response that must be one, with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# --- one API call each, the response as it came ---------------------------------


def create(client: Client, who: Headers, **overrides: Any) -> Response:
    response: Response = client.post(TENANTS, json=tenant_body(**overrides), headers=who)
    return response


def decide(
    client: Client, tenant: str, role: str, who: Headers, decision: str = "approve", **extra: Any
) -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/approvals",
        json={"role": role, "decision": decision, **extra},
        headers=who,
    )
    return response


def send_event(client: Client, tenant: str, name: str, who: Headers) -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/lifecycle-events", json={"event": name}, headers=who
    )
    return response


def suspend(client: Client, tenant: str, who: Headers, reason: str = "unpaid") -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/suspend", json={"reason": reason}, headers=who
    )
    return response


def offboard(client: Client, tenant: str, who: Headers, reason: str = "end") -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/offboard", json={"reason": reason}, headers=who
    )
    return response


def request_reactivation(
    client: Client, tenant: str, who: Headers, reason: str = "paid"
) -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/reactivation-requests", json={"reason": reason}, headers=who
    )
    return response


def decide_reactivation(
    client: Client, tenant: str, request_id: str, who: Headers, decision: str = "approve"
) -> Response:
    response: Response = client.post(
        f"{TENANTS}/{tenant}/reactivation-requests/{request_id}/approvals",
        json={"decision": decision},
        headers=who,
    )
    return response


def reactivated(db: Database, tenant_id: str) -> str:
    """The approved reactivation carried out as its run's ``reactivated`` step records it
    (``tenants.service.complete_reactivation``), without the isolation steps before it:
    API tests run no worker. Returns the tenant's state; the run stays open."""
    with db.write() as session:
        [run] = engine.open_runs(session, tenant_id=tenant_id, runbook_id="tenant-reactivation")
        tenant = tenants.complete_reactivation(
            session,
            principal=RUNBOOK_ENGINE,
            ref=tenant_id,
            request_id=run.inputs["approval_request_id"],
            run_id=run.id,
        )
        return tenant.state


# --- the same calls, which must succeed ----------------------------------------------


def request_tenant(client: Client, who: Headers, **overrides: Any) -> dict[str, Any]:
    return ok(create(client, who, **overrides), 201)


def approve(client: Client, tenant: str, role: str, who: Headers) -> dict[str, Any]:
    return ok(decide(client, tenant, role, who))


def step(client: Client, tenant: str, name: str, who: Headers) -> dict[str, Any]:
    return ok(send_event(client, tenant, name, who))


# --- a fresh tenant in any state ----------------------------------------------------------


def _approve_both(client: Client, a: Actors, tenant: str) -> Response:
    approve(client, tenant, "governance", a.gov)
    return decide(client, tenant, "security", a.sec)


Move = Callable[[Client, Actors, str], Response]

# How to bring a tenant from one state to the next: (the state before, the move).
PATH: dict[TenantState, tuple[TenantState, Move]] = {
    S.APPROVED: (S.REQUESTED, _approve_both),
    S.REJECTED: (S.REQUESTED, lambda c, a, t: decide(c, t, "governance", a.gov, "reject")),
    S.PROVISIONING: (S.APPROVED, lambda c, a, t: send_event(c, t, "start_provisioning", a.ops)),
    S.PROVISIONING_FAILED: (
        S.PROVISIONING,
        lambda c, a, t: send_event(c, t, "provisioning_failed", a.ops),
    ),
    S.VERIFYING: (S.PROVISIONING, lambda c, a, t: send_event(c, t, "provisioned", a.ops)),
    S.ACTIVE: (S.VERIFYING, lambda c, a, t: send_event(c, t, "verified", a.qa)),
    S.SUSPENDED: (S.ACTIVE, lambda c, a, t: suspend(c, t, a.ops)),
    S.OFFBOARDING: (S.ACTIVE, lambda c, a, t: offboard(c, t, a.am)),
    S.ARCHIVED: (S.OFFBOARDING, lambda c, a, t: send_event(c, t, "archive", a.ops)),
}


def tenant_in(
    client: Client, actors: Actors, state: TenantState, **overrides: Any
) -> dict[str, Any]:
    """A tenant requested by ``actors.am`` and moved to ``state``; the last body answered.

    Every move must succeed and land in the state the lifecycle says.
    """
    chain = [state]
    while chain[-1] is not S.REQUESTED:
        chain.append(PATH[chain[-1]][0])
    tenant = request_tenant(client, actors.am, **overrides)
    tid: str = tenant["id"]
    for target in reversed(chain[:-1]):
        tenant = ok(PATH[target][1](client, actors, tid))
        assert tenant["state"] == target.value
    return tenant


def drain(worker: Worker, rounds: int = 60) -> None:
    """Run the worker's batches until three in a row claim nothing (or ``rounds`` pass)."""
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if worker.run_once() == 0 else 0
        if idle >= 3:
            return
