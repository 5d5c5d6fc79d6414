"""Database engine and units of work, one code path for SQLite and PostgreSQL.

SQLite (the embedded default) runs in WAL mode; a write unit of work opens with
``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read lock, and
readers are never blocked. On PostgreSQL the services lock the rows they change
(``SELECT … FOR UPDATE``), so concurrent replicas serialise per tenant.

SQLite has no timestamp type with an offset; ``DateTime(timezone=True)``
columns are stored there as UTC wall time and read back as aware UTC, so both
stores hand out the same datetimes.

A SQLite file tenantops creates is private (``0600``): it holds owners' e-mail
addresses and hashed tokens. SQLite gives its ``-wal`` and ``-shm`` files the
database file's mode, so they follow. A file the operator made keeps its mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Schemas of the PostgreSQL layout, mapped away on SQLite (declared as ``schema=...``).
SQLITE_SCHEMAS: dict[str | None, str | None] = {"finops": None}


class Base(DeclarativeBase):
    """Declarative base of every ORM model."""

    metadata = MetaData(naming_convention=NAMING)


class _UTCDateTime(SQLITE_DATETIME):
    """SQLite ``DATETIME`` that keeps UTC: aware values are stored as UTC, read back aware.

    Without it an aware value is stored as its wall time in whatever offset it
    carries and read back naive, so the API would answer timestamps without an
    offset and compare ``+02:00`` filters two hours off.
    """

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        process = super().bind_processor(dialect)
        # The last value and its text: a batch binds one ``now`` to every row of an
        # executemany, and formatting it was a tenth of a worker's CPU. Datetimes are
        # immutable, so the same object has the same text; the pair is replaced in
        # one assignment, so threads sharing the processor never see half of one.
        last: tuple[Any, Any] = (None, None)

        def to_utc(value: Any) -> Any:
            nonlocal last
            seen, text = last
            if value is seen and value is not None:
                return text
            given = value
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC)
            text = process(value) if process else value
            last = (given, text)
            return text

        return to_utc

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        process = super().result_processor(dialect, coltype)
        if not self.timezone:
            return process

        def as_aware(value: Any) -> Any:
            value = process(value) if process else value
            if isinstance(value, datetime) and value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value

        return as_aware


_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_text(value: Any) -> str:
    """A JSON column's text: orjson, several times faster than ``json.dumps`` (a worker
    writes eight per step), and ``json.dumps`` for whatever orjson refuses.

    So every value stored before is stored alike: integer keys and integers past 64
    bits go through ``json.dumps`` as before, and a datetime or any other value it
    refused is refused. What orjson writes differently: NaN and infinities become
    ``null`` (``json.dumps`` wrote ``NaN``, which PostgreSQL refused; it still does when
    the value also needs the fallback), a UUID or an Enum its string or value
    (``json.dumps`` raised). A restore writes with ``json.dumps`` (``backup.service``).
    """
    try:
        return orjson.dumps(value, default=_not_json, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, explicit BEGINs and UTC times."""
    kwargs.setdefault("json_serializer", json_text)  # read back with json.loads, as always
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        engine.dialect.colspecs = {**engine.dialect.colspecs, DateTime: _UTCDateTime}
        _configure_sqlite(engine)
        # SQLite has no schemas: the tables PostgreSQL keeps apart (schema finops) live
        # in the one file, so one transaction stays one commit.
        engine.update_execution_options(schema_translate_map=SQLITE_SCHEMAS)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database; None for another store or one held in memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("uri") or url.database.startswith("file:"):
        return None  # a URI filename: SQLite opens it as it says
    return Path(url.database)


def _create_private(path: Path) -> None:
    """Create ``path`` empty and ``0600`` (an empty file is an empty SQLite database).

    Only if nothing is there: ``O_EXCL`` never touches an existing file, however
    close another process comes. Any other failure is left to SQLite to report.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return


def _configure_sqlite(engine: Engine) -> None:
    file = sqlite_file(engine)

    @event.listens_for(engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        # Before SQLite would create the file with its default 0644.
        if file is not None and not file.exists():
            _create_private(file)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB of page cache per connection (default 2 MiB): the dashboard's one
        # statement over every tenant reads the audit and run indexes whole.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus its session factory; one per process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error."""
        with self.sessions() as session:
            session.connection(execution_options={"sqlite_immediate": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (never committed)."""
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
