"""The backup file: a ``.tar.gz`` whose first member, ``manifest.json``, lists every other.

Reading trusts nothing: the manifest is validated, every member must be one it
names (a plain file under a safe relative path) and must match its size and
SHA-256, and none it names may be missing. Members are copied out by this code,
never by ``tarfile``'s extraction, so no link or absolute path can land
anywhere but the destination directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tenantops.backup.errors import BackupError
from tenantops.backup.values import KINDS
from tenantops.kit.files import atomic_file

FORMAT: Final = "tenantops-backup"
FORMAT_VERSION: Final = 1
MANIFEST = "manifest.json"
PREFIX = "tenantops-backup-"  # the name ``backup create`` gives a backup, with a UTC time
CHUNK = 1 << 20


def safe_relative(path: str) -> str:
    """``path`` if it is a plain relative POSIX path inside its root; ``ValueError`` if not."""
    parts = PurePosixPath(path).parts
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or path.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or str(PurePosixPath(*parts)) != path
    ):
        raise ValueError(f"{path!r} is not a plain relative path")
    return path


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Member(_Frozen):
    """A file in the archive: where, how big, its SHA-256."""

    member: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("member")
    @classmethod
    def _safe_member(cls, value: str) -> str:
        return safe_relative(value)


class TableEntry(Member):
    """A table: its rows as JSON lines, one array per row in ``columns`` order."""

    name: str
    rows: int = Field(ge=0)
    columns: tuple[tuple[str, str], ...]

    @field_validator("columns")
    @classmethod
    def _kinds(cls, columns: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for name, kind in columns:
            if kind not in KINDS:
                raise ValueError(f"column {name} has unknown kind {kind!r}")
        return columns


class FileEntry(Member):
    """A file of the data directory, at ``path`` below it, with its permission bits."""

    path: str
    mode: int | None = Field(default=None, ge=0, le=0o777)

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        return safe_relative(value)


class GitEntry(Member):
    """The local GitOps repository as a ``git bundle`` of every ref."""

    branch: str
    head: str = Field(pattern=r"^[0-9a-f]{40,64}$")


class Manifest(_Frozen):
    """What a backup holds, and how to check it."""

    format: Literal["tenantops-backup"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    created_at: str
    tenantops_version: str
    schema_revision: str
    source: Literal["sqlite", "postgresql"]
    audit_entries: int = Field(ge=0)
    audit_head: str | None
    tables: tuple[TableEntry, ...]
    files: tuple[FileEntry, ...] = ()
    gitops: GitEntry | None = None

    def members(self) -> list[Member]:
        """Every member besides the manifest, in archive order."""
        found: list[Member] = [*self.tables, *self.files]
        if self.gitops is not None:
            found.append(self.gitops)
        return found

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def digest_file(path: Path) -> tuple[int, str]:
    """``path``'s size and SHA-256."""
    h, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def write(target: Path, manifest: Manifest, staging: Path) -> tuple[int, str]:
    """Write the archive to ``target`` whole or not at all; its size and SHA-256.

    ``staging`` holds every member under its ``member`` name, as the manifest
    describes it (``stage`` puts a file there).
    """
    with atomic_file(target) as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
        body = json.dumps(manifest.model_dump(mode="json"), indent=1).encode()
        _add(tar, MANIFEST, len(body), io.BytesIO(body))
        for member in manifest.members():
            with (staging / member.member).open("rb") as handle:
                _add(tar, member.member, member.size, handle)
    return digest_file(target)


def _add(tar: tarfile.TarFile, name: str, size: int, handle: IO[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    tar.addfile(info, handle)


def stage(source: Path, staging: Path, member: str) -> tuple[int, str]:
    """Put ``source`` into ``staging`` as ``member``; its size and SHA-256 there.

    A hard link when ``staging`` is on the same file system: the data directory's
    files are replaced by rename, never rewritten, so the link keeps the content
    seen now even if the file is replaced before the archive is written.
    """
    target = staging / member
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return digest_file(target)


def read_manifest(path: Path) -> Manifest:
    """The manifest of the backup at ``path``; ``BackupError`` if it is not one."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise BackupError(f"{path} is not a tenantops backup: it has no {MANIFEST} first")
            handle = tar.extractfile(first)
            assert handle is not None  # a regular file
            raw = handle.read(64 << 20)
    except FileNotFoundError as exc:
        raise BackupError(f"{path}: no such file") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{path} is not a readable .tar.gz: {exc}") from exc
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("format") == FORMAT:
            version = data.get("format_version")
            if version != FORMAT_VERSION:
                raise BackupError(
                    f"{path} is backup format {version}; this tenantops reads format "
                    f"{FORMAT_VERSION}"
                )
        return Manifest.model_validate(data)
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            first_error = exc.errors()[0]
            where = ".".join(str(p) for p in first_error["loc"])
            reason = f"{where}: {first_error['msg']}"
        else:
            reason = str(exc)
        raise BackupError(f"{path} has an invalid manifest ({reason})") from exc


def extract(
    path: Path,
    manifest: Manifest,
    dest: Path,
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    """Copy every member into ``dest``, checking each against the manifest.

    Raises ``BackupError`` naming the first member that is unexpected, altered,
    truncated or missing; ``dest`` may then hold some members (the caller's
    temporary directory).
    """
    expected = {m.member: m for m in manifest.members()}
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in _after_manifest(tar):
                member = expected.get(info.name)
                if member is None or info.name in seen or not info.isfile():
                    raise BackupError(f"{path}: member {info.name!r} is not in its manifest")
                seen.add(info.name)
                source = tar.extractfile(info)
                assert source is not None
                target = dest / member.member
                target.parent.mkdir(parents=True, exist_ok=True)
                size, digest = _copy(source, target)
                if (size, digest) != (member.size, member.sha256):
                    raise BackupError(
                        f"{path}: {member.member} does not match its manifest "
                        f"(size {size}, sha256 {digest[:12]}…): the backup was altered or damaged"
                    )
                if len(seen) % 100 == 0:
                    progress(f"checked {len(seen)} of {len(expected)} members")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{path} is damaged: {exc}") from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{path}: {missing[0]} is missing ({len(missing)} members in all)")


def _after_manifest(tar: tarfile.TarFile) -> Iterable[tarfile.TarInfo]:
    first = True
    for info in tar:
        if first:
            first = False
            if info.name == MANIFEST:
                continue
        yield info


def _copy(source: IO[bytes], target: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    # Readable by this user only until the restore gives it the mode it had.
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while chunk := source.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return size, h.hexdigest()
