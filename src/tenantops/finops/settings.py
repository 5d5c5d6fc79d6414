"""Settings of the FinOps domain (``TENANTOPS_FINOPS__*``).

Allocation rules are an ordered list: the first rule that yields a tenant for
a cost line wins, and a line no rule matches is kept as unallocated (never
dropped). As environment variable the list is JSON::

    TENANTOPS_FINOPS__ALLOCATION='[{"kind": "tag", "key": "tenant"},
      {"kind": "resource", "pattern": ".*/namespaces/(?P<tenant>[a-z0-9-]+)/.*"}]'
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class AllocationRule(BaseModel):
    """One way to find the tenant of a cost line.

    ``tag``: the value of ``Tags[key]`` names the tenant (its name or id).
    ``resource``: ``pattern`` (a Python regex with a named group ``tenant``)
    is searched in ``ResourceId``; the group names the tenant.
    """

    kind: Literal["tag", "resource"]
    key: str | None = Field(default=None, min_length=1, max_length=200)
    pattern: str | None = Field(default=None, min_length=1, max_length=1000)
    name: str | None = Field(default=None, description="Shown in import summaries")

    @model_validator(mode="after")
    def _complete(self) -> AllocationRule:
        if self.kind == "tag" and not self.key:
            raise ValueError("a tag rule needs 'key' (the tag whose value names the tenant)")
        if self.kind == "resource":
            if not self.pattern:
                raise ValueError("a resource rule needs 'pattern' (a regex)")
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from exc
            if "tenant" not in compiled.groupindex:
                raise ValueError("pattern needs a named group (?P<tenant>...)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"tag:{self.key}" if self.kind == "tag" else f"resource:{self.pattern}"


def _default_rules() -> list[AllocationRule]:
    return [
        AllocationRule(kind="tag", key="tenant"),
        AllocationRule(kind="resource", pattern=r".*/namespaces/(?P<tenant>[a-z0-9-]+)(/.*)?$"),
    ]


class FinOpsSettings(BaseModel):
    """Cost allocation and budget defaults."""

    allocation: list[AllocationRule] = Field(
        default_factory=_default_rules,
        description="Ordered allocation rules; the first that names a tenant wins",
    )
    cost_column: Literal["EffectiveCost", "BilledCost"] = Field(
        default="EffectiveCost",
        description="The FOCUS cost budgets and forecasts are measured in",
    )
    default_thresholds: list[int] = Field(
        default_factory=lambda: [50, 80, 100, 120],
        description="Budget thresholds (percent) of a budget set without its own",
    )
    max_reported_errors: int = Field(default=100, ge=1, le=10_000)
    max_upload_bytes: int = Field(default=4 * 1024**3, ge=1024)
    overrun_rate_limit: float = Field(
        default=10.0,
        gt=0,
        le=1_000_000,
        description="Requests/s the Cost Overrun playbook allows a tenant (after approval).",
    )
    overrun_burst: int = Field(
        default=20, ge=1, le=10_000_000, description="Requests at once under that limit."
    )
    follow_up_days: int = Field(
        default=7, ge=1, le=365, description="Due date of the Cost Overrun follow-up, in days."
    )

    @field_validator("default_thresholds")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        if any(t <= 0 or t > 1000 for t in value):
            raise ValueError("thresholds are percentages between 1 and 1000")
        return sorted(set(value))
