"""Backup create, verify and restore of a control plane with 10,000 tenants.

    .venv/bin/python bench/bench_backup.py                          # 10,000 tenants, both stores
    .venv/bin/python bench/bench_backup.py --tenants 1000 --stores sqlite

For each source store (``bench/stores.py``: a fresh SQLite file or PostgreSQL
database on 127.0.0.1), the database is seeded as ``bench_web_pages.py`` seeds
it (runs, steps, attempts, approvals, audit trail, costs and ledger lines per
tenant), then:

1. ``backup.service.create`` writes the archive (no GitOps repository: the
   seed makes no commits; no data files);
2. ``backup.service.verify`` checks it and restores it into a scratch SQLite
   database;
3. ``backup.service.restore`` loads it into a fresh database of each store.

Reported per step: wall time, process CPU time, rows, rows per second, and the
archive's size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_web_pages import seed
from pydantic import SecretStr
from sqlalchemy import bindparam, select, update
from stores import make_store

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.principal import SYSTEM
from tenantops.backup import service
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.migrations import upgrade

T = TypeVar("T")


def rechain(db: Database) -> None:
    """Link the seed's audit entries into a real hash chain (the seed writes placeholders)."""
    prev, updates = audit.GENESIS, []
    with db.read() as s:
        for entry in s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars():
            digest = audit.hash_of(entry, prev)
            updates.append({"k": entry.seq, "p": prev, "h": digest})
            prev = digest
    table = AuditEntry.__table__
    with db.engine.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.seq == bindparam("k"))
            .values(prev_hash=bindparam("p"), hash=bindparam("h")),
            updates,
        )
        conn.execute(update(AuditHead).values(hash=prev))


def timed(label: str, rows: int | None, work: Callable[[], T]) -> T:
    """Run ``work``; print its wall and CPU time and its rate (``None``: the rows it wrote)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if rows is None:
        rows = result.manifest.rows  # type: ignore[attr-defined]
    print(
        f"  {label:<28} {wall:7.2f} s wall {cpu:7.2f} s CPU  {rows:>9,} rows  "
        f"{rows / wall:>9,.0f} rows/s",
        flush=True,
    )
    return result


def run(source: str, targets: list[str], tenants: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        root = Path(tmp)
        url, drop = make_store(source, root / "source" if source == "sqlite" else None)
        (root / "source").mkdir(exist_ok=True)
        db = Database(url)
        try:
            upgrade(db.engine)
            started = time.perf_counter()
            seed(db, tenants, datetime.now(UTC))
            rechain(db)
            print(
                f"{source}: {tenants:,} tenants seeded in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            settings = Settings(data_dir=root / "source", database_url=SecretStr(url))
            archive = root / "backup.tar.gz"
            written = timed("create", None, lambda: service.create(settings, db, archive))
            rows = written.manifest.rows
            print(
                f"  archive: {written.size / 1e6:.1f} MB, {rows:,} rows, "
                f"{written.manifest.audit_entries:,} audit entries",
                flush=True,
            )
            timed("verify (trial SQLite load)", rows, lambda: service.verify(archive))
            for target in targets:
                into = root / f"restore-{target}"
                into.mkdir()
                target_url, drop_target = make_store(target, into if target == "sqlite" else None)
                restored = Database(target_url)
                try:
                    timed(
                        f"restore into {target}",
                        rows,
                        lambda restored=restored, into=into, target_url=target_url: service.restore(
                            Settings(data_dir=into, database_url=SecretStr(target_url)),
                            restored,
                            archive,
                            actor=SYSTEM,
                        ),
                    )
                finally:
                    restored.dispose()
                    drop_target()
        finally:
            db.dispose()
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for source in stores:
        run(source, stores, args.tenants)


if __name__ == "__main__":
    main()
