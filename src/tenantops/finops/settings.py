"""Settings of the FinOps domain (``TENANTOPS_FINOPS__*``)."""

from __future__ import annotations

from pydantic import BaseModel


class FinOpsSettings(BaseModel):
    """Cost allocation and budget defaults."""
