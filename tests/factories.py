"""Small builders of valid request bodies."""

from __future__ import annotations

import itertools
from typing import Any

_seq = itertools.count(1)


def tenant_body(**overrides: Any) -> dict[str, Any]:
    n = next(_seq)
    body: dict[str, Any] = {
        "name": f"acme-{n}",
        "display_name": f"ACME {n}",
        "business_owner": "owner@acme.example",
        "compliance_classification": "confidential",
        "region": "eu-central-1",
        "tier": "standard",
        "monthly_budget": 2500,
        "currency": "EUR",
        "contacts": ["ops@acme.example"],
        "ticket_ref": f"RITM{n:07d}",
    }
    body.update(overrides)
    return body
