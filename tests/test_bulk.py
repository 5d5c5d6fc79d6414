"""``kit.bulk``: ``UpdateMany`` and ``insert_many`` — one statement (or ``COPY``) on
PostgreSQL, an executemany elsewhere, the same rows either way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from tenantops.db import Database
from tenantops.kit.bulk import UpdateMany, insert_many
from tests.conftest import postgres_only

_META = MetaData()
PROBE = Table(
    "bulk_probe",
    _META,
    Column("key", String(8), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("doc", JSON),
    Column("at", DateTime(timezone=True)),
    Column("state", String(8)),
    Column("touched", DateTime(timezone=True)),
)
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

CLOSE = UpdateMany(
    PROBE,
    keys=["key", "n"],
    fields=["doc", "at"],
    values={
        "state": "closed",
        "touched": func.coalesce(PROBE.c.touched, bindparam("now", type_=PROBE.c.touched.type)),
    },
    where=[PROBE.c.state == "open"],
)


@pytest.fixture
def probe(db: Database) -> Iterator[Database]:
    _META.drop_all(db.engine)
    _META.create_all(db.engine)
    with db.write() as s:
        s.execute(
            insert(PROBE),
            [
                {"key": "a", "n": 1, "doc": {}, "at": T0, "state": "open", "touched": None},
                {"key": "a", "n": 2, "doc": {}, "at": T0, "state": "open", "touched": T0},
                {"key": "b", "n": 1, "doc": {}, "at": T0, "state": "done", "touched": None},
                {"key": "c", "n": 1, "doc": {}, "at": T0, "state": "open", "touched": None},
            ],
        )
    yield db
    _META.drop_all(db.engine)


def _rows(db: Database) -> dict[tuple[str, int], tuple[object, ...]]:
    with db.read() as s:
        return {
            (r.key, r.n): (r.doc, r.at, r.state, r.touched) for r in s.execute(select(PROBE)).all()
        }


def test_each_row_gets_its_own_values_and_only_matching_rows_change(probe: Database) -> None:
    later = T0 + timedelta(hours=1)
    now = T0 + timedelta(hours=2)
    statements: list[str] = []
    event.listen(probe.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with probe.write() as s:
        CLOSE(
            s,
            [
                {"key": "a", "n": 1, "doc": {"commit": "abc", "n": [1, 2]}, "at": later},
                {"key": "a", "n": 2, "doc": [1, 2], "at": None},  # a JSON list, a NULL
                {"key": "b", "n": 1, "doc": {"x": 1}, "at": later},  # not open: untouched
                {"key": "z", "n": 9, "doc": {}, "at": later},  # no such row
            ],
            {"now": now},
        )
    rows = _rows(probe)
    assert rows[("a", 1)] == ({"commit": "abc", "n": [1, 2]}, later, "closed", now)
    assert rows[("a", 2)] == ([1, 2], None, "closed", T0)  # coalesce kept its time
    assert rows[("b", 1)] == ({}, T0, "done", None)
    assert rows[("c", 1)] == ({}, T0, "open", None)
    updates = [q for q in statements if q.lstrip().upper().startswith("UPDATE")]
    if probe.engine.dialect.name == "postgresql":
        assert "unnest(" in updates[0]  # one statement for every row
    assert len(updates) == 1  # on SQLite: one executemany


def test_no_rows_send_no_statement(probe: Database) -> None:
    statements: list[str] = []
    event.listen(probe.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with probe.write() as s:
        CLOSE(s, [], {"now": T0})
    assert not [q for q in statements if "bulk_probe" in q]
    assert _rows(probe)[("a", 1)][2] == "open"


def test_a_longer_key_matches_nothing_and_a_longer_value_is_refused(probe: Database) -> None:
    """The column's length is not cast onto the values: ``VARCHAR(8)[]`` would cut them
    short, so a longer key would match the row of its first eight characters."""
    with probe.write() as s:
        s.execute(insert(PROBE), [{"key": "k" * 8, "n": 1, "doc": {}, "state": "open"}])
        CLOSE(s, [{"key": "k" * 9, "n": 1, "doc": {}, "at": None}], {"now": T0})
    assert _rows(probe)[("k" * 8, 1)][2] == "open"
    if probe.engine.dialect.name != "postgresql":
        return  # SQLite keeps any length in a VARCHAR(8)
    grow = UpdateMany(PROBE, keys=["key", "n"], fields=["state"])
    with pytest.raises(DBAPIError, match="too long"), probe.write() as s:
        grow(s, [{"key": "a", "n": 1, "state": "x" * 40}])


AWKWARD = {
    "text": 'tab\there, newline\nthere, back\\slash, quote " and \\N, ünïcødé ✓',
    "nested": {"list": [1, 2.5, None, True], "empty": {}},
}


def test_inserted_rows_read_back_as_an_insert_writes_them(probe: Database) -> None:
    """What COPY's text format must escape (tabs, newlines, backslashes, ``\\N``) and
    what the column types bind (JSON through the engine's serializer, aware times, NULL)
    reads back as it does from an ``INSERT``."""
    later = T0 + timedelta(minutes=5)
    rows = [
        {"key": "x", "n": 1, "doc": AWKWARD, "at": later, "state": "\\N", "touched": None},
        {"key": "x", "n": 2, "doc": [1, "two"], "at": None, "state": None, "touched": T0},
        {"key": "x", "n": 3, "doc": None, "at": T0, "state": "", "touched": later},
    ]
    with probe.write() as s:
        insert_many(s, PROBE, rows)
    with probe.write() as s:
        s.execute(insert(PROBE), [{**r, "key": "y"} for r in rows])
    found = _rows(probe)
    for n in (1, 2, 3):
        assert found[("x", n)] == found[("y", n)]
    assert found[("x", 1)] == (AWKWARD, later, "\\N", None)
    assert found[("x", 2)][:3] == ([1, "two"], None, None)


def test_a_refused_row_raises_as_an_insert_would_and_leaves_no_row(probe: Database) -> None:
    rows = [
        {"key": "new", "n": 1, "doc": {}, "at": T0, "state": "open", "touched": None},
        {"key": "a", "n": 1, "doc": {}, "at": T0, "state": "open", "touched": None},  # taken
    ]
    with pytest.raises(IntegrityError), probe.write() as s:
        insert_many(s, PROBE, rows)
    assert ("new", 1) not in _rows(probe)
    with probe.write() as s:
        insert_many(s, PROBE, [])  # nothing to do, and no statement for it
        insert_many(s, PROBE, rows[:1])
    assert _rows(probe)[("new", 1)][2] == "open"


def test_a_json_none_is_json_null_as_an_insert_writes_it(probe: Database) -> None:
    row = {"n": 7, "doc": None, "at": None, "state": None, "touched": None}
    with probe.write() as s:
        insert_many(s, PROBE, [{**row, "key": "copied"}])
        s.execute(insert(PROBE), [{**row, "key": "inserted"}])
    with probe.read() as s:
        query = select(PROBE.c.key, PROBE.c.doc.is_(None)).where(PROBE.c.n == 7)
        null = {row[0]: row[1] for row in s.execute(query).all()}
    assert null == {"copied": False, "inserted": False}  # the JSON text null, not SQL NULL


@postgres_only
def test_a_refused_row_is_reported_without_its_value(db: Database) -> None:
    """PostgreSQL quotes the refused value in a COPY error's context (an INSERT's error
    does not): an error that may be logged must not carry it (the audit trail logs them)."""
    _META.drop_all(db.engine)
    _META.create_all(db.engine)
    try:
        secret = "s3cr3t-token-value"
        row = {"key": "k", "n": 1, "doc": {}, "at": T0, "state": secret, "touched": None}
        with pytest.raises(DBAPIError, match="too long") as refused, db.write() as s:
            insert_many(s, PROBE, [row])
        assert secret not in str(refused.value)
        assert refused.value.__cause__ is None
        assert refused.value.__suppress_context__
    finally:
        _META.drop_all(db.engine)
