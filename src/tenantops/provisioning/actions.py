"""The ``gitops.*`` runbook actions: render, validate and commit a tenant's manifests.

Each action reads the tenant snapshot from ``ctx.inputs["tenant"]`` (the
``TenantRead`` fields) and its parameters from the step, and hands the GitOps
port one :class:`~tenantops.drivers.gitops.Change` carrying the step's
idempotency key — so a step re-executed after a crash returns the commit it
made the first time. Nothing is committed unless every manifest validates.

``gitops.sync_tenant``  render + validate + commit (isolated iff the tenant is suspended
                        now — read again after the commit — or as ``isolated`` says)
``gitops.isolate``      commit the deny-all isolation in place of the allow policies
``gitops.unisolate``    restore the allow policies
``gitops.remove``       delete the tenant's folder and Application (offboarding)
``gitops.plan``         render + validate only (dry runs): the manifests and their digest
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

from tenantops.config import Settings
from tenantops.drivers.errors import DriverError
from tenantops.drivers.gitops import Change, GitOpsRepo, LocalGitRepo
from tenantops.drivers.gitops.remote import RemoteGitRepo
from tenantops.drivers.kubernetes.port import Cluster
from tenantops.drivers.kubernetes.rest import KubernetesRest
from tenantops.drivers.terraform.cli import TerraformCli
from tenantops.drivers.terraform.port import Provisioner
from tenantops.provisioning.manifests import (
    TIERS,
    Platform,
    Rendered,
    TenantSpec,
    TierSize,
    app_path,
    render_root,
    render_tenant,
    tenant_dir,
)
from tenantops.provisioning.validation import ManifestInvalid
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
    skipped,
)


def platform_from(settings: Settings) -> Platform:
    """The render's view of ``Settings.gitops``."""
    g = settings.gitops
    return Platform(
        repo_url=g.repo_url
        or (
            g.remote.safe_url() if g.remote else settings.resolved_gitops_path().resolve().as_uri()
        ),
        revision=g.branch,
        kubernetes_version=g.kubernetes_version,
        argocd_namespace=g.argocd_namespace,
        argocd_project=g.argocd_project,
        destination_server=g.destination_server,
        ingress_namespace=g.ingress_namespace,
        vault_server=g.vault_server,
        vault_mount=g.vault_mount,
    )


def _spec(ctx: ActionContext, *, isolated: bool | None) -> TenantSpec:
    tenant = ctx.inputs.get("tenant")
    if not isinstance(tenant, Mapping):
        raise StepFailed(
            f"{ctx.step_name}: the run has no tenant snapshot in inputs.tenant", retriable=False
        )
    if isolated is None and "isolated" in ctx.params:
        isolated = bool(ctx.params["isolated"])
    if ctx.params.get("tier"):  # a tier changed by an earlier step of the same run
        tenant = {**tenant, "tier": str(ctx.params["tier"])}
    try:
        return TenantSpec.from_snapshot(tenant, groups=ctx.params.get("groups"), isolated=isolated)
    except (KeyError, ValueError, TypeError) as exc:
        raise StepFailed(f"{ctx.step_name}: bad tenant snapshot: {exc!r}", retriable=False) from exc


def _guarded(
    fn: Callable[[ActionContext], StepResult], system: str = "gitops"
) -> Callable[[ActionContext], StepResult]:
    """Map render and driver errors onto ``StepFailed``: invalid manifests are permanent."""

    def run(ctx: ActionContext) -> StepResult:
        try:
            return fn(ctx)
        except ManifestInvalid as exc:
            raise StepFailed(
                f"manifest invalid, nothing committed: {exc}", retriable=False
            ) from exc
        except DriverError as exc:
            raise StepFailed(f"{system}: {exc}", retriable=exc.retriable) from exc

    return run


def gitops_repo(settings: Settings) -> GitOpsRepo:
    """The remote repository when ``TENANTOPS_GITOPS__REMOTE__URL`` is set, else the local one."""
    g = settings.gitops
    if g.remote is not None:
        return RemoteGitRepo(
            g.remote.model_copy(update={"branch": g.branch}),
            cache_dir=g.remote.cache_dir or settings.data_dir / "gitops-remote",
        )
    return LocalGitRepo(settings.resolved_gitops_path(), branch=g.branch)


def gitops_actions(
    settings: Settings,
    *,
    repo: GitOpsRepo | None = None,
    tiers: Mapping[str, TierSize] = TIERS,
    state_of: Callable[[str], str | None] | None = None,
) -> Registry:
    """The ``gitops.*`` actions bound to ``repo`` (default: the configured repository).

    ``state_of`` (tenant id to its lifecycle state now) lets ``gitops.sync_tenant``
    isolate by the tenant's current state rather than the run's snapshot.
    """
    platform = platform_from(settings)
    target: GitOpsRepo = repo or gitops_repo(settings)

    def suspended_now(ctx: ActionContext) -> bool | None:
        """Whether the tenant is suspended now; None to go by the snapshot."""
        if state_of is None or "isolated" in ctx.params or not ctx.tenant_id:
            return None
        state = state_of(ctx.tenant_id)
        return None if state is None else state == "suspended"

    def render(spec: TenantSpec) -> Rendered:
        return render_tenant(spec, platform, tiers)

    def commit(ctx: ActionContext, summary: str, rendered: Rendered) -> StepResult:
        root_path, root_text = render_root(platform)
        result = target.apply(
            Change(
                summary=summary,
                run_id=ctx.run_id,
                actor=ctx.actor,
                idempotency_key=ctx.idempotency_key,
                files={root_path: root_text, **rendered.files},
                replace=(tenant_dir(_name(rendered)),),
            )
        )
        return StepResult(
            output={
                "commit": result.sha,
                "changed": result.changed,
                "manifest_digest": rendered.digest,
                "files": sorted(rendered.files),
            },
            evidence={"commit": result.sha, "manifest_digest": rendered.digest},
        )

    def sync_tenant(ctx: ActionContext) -> StepResult:
        # The run's snapshot may be older than a suspension (a quota change approved
        # before it): rendering the tenant as the snapshot has it would lift the
        # isolation the suspension committed. So the state is read now, and again after
        # the commit — a suspension in between may have committed its isolation before
        # this commit replaced it, and is isolated once more.
        spec = _spec(ctx, isolated=suspended_now(ctx))
        synced = commit(ctx, f"Sync tenant {spec.name} ({spec.tier}, {spec.region})", render(spec))
        if spec.isolated or not suspended_now(ctx):
            return synced
        spec = _spec(ctx, isolated=True)
        again = replace(ctx, idempotency_key=f"{ctx.idempotency_key}/isolate")
        return commit(again, f"Isolate tenant {spec.name}: suspended during a sync", render(spec))

    def isolate(ctx: ActionContext) -> StepResult:
        spec = _spec(ctx, isolated=True)
        return commit(ctx, f"Isolate tenant {spec.name}: deny all traffic", render(spec))

    def unisolate(ctx: ActionContext) -> StepResult:
        spec = _spec(ctx, isolated=False)
        return commit(ctx, f"Lift the isolation of tenant {spec.name}", render(spec))

    def remove(ctx: ActionContext) -> StepResult:
        spec = _spec(ctx, isolated=None)
        result = target.apply(
            Change(
                summary=f"Remove tenant {spec.name} (offboarding)",
                run_id=ctx.run_id,
                actor=ctx.actor,
                idempotency_key=ctx.idempotency_key,
                files={app_path(spec.name): None},
                replace=(tenant_dir(spec.name),),
            )
        )
        removed = [tenant_dir(spec.name), app_path(spec.name)]
        return StepResult(
            output={"commit": result.sha, "changed": result.changed, "removed": removed},
            evidence={"commit": result.sha, "removed": removed},
        )

    def plan(ctx: ActionContext) -> StepResult:
        rendered = render(_spec(ctx, isolated=None))
        root_path, root_text = render_root(platform)
        return StepResult(
            output={
                "manifest_digest": rendered.digest,
                "files": sorted(rendered.files),
                "manifests": {root_path: root_text, **rendered.files},
            },
            evidence={"manifest_digest": rendered.digest},
        )

    return {
        "gitops.sync_tenant": FunctionAction(_guarded(sync_tenant)),
        "gitops.isolate": FunctionAction(_guarded(isolate)),
        "gitops.unisolate": FunctionAction(_guarded(unisolate)),
        "gitops.remove": FunctionAction(_guarded(remove)),
        "gitops.plan": FunctionAction(_guarded(plan)),
    }


def _name(rendered: Rendered) -> str:
    namespace = next(o for o in rendered.objects.values() if o["kind"] == "Namespace")
    return str(namespace["metadata"]["name"])


def quota_actions() -> Registry:
    """``quota.propose``: the next larger tier for a tenant whose quota runs out.

    The proposal is a tier, not a hand-made quota: tiers are what the platform
    prices and renders, so a grown tenant stays comparable (and billable) with
    the others. At the largest tier the step fails for good: a custom quota
    needs a human.
    """
    order = list(TIERS)

    def propose(ctx: ActionContext) -> StepResult:
        tenant = ctx.inputs.get("tenant")
        current = str(tenant.get("tier")) if isinstance(tenant, Mapping) else ""
        if current not in TIERS:
            raise StepFailed(f"{ctx.step_name}: unknown tier {current!r}", retriable=False)
        position = order.index(current)
        if position + 1 >= len(order):
            raise StepFailed(
                f"{ctx.step_name}: {current} is the largest tier; a custom quota needs a human",
                retriable=False,
            )
        proposed = order[position + 1]
        before, after = TIERS[current], TIERS[proposed]
        result = {
            "from_tier": current,
            "to_tier": proposed,
            "resource": str(ctx.params.get("resource") or ""),
            "quota_before": _quota(before),
            "quota_after": _quota(after),
            "summary": f"tier {current} -> {proposed}: "
            f"cpu {before.requests_cpu} -> {after.requests_cpu}, "
            f"memory {before.requests_memory} -> {after.requests_memory}, "
            f"pods {before.pods} -> {after.pods}",
        }
        return StepResult(output=result, evidence=result)

    return {"quota.propose": FunctionAction(propose)}


def _quota(size: TierSize) -> dict[str, str | int]:
    return {
        "requests.cpu": size.requests_cpu,
        "requests.memory": size.requests_memory,
        "limits.cpu": size.limits_cpu,
        "limits.memory": size.limits_memory,
        "pods": size.pods,
        "services": size.services,
        "persistentvolumeclaims": size.pvcs,
        "requests.storage": size.storage,
    }


def terraform_actions(settings: Settings, *, cli: Provisioner | None = None) -> Registry:
    """``terraform.plan_apply``: the tenant-bootstrap module planned and applied, the plan
    JSON kept as evidence.

    Terraform is chosen with ``TENANTOPS_TERRAFORM__BINARY``. Not chosen, or chosen
    and the binary is not installed, the step is done without effect and its evidence
    says the GitOps step provisions the tenant (``doctor`` fails on the missing binary).
    """
    provisioner: Provisioner = cli or TerraformCli(settings.resolved_terraform())

    def plan_apply(ctx: ActionContext) -> StepResult:
        if cli is None and not settings.terraform.binary:
            return skipped(
                "Terraform is not chosen (TENANTOPS_TERRAFORM__BINARY): "
                "the GitOps step provisions this tenant"
            )
        if isinstance(provisioner, TerraformCli):
            try:
                provisioner.binary()
            except DriverError as exc:
                return skipped(f"{exc}: the GitOps step provisions this tenant")
        spec = _spec(ctx, isolated=None)
        variables = {
            "tenant": spec.name,
            "tier": spec.tier,
            "region": spec.region,
            "compliance_classification": spec.compliance_classification,
            "business_owner": spec.business_owner,
            "contacts": list(spec.contacts),
            "isolated": spec.isolated,
            "groups": {g.name: g.access.value for g in spec.groups},
            "tier_size": asdict(TIERS[spec.tier]),
        }
        plan = provisioner.plan(spec.name, variables, idempotency_key=ctx.idempotency_key)
        applied = provisioner.apply(plan)
        evidence = {"plan": plan.as_dict(), "applied": applied.as_dict()}
        return StepResult(output=evidence, evidence=evidence)

    return {"terraform.plan_apply": FunctionAction(_guarded(plan_apply, "terraform"))}


def cluster_actions(settings: Settings, *, cluster: Cluster | None = None) -> Registry:
    """``k8s.isolate`` (the deny-all policy applied at once, ahead of the GitOps commit),
    ``k8s.drift`` (live state against the render, read-only) and ``k8s.apply_tenant``
    (server-side apply of the render without the Argo CD Application, for clusters
    not run through GitOps). With no Kubernetes API configured (``TENANTOPS_KUBERNETES__*``)
    each step is done without effect and says so: the cluster is reached through GitOps."""
    target: Cluster | None = cluster or (
        KubernetesRest(settings.kubernetes) if settings.kubernetes else None
    )
    platform = platform_from(settings)

    def objects(ctx: ActionContext) -> list[dict[str, Any]]:
        rendered = render_tenant(_spec(ctx, isolated=None), platform)
        return [o for o in rendered.objects.values() if o.get("kind") != "Application"]

    def direct(fn: Callable[[ActionContext, Cluster], StepResult]) -> FunctionAction:
        def run(ctx: ActionContext) -> StepResult:
            if target is None:
                return skipped(
                    "no Kubernetes API configured (TENANTOPS_KUBERNETES__*): "
                    "the cluster is reached through GitOps"
                )
            return fn(ctx, target)

        return FunctionAction(_guarded(run, "kubernetes"))

    def isolate(ctx: ActionContext, target: Cluster) -> StepResult:
        applied = asdict(target.isolate(_spec(ctx, isolated=True).name))
        return StepResult(output=applied, evidence=applied)

    def drift(ctx: ActionContext, target: Cluster) -> StepResult:
        found = [asdict(d) for d in target.drift(objects(ctx))]
        result = {"in_sync": not found, "drift": found}
        return StepResult(output=result, evidence=result)

    def apply_tenant(ctx: ActionContext, target: Cluster) -> StepResult:
        applied = target.apply(objects(ctx), dry_run=bool(ctx.params.get("dry_run")))
        result = {"applied": [asdict(a) for a in applied]}
        return StepResult(output=result, evidence=result)

    return {
        "k8s.isolate": direct(isolate),
        "k8s.drift": direct(drift),
        "k8s.apply_tenant": direct(apply_tenant),
    }
