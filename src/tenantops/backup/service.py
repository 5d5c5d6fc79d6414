"""Create, verify and restore a backup of the control plane.

- ``create`` dumps the database from one snapshot, then bundles the local
  GitOps repository and links the data directory's files, and writes the
  archive whole or not at all.
- ``verify`` checks every member against the manifest, then restores the
  backup into a scratch SQLite database and walks its audit chain: a backup
  that verifies is one that restores.
- ``restore`` needs an empty database and no file of the backup already in
  place; it loads every row in one transaction, checks the audit chain before
  committing, and records the restore as an audit entry. On any failure the
  database is left empty and no file has been moved; a SQLite file the
  restore created is deleted again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops import __version__
from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.backup import archive, database, files
from tenantops.backup.archive import FileEntry, GitEntry, Manifest
from tenantops.backup.errors import BackupError
from tenantops.config import Settings
from tenantops.db import Database, sqlite_file
from tenantops.drivers.errors import DriverError
from tenantops.drivers.gitops.local import LocalGitRepo
from tenantops.kit.clock import utcnow
from tenantops.migrations import (
    current_revision,
    head_revision,
    known_revisions,
    upgrade,
)

Progress = Callable[[str], None]

# A restore writes each JSON value back as ``json.dumps`` wrote it when it was first
# stored: the live engine's orjson writes NaN as null (decision 0048), and an audit
# entry of an older SQLite database whose detail held NaN must still match its hash.
RESTORE_ENGINE: dict[str, Any] = {"json_serializer": json.dumps}
BUNDLE = "gitops.bundle"


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Written:
    """A backup written: where, how big, its SHA-256, what it holds."""

    path: Path
    size: int
    sha256: str
    manifest: Manifest


@dataclass(frozen=True)
class Checked:
    """A backup verified or restored: its manifest, the audit entries that link up, the schema."""

    manifest: Manifest
    audit_entries: int
    schema: str  # the revision the database is at now (this version's)


@contextmanager
def _staging(parent: Path, prefix: str) -> Iterator[Path]:
    """A hidden folder under ``parent`` (so no backup picks it up), removed afterwards."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


DATED = re.compile(rf"^{archive.PREFIX}\d{{8}}T\d{{6}}Z\.tar\.gz$")


def default_name() -> str:
    return f"{archive.PREFIX}{utcnow().strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


def prune(folder: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups named by ``default_name`` in ``folder``.

    Newest by the UTC time in the name (it sorts as text), so a copied or touched
    file keeps its place; files of any other name are never touched.
    """
    named = sorted(
        p
        for p in folder.glob(f"{archive.PREFIX}*.tar.gz")
        if DATED.match(p.name) and p.is_file() and not p.is_symlink()
    )
    doomed = named[:-keep] if keep else named
    for path in doomed:
        path.unlink()
    return doomed


def create(
    settings: Settings, db: Database, target: Path, *, progress: Progress = _quiet
) -> Written:
    """Write a backup of ``db`` and the data directory to ``target``."""
    if target.exists():
        raise BackupError(f"{target} exists already; name another file")
    _writable(target)
    with _staging(settings.data_dir, ".backup-") as staging:
        conn = database.snapshot(db.engine)
        try:
            revision = current_revision(conn)
            if revision is None:
                raise BackupError("the database has no tenantops schema: nothing to back up")
            with Session(bind=conn, join_transaction_mode="rollback_only") as session:
                audit_head = audit.head(session)
            tables = database.dump(conn, staging, progress)
        finally:
            conn.close()
        gitops = _bundle(settings, staging, progress)
        kept = []
        for relative, path in files.data_files(settings, skip=(target,)):
            member = f"files/{relative}"
            size, digest = archive.stage(path, staging, member)
            mode = path.stat().st_mode & 0o777  # no setuid, setgid or sticky bit
            kept.append(
                FileEntry(path=relative, member=member, size=size, sha256=digest, mode=mode)
            )
        if kept:
            progress(f"{len(kept)} files of {settings.data_dir}")
        manifest = Manifest(
            created_at=utcnow().isoformat(),
            tenantops_version=__version__,
            schema_revision=revision,
            source="sqlite" if db.is_sqlite else "postgresql",
            audit_entries=audit_head[0] if audit_head else 0,
            audit_head=audit_head[1] if audit_head else None,
            tables=tuple(tables),
            files=tuple(kept),
            gitops=gitops,
        )
        size, digest = archive.write(target, manifest, staging)
    return Written(target, size, digest, manifest)


def _writable(target: Path) -> None:
    """Fail before the work, not after it, when ``target`` cannot be written."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}."):
            pass
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _bundle(settings: Settings, staging: Path, progress: Progress) -> GitEntry | None:
    if settings.gitops.remote is not None:
        return None  # the remote repository is the record; its clone here is a cache
    repo = LocalGitRepo(settings.resolved_gitops_path(), branch=settings.gitops.branch)
    try:
        head = repo.bundle(staging / BUNDLE)
    except DriverError as exc:
        raise BackupError(f"cannot bundle the GitOps repository: {exc}") from exc
    if head is None:
        return None
    size, digest = archive.digest_file(staging / BUNDLE)
    progress(f"GitOps repository {repo.path}: branch {repo.branch} at {head[:12]}")
    return GitEntry(member=BUNDLE, size=size, sha256=digest, branch=repo.branch, head=head)


def _restorable(manifest: Manifest, db: Database) -> None:
    """A backup restores at its own schema revision, which these migrations must know."""
    if manifest.schema_revision not in known_revisions(db.engine):
        raise BackupError(
            f"the backup is at schema {manifest.schema_revision}, which this tenantops "
            f"({__version__}, schema {head_revision(db.engine)}) does not know: restore it "
            f"with tenantops {manifest.tenantops_version} or newer"
        )


def _load(db: Database, manifest: Manifest, staging: Path, progress: Progress) -> int:
    """Migrate ``db`` to the backup's schema, load every row and check the audit chain.

    One transaction: nothing is committed unless the chain verifies to the
    manifest's count. Then the database is migrated to this version's schema.
    The audit entries that link up are returned.
    """
    upgrade(db.engine, manifest.schema_revision)
    with db.engine.connect() as conn, conn.begin():
        database.load(conn, manifest.tables, staging, progress)
        with Session(bind=conn, join_transaction_mode="rollback_only") as session:
            checked = audit.verify(session)
        if not checked.ok:
            where = f"entry {checked.bad_seq}" if checked.bad_seq is not None else "its end"
            raise BackupError(f"the backup's audit trail is broken at {where}: {checked.reason}")
        if checked.checked != manifest.audit_entries:
            raise BackupError(
                f"the backup's audit trail holds {checked.checked} entries, "
                f"its manifest {manifest.audit_entries}"
            )
    head = head_revision(db.engine)
    if manifest.schema_revision != head:
        progress(f"schema {manifest.schema_revision} upgraded to {head}")
        upgrade(db.engine)
    return checked.checked


def verify(path: Path, *, progress: Progress = _quiet) -> Checked:
    """Check ``path`` member by member, then restore it into a scratch database."""
    manifest = archive.read_manifest(path)
    with tempfile.TemporaryDirectory(prefix="tenantops-verify-") as scratch:
        staging = Path(scratch)
        archive.extract(path, manifest, staging, progress=progress)
        progress(f"{len(manifest.members())} members match the manifest")
        if manifest.gitops is not None:
            _unbundle(manifest.gitops, staging, staging / "gitops-repo")
        db = Database(f"sqlite:///{staging / 'trial.db'}", **RESTORE_ENGINE)
        try:
            _restorable(manifest, db)
            entries = _load(db, manifest, staging, progress)
            now = current_revision(db.engine) or ""
        finally:
            db.dispose()
    return Checked(manifest, entries, now)


def _unbundle(entry: GitEntry, staging: Path, into: Path) -> None:
    try:
        tip = LocalGitRepo(into, branch=entry.branch).unbundle(staging / entry.member)
    except DriverError as exc:
        raise BackupError(f"the GitOps bundle does not restore: {exc}") from exc
    if tip != entry.head:
        raise BackupError(
            f"the GitOps bundle's branch {entry.branch} is at {tip[:12]}, "
            f"its manifest says {entry.head[:12]}"
        )


def _empty(db: Database) -> None:
    revision = current_revision(db.engine)
    with db.engine.connect() as conn:
        occupied = sorted(database.reflect(conn).tables)
    if revision is not None or occupied:
        what = f"the tenantops schema {revision}" if revision else f"a table {occupied[0]}"
        raise BackupError(
            f"the database already holds {what}: restore into an empty database "
            "(a new PostgreSQL database, or an empty data directory for SQLite)"
        )


def restore(
    settings: Settings,
    db: Database,
    path: Path,
    *,
    actor: Principal,
    progress: Progress = _quiet,
) -> Checked:
    """Restore ``path`` into the empty ``db`` and the data directory; all or nothing."""
    manifest = archive.read_manifest(path)
    created = _to_be_created(db)
    try:
        _restorable(manifest, db)
        _empty(db)
        root = settings.data_dir
        repo_path = settings.resolved_gitops_path()
        for entry in manifest.files:
            if (root / entry.path).exists():
                raise BackupError(
                    f"{root / entry.path} exists already: restore into an empty data directory"
                )
        if manifest.gitops is not None and repo_path.exists() and any(repo_path.iterdir()):
            raise BackupError(f"{repo_path} exists already: restore into an empty data directory")
        with _staging(root, ".restore-") as staging:
            archive.extract(path, manifest, staging, progress=progress)
            progress(f"{len(manifest.members())} members match the manifest")
            if manifest.gitops is not None:
                _unbundle(manifest.gitops, staging, staging / "gitops-repo")
            written = _archive_digest(path)
            try:
                entries = _load(db, manifest, staging, progress)
                with db.write() as session:
                    audit.record(
                        session,
                        actor=actor,
                        action="control_plane.restored",
                        tenant_id=None,
                        changes={},
                        detail={
                            "backup": path.name,
                            "sha256": written,
                            "created_at": manifest.created_at,
                            "source": manifest.source,
                            "tenantops_version": manifest.tenantops_version,
                            "schema_revision": manifest.schema_revision,
                            "rows": manifest.rows,
                            "files": len(manifest.files),
                        },
                    )
            except BaseException:
                database.drop_everything(db.engine)  # as empty as it was
                raise
            created = None  # committed: the file is the restored database now
            _move_into_place(manifest, staging, root, repo_path)
    except BaseException:
        if created is not None:
            _delete_sqlite(db, created)
        raise
    return Checked(manifest, entries, current_revision(db.engine) or "")


def _to_be_created(db: Database) -> Path | None:
    """The SQLite file ``db`` will create on first use; None when it is there (or no file)."""
    file = sqlite_file(db.engine)
    return file if file is not None and not file.exists() else None


def _delete_sqlite(db: Database, file: Path) -> None:
    """Delete the SQLite file a failed restore created, and its journals (closed first)."""
    db.dispose()
    for suffix in files.SQLITE_SUFFIXES:
        file.with_name(file.name + suffix).unlink(missing_ok=True)


def _archive_digest(path: Path) -> str:
    return archive.digest_file(path)[1]


def _umask_default() -> int:
    """The mode a new file gets here: for a backup that recorded none."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _move_into_place(manifest: Manifest, staging: Path, root: Path, repo_path: Path) -> None:
    """Rename the staged files into the data directory (same file system: one rename each)."""
    for entry in manifest.files:
        target = root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / entry.member, target)
        target.chmod(entry.mode if entry.mode is not None else _umask_default())
    if manifest.gitops is not None:
        if repo_path.exists():
            repo_path.rmdir()  # checked empty before
        repo_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / "gitops-repo", repo_path)
