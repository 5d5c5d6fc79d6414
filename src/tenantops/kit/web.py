"""Request-scoped helpers every router shares: the database, waking the worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tenantops.db import Database


def database(request: Request) -> Database:
    """The application's database (set by ``create_app``)."""
    db: Database = request.app.state.db
    return db


Db = Annotated[Database, Depends(database)]


def wake_worker(request: Request) -> None:
    """A change committed that may have made work: let the in-process worker and relay look now."""
    for name in ("worker", "relay"):
        looper = getattr(request.app.state, name, None)
        if looper is not None:
            looper.wake()
