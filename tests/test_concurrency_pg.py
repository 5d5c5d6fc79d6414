"""Real concurrent requests against two server processes sharing one PostgreSQL.

Two ``tenantops serve`` replicas run on one freshly migrated database; threads
line up on a barrier (each with its connection already open) and fire at both
replicas at once. Whatever order the database serialises them in, exactly one
conflicting change applies and the stored state agrees with what the callers
were told.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tenantops.approvals import service as approvals_service
from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.audit import repository as audit_repository
from tenantops.audit import service as audit_service
from tenantops.db import Database
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import STORES, Actors, create_pg_database, drop_pg_database
from tests.factories import tenant_body
from tests.flows import tenant_in
from tests.servers import bearer, mint_token, run_cli, serve_process, tenantops_env

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif("postgres" not in STORES, reason="PostgreSQL not in TENANTOPS_TEST_STORES"),
]

API = "/api/v1"
REPLICAS = 2
RACERS = 8  # concurrent approvers / creators; split across the replicas


@dataclass
class Call:
    """One request of a race: which replica, what, and as whom."""

    replica: int
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Cluster:
    """Two replicas on one database, plus direct access to that database."""

    urls: list[str]
    db: Database

    def token(self, subject: str, *roles: str) -> dict[str, str]:
        return bearer(mint_token(self.db, subject, *roles))

    @cached_property
    def actors(self) -> Actors:
        """One principal per job, to bring tenants along the lifecycle."""
        return Actors.minted(self.token)

    def post(self, path: str, body: dict[str, Any], who: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.urls[0]}{API}{path}", json=body, headers=who, timeout=30)

    def get(self, path: str, who: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{self.urls[1]}{API}{path}", headers=who, timeout=30)

    def race(self, calls: list[Call]) -> list[httpx.Response]:
        """Send ``calls`` at the same instant from one thread each; responses in order."""
        barrier = threading.Barrier(len(calls))

        def send(call: Call) -> httpx.Response:
            with httpx.Client(base_url=self.urls[call.replica], timeout=60) as client:
                client.get("/healthz")  # the connection is open before the start line
                barrier.wait(timeout=60)
                return client.post(f"{API}{call.path}", json=call.body, headers=call.headers)

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(send, call) for call in calls]
            return [f.result(timeout=120) for f in futures]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.read() as session:
            return session.execute(text(sql), params).scalar_one()

    def assert_audit_chain_intact(self) -> None:
        with self.db.read() as session:
            result = audit_service.verify(session)
        assert result.ok, result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("replicas")
    url = create_pg_database()
    db: Database | None = None
    try:
        # No worker: these tests race API requests; runbooks advancing the same
        # tenants in the background would add changes the assertions do not expect.
        env = tenantops_env(
            database_url=url,
            data_dir=str(tmp),
            bootstrap_admin="false",
            log_json="true",
            worker__in_process="false",
        )
        migrated = run_cli("db", "upgrade", env=env)
        assert migrated.returncode == 0, migrated.stderr
        db = Database(url)
        with (
            serve_process(env, tmp / "replica-0.log") as url0,
            serve_process(env, tmp / "replica-1.log") as url1,
        ):
            yield Cluster(urls=[url0, url1], db=db)
    finally:
        if db is not None:
            db.dispose()
        drop_pg_database(url)


def _requested_tenant(cluster: Cluster) -> str:
    body = tenant_body()
    r = cluster.post("/tenants", body, cluster.token(f"am-{body['name']}", "account_manager"))
    assert r.status_code == 201, r.text
    tid: str = r.json()["id"]
    return tid


def _active_tenant(cluster: Cluster) -> str:
    with httpx.Client(base_url=cluster.urls[0], timeout=30) as client:
        tid: str = tenant_in(client, cluster.actors, TenantState.ACTIVE)["id"]
    return tid


def _onboarding(cluster: Cluster, tid: str) -> ApprovalRequestRead:
    with cluster.db.read() as session:
        (request,) = approvals_service.list_for_tenant(session, tenant_id=tid)
    return request


def _decisions(cluster: Cluster, tid: str) -> list[tuple[str, str, str]]:
    return sorted((d.role, d.decision, d.principal) for d in _onboarding(cluster, tid).decisions)


def _audit_actions(cluster: Cluster, tid: str) -> list[str]:
    with cluster.db.read() as session:
        return [e.action for e in audit_repository.list_entries(session, tenant_id=tid)]


def test_concurrent_governance_approvals_only_one_applies(cluster: Cluster) -> None:
    tid = _requested_tenant(cluster)
    calls = [
        Call(
            replica=i % REPLICAS,
            path=f"/tenants/{tid}/approvals",
            body={"role": "governance", "decision": "approve", "comment": f"gov {i}"},
            headers=cluster.token(f"gov-{i}-{tid}", "governance"),
        )
        for i in range(RACERS)
    ]

    responses = cluster.race(calls)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (RACERS - 1), [r.text for r in responses]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    for r in responses:
        if r.status_code == 409:
            assert r.headers["content-type"].startswith("application/problem+json")
    assert _decisions(cluster, tid) == [("governance", "approve", f"gov-{winner}-{tid}")]
    tenant = cluster.get(f"/tenants/{tid}", cluster.token("reader", "auditor")).json()
    assert tenant["state"] == "requested"  # security has not decided yet
    assert tenant["version"] == 2  # created, then exactly one recorded approval
    assert _audit_actions(cluster, tid) == ["tenant.requested", "tenant.approval.recorded"]
    cluster.assert_audit_chain_intact()


def _race_approve_and_reject(
    cluster: Cluster, tid: str, rejecting_role: str
) -> tuple[httpx.Response, httpx.Response]:
    """A governance approval on one replica against a rejection on the other."""
    approve = Call(
        replica=0,
        path=f"/tenants/{tid}/approvals",
        body={"role": "governance", "decision": "approve"},
        headers=cluster.token(f"approver-{tid}", "governance"),
    )
    reject = Call(
        replica=1,
        path=f"/tenants/{tid}/approvals",
        body={"role": rejecting_role, "decision": "reject", "comment": "too risky"},
        headers=cluster.token(f"rejecter-{tid}", rejecting_role),
    )
    approved, rejected = cluster.race([approve, reject])
    return approved, rejected


def test_approve_racing_reject_in_one_role_one_decision_wins(cluster: Cluster) -> None:
    for _ in range(3):
        tid = _requested_tenant(cluster)
        # Security already approved, so the governance decision alone settles the outcome.
        r = cluster.post(
            f"/tenants/{tid}/approvals",
            {"role": "security", "decision": "approve"},
            cluster.token(f"sec-{tid}", "security"),
        )
        assert r.status_code == 200, r.text

        approved, rejected = _race_approve_and_reject(cluster, tid, "governance")

        codes = sorted([approved.status_code, rejected.status_code])
        assert codes == [200, 409], [approved.text, rejected.text]
        won = "approve" if approved.status_code == 200 else "reject"
        governance = [d for d in _decisions(cluster, tid) if d[0] == "governance"]
        assert [d[1] for d in governance] == [won]
        expected = "approved" if won == "approve" else "rejected"
        tenant = cluster.get(f"/tenants/{tid}", cluster.token("reader", "auditor")).json()
        assert tenant["state"] == _onboarding(cluster, tid).status == expected
        actions = _audit_actions(cluster, tid)
        assert actions.count("tenant.approved") + actions.count("tenant.rejected") == 1
    cluster.assert_audit_chain_intact()


def test_approval_racing_a_rejection_in_the_other_role_ends_rejected(cluster: Cluster) -> None:
    """Approve-then-reject both apply; reject-then-approve refuses the approval."""
    for _ in range(2):
        tid = _requested_tenant(cluster)

        approved, rejected = _race_approve_and_reject(cluster, tid, "security")

        assert rejected.status_code == 200, rejected.text
        assert approved.status_code in (200, 409), approved.text
        assert len(_decisions(cluster, tid)) == 1 + (approved.status_code == 200)
        tenant = cluster.get(f"/tenants/{tid}", cluster.token("reader", "auditor")).json()
        assert tenant["state"] == _onboarding(cluster, tid).status == "rejected"
        actions = _audit_actions(cluster, tid)
        assert actions.count("tenant.rejected") == 1
        assert "tenant.approved" not in actions
    cluster.assert_audit_chain_intact()


def test_suspend_racing_offboard_with_one_etag_only_one_applies(cluster: Cluster) -> None:
    for _ in range(3):
        tid = _active_tenant(cluster)
        read = cluster.get(f"/tenants/{tid}", cluster.token("reader", "auditor"))
        etag = read.headers["ETag"]
        suspend = Call(
            replica=0,
            path=f"/tenants/{tid}/suspend",
            body={"reason": "payment breach", "incident_ref": "INC1"},
            headers={**cluster.token(f"ops-x-{tid}", "ops_engineer"), "If-Match": etag},
        )
        offboard = Call(
            replica=1,
            path=f"/tenants/{tid}/offboard",
            body={"reason": "contract ended"},
            headers={**cluster.token(f"am-x-{tid}", "account_manager"), "If-Match": etag},
        )

        suspended, offboarded = cluster.race([suspend, offboard])

        codes = [suspended.status_code, offboarded.status_code]
        assert codes.count(200) == 1, [suspended.text, offboarded.text]
        loser = offboarded if suspended.status_code == 200 else suspended
        assert loser.status_code in (409, 412), loser.text
        expected = "suspended" if suspended.status_code == 200 else "offboarding"
        tenant = cluster.get(f"/tenants/{tid}", cluster.token("reader", "auditor"))
        assert tenant.json()["state"] == expected
        assert tenant.json()["version"] == read.json()["version"] + 1
        actions = _audit_actions(cluster, tid)
        assert actions.count("tenant.suspended") + actions.count("tenant.offboarding") == 1
    cluster.assert_audit_chain_intact()


def test_concurrent_creates_with_one_idempotency_key_make_one_tenant(cluster: Cluster) -> None:
    body = tenant_body()
    am = cluster.token(f"am-idem-{body['name']}", "account_manager")
    headers = {**am, "Idempotency-Key": f"key-{body['name']}"}
    calls = [
        Call(replica=i % REPLICAS, path="/tenants", body=body, headers=headers)
        for i in range(RACERS)
    ]

    responses = cluster.race(calls)

    assert {r.status_code for r in responses} <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(originals) == 1, [r.text for r in responses]
    tid = originals[0].json()["id"]
    assert {r.json()["id"] for r in created} == {tid}
    # A caller told to retry gets the same tenant back, not a second one.
    for r in responses:
        if r.status_code == 409:
            retried = cluster.post("/tenants", body, headers)
            assert retried.status_code == 201, retried.text
            assert retried.json()["id"] == tid
            assert retried.headers["Idempotent-Replayed"] == "true"
    requested_by = cluster.scalar(
        "SELECT count(*) FROM tenants WHERE requested_by = :who", who=f"am-idem-{body['name']}"
    )
    assert requested_by == 1
    assert _audit_actions(cluster, tid) == ["tenant.requested"]
    cluster.assert_audit_chain_intact()


def _new_tenant_requests(cluster: Cluster, tenants: list[str], name: str) -> list[Call]:
    """One new-tenant request for ``name`` filed on each of ``tenants``, by its own manager."""
    body = {
        "kind": "tenant",
        "name": name,
        "tier": "basic",
        "region": "eu-west-1",
        "compliance_classification": "internal",
        "justification": "a team of our own",
    }
    return [
        Call(
            replica=i % REPLICAS,
            path=f"/tenants/{tid}/requests",
            body=body,
            headers=cluster.token(f"am-req-{i}-{name}", "account_manager"),
        )
        for i, tid in enumerate(tenants)
    ]


def test_concurrent_new_tenant_requests_for_one_name_only_one_is_filed(cluster: Cluster) -> None:
    # Filed on different tenants: each holds only its own tenant's row.
    tenants = [_requested_tenant(cluster) for _ in range(RACERS)]
    name = tenant_body()["name"]
    calls = _new_tenant_requests(cluster, tenants, name)

    responses = cluster.race(calls)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [r.text for r in responses]
    assert all(
        "an open request asks for" in r.json()["detail"] for r in responses if r.status_code == 409
    )
    filed = cluster.scalar(
        "SELECT count(*) FROM runs WHERE runbook_id = 'tenant-request' AND tenant_id IN "
        "(SELECT tenant_id FROM audit_log WHERE action = 'request.submitted')"
        " AND started_by LIKE :who",
        who=f"am-req-%-{name}",
    )
    assert filed == 1
    cluster.assert_audit_chain_intact()


def test_a_request_and_a_direct_create_for_one_name_do_not_both_succeed(cluster: Cluster) -> None:
    """Filing a request and POST /tenants both check the other under the audit chain's lock."""
    tenants = [_requested_tenant(cluster) for _ in range(RACERS // 2)]
    body = tenant_body()
    name = body["name"]
    calls = _new_tenant_requests(cluster, tenants, name) + [
        Call(
            replica=i % REPLICAS,
            path="/tenants",
            body=body,
            headers=cluster.token(f"am-new-{i}-{name}", "account_manager"),
        )
        for i in range(RACERS - len(tenants))
    ]

    responses = cluster.race(calls)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [r.text for r in responses]
    created = cluster.scalar("SELECT count(*) FROM tenants WHERE name = :name", name=name)
    filed = cluster.scalar(
        "SELECT count(*) FROM runs WHERE runbook_id = 'tenant-request' AND started_by LIKE :who",
        who=f"am-req-%-{name}",
    )
    assert created + filed == 1
    cluster.assert_audit_chain_intact()
