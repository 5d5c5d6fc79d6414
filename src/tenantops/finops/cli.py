"""``tenantops finops``: cost imports, budgets, the ledger."""

from __future__ import annotations

import typer

app = typer.Typer(help="FinOps: cost imports, budgets, the tenant ledger.", no_args_is_help=True)
