"""Hand-built tenants, runs and steps with known times, inserted in one go (as the KPI tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from tenantops.db import Database
from tenantops.runbooks.models import Run, RunStep
from tenantops.tenants.models import Tenant


def at(day: int, hour: int = 0, minute: int = 0, month: int = 1, year: int = 2030) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class Fleet:
    """Rows for the tenant, run and step tables; ``write`` inserts them."""

    def __init__(self) -> None:
        self.tenants: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.ids: dict[str, str] = {}

    def tenant(
        self,
        name: str,
        *,
        approved: datetime | None = None,
        activated: datetime | None = None,
    ) -> str:
        tid = str(uuid.uuid4())
        self.ids[name] = tid
        created = approved or at(1)
        self.tenants.append(
            {
                **{"id": tid, "name": name, "display_name": name.title(), "state": "active"},
                **{"business_owner": "o@example.com", "compliance_classification": "internal"},
                **{"region": "eu-central-1", "tier": "standard", "contacts": []},
                **{"monthly_budget": Decimal(100), "currency": "EUR", "ticket_ref": None},
                **{"requested_by": "amy", "created_at": created, "updated_at": created},
                **{"approved_at": approved, "activated_at": activated, "version": 1},
            }
        )
        return tid

    def run(
        self,
        runbook: str,
        tenant: str | None,
        *,
        created: datetime,
        status: str = "succeeded",
        finished: datetime | None = None,
        deadline: datetime | None = None,
    ) -> str:
        rid = str(uuid.uuid4())
        self.runs.append(
            {
                **{"id": rid, "runbook_id": runbook, "runbook_version": "1.0"},
                **{"runbook_hash": "0" * 64, "document": {}, "inputs": {}},
                **{"tenant_id": self.ids[tenant] if tenant else None, "status": status},
                **{"started_by": "amy", "created_at": created, "updated_at": finished or created},
                **{"finished_at": finished, "sla_deadline": deadline, "error": None},
                "sla_breached_at": deadline
                if deadline and (finished is None or finished > deadline)
                else None,
            }
        )
        return rid

    def step(
        self,
        run_id: str,
        name: str,
        *,
        kind: str = "action",
        status: str = "succeeded",
        started: datetime | None = None,
        finished: datetime | None = None,
        deadline: datetime | None = None,
    ) -> None:
        self.steps.append(
            {
                **{"id": str(uuid.uuid4()), "run_id": run_id, "name": name, "kind": kind},
                **{"position": sum(1 for s in self.steps if s["run_id"] == run_id)},
                **{"status": status, "attempt": 1, "failures": 0, "max_attempts": 1},
                **{"wake_at": None, "lease_owner": None, "lease_token": None},
                **{"lease_expires_at": None, "idempotency_key": f"{run_id}/{name}"},
                **{"inputs": None, "output": None, "evidence": None, "error": None},
                **{"started_at": started, "finished_at": finished, "sla_deadline": deadline},
                **{"sla_breached_at": None, "decided_by": None, "maintenance_window": None},
            }
        )

    def write(self, db: Database) -> None:
        with db.write() as session:
            for model, rows in ((Tenant, self.tenants), (Run, self.runs), (RunStep, self.steps)):
                if rows:
                    session.execute(insert(model), rows)
