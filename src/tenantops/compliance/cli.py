"""``tenantops compliance``: start an evidence collection, download and check its bundle."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from tenantops.compliance.service import RUNBOOK
from tenantops.kit.cli import DEFAULT_URL, Token, Url, connect, download
from tenantops.kit.client import ClientError
from tenantops.kit.files import write_atomic

app = typer.Typer(
    help="Compliance Evidence Collection: evidence bundles an auditor verifies.",
    no_args_is_help=True,
)


@app.command("start")
def start(
    tenant: Annotated[str | None, typer.Argument(help="Tenant name or id")] = None,
    every: Annotated[
        bool,
        typer.Option("--all", help="Every tenant on the platform (active or suspended), in one go"),
    ] = False,
    region: Annotated[str | None, typer.Option(help="With --all: the tenants of a region")] = None,
    tier: Annotated[str | None, typer.Option(help="With --all: the tenants of a tier")] = None,
    period: Annotated[
        str | None,
        typer.Option(help="A quarter (2026-Q4) or a month (2026-11); default: the last quarter"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Collect a tenant's evidence of a period; another auditor verifies and signs it off.

    With --all, every tenant's: those whose period is open or signed off are
    skipped, so running it again after a failed collection starts only that one.
    """
    if every == (tenant is not None):
        raise ClientError("name one tenant, or give --all for every tenant")
    if not every and (region or tier):
        raise ClientError("--region and --tier choose tenants for --all; with a tenant, drop them")
    body = {"period": period} if period else {}
    if every:
        body |= {k: v for k, v in (("region", region), ("tier", tier)) if v}
        with connect(url, token) as client:
            fleet = client.post("/compliance-evidence", json=body)
        _report(fleet)
        return
    with connect(url, token) as client:
        run = client.post(f"/tenants/{tenant}/compliance-evidence", json=body)
    typer.echo(
        f"compliance evidence {run['inputs']['period']} of {run.get('tenant_name') or tenant} "
        f"started: run {run['id']} ({run['status']}); an auditor decides its gates: "
        f"tenantops runs approve {run['id']} verify-bundle ..."
    )


def _report(fleet: dict[str, Any]) -> None:
    """One line per started run, then what was skipped and why, then the count."""
    for one in fleet["started"]:
        typer.echo(f"started  {one['tenant_name']}: run {one['run_id']}")
    for one in fleet["skipped"]:
        typer.echo(f"skipped  {one['tenant_name']}: {one['why']} (run {one['run_id']})")
    why = Counter(one["why"] for one in fleet["skipped"])
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(why.items()))
    typer.echo(
        f"compliance evidence {fleet['period']}: {len(fleet['started'])} collection(s) started"
        + (f", {sum(why.values())} skipped ({skipped})" if why else "")
        + (
            f"; an auditor decides their gates: tenantops runs list --runbook {RUNBOOK}"
            if fleet["started"]
            else ""
        )
    )


@app.command("bundle")
def bundle(
    tenant: str,
    run_id: str,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write; default: the bundle's name here"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Download a collection's bundle and check it against the digest its run recorded.

    A bundle whose SHA-256 differs from the collect step's is not written: exit 1.
    """
    with connect(url, token) as client:
        run = client.get(f"/runs/{run_id}")
    recorded = next(
        (s.get("evidence") or {} for s in run.get("steps", []) if s["name"] == "collect"), {}
    ).get("digest")
    body, name = download(
        url,
        token,
        f"/api/v1/tenants/{tenant}/compliance-evidence/{run_id}/bundle",
        {},
        f"compliance-evidence-{run_id}.json",
    )
    found = hashlib.sha256(body).hexdigest()
    if found != recorded:
        raise ClientError(
            f"bundle of run {run_id} has SHA-256 {found}, but its run recorded {recorded}"
        )
    target = output or Path(name)
    write_atomic(target, body)
    typer.echo(f"wrote {target} ({len(body)} bytes), SHA-256 {found} matches run {run_id}")
