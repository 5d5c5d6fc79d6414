"""What the run pages show, assembled from the runs service's answers (no query of its own).

The SLA countdown is put into words on the server (``runbooks.wording``, which
the runs CLI shares), at every refresh — the page carries no script that
counts. Evidence is free-form JSON recorded by each step; it is shown as
labelled values, and a value that names something the UI or the API can show
(a run, a tenant, a message, a cost report) becomes a link to it. Whether the
viewer may retry or cancel is read from the API's role table (``policy.may``)
for the API's own routes, so the buttons and the POSTs follow the same rule as
``POST /api/v1/runs/{run_id}/retry|cancel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from tenantops.auth.policy import API, may
from tenantops.auth.principal import Principal
from tenantops.runbooks.schemas import RunRead, RunSummary, StepRead
from tenantops.runbooks.wording import Countdown, countdown

RUN_STATES = ("running", "waiting", "succeeded", "failed", "cancelled")
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
RETRY_ROUTE = f"{API}/runs/{{run_id}}/retry"
CANCEL_ROUTE = f"{API}/runs/{{run_id}}/cancel"
REPORT_FORMATS = ("html", "csv", "pdf")


@dataclass(frozen=True)
class Field:
    """One labelled evidence value: text, maybe a link, or nested values."""

    label: str
    text: str | None = None
    href: str | None = None
    children: tuple[Field, ...] = ()


def _scalar(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _link(key: str, value: Any, siblings: Mapping[str, Any], tenant: str | None) -> str | None:
    """Where a value points: a page or API resource it names, else ``None``."""
    if not isinstance(value, str) or not value or len(value) > 500:
        return None
    key = key.lower()
    if key in ("run_id", "run"):
        return f"/runs/{quote(value, safe='')}"
    if key in ("tenant", "tenant_name"):
        return f"/tenants/{quote(value, safe='')}"
    if key == "tenant_id":
        return f"{API}/tenants/{quote(value, safe='')}"
    if key == "message_id":
        return f"{API}/notifications/{quote(value, safe='')}"
    month = siblings.get("month")
    if key in REPORT_FORMATS and isinstance(month, str):
        params = {"month": month, "format": key} | ({"tenant": tenant} if tenant else {})
        return f"{API}/finops/reports/cost?{urlencode(params)}"
    if value.startswith(("/runs/", "/tenants/", "/approvals", f"{API}/")) and not value.startswith(
        "//"
    ):
        return value
    if value.startswith(("https://", "http://")):
        return value
    return None


def _field(
    key: str, value: Any, siblings: Mapping[str, Any], tenant: str | None, depth: int = 0
) -> Field:
    name = label(key)
    if isinstance(value, Mapping) and depth < 4:
        return Field(name, children=fields(value, tenant=tenant, depth=depth + 1))
    if isinstance(value, list) and depth < 4:
        if all(not isinstance(v, Mapping | list) for v in value):
            return Field(name, text=", ".join(_scalar(v) for v in value) or "none")
        return Field(
            name,
            children=tuple(
                _field(str(i), v, {}, tenant, depth + 1) for i, v in enumerate(value, start=1)
            ),
        )
    if isinstance(value, Mapping | list):
        return Field(name, text=str(value))
    return Field(name, text=_scalar(value), href=_link(key, value, siblings, tenant))


def fields(
    values: Mapping[str, Any] | None, *, tenant: str | None = None, depth: int = 0
) -> tuple[Field, ...]:
    """Evidence (or any JSON object) as labelled fields, in the order the step recorded them."""
    if not values:
        return ()
    return tuple(_field(str(k), v, values, tenant, depth) for k, v in values.items())


def label(key: str) -> str:
    """``manifest_digest`` -> ``manifest digest``: evidence keys as words."""
    return key.replace("_", " ")


@dataclass(frozen=True)
class StepView:
    step: StepRead
    sla: Countdown | None
    evidence: tuple[Field, ...]
    gate_waiting: bool


@dataclass(frozen=True)
class RunView:
    """A run as its page shows it."""

    run: RunRead
    sla: Countdown | None
    steps: list[StepView]
    finished: bool
    can_retry: bool
    can_cancel: bool
    tenant: str | None = None
    inputs: tuple[Field, ...] = ()


def request_inputs(inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a run was asked to do: its inputs but the tenant record (shown on the tenant page)."""
    return {k: v for k, v in (inputs or {}).items() if k != "tenant"}


def run_view(run: RunRead, principal: Principal) -> RunView:
    """The run page's data: SLA in words, steps with evidence, the actions the viewer has."""
    tenant = run.tenant_name
    steps = [
        StepView(
            step=s,
            sla=countdown(s.sla, s.status),
            evidence=fields(s.evidence, tenant=tenant),
            gate_waiting=s.kind == "gate" and s.status == "waiting",
        )
        for s in run.steps
    ]
    return RunView(
        run=run,
        sla=countdown(run.sla, run.status),
        steps=steps,
        finished=run.status in FINISHED,
        can_retry=run.retriable and may(principal, "POST", RETRY_ROUTE),
        can_cancel=(run.status in ("running", "waiting") or run.retriable)
        and may(principal, "POST", CANCEL_ROUTE),
        tenant=tenant,
        inputs=fields(request_inputs(run.inputs), tenant=tenant),
    )


@dataclass(frozen=True)
class RunRow:
    run: RunSummary
    sla: Countdown | None


def run_rows(items: Sequence[RunSummary]) -> list[RunRow]:
    """A page of the runs list with each run's SLA in words."""
    return [RunRow(run=r, sla=countdown(r.sla, r.status)) for r in items]
