"""Self-service requests through the API: each kind gated, decided by its role, then applied.

A tenant owner files a request on their tenant; it is a run of a small
runbook that waits at its approval gate. Approved by the deciding role through
the runs' gate API, a real worker with the wired actions applies the effect;
rejected, nothing changes. The requester can never decide their own request.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import identity_provider
from tenantops.runbooks import engine
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState as S
from tenantops.wiring import build_actions
from tests.conftest import Actors, Headers, TokenFactory
from tests.factories import tenant_body
from tests.flows import PROBLEM, drain, ok, problem, tenant_in

SETUP = Principal("system:test", frozenset({Role.ADMIN}), via="system")
OWNER_EMAIL = "olga@shop.example"
OTHER = {"name": "rival-corp", "business_owner": "boss@rival.example"}


def requests_url(tenant: str) -> str:
    return f"/api/v1/tenants/{tenant}/requests"


def quiet(db: Database, *tenant_ids: str) -> None:
    """Cancel the tenants' onboarding runs: the worker here runs only the requests."""
    with db.write() as session:
        for tenant_id in tenant_ids:
            for run in engine.open_runs(session, tenant_id=tenant_id):
                engine.cancel(session, run_id=run.id, principal=SETUP, reason="test setup")


class Shop:
    """Olga's active tenant, a rival's tenant, Olga's token and a worker."""

    def __init__(
        self, client: TestClient, actors: Actors, auth: TokenFactory, db: Database, s: Settings
    ) -> None:
        self.tenant = tenant_in(
            client, actors, S.ACTIVE, name="olgas-shop", business_owner=OWNER_EMAIL
        )
        self.other = tenant_in(client, actors, S.ACTIVE, **OTHER)
        quiet(db, self.tenant["id"], self.other["id"])
        self.owner: Headers = auth("olga", "tenant_owner", tenant=self.tenant["id"])
        self.worker = Worker(db, build_actions(s, db))
        self.client = client

    def file(self, who: Headers | None = None, **body: Any) -> dict[str, Any]:
        response = self.client.post(
            requests_url(self.tenant["id"]), json=body, headers=who or self.owner
        )
        return ok(response, 201)

    def decide(self, run_id: str, who: Headers, decision: str = "approve") -> Any:
        return self.client.post(
            f"/api/v1/runs/{run_id}/gates/approval",
            json={"decision": decision, "comment": f"{decision}: decided in the test"},
            headers=who,
        )

    def listed(self, who: Headers | None = None) -> dict[str, dict[str, Any]]:
        page = ok(self.client.get(requests_url(self.tenant["id"]), headers=who or self.owner))
        return {item["id"]: item for item in page["items"]}

    def trail(self, actors: Actors) -> list[dict[str, Any]]:
        page = self.client.get(
            "/api/v1/audit",
            params={"tenant": self.tenant["id"], "limit": 200},
            headers=actors.admin,
        )
        items: list[dict[str, Any]] = ok(page)["items"]
        return items


@pytest.fixture
def shop(
    client: TestClient, actors: Actors, auth: TokenFactory, db: Database, settings: Settings
) -> Shop:
    return Shop(client, actors, auth, db, settings)


def test_bad_requests_are_problems_and_start_nothing(shop: Shop, client: TestClient) -> None:
    why = {"justification": "we need it"}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"kind": "quota", "tier": "premium"}, "justification"),
        ({"kind": "quota", "tier": "premium", "justification": "x"}, "justification"),
        ({"kind": "quota", "tier": "gigantic", **why}, "unknown tier"),
        ({"kind": "quota", "tier": "standard", **why}, "already on tier standard"),
        ({"kind": "budget", "amount": -5, **why}, "amount"),
        ({"kind": "budget", "amount": 10, "currency": "XYZ", **why}, "ISO 4217"),
        ({"kind": "access", "subject": "not-an-email", **why}, "subject"),
        ({"kind": "access", "subject": "dev@shop.example", "permission": "admin", **why}, "perm"),
        ({"kind": "tenant", "name": "x", "tier": "basic"}, "compliance_classification"),
        (
            {
                "kind": "tenant",
                "name": "Bad_Name",
                "tier": "basic",
                "region": "eu-west-1",
                "compliance_classification": "internal",
                **why,
            },
            "DNS-1123",
        ),
        ({"kind": "nope", **why}, "kind"),
        ({"tier": "premium", **why}, "kind"),
        ({"kind": "quota", "tier": "premium", "sneaky": 1, **why}, "sneaky"),
    ]
    for body, says in bad:
        r = client.post(requests_url(shop.tenant["id"]), json=body, headers=shop.owner)
        assert r.headers["content-type"] == PROBLEM, (body, r.text)
        assert r.status_code == 422, (body, r.text)
        assert says in r.text, (body, r.text)
    assert shop.listed() == {}
    # A name already taken is a conflict, refused before anyone approves.
    taken = {"kind": "tenant", "tier": "basic", "region": "eu-west-1", **why}
    r = client.post(
        requests_url(shop.tenant["id"]),
        json={**taken, "name": "rival-corp", "compliance_classification": "internal"},
        headers=shop.owner,
    )
    assert problem(r, 409)["param"] == "name"
    assert shop.listed() == {}


def test_owners_file_and_read_only_for_their_own_tenant(
    shop: Shop, client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    body = {"kind": "budget", "amount": 3000, "justification": "more traffic"}
    other = shop.other
    for ref in (other["id"], other["name"]):
        problem(client.post(requests_url(ref), json=body, headers=shop.owner), 404)
        problem(client.get(requests_url(ref), headers=shop.owner), 404)
    # Staff who decide requests do not file them.
    problem(client.post(requests_url(shop.tenant["id"]), json=body, headers=actors.gov), 403)
    problem(client.get(requests_url(shop.tenant["id"]), headers=actors.sec), 403)

    mine = shop.file(**body)
    theirs = ok(client.post(requests_url(other["name"]), json=body, headers=actors.am), 201)
    assert theirs["tenant_name"] == "rival-corp"  # an account manager files for any tenant
    assert set(ok(client.get(requests_url(other["id"]), headers=actors.admin))["items"][0]) >= {
        "id",
        "kind",
        "decision",
    }
    listing = client.get(requests_url(shop.tenant["id"]), headers=shop.owner)
    assert list(shop.listed()) == [mine["id"]]
    for secret in (other["id"], other["name"], OTHER["business_owner"], theirs["id"]):
        assert secret not in listing.text
    # Nor can the owner read the other tenant's request run.
    problem(client.get(f"/api/v1/runs/{theirs['id']}", headers=shop.owner), 404)


def test_quota_change_waits_for_governance_then_moves_the_tier_through_gitops(
    shop: Shop, client: TestClient, actors: Actors, auth: TokenFactory, settings: Settings
) -> None:
    filed = shop.file(kind="quota", tier="premium", justification="launch next month")
    assert filed["decision"] == "pending"
    assert filed["status"] == "waiting"
    assert filed["approver_roles"] == ["governance"]
    assert (filed["requested_by"], filed["kind"]) == ("olga", "quota")
    run = ok(client.get(f"/api/v1/runs/{filed['id']}", headers=shop.owner))
    assert run["runbook_id"] == "quota-change"
    assert run["current_step"] == "approval"
    submitted = [e for e in shop.trail(actors) if e["action"] == "request.submitted"]
    assert submitted
    assert submitted[0]["detail"]["run_id"] == filed["id"]
    # A second quota request while one is open is a conflict.
    again = {"kind": "quota", "tier": "enterprise", "justification": "even more"}
    problem(client.post(requests_url(shop.tenant["id"]), json=again, headers=shop.owner), 409)

    drain(shop.worker)
    ot = ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}", headers=actors.ops))
    assert ot["tier"] == "standard"  # nothing before the approval
    problem(shop.decide(filed["id"], shop.owner), 403)  # the owner may not decide it
    problem(shop.decide(filed["id"], actors.ops), 403)  # nor may ops: the gate is governance's
    # Segregation of duties: an owner who also holds governance cannot approve their own.
    both = auth("olga", "tenant_owner", "governance", tenant=shop.tenant["id"])
    sod = problem(shop.decide(filed["id"], both), 403)
    assert sod["type"].endswith("/segregation-of-duties")
    ok(shop.decide(filed["id"], actors.gov))
    drain(shop.worker)

    done = shop.listed()[filed["id"]]
    assert (done["decision"], done["status"], done["decided_by"]) == (
        "approved",
        "succeeded",
        "gus",
    )
    assert ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}", headers=actors.ops))["tier"] == (
        "premium"
    )
    steps = {
        s["name"]: s
        for s in ok(client.get(f"/api/v1/runs/{filed['id']}", headers=shop.owner))["steps"]
    }
    commit = steps["gitops"]["evidence"]["commit"]
    quota = yaml.safe_load(
        subprocess.run(
            ["git", "show", f"{commit}:tenants/olgas-shop/resourcequota.yaml"],
            cwd=settings.data_dir / "gitops",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert quota["spec"]["hard"]["requests.cpu"] == "32"
    actions = [e["action"] for e in shop.trail(actors)]
    assert "tenant.tier_changed" in actions
    assert "run.gate.signal" in actions
    notes = ok(client.get("/api/v1/notifications", headers=actors.ops))["items"]
    told = [n for n in notes if n["run_id"] == filed["id"]]
    assert told
    assert "tier premium" in told[0]["subject"]


def test_rejected_requests_change_nothing(
    shop: Shop, client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    quota = shop.file(kind="quota", tier="basic", justification="we shrank")
    budget = shop.file(kind="budget", amount="9999.50", justification="big plans")
    problem(shop.decide(budget["id"], actors.gov), 403)  # governance does not decide budgets
    ok(shop.decide(quota["id"], actors.gov, "reject"))
    fin = auth("fay", "finance")
    ok(shop.decide(budget["id"], fin, "reject"))
    drain(shop.worker)

    listed = shop.listed()
    for filed in (quota, budget):
        assert (listed[filed["id"]]["decision"], listed[filed["id"]]["status"]) == (
            "rejected",
            "failed",
        )
        assert listed[filed["id"]]["decision_comment"] == "reject: decided in the test"
    tenant = ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}", headers=actors.ops))
    assert tenant["tier"] == "standard"
    owned = ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}/budget", headers=shop.owner))
    assert float(owned["amount"]) == 2500
    actions = {e["action"] for e in shop.trail(actors)}
    assert "tenant.tier_changed" not in actions


def test_budget_change_is_set_by_finance_approval_keeping_the_thresholds(
    shop: Shop, client: TestClient, auth: TokenFactory
) -> None:
    fin = auth("fay", "finance")
    tenant_budget = f"/api/v1/tenants/{shop.tenant['id']}/budget"
    setter = auth("finn", "finance")  # thresholds of its own, which the request keeps
    ok(client.put(tenant_budget, json={"amount": 2500, "thresholds": [90, 110]}, headers=setter))
    filed = shop.file(kind="budget", amount="4200", justification="new workload")
    assert filed["fields"] == {"amount": "4200.00", "currency": "EUR"}
    assert filed["approver_roles"] == ["finance"]
    problem(shop.decide(filed["id"], shop.owner), 403)
    ok(shop.decide(filed["id"], fin))
    drain(shop.worker)

    assert shop.listed()[filed["id"]]["status"] == "succeeded"
    budget = ok(client.get(tenant_budget, headers=shop.owner))
    assert (float(budget["amount"]), budget["currency"]) == (4200, "EUR")
    assert budget["thresholds"] == [90, 110]
    assert budget["updated_by"] == "fay"
    ledger = ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}/ledger", headers=shop.owner))
    entry = next(e for e in ledger["items"] if e["kind"] == "budget")
    assert entry["actor"] == "fay"
    assert entry["data"]["after"]["amount"] == "4200.00"


def test_access_request_adds_the_member_after_security_approves(
    shop: Shop, client: TestClient, actors: Actors, db: Database, settings: Settings
) -> None:
    identity = identity_provider(settings, db)
    identity.create_group(
        tenant_id=shop.tenant["id"],
        tenant_name="olgas-shop",
        grants=[],
        idempotency_key="test-group",
    )
    filed = shop.file(
        kind="access", subject="Dev@Shop.Example", permission="write", justification="new hire"
    )
    assert filed["fields"] == {"subject": "dev@shop.example", "permission": "write"}
    problem(shop.decide(filed["id"], actors.gov), 403)
    drain(shop.worker)
    group = identity.get_group(tenant_id=shop.tenant["id"])
    assert group is not None
    assert group.permission_of("dev@shop.example") is None
    ok(shop.decide(filed["id"], actors.sec))
    drain(shop.worker)

    assert shop.listed()[filed["id"]]["status"] == "succeeded"
    group = identity.get_group(tenant_id=shop.tenant["id"])
    assert group is not None
    assert group.permission_of("dev@shop.example") == "write"


def test_new_tenant_request_registers_a_requested_tenant_after_an_account_manager(
    shop: Shop, client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    body = {
        "kind": "tenant",
        "name": "olgas-analytics",
        "tier": "basic",
        "region": "eu-west-1",
        "compliance_classification": "internal",
        "monthly_budget": 800,
        "justification": "a data team of our own",
    }
    filed = shop.file(**body)
    assert filed["approver_roles"] == ["account_manager"]
    assert filed["fields"]["business_owner"] == OWNER_EMAIL
    drain(shop.worker)
    problem(client.get("/api/v1/tenants/olgas-analytics", headers=actors.admin), 404)
    ok(shop.decide(filed["id"], actors.am))
    drain(shop.worker)

    assert shop.listed()[filed["id"]]["status"] == "succeeded"
    made = ok(client.get("/api/v1/tenants/olgas-analytics", headers=actors.admin))
    assert (made["state"], made["requested_by"], made["business_owner"]) == (
        "requested",
        "olga",
        OWNER_EMAIL,
    )
    assert (made["tier"], made["currency"], made["ticket_ref"]) == (
        "basic",
        "EUR",
        f"portal:{filed['id']}",
    )
    approvals = ok(client.get("/api/v1/tenants/olgas-analytics/approvals", headers=actors.admin))
    assert approvals[0]["status"] == "pending"  # now the normal onboarding approvals

    # An account manager who files a request cannot approve it (segregation of duties).
    second = shop.file(actors.am, **{**body, "name": "olgas-reports"})
    # While it is open, nobody can ask for the same name again (it would fail on approval).
    rival = auth("rita", "tenant_owner", tenant=shop.other["id"])
    again = client.post(
        requests_url(shop.other["id"]), json={**body, "name": "olgas-reports"}, headers=rival
    )
    assert "an open request asks for the tenant name" in problem(again, 409)["detail"]
    # Nor can an account manager create it directly: the request would fail on approval.
    direct = client.post(
        "/api/v1/tenants", json=tenant_body(name="olgas-reports"), headers=actors.am
    )
    assert problem(direct, 409)["run_id"] == second["id"]
    sod = problem(shop.decide(second["id"], actors.am), 403)
    assert sod["type"].endswith("/segregation-of-duties")
    other_am = auth("ann", "account_manager")
    ok(shop.decide(second["id"], other_am, "reject"))
    drain(shop.worker)
    problem(client.get("/api/v1/tenants/olgas-reports", headers=actors.admin), 404)
    # Decided, the name is free to ask for again.
    shop.file(**{**body, "name": "olgas-reports"})


def test_a_quota_change_approved_after_a_suspension_changes_nothing_and_keeps_the_isolation(
    shop: Shop, client: TestClient, actors: Actors, settings: Settings
) -> None:
    filed = shop.file(kind="quota", tier="premium", justification="launch next month")
    suspended = client.post(
        f"/api/v1/tenants/{shop.tenant['id']}/suspend",
        json={"reason": "payment breach", "incident_ref": "INC42"},
        headers=actors.ops,
    )
    assert ok(suspended)["state"] == "suspended"
    drain(shop.worker)  # the suspension commits the deny-all isolation
    ok(shop.decide(filed["id"], actors.gov))
    drain(shop.worker)

    run = ok(client.get(f"/api/v1/runs/{filed['id']}", headers=actors.ops))
    assert run["status"] == "failed"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["change-tier"]["status"] == "failed"
    assert "only while it is active" in steps["change-tier"]["error"]
    assert steps["gitops"]["status"] != "succeeded"
    tenant = ok(client.get(f"/api/v1/tenants/{shop.tenant['id']}", headers=actors.ops))
    assert (tenant["state"], tenant["tier"]) == ("suspended", "standard")
    head = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD", "tenants/olgas-shop/"],
        cwd=settings.data_dir / "gitops",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tenants/olgas-shop/networkpolicy-isolate.yaml" in head


def test_an_access_request_approved_after_a_suspension_adds_nobody(
    shop: Shop, client: TestClient, actors: Actors, db: Database, settings: Settings
) -> None:
    identity = identity_provider(settings, db)
    identity.create_group(
        tenant_id=shop.tenant["id"], tenant_name="olgas-shop", grants=[], idempotency_key="g"
    )
    filed = shop.file(
        kind="access", subject="dev@shop.example", permission="write", justification="new hire"
    )
    suspended = client.post(
        f"/api/v1/tenants/{shop.tenant['id']}/suspend",
        json={"reason": "payment breach", "incident_ref": "INC43"},
        headers=actors.ops,
    )
    assert ok(suspended)["state"] == "suspended"
    drain(shop.worker)
    ok(shop.decide(filed["id"], actors.sec))
    drain(shop.worker)

    run = ok(client.get(f"/api/v1/runs/{filed['id']}", headers=actors.ops))
    steps = {s["name"]: s for s in run["steps"]}
    assert run["status"] == "failed"
    assert "is suspended" in steps["tenant-active"]["error"]
    assert steps["add-member"]["status"] != "succeeded"
    group = identity.get_group(tenant_id=shop.tenant["id"])
    assert group is not None
    assert group.permission_of("dev@shop.example") is None
