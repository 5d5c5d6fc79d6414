"""The SQLite file tenantops creates is private, with its journals; one the operator made
keeps its mode. It holds owners' e-mail addresses and hashed tokens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.store import open_database


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask, so the mode asserted is the one tenantops asks for."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.usefixtures("umask")
def test_a_new_database_file_and_its_journals_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, log_json=False)
    db = open_database(settings, migrate_empty=True)
    try:
        file = settings.data_dir / "tenantops.db"
        with db.engine.connect() as conn:  # open: the -wal and -shm files exist now
            conn.execute(text("SELECT count(*) FROM audit_log"))
            journals = [file.with_name(file.name + s) for s in ("-wal", "-shm")]
            assert all(p.exists() for p in journals)
            assert [_mode(p) for p in (file, *journals)] == [0o600, 0o600, 0o600]
    finally:
        db.dispose()


@pytest.mark.usefixtures("umask")
def test_a_database_file_the_operator_made_keeps_its_mode(tmp_path: Path) -> None:
    file = tmp_path / "tenantops.db"
    file.touch()
    file.chmod(0o640)
    db = Database(f"sqlite:///{file}")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
    finally:
        db.dispose()
    assert _mode(file) == 0o640
