"""``tenantops tenants access-review TENANT``: start the Access Review through the API."""

from __future__ import annotations

from typing import Annotated

import typer

from tenantops.kit.cli import DEFAULT_URL, Token, Url, connect


def access_review(
    tenant: str,
    reason: Annotated[str | None, typer.Option(help="Why the review is started")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Start the Access Review of a tenant; another security user completes it."""
    with connect(url, token) as client:
        run = client.post(
            f"/tenants/{tenant}/access-reviews", json={"reason": reason} if reason else {}
        )
    typer.echo(
        f"access review of {run.get('tenant_name') or tenant} started: run {run['id']} "
        f"({run['status']}); security decides its gates: "
        f"tenantops runs approve {run['id']} confirm-members ..."
    )
