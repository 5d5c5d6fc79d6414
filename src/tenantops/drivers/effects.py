"""The effect log every local driver keeps: one row per idempotency key.

A step may run again after a crash; the driver must not repeat its effect.
``apply_once`` makes the change and records its resulting state under the
step's key in one transaction; the same key again returns the recorded state
and changes nothing, and a key reused for another operation is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.kit.clock import utcnow


class EffectLog:
    """Columns of a driver's effect-log table (mixed into its ORM model)."""

    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class State(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=State)


def apply_once(
    db: Database,
    log: type[EffectLog],
    *,
    key: str,
    operation: str,
    tenant_id: str,
    change: Callable[[Session], S],
    recorded: Callable[[dict[str, Any]], S],
    what: str,
) -> S:
    """Run ``change`` once per ``key``; afterwards return what it produced then."""
    for _ in range(3):
        try:
            with db.write() as session:
                done = session.get(log, key)
                if done is not None:
                    if done.operation != operation:
                        raise DriverError(
                            f"idempotency key {key!r} was used for {done.operation}, "
                            f"not {operation}",
                            retry=Retry.PERMANENT,
                        )
                    return recorded(done.result)
                state = change(session)
                entry = log()
                entry.idempotency_key, entry.operation, entry.tenant_id = key, operation, tenant_id
                entry.result, entry.at = state.as_dict(), utcnow()
                session.add(entry)
                return state
        except IntegrityError:
            continue  # a concurrent run of the same key (or tenant) won; read its record
    raise DriverError(f"{what} change {operation} kept conflicting", retry=Retry.RETRIABLE)
