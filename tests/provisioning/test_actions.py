"""The ``gitops.*`` actions on a real git repository: what a runbook step does to it.

The driver's effect log is the git history: for every idempotency key there is
exactly one commit, however often a step is executed.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantops.auth.principal import Principal, Role
from tenantops.config import GitOpsSettings, Settings, WorkerSettings
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops import Change, Commit, LocalGitRepo
from tenantops.provisioning.actions import gitops_actions
from tenantops.provisioning.manifests import TIERS
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, Registry, StepFailed, StepResult
from tenantops.runbooks.spec import parse
from tenantops.runbooks.worker import Worker
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantCreate
from tenantops.wiring import build_actions
from tests.factories import tenant_body


def snapshot(name: str = "acme", **overrides: Any) -> dict[str, Any]:
    tenant: dict[str, Any] = {
        "id": f"id-{name}",
        "name": name,
        "display_name": name.upper(),
        "tier": "standard",
        "region": "eu-central-1",
        "compliance_classification": "confidential",
        "business_owner": f"owner@{name}.example",
        "contacts": [f"ops@{name}.example"],
        "state": "provisioning",
    }
    tenant.update(overrides)
    return tenant


def ctx(
    step: str = "provision",
    *,
    run_id: str = "run-1",
    tenant: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    actor: str = "alice@example.com",
) -> ActionContext:
    return ActionContext(
        run_id=run_id,
        step_name=step,
        tenant_id=(tenant or snapshot())["id"],
        params=params or {},
        idempotency_key=f"{run_id}/{step}",
        attempt=1,
        actor=actor,
        inputs={"tenant": tenant or snapshot()},
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, log_json=False, worker=WorkerSettings(in_process=False))


@pytest.fixture
def actions(settings: Settings) -> Registry:
    return gitops_actions(settings)


@pytest.fixture
def repo(settings: Settings) -> LocalGitRepo:
    return LocalGitRepo(settings.resolved_gitops_path())


def git(repo: LocalGitRepo, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo.path}", *args], capture_output=True, text=True, check=True
    ).stdout


def test_sync_commits_the_tenant_in_the_app_of_apps_layout(
    actions: Registry, repo: LocalGitRepo, settings: Settings
) -> None:
    assert not repo.path.exists()  # created on first use
    result = actions["gitops.sync_tenant"].run(ctx())
    out = result.output
    assert out["changed"] is True
    assert out["commit"] == git(repo, "rev-parse", "main").strip()
    assert result.evidence == {"commit": out["commit"], "manifest_digest": out["manifest_digest"]}
    tree = repo.read()
    assert set(tree) == {"apps/root.yaml", *out["files"]}
    assert "apps/tenants/acme.yaml" in tree
    assert all(f.startswith(("tenants/acme/", "apps/tenants/")) for f in out["files"])
    root = yaml.safe_load(tree["apps/root.yaml"])
    assert root["spec"]["source"]["repoURL"] == settings.resolved_gitops_path().resolve().as_uri()
    ns = yaml.safe_load(tree["tenants/acme/namespace.yaml"])
    assert ns["metadata"]["labels"]["tenantops.io/compliance-class"] == "confidential"
    message = git(repo, "log", "-1", "--format=%B")
    assert "run-1" in message
    assert "alice@example.com" in message
    assert "Tenantops-Idempotency-Key: run-1/provision" in message


def test_an_unchanged_render_makes_no_commit(actions: Registry, repo: LocalGitRepo) -> None:
    first = actions["gitops.sync_tenant"].run(ctx()).output
    again = actions["gitops.sync_tenant"].run(ctx(run_id="run-2")).output
    assert again["changed"] is False
    assert again["commit"] == first["commit"]
    assert again["manifest_digest"] == first["manifest_digest"]
    assert repo.commits_with_key("run-2/provision") == []
    changed = actions["gitops.sync_tenant"].run(
        ctx(run_id="run-3", tenant=snapshot(tier="premium"))
    )
    assert changed.output["changed"] is True
    assert changed.output["manifest_digest"] != first["manifest_digest"]


def test_a_re_executed_step_returns_its_first_commit_and_commits_nothing(
    actions: Registry, repo: LocalGitRepo
) -> None:
    first = actions["gitops.sync_tenant"].run(ctx()).output
    commits = len(repo.log())
    # The worker died after the commit, before recording the step: it runs again.
    again = actions["gitops.sync_tenant"].run(replace(ctx(), attempt=2)).output
    assert again == first
    assert len(repo.log()) == commits
    assert repo.commits_with_key("run-1/provision") == [first["commit"]]


def test_isolate_then_unisolate_restores_the_allow_policies(
    actions: Registry, repo: LocalGitRepo
) -> None:
    synced = actions["gitops.sync_tenant"].run(ctx()).output
    before = repo.read("tenants/acme")
    isolated = actions["gitops.isolate"].run(ctx("isolate", run_id="run-s")).output
    assert isolated["changed"] is True
    policies = {p for p in repo.read("tenants/acme") if "networkpolicy" in p}
    assert policies == {
        "tenants/acme/networkpolicy-default-deny.yaml",
        "tenants/acme/networkpolicy-isolate.yaml",
    }
    deny = yaml.safe_load(repo.read()["tenants/acme/networkpolicy-isolate.yaml"])
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "Isolate tenant acme" in git(repo, "log", "-1", "--format=%s")
    restored = actions["gitops.unisolate"].run(ctx("unisolate", run_id="run-r")).output
    assert restored["changed"] is True
    assert repo.read("tenants/acme") == before
    assert restored["manifest_digest"] == synced["manifest_digest"]


def test_a_sync_of_a_suspended_tenant_keeps_it_isolated(
    actions: Registry, repo: LocalGitRepo
) -> None:
    actions["gitops.isolate"].run(ctx("isolate", run_id="run-s"))
    resynced = (
        actions["gitops.sync_tenant"]
        .run(ctx(run_id="run-x", tenant=snapshot(state="suspended")))
        .output
    )
    assert resynced["changed"] is False
    assert "tenants/acme/networkpolicy-isolate.yaml" in repo.read()


ISOLATION = "tenants/acme/networkpolicy-isolate.yaml"


def test_a_sync_isolates_a_tenant_suspended_since_the_run_began(
    settings: Settings, repo: LocalGitRepo
) -> None:
    """A quota change approved before a suspension must not lift its isolation."""
    actions = gitops_actions(settings, state_of=lambda tenant_id: "suspended")
    actions["gitops.isolate"].run(ctx("isolate", run_id="run-s"))
    # The quota change's run took its snapshot while the tenant was active.
    synced = actions["gitops.sync_tenant"].run(
        ctx(run_id="run-q", tenant=snapshot(state="active"), params={"tier": "premium"})
    )
    assert ISOLATION in repo.read()
    namespace = yaml.safe_load(repo.read()["tenants/acme/namespace.yaml"])
    assert namespace["metadata"]["labels"]["tenantops.io/tier"] == "premium"
    assert repo.commits_with_key("run-q/provision") == [synced.output["commit"]]


def test_a_suspension_during_a_sync_is_isolated_again_after_it(
    settings: Settings, repo: LocalGitRepo
) -> None:
    """Suspended between the sync's read and its commit: the commit is isolated over."""
    states = iter(["active", "suspended"])
    actions = gitops_actions(settings, state_of=lambda tenant_id: next(states))
    result = actions["gitops.sync_tenant"].run(ctx(run_id="run-q", tenant=snapshot()))
    assert ISOLATION in repo.read()
    assert len(repo.commits_with_key("run-q/provision")) == 1
    assert repo.commits_with_key("run-q/provision/isolate") == [result.output["commit"]]
    assert "suspended during a sync" in git(repo, "log", "-1", "--format=%s")


def test_a_sync_of_an_active_tenant_reads_the_state_and_stays_open(
    settings: Settings, repo: LocalGitRepo
) -> None:
    asked: list[str] = []
    actions = gitops_actions(
        settings, state_of=lambda tenant_id: asked.append(tenant_id) or "active"
    )
    actions["gitops.sync_tenant"].run(ctx(run_id="run-q", tenant=snapshot(state="suspended")))
    assert ISOLATION not in repo.read()  # the state now, not the snapshot's
    assert asked == ["id-acme", "id-acme"]


def test_remove_deletes_the_tenant_folder_and_its_application(
    actions: Registry, repo: LocalGitRepo
) -> None:
    actions["gitops.sync_tenant"].run(ctx(tenant=snapshot("acme")))
    actions["gitops.sync_tenant"].run(ctx(run_id="run-b", tenant=snapshot("bolt")))
    removed = actions["gitops.remove"].run(ctx("remove", run_id="run-o")).output
    assert removed["changed"] is True
    tree = repo.read()
    assert not [p for p in tree if "acme" in p]
    assert "apps/tenants/bolt.yaml" in tree
    assert "apps/root.yaml" in tree
    assert "Remove tenant acme (offboarding)" in git(repo, "log", "-1", "--format=%s")
    nothing = actions["gitops.remove"].run(ctx("remove", run_id="run-o2")).output
    assert nothing["changed"] is False


def test_plan_renders_and_validates_without_committing(
    actions: Registry, repo: LocalGitRepo
) -> None:
    plan = actions["gitops.plan"].run(ctx("plan")).output
    assert not repo.path.exists()
    assert "apps/root.yaml" in plan["manifests"]
    assert "tenants/acme/secretstore.yaml" in plan["manifests"]
    synced = actions["gitops.sync_tenant"].run(ctx()).output
    assert plan["manifest_digest"] == synced["manifest_digest"]
    assert dict(plan["manifests"].items()) == repo.read()


def test_an_unknown_tier_fails_permanently_and_commits_nothing(
    actions: Registry, repo: LocalGitRepo
) -> None:
    head = repo.head()
    with pytest.raises(StepFailed, match="unknown tier 'platinum'") as caught:
        actions["gitops.sync_tenant"].run(ctx(tenant=snapshot(tier="platinum")))
    assert caught.value.retriable is False
    assert repo.head() == head


def test_an_invalid_manifest_fails_permanently_and_commits_nothing(
    settings: Settings, repo: LocalGitRepo
) -> None:
    # A tier table with a size the API server could not parse.
    tiers = {**TIERS, "standard": replace(TIERS["standard"], requests_memory="sixteen gigs")}
    broken = gitops_actions(settings, tiers=tiers)
    head = repo.head()
    with pytest.raises(StepFailed, match="is not a resource quantity") as caught:
        broken["gitops.sync_tenant"].run(ctx())
    assert caught.value.retriable is False
    assert repo.head() == head
    assert repo.read() == {}


def test_a_step_without_a_tenant_snapshot_fails_permanently(actions: Registry) -> None:
    bare = replace(ctx(), inputs={})
    with pytest.raises(StepFailed, match="no tenant snapshot") as caught:
        actions["gitops.sync_tenant"].run(bare)
    assert caught.value.retriable is False


class Unreachable:
    """A GitOps remote that is down (what a real remote adapter raises)."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry

    def apply(self, change: Change) -> Commit:
        raise DriverError("remote unreachable", retry=self.retry)

    def read(self, prefix: str = "") -> dict[str, str]:
        return {}

    def commits_with_key(self, idempotency_key: str) -> list[str]:
        return []

    def head(self) -> str:
        return "0" * 40


@pytest.mark.parametrize(
    ("retry", "retriable"),
    [(Retry.RETRIABLE, True), (Retry.PERMANENT, False), (Retry.NEEDS_HUMAN, False)],
)
def test_driver_errors_say_whether_the_step_may_retry(
    settings: Settings, retry: Retry, retriable: bool
) -> None:
    down = gitops_actions(settings, repo=Unreachable(retry))
    with pytest.raises(StepFailed) as caught:
        down["gitops.isolate"].run(ctx("isolate"))
    assert caught.value.retriable is retriable
    assert retry.value in str(caught.value)


def test_concurrent_syncs_from_threads_leave_a_consistent_repository(
    settings: Settings, repo: LocalGitRepo
) -> None:
    tenants = [f"t{n}" for n in range(6)]
    errors: list[BaseException] = []
    results: dict[str, list[StepResult]] = {t: [] for t in tenants}
    barrier = threading.Barrier(len(tenants) * 2)

    def worker(name: str) -> None:
        # Two workers, each with its own registry, execute the same step.
        mine = gitops_actions(settings)
        barrier.wait()
        try:
            step = ctx(run_id=f"run-{name}", tenant=snapshot(name))
            results[name].append(mine["gitops.sync_tenant"].run(step))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in tenants for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name in tenants:
        assert len(repo.commits_with_key(f"run-{name}/provision")) == 1
        first, second = results[name]
        assert first.output["commit"] == second.output["commit"]
    assert len(repo.log()) == 1 + len(tenants)
    tree = repo.read()
    assert {p for p in tree if p.startswith("apps/tenants/")} == {
        f"apps/tenants/{t}.yaml" for t in tenants
    }
    git(repo, "fsck", "--strict")


def test_the_composition_root_installs_the_gitops_actions(settings: Settings, db: Database) -> None:
    installed = build_actions(settings, db)
    assert {
        "gitops.sync_tenant",
        "gitops.isolate",
        "gitops.unisolate",
        "gitops.remove",
        "gitops.plan",
    } <= set(installed)


def test_the_installed_sync_isolates_by_the_tenants_state_in_the_database(
    settings: Settings, db: Database, repo: LocalGitRepo
) -> None:
    with db.write() as session:
        tenant, _ = tenants.create_tenant(
            session,
            principal=Principal("amy", frozenset({Role.ACCOUNT_MANAGER})),
            data=TenantCreate(**tenant_body(name="acme")),
        )
        tenant.state = "suspended"  # as the suspension left it, after the run's snapshot
        tid = tenant.id
    sync = build_actions(settings, db)["gitops.sync_tenant"]
    sync.run(ctx(run_id="run-q", tenant=snapshot(id=tid, state="active")))
    assert ISOLATION in repo.read()


RUNBOOK = """
id: gitops-e2e
version: "1.0"
title: GitOps steps under the engine
tenant: false
inputs: {tenant: {type: object}}
steps:
  - {name: plan, action: gitops.plan}
  - {name: provision, action: gitops.sync_tenant, evidence: [commit, manifest_digest]}
  - {name: isolate, action: gitops.isolate}
  - {name: unisolate, action: gitops.unisolate}
  - {name: offboard, action: gitops.remove}
"""


def test_a_runbook_drives_the_repository_through_the_worker(db: Database, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_json=False,
        gitops=GitOpsSettings(repo_path=tmp_path / "elsewhere"),
    )
    repo = LocalGitRepo(tmp_path / "elsewhere")
    amy = Principal("amy", frozenset({Role.ADMIN}))
    with db.write() as s:
        run = engine.start_run(
            s, loaded=parse(RUNBOOK), actor=amy, inputs={"tenant": snapshot("zeta")}
        )
    worker = Worker(db, gitops_actions(settings), poll_seconds=0.01)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker.run_once()
        with db.read() as s:
            if engine.get_run(s, run.id).status in engine.FINISHED:
                break
    with db.read() as s:
        assert engine.get_run(s, run.id).status == "succeeded"
        steps = {st.name: st for st in engine.steps_of(s, run.id)}
    provision = steps["provision"]
    assert provision.evidence["commit"] == provision.output["commit"]
    assert provision.output["manifest_digest"] == steps["plan"].output["manifest_digest"]
    for name in ("provision", "isolate", "unisolate", "offboard"):
        assert repo.commits_with_key(f"{run.id}/{name}") == [steps[name].output["commit"]]
    assert repo.commits_with_key(f"{run.id}/plan") == []
    assert [p for p in repo.read() if "zeta" in p] == []
    assert f"Tenantops-Run: {run.id}" in git(repo, "log", "-1", "--format=%B")
    assert "Tenantops-Actor: amy" in git(repo, "log", "-1", "--format=%B")
