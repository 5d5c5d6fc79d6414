"""The database part of a backup: every table dumped from one snapshot, and loaded back.

Both sides work on the tables as the database has them (reflected), not as
the running code declares them: a backup holds the schema revision it was
taken at, and is loaded into a database migrated to that same revision, then
migrated up. So an older backup restores into a newer tenantops.

Dump reads all tables in one transaction (PostgreSQL ``REPEATABLE READ``;
SQLite in WAL mode reads one snapshot per transaction), so the backup is one
consistent moment even while workers run. Load writes every row in the
caller's transaction, so a restore that fails leaves no row behind.

Tables are loaded parents first, but a table's rows are written in primary-key
order, which is not the order they point at each other (an incident linked to a
problem opened after it). So a column of a foreign key into its own table is
loaded NULL and set once every row of the table is in: no order is assumed, and
backups written before this keep restoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    Table,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError

from tenantops.backup.archive import TableEntry
from tenantops.backup.errors import BackupError
from tenantops.backup.values import bind_type, decoder, encoder, kind_of
from tenantops.db import SQLITE_SCHEMAS

# Left out on purpose: who is signed in to the web UI, and its login throttle
# (a restored control plane asks everyone to sign in again); the schema revision
# is the manifest's.
EXCLUDED = frozenset({"web_sessions", "web_login_throttle", "alembic_version"})
# The PostgreSQL schemas besides the default one that tenantops creates tables in.
SCHEMAS = tuple(s for s in SQLITE_SCHEMAS if s)
BATCH = 1000
Progress = Callable[[str], None]


def reflect(conn: Connection) -> MetaData:
    """Every table of the database, as it has them (both PostgreSQL schemas)."""
    found = MetaData()
    found.reflect(conn)
    if conn.dialect.name == "postgresql":
        present = set(inspect(conn).get_schema_names())
        for schema in SCHEMAS:
            if schema in present:
                found.reflect(conn, schema=schema)
    return found


def tables(conn: Connection) -> list[Table]:
    """The tables a backup holds, parents before the rows that point at them."""
    chosen = [t for t in reflect(conn).sorted_tables if t.name not in EXCLUDED]
    names = [t.name for t in chosen]
    if len(set(names)) != len(names):
        raise BackupError("two schemas hold a table of the same name; a backup cannot tell them")
    return chosen


def columns(table: Table) -> tuple[tuple[str, str], ...]:
    return tuple((c.name, kind_of(c)) for c in table.columns)


def snapshot(engine: Engine) -> Connection:
    """A connection in a transaction that sees one moment of the whole database."""
    conn = engine.connect()
    if engine.dialect.name != "sqlite":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


def dump(conn: Connection, staging: Path, progress: Progress) -> list[TableEntry]:
    """Write every table under ``staging/tables/`` as JSON lines; the manifest's entries."""
    entries = []
    (staging / "tables").mkdir(parents=True, exist_ok=True)
    for table in tables(conn):
        member = f"tables/{table.name}.jsonl"
        kinds = columns(table)
        rows, size, digest = _dump_table(conn, table, kinds, staging / member)
        entries.append(
            TableEntry(
                name=table.name,
                member=member,
                rows=rows,
                size=size,
                sha256=digest,
                columns=kinds,
            )
        )
        if rows:
            progress(f"table {table.name}: {rows:,} rows")
    return entries


def _dump_table(
    conn: Connection, table: Table, kinds: tuple[tuple[str, str], ...], path: Path
) -> tuple[int, int, str]:
    cols = list(table.columns)
    json_cols = [c for c, (_n, kind) in zip(cols, kinds, strict=True) if kind == "json"]
    # A JSON column reads SQL NULL and a stored JSON null both as None: ask which it is.
    query = select(*cols, *(c.is_(None) for c in json_cols)).order_by(
        *(table.primary_key.columns or cols)
    )
    encoders = [encoder(kind) for _name, kind in kinds]
    json_at = [i for i, (_n, kind) in enumerate(kinds) if kind == "json"]
    h, size, count = hashlib.sha256(), 0, 0
    with path.open("wb") as out:
        for row in conn.execution_options(yield_per=BATCH).execute(query):
            values = list(row[: len(cols)])
            line = [None if v is None else enc(v) for v, enc in zip(values, encoders, strict=True)]
            for flag, i in zip(row[len(cols) :], json_at, strict=True):
                line[i] = None if flag else [values[i]]
            body = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            out.write(body)
            h.update(body)
            size += len(body)
            count += 1
    return count, size, h.hexdigest()


def check_schema(conn: Connection, entries: tuple[TableEntry, ...]) -> list[Table]:
    """The tables to load, parents first; ``BackupError`` if they are not the backup's."""
    ours = {t.name: t for t in tables(conn)}
    theirs = {e.name: e for e in entries}
    if len(theirs) != len(entries):
        raise BackupError("the backup lists a table twice")
    for name in sorted(ours.keys() - theirs.keys()):
        raise BackupError(f"the backup has no table {name}, which its schema revision has")
    for name in sorted(theirs.keys() - ours.keys()):
        raise BackupError(f"the backup has a table {name}, which its schema revision has not")
    for entry in entries:
        have = {c.name for c in ours[entry.name].columns}
        want = {name for name, _kind in entry.columns}
        if have != want:
            odd = sorted(have ^ want)
            raise BackupError(
                f"the columns of table {entry.name} differ from its schema revision's ({odd[0]})"
            )
    return list(ours.values())


def load(
    conn: Connection,
    entries: tuple[TableEntry, ...],
    staging: Path,
    progress: Progress,
) -> int:
    """Insert every row of the backup, in the caller's transaction; the rows loaded.

    The target holds only what the migrations wrote (empty tables, seed rows);
    the seed rows are deleted first, so the backup's rows replace them.
    """
    order = check_schema(conn, entries)
    for table in reversed(order):
        conn.execute(delete(table))
    by_name = {e.name: e for e in entries}
    loaded = 0
    for table in order:
        entry = by_name[table.name]
        count = _load_table(conn, table, entry, staging / entry.member)
        if count != entry.rows:
            raise BackupError(
                f"table {table.name}: {count} rows in the file, {entry.rows} in the manifest"
            )
        loaded += count
        if count:
            progress(f"table {table.name}: {count:,} rows")
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, order)
    return loaded


def self_references(table: Table) -> list[Column[Any]]:
    """The columns of ``table`` that point into ``table`` itself: loaded NULL, set afterwards.

    Of each foreign key into its own table, the nullable columns outside the
    primary key: one NULL is enough to let the row in (a composite key is
    satisfied by any NULL). A key with none of them, or a table without a
    primary key to find the row again by, cannot be loaded in any row order
    the backup promises: ``BackupError``.
    """
    found: dict[str, Column[Any]] = {}
    for fk in table.foreign_key_constraints:
        if fk.referred_table is not table:
            continue
        if not table.primary_key.columns:
            raise BackupError(f"table {table.name} refers to itself and has no primary key")
        deferrable = [c for c in fk.columns if c.nullable and not c.primary_key]
        if not deferrable:
            raise BackupError(
                f"table {table.name} refers to itself through columns that cannot be NULL"
            )
        found.update((c.name, c) for c in deferrable)
    return list(found.values())


def _load_table(conn: Connection, table: Table, entry: TableEntry, path: Path) -> int:
    cols = [table.c[name] for name, _kind in entry.columns]
    decoders = [decoder(kind) for _name, kind in entry.columns]
    binds = {
        c: bindparam(f"p{i}", type_=bind_type(c, kind))
        for i, (c, (_n, kind)) in enumerate(zip(cols, entry.columns, strict=True))
    }
    statement = insert(table).values(binds)
    deferred = self_references(table)
    at = {c.name: f"p{i}" for i, c in enumerate(cols)}
    later = [at[c.name] for c in deferred]
    keys = [at[c.name] for c in table.primary_key.columns] if deferred else []
    links: list[dict[str, Any]] = []  # the rows' own references, set once every row is in
    count, batch = 0, []
    for number, values in _lines(path, table.name):
        if len(values) != len(cols):
            raise BackupError(f"table {table.name}, row {number}: {len(values)} values")
        try:
            row = {
                f"p{i}": None if v is None else dec(v)
                for i, (v, dec) in enumerate(zip(values, decoders, strict=True))
            }
        except ValueError as exc:
            raise BackupError(f"table {table.name}, row {number}: {exc}") from exc
        if any(row[name] is not None for name in later):
            links.append({name: row[name] for name in (*keys, *later)})
            row.update(dict.fromkeys(later))
        batch.append(row)
        count += 1
        if len(batch) == BATCH:
            _execute(conn, statement, batch, table.name)
            batch = []
    if batch:
        _execute(conn, statement, batch, table.name)
    if links:
        relink = (
            update(table)
            .where(*(c == binds[c] for c in table.primary_key.columns))
            .values({c: binds[c] for c in deferred})
        )
        for start in range(0, len(links), BATCH):
            _execute(conn, relink, links[start : start + BATCH], table.name)
    return count


def _execute(conn: Connection, statement: Any, batch: list[dict[str, Any]], name: str) -> None:
    try:
        conn.execute(statement, batch)
    except (IntegrityError, DataError) as exc:
        reason = " ".join(str(exc.orig).split())
        raise BackupError(f"the rows of table {name} do not load: {reason}") from exc


def _lines(path: Path, name: str) -> Iterator[tuple[int, list[Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                values = json.loads(raw)
            except ValueError as exc:
                raise BackupError(f"table {name}, row {number} is not JSON: {exc}") from exc
            if not isinstance(values, list):
                raise BackupError(f"table {name}, row {number} is not a JSON array")
            yield number, values


def _reset_sequences(conn: Connection, loaded: list[Table]) -> None:
    """Move each serial column's sequence past the highest id loaded (PostgreSQL)."""
    for table in loaded:
        for column in table.primary_key.columns:
            if not _is_int(column):
                continue
            qualified = f"{table.schema}.{table.name}" if table.schema else table.name
            sequence = conn.execute(
                select(func.pg_get_serial_sequence(qualified, column.name))
            ).scalar()
            if sequence is None:
                continue
            highest = conn.execute(select(func.max(column))).scalar()
            conn.execute(
                text("SELECT setval(CAST(:seq AS regclass), :value, :called)"),
                {"seq": sequence, "value": highest or 1, "called": highest is not None},
            )


def _is_int(column: Any) -> bool:
    try:
        return kind_of(column) == "int"
    except BackupError:
        return False


def drop_everything(engine: Engine) -> None:
    """Drop every table (and tenantops' own PostgreSQL schemas): the database as it was.

    Only for a database a failed restore created the tables of.
    """
    with engine.begin() as conn:
        reflect(conn).drop_all(conn)
        if conn.dialect.name == "postgresql":
            for schema in SCHEMAS:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" RESTRICT'))
