"""The local GitOps adapter: a real (bare) git repository on disk, driven by the git CLI.

Why the git CLI and not a library, and why bare: see docs/decisions/0008. A
change never touches a work tree: the new tree is computed from the head's
listing, compared with it in memory (an unchanged render makes no commit and
no git call beyond the listing), and written with one ``git fast-import``
that creates the blobs, trees and commit and moves the branch. Every write
holds an exclusive ``fcntl`` lock on ``tenantops.lock`` in the repository, so
workers in threads or processes commit one at a time; the kernel drops the
lock of a process that dies, and the next writer removes the lock files git
left half-done. A branch moves atomically, so a crash leaves either the old
head or the new one (plus, at worst, unreferenced objects that gc drops).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops.port import (
    ACTOR_TRAILER,
    IDEMPOTENCY_TRAILER,
    RUN_TRAILER,
    Change,
    Commit,
)
from tenantops.kit.clock import utcnow

LOCK_NAME = "tenantops.lock"
# Lock files git leaves behind when killed mid-command; stale once we hold our lock.
GIT_LOCKS = ("HEAD.lock", "packed-refs.lock", "config.lock", "shallow.lock")
SAFE_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
OBJECT_ID = re.compile(r"^[0-9a-f]{4,64}$")
FILE_MODE = "100644"
GC_EVERY = 200  # commits between `git gc --auto` checks


def _one_line(value: str) -> str:
    return " ".join(value.split())


def blob_sha(data: bytes) -> str:
    """The id git gives a file's content (so equality needs no git call)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class LocalGitRepo:
    """A bare git repository at ``path`` (created on first use) with one branch."""

    def __init__(
        self, path: Path, *, branch: str = "main", git: str = "git", timeout: float = 120.0
    ) -> None:
        self.path = Path(path)
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self.git = git
        self.timeout = timeout
        self._commits = 0
        self._ready = False
        self._held = threading.local()

    # -- the port -----------------------------------------------------------

    def apply(self, change: Change) -> Commit:
        """Commit ``change`` unless its key was committed before or nothing differs."""
        key = _one_line(change.idempotency_key)
        if not key:
            raise DriverError("a change needs an idempotency key", retry=Retry.PERMANENT)
        removed = [self._relative(p) for p in change.replace]
        removed += [self._relative(p) for p, text in change.files.items() if text is None]
        written = {
            self._relative(p): text.encode("utf-8")
            for p, text in change.files.items()
            if text is not None
        }
        with self._locked():
            self._ensure()
            head = self._head()
            done = self._find(key, head)
            if done:
                return Commit(sha=done[0], changed=True, replayed=True)
            current = self._listing(head)
            wanted = {
                path: entry
                for path, entry in current.items()
                if not any(path == r or path.startswith(f"{r}/") for r in removed)
            }
            wanted.update({path: (FILE_MODE, blob_sha(data)) for path, data in written.items()})
            if wanted == current:
                return Commit(sha=head, changed=False)
            sha = self._import(change, key, head, removed, written)
            self._commits += 1
            if self._commits % GC_EVERY == 0:
                self._run("gc", "--auto", "--quiet")
            return Commit(sha=sha, changed=True)

    def read(self, prefix: str = "") -> dict[str, str]:
        """The committed files under ``prefix`` at the head of the branch, path -> text."""
        rel = self._relative(prefix) if prefix else ""
        tip = self._tip()
        if tip is None:
            return {}
        entries = [
            (sha, path)
            for path, (_mode, sha) in self._listing(tip).items()
            if not rel or path == rel or path.startswith(f"{rel}/")
        ]
        if not entries:
            return {}
        batch = self._call(
            [*self._git(), "cat-file", "--batch"],
            "".join(f"{sha}\n" for sha, _ in entries).encode(),
        )
        out, pos, files = batch, 0, {}
        for _sha, path in entries:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            files[path] = out[header_end + 1 : header_end + 1 + size].decode("utf-8")
            pos = header_end + 1 + size + 1
        return files

    def commits_with_key(self, idempotency_key: str) -> list[str]:
        """Every commit (newest first) carrying ``idempotency_key`` — the effect log."""
        tip = self._tip()
        return [] if tip is None else self._find(_one_line(idempotency_key), tip)

    def head(self) -> str:
        """The sha at the head of the branch (creating the repository if need be)."""
        with self._locked():
            self._ensure()
            return self._head()

    def contains(self, revision: str, ancestor: str) -> bool:
        """Whether ``revision`` is ``ancestor`` or descends from it (an unknown one: False)."""
        if not (OBJECT_ID.match(revision) and OBJECT_ID.match(ancestor)):
            return False
        if revision == ancestor:
            return True
        if not self._initialised():
            return False
        # Exit 0: an ancestor; 1: not one; 128: git does not know one of the two.
        probe = self._exec([*self._git(), "merge-base", "--is-ancestor", ancestor, revision])
        if probe.returncode not in (0, 1, 128):
            detail = probe.stderr.decode(errors="replace").strip()
            raise DriverError(f"git merge-base failed: {detail}", retry=Retry.RETRIABLE)
        return probe.returncode == 0

    def has_commit(self, sha: str) -> bool:
        """Whether this repository holds the commit ``sha``."""
        if not (OBJECT_ID.match(sha) and self._initialised()):
            return False
        return self._exec([*self._git(), "cat-file", "-e", f"{sha}^{{commit}}"]).returncode == 0

    def log(self) -> list[str]:
        """Every commit message of the branch, newest first (for people and tests)."""
        tip = self._tip()
        if tip is None:
            return []
        out = self._run("log", "--format=%B%x00", tip).stdout
        return [m.strip() for m in out.split("\0") if m.strip()]

    # -- backup and restore (not part of the port) ---------------------------

    def bundle(self, target: Path) -> str | None:
        """Write every ref into the git bundle ``target``; the branch's commit then.

        Holds the writers' lock, so the bundle is one moment of the repository.
        None, and no file, for a repository without a commit.
        """
        if self._tip() is None:
            return None
        with self._locked():
            tip = self._tip()
            self._call([*self._git(), "bundle", "create", "-q", str(target), "--all"])
        return tip

    def unbundle(self, bundle: Path) -> str:
        """Fill this new (not yet existing) repository from ``bundle``; the branch's commit."""
        if self._initialised():
            raise DriverError(f"{self.path} already holds a repository", retry=Retry.PERMANENT)
        self.path.mkdir(parents=True, exist_ok=True)
        self._run("init", "-q", "--bare", "-b", self.branch)
        self._run("bundle", "verify", "-q", str(bundle))
        self._run("fetch", "-q", str(bundle), "refs/*:refs/*")
        tip = self._tip()
        if tip is None:
            raise DriverError(f"the bundle holds no branch {self.branch}", retry=Retry.PERMANENT)
        return tip

    # -- internals ----------------------------------------------------------

    def _relative(self, path: str) -> str:
        pure = PurePosixPath(path)
        text = pure.as_posix()
        if pure.is_absolute() or not SAFE_PATH.match(text) or {"..", ".", ".git"} & set(pure.parts):
            raise DriverError(
                f"{path!r} is not a path inside the repository", retry=Retry.PERMANENT
            )
        return text

    def _env(self) -> dict[str, str]:
        # No user or system git config may change what we commit (signing, hooks, …).
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "TZ": "UTC",
        }

    def _git(self) -> list[str]:
        # --git-dir, never discovery: the repository may sit inside another one.
        return [self.git, f"--git-dir={self.path}"]

    def _call(self, argv: Sequence[str], stdin: bytes | None = None) -> bytes:
        done = self._exec(argv, stdin)
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise DriverError(f"git {argv[2]} failed: {detail}", retry=Retry.RETRIABLE)
        return done.stdout

    def _exec(
        self, argv: Sequence[str], stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        # git inherits the lock: if this process is killed while git runs, the
        # lock stays held until that git exits, so no writer overlaps an orphan.
        held: int | None = getattr(self._held, "fd", None)
        try:
            return subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv,
                input=stdin,
                pass_fds=() if held is None else (held,),
                capture_output=True,
                env=self._env(),
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise DriverError(
                f"git is not installed ({self.git})", retry=Retry.NEEDS_HUMAN
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"git {argv[2]} timed out", retry=Retry.RETRIABLE) from exc

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self._call([*self._git(), *args])
        return subprocess.CompletedProcess(args, 0, out.decode("utf-8"), "")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DriverError(
                f"cannot open the GitOps repository at {self.path}: {exc}", retry=Retry.NEEDS_HUMAN
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held.fd = fd
            yield
        finally:
            self._held.fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _initialised(self) -> bool:
        return (self.path / "HEAD").is_file() and (self.path / "objects").is_dir()

    def _ensure(self) -> None:
        """Create the repository on first use; clear what a killed writer left (lock held)."""
        if not self._initialised():
            self._ready = False
            self._run("init", "-q", "--bare", "-b", self.branch)
        for name in GIT_LOCKS:
            (self.path / name).unlink(missing_ok=True)
        for stale in (self.path / "refs").rglob("*.lock"):
            stale.unlink(missing_ok=True)
        if not self._ready and self._tip() is None:
            self._fast_import(
                f"commit {self.ref}\n"
                f"committer tenantops <tenantops@localhost> {self._epoch()} +0000\n".encode()
                + self._data(b"Initialise the GitOps repository\n")
            )
        self._ready = True

    def _tip(self) -> str | None:
        """The branch's commit, or None before the repository has one (readers need no lock)."""
        if not self._initialised():
            return None
        listing = self._run("for-each-ref", "--format=%(objectname)", self.ref).stdout
        return listing.strip() or None

    def _head(self) -> str:
        return self._run("rev-parse", "--verify", "-q", f"{self.ref}^{{commit}}").stdout.strip()

    def _listing(self, rev: str) -> dict[str, tuple[str, str]]:
        out = self._run("ls-tree", "-r", "-z", "--full-tree", rev).stdout
        files: dict[str, tuple[str, str]] = {}
        for record in out.split("\0"):
            if record:
                meta, path = record.split("\t", 1)
                mode, _kind, sha = meta.split()
                files[path] = (mode, sha)
        return files

    def _find(self, key: str, tip: str) -> list[str]:
        out = self._run(
            "log",
            "--fixed-strings",
            f"--grep={key}",
            f"--format=%H%x1f%(trailers:key={IDEMPOTENCY_TRAILER},valueonly,separator=%x1f)%x1e",
            tip,
        ).stdout
        found = []
        for record in out.split("\x1e"):
            sha, _, values = record.strip().partition("\x1f")
            if sha and key in [v.strip() for v in values.split("\x1f")]:
                found.append(sha)
        return found

    @staticmethod
    def _epoch() -> int:
        return int(utcnow().timestamp())

    @staticmethod
    def _data(payload: bytes) -> bytes:
        return b"data %d\n" % len(payload) + payload + b"\n"

    def _fast_import(self, stream: bytes) -> str:
        """Run one import; returns what it printed (the commit's sha, when asked with get-mark)."""
        # --done: a stream cut short (a killed writer) is refused, never half-applied.
        out = self._call([*self._git(), "fast-import", "--quiet", "--done"], stream + b"done\n")
        return out.decode().strip()

    def _import(
        self,
        change: Change,
        key: str,
        parent: str,
        removed: list[str],
        written: Mapping[str, bytes],
    ) -> str:
        actor = _one_line(change.actor).replace("<", "").replace(">", "") or "unknown"
        run_id = _one_line(change.run_id)
        message = (
            f"{_one_line(change.summary)}\n\n"
            f"Run {run_id} by {actor}.\n\n"
            f"{RUN_TRAILER}: {run_id}\n"
            f"{ACTOR_TRAILER}: {actor}\n"
            f"{IDEMPOTENCY_TRAILER}: {key}\n"
        )
        email = actor if "@" in actor else f"{actor.replace(' ', '.')}@tenantops.invalid"
        when = self._epoch()
        parts = [
            f"commit {self.ref}\nmark :1\n".encode(),
            f"author {actor} <{email}> {when} +0000\n".encode(),
            f"committer tenantops <tenantops@localhost> {when} +0000\n".encode(),
            self._data(message.encode()),
            f"from {parent}\n".encode(),
        ]
        parts += [f"D {path}\n".encode() for path in removed]
        for path, data in written.items():
            parts.append(f"M {FILE_MODE} inline {path}\n".encode())
            parts.append(self._data(data))
        parts.append(b"get-mark :1\n")
        return self._fast_import(b"".join(parts))
