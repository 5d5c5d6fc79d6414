"""JSON columns are written by ``db.json_text`` (orjson, ``json.dumps`` for what it
refuses): every value stored before is stored alike, and the audit chain still
verifies over what the columns give back."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import SYSTEM
from tenantops.db import Database, json_text


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"a": [1, {"b": None}], "c": "ü"}, {"a": [1, {"b": None}], "c": "ü"}),
        ({1: "int key"}, {"1": "int key"}),
        ({"big": 2**70}, {"big": 2**70}),
        ({"s": "\udc80"}, {"s": "\udc80"}),  # a lone surrogate, as os.fsdecode gives
        ({"nan": float("nan"), "inf": [float("-inf")]}, {"nan": None, "inf": [None]}),
        ({"u": uuid.UUID(int=1), "e": Colour.RED}, {"u": str(uuid.UUID(int=1)), "e": "red"}),
    ],
)
def test_json_text_stores_what_json_dumps_stored(value: Any, stored: Any) -> None:
    assert json.loads(json_text(value)) == stored


@pytest.mark.parametrize("value", [{"at": datetime.now(UTC)}, {"d": Decimal("1.5")}, {(1,): 2}])
def test_json_text_refuses_what_json_dumps_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json_text(value)


def test_the_audit_chain_verifies_over_the_values_the_columns_give_back(db: Database) -> None:
    detail = {"nan": float("nan"), "big": 2**70, "keys": {7: "seven"}}
    with db.write() as s:
        audit.record(s, actor=SYSTEM, action="probe.odd", tenant_id=None, changes={}, detail=detail)
        audit.record_many(
            s,
            [
                audit.NewEntry(
                    actor=SYSTEM, action="probe.odd", tenant_id=None, changes={}, detail=detail
                )
            ],
        )
    with db.read() as s:
        stored = s.execute(
            select(AuditEntry.detail).where(AuditEntry.action == "probe.odd")
        ).scalars()
        assert list(stored) == [{"nan": None, "big": 2**70, "keys": {"7": "seven"}}] * 2
    with audit.snapshot(db) as s:
        result = audit.verify(s)
    assert result.ok, result.reason
