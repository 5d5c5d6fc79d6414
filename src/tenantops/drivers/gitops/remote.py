"""The remote GitOps adapter: the local adapter on a working clone, pushed to a git host.

The clone is a bare repository under ``cache_dir`` whose branch is, after each
fetch, exactly the remote branch (a forced fetch drops anything local that was
never pushed). A change is committed on it by :class:`LocalGitRepo` — the same
trees, trailers and idempotency check — and pushed without force. When the
push is refused because the remote moved, the change is rendered again on the
new tip (the rebase) and pushed again, a bounded number of times with jittered
backoff. Idempotency rests on the remote's history: a key found there after a
fetch is a replay, so a crash between push and recording repeats nothing.

Credentials reach git only through the environment of each network command
(an askpass helper that reads two variables, or ``GIT_SSH_COMMAND``), so they
are never in the clone's config, a URL, an error message or a log line.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tenantops.drivers.errors import CheckRow, DriverError, Retry
from tenantops.drivers.gitops.local import GIT_LOCKS, OBJECT_ID, LocalGitRepo
from tenantops.drivers.gitops.port import Change, Commit
from tenantops.drivers.gitops.settings import RemoteGitSettings

log = logging.getLogger(__name__)

ASKPASS = """#!/bin/sh
# git asks for a username, then a password; the values live only in the environment.
case "$1" in
  [Uu]sername*) printf '%s\\n' "$TENANTOPS_GIT_USERNAME" ;;
  *) printf '%s\\n' "$TENANTOPS_GIT_TOKEN" ;;
esac
"""
# Proxies a network command still needs (the environment is otherwise built from scratch).
PASS_THROUGH = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
MAX_BACKOFF = 10.0
GC_EVERY = 200
# Longest git output kept in an error: its start and its end, where git and ssh say why.
DETAIL_HEAD, DETAIL_TAIL = 200, 300

# What git prints, mapped to whether retrying can help (checked in this order).
NEEDS_LOGIN = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied",
    "host key verification failed",
    "no such identity",
    "returned error: 401",
    "returned error: 403",
)
NOT_FOUND = (
    "repository not found",
    "does not appear to be a git repository",
    "returned error: 404",
    "couldn't find remote ref",
    "not found",
)
REJECTED = re.compile(r"\[rejected\].*\((fetch first|non-fast-forward)\)")
USERINFO = re.compile(r"(://)[^/@\s]+@")


class _Moved(Exception):
    """The push was refused because the remote branch moved since our fetch."""


class RemoteGitRepo:
    """A remote git branch, written through a bare working clone under ``cache_dir``."""

    def __init__(
        self,
        settings: RemoteGitSettings,
        *,
        cache_dir: Path | None = None,
        git: str = "git",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        root = cache_dir or settings.cache_dir
        if root is None:
            raise DriverError("the remote GitOps adapter needs a cache_dir", retry=Retry.PERMANENT)
        self.settings = settings
        self.url = settings.url
        self.branch = settings.branch
        self.root = Path(root)
        digest = hashlib.sha256(f"{settings.url}\0{settings.branch}".encode()).hexdigest()[:16]
        self.path = self.root / f"{digest}.git"
        self.git = git
        self._sleep = sleep
        self._secret = settings.token.get_secret_value() if settings.token else None
        self._commits = 0

    # -- the port -----------------------------------------------------------

    def apply(self, change: Change) -> Commit:
        """Commit ``change`` on the remote branch unless its key is in its history already."""
        return self._publish(lambda local: local.apply(change))

    def read(self, prefix: str = "") -> dict[str, str]:
        """The files under ``prefix`` at the remote branch's tip, as just fetched."""
        with self._locked():
            if self._fetch() is None:
                return {}
            return self._local().read(prefix)

    def commits_with_key(self, idempotency_key: str) -> list[str]:
        """Every commit (newest first) on the remote branch carrying ``idempotency_key``."""
        with self._locked():
            if self._fetch() is None:
                return []
            return self._local().commits_with_key(idempotency_key)

    def head(self) -> str:
        """The sha at the remote branch's tip (pushing a first commit to an empty repository)."""
        return self._publish(lambda local: Commit(sha=local.head(), changed=False)).sha

    def contains(self, revision: str, ancestor: str) -> bool:
        """Whether ``revision`` descends from ``ancestor``; fetched first when the clone does
        not hold ``revision`` (pushed since its last fetch)."""
        if not (OBJECT_ID.match(revision) and OBJECT_ID.match(ancestor)):
            return False  # not a commit id (a tag, a chart version): no fetch can tell
        with self._locked():
            self._ensure_clone()
            local = self._local()
            if local.has_commit(revision):
                return local.contains(revision, ancestor)
            if self._fetch() is None:
                return False
            return self._local().contains(revision, ancestor)

    def log(self) -> list[str]:
        """Every commit message of the remote branch, newest first (for people and tests)."""
        with self._locked():
            if self._fetch() is None:
                return []
            return self._local().log()

    # -- doctor -------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable, logged in, the branch exists, and a push would be accepted."""
        where = self.settings.safe_url()
        rows: list[CheckRow] = []
        try:
            listing = self._network("ls-remote", "--heads", self.url)
        except DriverError as exc:
            detail = str(exc)
            if exc.retry is Retry.RETRIABLE:
                rows.append(CheckRow("gitops remote reachable", False, detail, self._fix_network()))
                return rows
            rows.append(CheckRow("gitops remote reachable", True, where, ""))
            if _login_problem(detail):
                rows.append(
                    CheckRow("gitops remote authenticated", False, detail, self._fix_login())
                )
            else:
                rows.append(
                    CheckRow(
                        "gitops remote repository exists",
                        False,
                        detail,
                        "check TENANTOPS_GITOPS__REMOTE__URL and that the repository exists",
                    )
                )
            return rows
        rows.append(CheckRow("gitops remote reachable", True, where, ""))
        rows.append(CheckRow("gitops remote authenticated", True, self._identity(), ""))
        heads = [line.split("\t", 1)[1] for line in listing.splitlines() if "\t" in line]
        ref = f"refs/heads/{self.branch}"
        if ref in heads:
            rows.append(CheckRow("gitops remote branch", True, self.branch, ""))
        elif not heads:
            rows.append(
                CheckRow("gitops remote branch", True, "empty repository: made on first use", "")
            )
        else:
            rows.append(
                CheckRow(
                    "gitops remote branch",
                    False,
                    f"{self.branch} not on the remote (it has {len(heads)} other branches)",
                    f"create {self.branch} on the remote or set TENANTOPS_GITOPS__BRANCH",
                )
            )
            return rows
        try:
            with self._locked():
                if self._fetch() is None:
                    self._local().head()  # an empty remote: dry-run the clone's first commit
                self._network("push", "--dry-run", "--no-verify", self.url, f"{ref}:{ref}")
            rows.append(CheckRow("gitops remote push allowed", True, f"to {self.branch}", ""))
        except DriverError as exc:
            rows.append(
                CheckRow(
                    "gitops remote push allowed",
                    False,
                    str(exc),
                    f"give {self._identity()} write access to {self.branch} "
                    "(and lift branch protection for it)",
                )
            )
        return rows

    # -- internals ----------------------------------------------------------

    def _publish(self, make: Callable[[LocalGitRepo], Commit]) -> Commit:
        attempts = self.settings.push_attempts
        with self._locked():
            for attempt in range(1, attempts + 1):
                remote_tip = self._fetch()
                local = self._local()
                result = make(local)
                if local.head() == remote_tip:
                    return result  # replayed, unchanged: nothing to push
                try:
                    self._push()
                except _Moved:
                    log.info(
                        "gitops remote %s moved during push (attempt %d of %d)",
                        self.settings.safe_url(),
                        attempt,
                        attempts,
                    )
                    if attempt < attempts:
                        cap = min(self.settings.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF)
                        self._sleep(random.uniform(0, cap))
                    continue
                self._commits += 1
                if self._commits % GC_EVERY == 0:
                    self._call([*self._gitdir(), "gc", "--auto", "--quiet"], network=False)
                return result
        raise DriverError(
            f"the branch {self.branch} of {self.settings.safe_url()} kept moving: "
            f"gave up after {attempts} push attempts",
            retry=Retry.RETRIABLE,
        )

    def _local(self) -> LocalGitRepo:
        # A fresh instance per attempt: it re-checks whether the branch exists yet.
        return LocalGitRepo(self.path, branch=self.branch, git=self.git, timeout=self._timeout)

    @property
    def _timeout(self) -> float:
        return self.settings.timeout_seconds

    def _ensure_clone(self) -> None:
        """Create the clone on first use; clear what a killed fetch or push left (lock held)."""
        if not ((self.path / "HEAD").is_file() and (self.path / "objects").is_dir()):
            self._call(
                [self.git, "init", "-q", "--bare", "-b", self.branch, str(self.path)],
                network=False,
            )
        for name in GIT_LOCKS:
            (self.path / name).unlink(missing_ok=True)
        for stale in (self.path / "refs").rglob("*.lock"):
            stale.unlink(missing_ok=True)

    def _fetch(self) -> str | None:
        """Make the clone's branch the remote's; its sha, or None when the remote is empty."""
        self._ensure_clone()
        ref = f"refs/heads/{self.branch}"
        try:
            self._network("fetch", "--quiet", "--no-tags", self.url, f"+{ref}:{ref}")
        except DriverError as exc:
            if "couldn't find remote ref" not in str(exc).lower():
                raise
            if self._network("ls-remote", "--heads", self.url).strip():
                raise DriverError(
                    f"the branch {self.branch} is not on {self.settings.safe_url()}",
                    retry=Retry.NEEDS_HUMAN,
                ) from None
            # An empty remote: the clone starts the branch (LocalGitRepo's first commit).
            self._call([*self._gitdir(), "update-ref", "-d", ref], network=False)
            return None
        out = self._call([*self._gitdir(), "rev-parse", "--verify", "-q", ref], network=False)
        return out.strip()

    def _push(self) -> None:
        """Push without force; raises :class:`_Moved` when the remote branch moved."""
        ref = f"refs/heads/{self.branch}"
        self._network("push", "--quiet", "--porcelain", self.url, f"{ref}:{ref}")

    def _gitdir(self) -> list[str]:
        return [self.git, f"--git-dir={self.path}"]

    def _network(self, *args: str) -> str:
        # No credential helper may store what askpass hands over.
        argv = [*self._gitdir(), "-c", "credential.helper=", *args]
        return self._call(argv, network=True, what=args[0])

    def _env(self, *, network: bool) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "TZ": "UTC",
        }
        if not network:
            return env
        env.update({k: v for k, v in os.environ.items() if k.lower() in PASS_THROUGH})
        s = self.settings
        if self._secret is not None and s.username:
            env["GIT_ASKPASS"] = str(self._askpass())
            env["TENANTOPS_GIT_USERNAME"] = s.username
            env["TENANTOPS_GIT_TOKEN"] = self._secret
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        ssh += ["-o", f"ConnectTimeout={max(1, int(min(self._timeout, 30)))}"]
        if s.ssh_key_path is None:
            if "SSH_AUTH_SOCK" in os.environ:
                env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
        else:
            # Not -i: ssh checks its path as given but opens it %-expanded.
            ssh += ["-o", f"IdentityFile={_ssh_value(s.ssh_key_path)}", "-o", "IdentitiesOnly=yes"]
        if s.known_hosts_path is not None:
            ssh += ["-o", f"UserKnownHostsFile={_ssh_value(s.known_hosts_path)}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        env["GIT_SSH_VARIANT"] = "ssh"
        return env

    def _askpass(self) -> Path:
        script = self.root / "askpass.sh"
        if not script.is_file() or script.read_text() != ASKPASS:
            self.root.mkdir(parents=True, exist_ok=True)
            partial = script.with_suffix(".tmp")
            partial.write_text(ASKPASS)
            partial.chmod(0o700)
            partial.replace(script)
        return script

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return USERINFO.sub(r"\1", text)

    def _call(self, argv: Sequence[str], *, network: bool, what: str | None = None) -> str:
        op = what or next((a for a in argv[1:] if not a.startswith("-")), "git")
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                list(argv),
                capture_output=True,
                env=self._env(network=network),
                timeout=self._timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise DriverError(
                f"git is not installed ({self.git})", retry=Retry.NEEDS_HUMAN
            ) from exc
        except subprocess.TimeoutExpired:
            raise DriverError(
                f"git {op} {self.settings.safe_url()} timed out", retry=Retry.RETRIABLE
            ) from None
        if done.returncode != 0:
            detail = self._redact(
                done.stderr.decode(errors="replace") + done.stdout.decode(errors="replace")
            )
            detail = " ".join(detail.split())
            if op == "push" and REJECTED.search(detail):
                raise _Moved
            # Classified whole: ssh's changed-host-key banner alone is longer than what is shown.
            retry = _classify(detail)
            where = f" {self.settings.safe_url()}" if network else ""
            raise DriverError(f"git {op}{where} failed: {_shorten(detail)}", retry=retry)
        return done.stdout.decode("utf-8", errors="replace")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One fetch-commit-push at a time per clone, across threads and processes."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DriverError(
                f"cannot use the GitOps cache dir {self.root}: {exc}", retry=Retry.NEEDS_HUMAN
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _identity(self) -> str:
        s = self.settings
        if s.username:
            return f"user {s.username}"
        if s.ssh_key_path is not None:
            return f"key {s.ssh_key_path}"
        return "the default identity"

    def _fix_login(self) -> str:
        if self.url.startswith(("http://", "https://")):
            return (
                "set TENANTOPS_GITOPS__REMOTE__USERNAME and a valid "
                "TENANTOPS_GITOPS__REMOTE__TOKEN (a token with repository write scope)"
            )
        return (
            "set TENANTOPS_GITOPS__REMOTE__SSH_KEY_PATH to a key the host accepts and "
            "TENANTOPS_GITOPS__REMOTE__KNOWN_HOSTS_PATH to a file with the host's key"
        )

    def _fix_network(self) -> str:
        return "check the host name, port, proxy and firewall between tenantops and the git host"


def _login_problem(detail: str) -> bool:
    low = detail.lower()
    return any(marker in low for marker in NEEDS_LOGIN)


def _ssh_value(path: Path) -> str:
    """``path`` as one ssh option value (ssh splits values on blanks, expands ``%``)."""
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _shorten(detail: str) -> str:
    """``detail`` or, when long, its start and end (ssh's final line names the failure)."""
    if len(detail) <= DETAIL_HEAD + DETAIL_TAIL:
        return detail
    return f"{detail[:DETAIL_HEAD]} … {detail[-DETAIL_TAIL:]}"


def _classify(detail: str) -> Retry:
    """Login or a missing repository: a person must act; anything else may pass later."""
    low = detail.lower()
    if any(marker in low for marker in NEEDS_LOGIN):
        return Retry.NEEDS_HUMAN
    if any(marker in low for marker in NOT_FOUND):
        return Retry.NEEDS_HUMAN
    return Retry.RETRIABLE
