"""The local GitOps adapter: a real git repository on disk, driven by the git CLI.

Why the git CLI and not a library: see docs/decisions/0008. Every write holds
an exclusive ``fcntl`` lock on ``.git/tenantops.lock``, so workers in threads or
processes commit one at a time; the kernel drops the lock of a process that
dies, and the next writer clears what that process left half-done (git's own
stale ``*.lock`` files, a dirty index or work tree) before it starts. A commit
is atomic in git (objects first, then the branch ref), so a crash leaves either
the old head or the new one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
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
# Lock files git itself leaves behind when killed mid-command; stale once we hold our lock.
GIT_LOCKS = ("index.lock", "HEAD.lock", "packed-refs.lock", "config.lock")


def _one_line(value: str) -> str:
    return " ".join(value.split())


class LocalGitRepo:
    """A git repository at ``path`` (created on first write) with one branch."""

    def __init__(
        self, path: Path, *, branch: str = "main", git: str = "git", timeout: float = 120.0
    ) -> None:
        self.path = Path(path)
        self.branch = branch
        self.git = git
        self.timeout = timeout

    # -- the port -----------------------------------------------------------

    def apply(self, change: Change) -> Commit:
        """Commit ``change`` unless its key was committed before or nothing differs."""
        deletions = [self._relative(p) for p in change.replace]
        deletions += [self._relative(p) for p, text in change.files.items() if text is None]
        writes = {self._relative(p): text for p, text in change.files.items() if text is not None}
        key = _one_line(change.idempotency_key)
        if not key:
            raise DriverError("a change needs an idempotency key", retry=Retry.PERMANENT)
        with self._locked():
            self._ensure()
            done = self._find(key)
            if done:
                return Commit(sha=done[0], changed=True, replayed=True)
            self._run("reset", "-q", "--hard", "HEAD")
            if deletions:
                self._run("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *deletions)
                for rel in deletions:
                    target = self.path / rel
                    if target.is_dir():
                        shutil.rmtree(target)
                    else:
                        target.unlink(missing_ok=True)
            for rel, text in writes.items():
                target = self.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            if writes:
                self._run("add", "--", *writes)
            if self._run("diff", "--cached", "--quiet", check=False).returncode == 0:
                return Commit(sha=self._head(), changed=False)
            self._commit(change, key)
            return Commit(sha=self._head(), changed=True)

    def read(self, prefix: str = "") -> dict[str, str]:
        """The committed files under ``prefix`` at the head of the branch, path -> text."""
        if not self._initialised():
            return {}
        spec = [self._relative(prefix)] if prefix else []
        listing = self._run("ls-tree", "-r", "-z", "HEAD", "--", *spec).stdout
        entries: list[tuple[str, str]] = []
        for record in listing.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            _mode, kind, sha = meta.split()
            if kind == "blob":
                entries.append((sha, path))
        if not entries:
            return {}
        batch = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [self.git, "-C", str(self.path), "cat-file", "--batch"],
            input="".join(f"{sha}\n" for sha, _ in entries).encode(),
            capture_output=True,
            env=self._env(),
            timeout=self.timeout,
            check=False,
        )
        if batch.returncode != 0:
            raise DriverError(
                f"git cat-file failed: {batch.stderr.decode()}", retry=Retry.RETRIABLE
            )
        out, pos, files = batch.stdout, 0, {}
        for _sha, path in entries:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            files[path] = out[header_end + 1 : header_end + 1 + size].decode("utf-8")
            pos = header_end + 1 + size + 1
        return files

    def commits_with_key(self, idempotency_key: str) -> list[str]:
        """Every commit (newest first) carrying ``idempotency_key`` — the effect log."""
        if not self._initialised():
            return []
        return self._find(_one_line(idempotency_key))

    def head(self) -> str:
        """The sha at the head of the branch (creating the repository if need be)."""
        with self._locked():
            self._ensure()
            return self._head()

    def log(self) -> list[str]:
        """Every commit message of the branch, newest first (for people and tests)."""
        if not self._initialised():
            return []
        out = self._run("log", "--format=%B%x00", "HEAD").stdout
        return [m.strip() for m in out.split("\0") if m.strip()]

    # -- internals ----------------------------------------------------------

    def _relative(self, path: str) -> str:
        pure = PurePosixPath(path)
        if pure.is_absolute() or not pure.parts or {"..", ".git"} & set(pure.parts):
            raise DriverError(
                f"{path!r} is not a path inside the repository", retry=Retry.PERMANENT
            )
        return pure.as_posix()

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

    def _run(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [
            self.git,
            "-C",
            str(self.path),
            "-c",
            "user.name=tenantops",
            "-c",
            "user.email=tenantops@localhost",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            # gc runs inside our lock, never detached behind it.
            "-c",
            "gc.autoDetach=false",
            *args,
        ]
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                env={**self._env(), **(env or {})},
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise DriverError(
                f"git is not installed ({self.git})", retry=Retry.NEEDS_HUMAN
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"git {args[0]} timed out", retry=Retry.RETRIABLE) from exc
        if check and done.returncode != 0:
            raise DriverError(
                f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}",
                retry=Retry.RETRIABLE,
            )
        return done

    @contextmanager
    def _locked(self) -> Iterator[None]:
        gitdir = self.path / ".git"
        try:
            gitdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(gitdir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DriverError(
                f"cannot open the GitOps repository at {self.path}: {exc}", retry=Retry.NEEDS_HUMAN
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _initialised(self) -> bool:
        return (self.path / ".git" / "HEAD").is_file()

    def _ensure(self) -> None:
        """Create the repository on first use and clear what a killed writer left (lock held)."""
        gitdir = self.path / ".git"
        if not self._initialised():
            self._run("init", "-q", "-b", self.branch)
        for name in GIT_LOCKS:
            (gitdir / name).unlink(missing_ok=True)
        for stale in (gitdir / "refs").rglob("*.lock"):
            stale.unlink(missing_ok=True)
        if self._run("rev-parse", "-q", "--verify", "HEAD", check=False).returncode != 0:
            self._run(
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "Initialise the GitOps repository",
                env=self._dates(),
            )

    def _dates(self) -> dict[str, str]:
        now = utcnow().isoformat()
        return {"GIT_AUTHOR_DATE": now, "GIT_COMMITTER_DATE": now}

    def _head(self) -> str:
        return self._run("rev-parse", "HEAD").stdout.strip()

    def _find(self, key: str) -> list[str]:
        out = self._run(
            "log",
            "--fixed-strings",
            f"--grep={key}",
            f"--format=%H%x1f%(trailers:key={IDEMPOTENCY_TRAILER},valueonly,separator=%x1f)%x1e",
            "HEAD",
        ).stdout
        found = []
        for record in out.split("\x1e"):
            sha, _, values = record.strip().partition("\x1f")
            if sha and key in [v.strip() for v in values.split("\x1f")]:
                found.append(sha)
        return found

    def _commit(self, change: Change, key: str) -> None:
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
        self._run(
            "commit",
            "-q",
            "--no-verify",
            "-F",
            "-",
            stdin=message,
            env={**self._dates(), "GIT_AUTHOR_NAME": actor, "GIT_AUTHOR_EMAIL": email},
        )
