"""The files part of a backup: what the data directory holds besides the database.

Evidence bundles, exports, deletion certificates, reports and Terraform's
working files are copied as they are. Left out: the SQLite database (it is
dumped row by row), the local GitOps repository (bundled with git, under its
lock, see ``LocalGitRepo.bundle``), the remote GitOps adapter's clone (a cache,
fetched again), the webhook signing key (a backup holds no secret), earlier
backups kept in the data directory, and every file or folder whose name starts
with a dot (temporary files, ``.terraform``
provider caches, a restore's own staging folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tenantops.backup.archive import PREFIX
from tenantops.config import Settings
from tenantops.events.webhooks import KEY_FILE

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _sqlite_file(settings: Settings) -> Path | None:
    url = settings.resolved_database_url()
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///")).resolve()


def _skipped(settings: Settings, extra: tuple[Path, ...]) -> set[Path]:
    root = settings.data_dir.resolve()
    skipped = {
        settings.resolved_gitops_path().resolve(),
        (settings.gitops.remote.cache_dir if settings.gitops.remote else None)
        or root / "gitops-remote",
        root / KEY_FILE,
        *(p.resolve() for p in extra),
    }
    db = _sqlite_file(settings)
    if db is not None:
        skipped.update(db.with_name(db.name + suffix) for suffix in SQLITE_SUFFIXES)
    return {p.resolve() for p in skipped}


def data_files(settings: Settings, *, skip: tuple[Path, ...] = ()) -> Iterator[tuple[str, Path]]:
    """Each file of the data directory a backup keeps: its POSIX path below it, and where it is."""
    root = settings.data_dir.resolve()
    if not root.is_dir():
        return
    skipped = _skipped(settings, skip)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skipped
        )
        for name in sorted(names):
            path = here / name
            if name.startswith(".") or path.resolve() in skipped or not path.is_file():
                continue
            if name.startswith(PREFIX) and name.endswith(".tar.gz"):
                continue  # an earlier backup written into the data directory
            if path.is_symlink():
                continue
            yield path.relative_to(root).as_posix(), path


def signing_key_file(settings: Settings) -> Path | None:
    """The webhook signing key the server made for itself, when no key is configured."""
    if settings.events.signing_key is not None:
        return None
    path = settings.data_dir / KEY_FILE
    return path if path.is_file() else None
