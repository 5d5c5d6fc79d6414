"""The remote GitOps adapter against bare repositories on this machine.

``file://`` remotes for the port's contract and the rebase-retry loop (another
clone pushes between our fetch and our push, through a ``git`` wrapper), and
git's smart HTTP protocol (``git http-backend`` behind a WSGI server with Basic
auth on 127.0.0.1) for credentials, and a real OpenSSH server (``tests/sshd.py``:
its own sshd on a free 127.0.0.1 port, a host key and a client key made per
test) for SSH keys and host key checking. Only ``ssh://`` URLs reach it: the
scp-like ``user@host:path`` cannot name the port, so it is not exercised here.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import is_hop_by_hop

import pytest
from pydantic import SecretStr

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops import Change, Commit, GitOpsRepo, LocalGitRepo
from tenantops.drivers.gitops.remote import RemoteGitRepo
from tenantops.drivers.gitops.settings import RemoteGitSettings
from tests.sshd import Sshd, keygen, public_key, running_sshd

TOKEN = "s3cr3t-t0ken-8f2a91"
IDENTITY = ["-c", "user.name=other", "-c", "user.email=other@example.com"]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def change(key: str, files: dict[str, str | None]) -> Change:
    return Change(
        summary=f"change {key}",
        run_id=f"run-{key}",
        actor="alice@example.com",
        idempotency_key=key,
        files=files,
    )


def bare(path: Path, *, seed: bool = True) -> Path:
    """A bare repository; seeded with one commit on main unless ``seed`` is False."""
    git("init", "-q", "--bare", "-b", "main", str(path))
    if seed:
        work = path.with_name(f"{path.name}-seed")
        git("init", "-q", "-b", "main", str(work))
        (work / "README").write_text("seed\n")
        git("add", "README", cwd=work)
        git("commit", "-q", "-m", "seed", cwd=work)
        git("push", "-q", str(path), "main", cwd=work)
    return path


def remote_log(remote: Path) -> list[str]:
    out = git(f"--git-dir={remote}", "log", "--format=%s", "main")
    return out.splitlines()


def adapter(url: str, cache: Path, **kw: Any) -> RemoteGitRepo:
    sleeps: list[float] = kw.pop("sleeps", [])
    git_bin = kw.pop("git", "git")
    return RemoteGitRepo(
        RemoteGitSettings(url=url, cache_dir=cache, backoff_seconds=0.001, **kw),
        git=git_bin,
        sleep=sleeps.append,
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return bare(tmp_path / "remote.git")


@pytest.fixture
def repo(remote: Path, tmp_path: Path) -> RemoteGitRepo:
    return adapter(remote.as_uri(), tmp_path / "cache")


# -- the port's contract over file:// ---------------------------------------------


def test_a_change_is_pushed_as_one_commit_and_read_back(repo: RemoteGitRepo, remote: Path) -> None:
    port: GitOpsRepo = repo
    done = port.apply(change("k1", {"t/a.yaml": "a: 1\n"}))
    assert done.changed
    assert not done.replayed
    assert git(f"--git-dir={remote}", "rev-parse", "main").strip() == done.sha
    assert remote_log(remote) == ["change k1", "seed"]
    trailers = git(f"--git-dir={remote}", "log", "-1", "--format=%(trailers:only)", "main")
    assert "Tenantops-Idempotency-Key: k1" in trailers
    assert port.read() == {"README": "seed\n", "t/a.yaml": "a: 1\n"}
    assert port.read("t") == {"t/a.yaml": "a: 1\n"}
    assert port.head() == done.sha
    assert [(row.check, row.ok) for row in repo.check()] == [
        ("gitops remote reachable", True),
        ("gitops remote authenticated", True),
        ("gitops remote branch", True),
        ("gitops remote push allowed", True),
    ]
    assert remote_log(remote) == ["change k1", "seed"]  # the dry run pushed nothing


def test_the_same_key_again_is_a_replay_even_from_a_fresh_clone(
    repo: RemoteGitRepo, remote: Path, tmp_path: Path
) -> None:
    first = repo.apply(change("k1", {"a.yaml": "one\n"}))
    # Another worker, or this one after losing its cache: the remote's history decides.
    fresh = adapter(remote.as_uri(), tmp_path / "other-cache")
    again = fresh.apply(change("k1", {"a.yaml": "two\n"}))
    assert again == Commit(sha=first.sha, changed=True, replayed=True)
    assert repo.apply(change("k1", {"a.yaml": "three\n"})) == again
    assert remote_log(remote) == ["change k1", "seed"]
    assert fresh.commits_with_key("k1") == [first.sha]
    assert fresh.read() == {"README": "seed\n", "a.yaml": "one\n"}


def test_a_commit_pushed_since_the_last_fetch_is_fetched_to_tell_what_it_holds(
    repo: RemoteGitRepo, remote: Path, tmp_path: Path
) -> None:
    ours = repo.apply(change("k1", {"a.yaml": "one\n"})).sha
    # Another writer pushes on top; this clone has not seen it (what Argo CD may report).
    other = adapter(remote.as_uri(), tmp_path / "other-cache")
    on_top = other.apply(change("k2", {"b.yaml": "two\n"})).sha
    seed = git(f"--git-dir={remote}", "rev-parse", "main~2").strip()

    port: GitOpsRepo = repo
    assert port.contains(on_top, ours)
    assert port.contains(ours, seed)
    assert not port.contains(seed, ours)  # older: known here, so no fetch decides it
    assert not port.contains("0" * 40, ours)  # on no branch of the remote either
    # Not a commit id (a tag, a chart version): no fetch is tried, not even of a dead remote.
    gone = adapter((tmp_path / "no-such-remote.git").as_uri(), tmp_path / "gone-cache")
    assert not gone.contains("v1.2.3", ours)


def test_an_unchanged_tree_makes_no_commit(repo: RemoteGitRepo, remote: Path) -> None:
    first = repo.apply(change("k1", {"a.yaml": "one\n"}))
    same = repo.apply(change("k2", {"a.yaml": "one\n"}))
    assert same == Commit(sha=first.sha, changed=False)
    assert remote_log(remote) == ["change k1", "seed"]
    assert repo.commits_with_key("k2") == []


def test_a_commit_that_never_reached_the_remote_is_not_a_replay(
    repo: RemoteGitRepo, remote: Path
) -> None:
    repo.head()
    # A crash after committing in the clone but before the push: only the clone has k1.
    LocalGitRepo(repo.path).apply(change("k1", {"a.yaml": "lost\n"}))
    done = repo.apply(change("k1", {"a.yaml": "kept\n"}))
    assert not done.replayed
    assert remote_log(remote) == ["change k1", "seed"]
    assert repo.read("a.yaml") == {"a.yaml": "kept\n"}


def test_an_empty_remote_gets_its_branch_on_first_use(tmp_path: Path) -> None:
    remote = bare(tmp_path / "empty.git", seed=False)
    repo = adapter(remote.as_uri(), tmp_path / "cache")
    assert repo.read() == {}
    done = repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert remote_log(remote) == ["change k1", "Initialise the GitOps repository"]
    assert repo.head() == done.sha


def test_a_missing_repository_or_branch_needs_a_person(remote: Path, tmp_path: Path) -> None:
    gone = adapter((tmp_path / "nowhere.git").as_uri(), tmp_path / "c1")
    with pytest.raises(DriverError) as missing:
        gone.apply(change("k1", {"a.yaml": "one\n"}))
    assert missing.value.retry is Retry.NEEDS_HUMAN
    other = adapter(remote.as_uri(), tmp_path / "c2", branch="release")
    with pytest.raises(DriverError) as branch:
        other.apply(change("k1", {"a.yaml": "one\n"}))
    assert branch.value.retry is Retry.NEEDS_HUMAN
    assert "release" in str(branch.value)


# -- the remote moved under us ------------------------------------------------------

INTRUDER = """
import pathlib, subprocess, sys
clone, counter, limit = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
n = int(counter.read_text()) if counter.exists() else 0
IDENTITY = ["-c", "user.name=other", "-c", "user.email=other@example.com"]
if n < limit:
    counter.write_text(str(n + 1))
    def g(*a):
        subprocess.run(["git", "-C", str(clone), *IDENTITY, *a], check=True, capture_output=True)
    g("pull", "-q", "--rebase", "origin", "main")
    (clone / f"other-{n}.yaml").write_text(f"n: {n}\\n")
    g("add", "-A")
    g("commit", "-q", "-m", f"other {n}")
    g("push", "-q", "origin", "HEAD:main")
"""


def racing_git(remote: Path, tmp_path: Path, pushes: int) -> Path:
    """A ``git`` that lets another clone push first, ``pushes`` times, before a real push."""
    clone = tmp_path / "other-clone"
    git("clone", "-q", remote.as_uri(), str(clone))
    script = tmp_path / "intruder.py"
    script.write_text(INTRUDER)
    wrapper = tmp_path / "racing-git"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '  *" --dry-run "*) ;;\n'
        f'  *" push "*) "{sys.executable}" "{script}" "{clone}" "{tmp_path / "count"}" {pushes}'
        " || exit 99 ;;\n"
        "esac\n"
        'exec git "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_when_the_remote_moves_the_change_is_rebased_and_nothing_is_lost(
    remote: Path, tmp_path: Path
) -> None:
    sleeps: list[float] = []
    repo = adapter(
        remote.as_uri(), tmp_path / "cache", git=str(racing_git(remote, tmp_path, 1)), sleeps=sleeps
    )
    done = repo.apply(change("k1", {"mine.yaml": "mine\n"}))
    assert done.changed
    assert not done.replayed
    assert remote_log(remote) == ["change k1", "other 0", "seed"]
    assert repo.read() == {"README": "seed\n", "other-0.yaml": "n: 0\n", "mine.yaml": "mine\n"}
    assert repo.commits_with_key("k1") == [done.sha]
    assert len(sleeps) == 1


def test_a_remote_that_keeps_moving_is_a_retriable_failure(remote: Path, tmp_path: Path) -> None:
    sleeps: list[float] = []
    repo = adapter(
        remote.as_uri(),
        tmp_path / "cache",
        git=str(racing_git(remote, tmp_path, 100)),
        sleeps=sleeps,
        push_attempts=3,
    )
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"mine.yaml": "mine\n"}))
    assert failed.value.retry is Retry.RETRIABLE
    assert "3 push attempts" in str(failed.value)
    assert remote_log(remote) == ["other 2", "other 1", "other 0", "seed"]
    assert len(sleeps) == 2
    assert all(0 <= s <= 0.002 for s in sleeps)  # bounded jitter, not a timing assertion


# -- HTTPS credentials: git smart HTTP behind Basic auth -----------------------------


class GitHttp:
    """``git http-backend`` as a WSGI app; ``writer`` may push, ``reader`` may only fetch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.users = {"writer": TOKEN, "reader": "read-only-pw"}
        self.seen: list[str] = []

    def _user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return name if self.users.get(name) == password else None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.seen.append(environ["PATH_INFO"])
        user = self._user(environ.get("HTTP_AUTHORIZATION", ""))
        if user is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b""]
        pushing = "git-receive-pack" in environ["PATH_INFO"] + environ.get("QUERY_STRING", "")
        if pushing and user != "writer":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"read only\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": user,
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ["PATH_INFO"],
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for name in ("HTTP_CONTENT_ENCODING", "HTTP_GIT_PROTOCOL"):
            if name in environ:
                env[name] = environ[name]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = "200 OK", []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name and not is_hop_by_hop(name):
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_remote(remote: Path) -> Iterator[tuple[str, GitHttp]]:
    app = GitHttp(remote.parent)
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{remote.name}", app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def test_the_right_token_pushes_over_http_and_is_stored_nowhere(
    http_remote: tuple[str, GitHttp], remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, server = http_remote
    caplog.set_level(logging.DEBUG)
    repo = adapter(url, tmp_path / "cache", username="writer", token=SecretStr(TOKEN))
    done = repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert git(f"--git-dir={remote}", "rev-parse", "main").strip() == done.sha
    assert any("git-receive-pack" in p for p in server.seen)
    assert repo.read("a.yaml") == {"a.yaml": "one\n"}
    assert [row.ok for row in repo.check()] == [True, True, True, True]
    assert TOKEN not in caplog.text
    for path in files_under(tmp_path / "cache"):
        assert TOKEN.encode() not in path.read_bytes(), path
    config = git(f"--git-dir={repo.path}", "config", "--list")
    assert "remote." not in config
    assert url not in config


def test_a_token_in_the_url_is_moved_out_of_it() -> None:
    settings = RemoteGitSettings(url=f"https://writer:{TOKEN}@git.example.com/org/gitops.git")
    assert settings.url == "https://git.example.com/org/gitops.git"
    assert settings.username == "writer"
    assert settings.token is not None
    assert settings.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)


def test_a_wrong_token_needs_a_person_and_is_never_shown(
    http_remote: tuple[str, GitHttp], remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, _server = http_remote
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-" + TOKEN
    repo = adapter(url, tmp_path / "cache", username="writer", token=SecretStr(wrong))
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert failed.value.retry is Retry.NEEDS_HUMAN
    assert "Authentication failed" in str(failed.value)
    rows = repo.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("gitops remote reachable", True),
        ("gitops remote authenticated", False),
    ]
    shown = " ".join([str(failed.value), caplog.text, *(" ".join(map(str, r)) for r in rows)])
    assert wrong not in shown
    for path in files_under(tmp_path / "cache"):
        assert wrong.encode() not in path.read_bytes(), path
    assert remote_log(remote) == ["seed"]


def test_no_credentials_needs_a_person(http_remote: tuple[str, GitHttp], tmp_path: Path) -> None:
    url, _server = http_remote
    with pytest.raises(DriverError) as failed:
        adapter(url, tmp_path / "cache").read()
    assert failed.value.retry is Retry.NEEDS_HUMAN


def test_a_read_only_user_is_told_it_may_not_push(
    http_remote: tuple[str, GitHttp], remote: Path, tmp_path: Path
) -> None:
    url, _server = http_remote
    repo = adapter(url, tmp_path / "cache", username="reader", token=SecretStr("read-only-pw"))
    assert repo.read() == {"README": "seed\n"}
    rows = {r.check: r.ok for r in repo.check()}
    assert rows == {
        "gitops remote reachable": True,
        "gitops remote authenticated": True,
        "gitops remote branch": True,
        "gitops remote push allowed": False,
    }
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert failed.value.retry is Retry.NEEDS_HUMAN
    assert remote_log(remote) == ["seed"]


def test_an_unreachable_host_is_retriable(tmp_path: Path) -> None:
    server = make_server("127.0.0.1", 0, GitHttp(tmp_path), handler_class=Quiet)
    port = server.server_port
    server.server_close()  # nothing listens there any more
    repo = adapter(f"http://127.0.0.1:{port}/remote.git", tmp_path / "cache")
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert failed.value.retry is Retry.RETRIABLE
    assert [(r.check, r.ok) for r in repo.check()] == [("gitops remote reachable", False)]


# -- SSH: a real sshd on 127.0.0.1 with its own host key and one accepted client key --


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def ssh_adapter(server: Sshd, remote: Path, cache: Path, **kw: Any) -> RemoteGitRepo:
    kw.setdefault("ssh_key_path", server.client_key)
    kw.setdefault("known_hosts_path", server.known_hosts)
    return adapter(server.url(remote), cache, **kw)


def key_material(*keys: Path) -> list[str]:
    """Every base64 line of the private ``keys`` and each public blob: none may be shown."""
    found: list[str] = []
    for key in keys:
        text = key.read_text().splitlines()
        found += [line for line in text if line and not line.startswith("-----")]
        found.append(public_key(key).split()[1])
    return found


def assert_shows_none_of(material: list[str], *texts: str) -> None:
    shown = "\n".join(texts)
    assert not [m for m in material if m in shown]


def test_a_change_is_pushed_over_ssh_read_back_and_replayed_without_a_commit(
    sshd: Sshd, remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = ssh_adapter(sshd, remote, tmp_path / "cache")
    done = repo.apply(change("k1", {"t/a.yaml": "a: 1\n"}))
    assert done.changed
    assert not done.replayed
    assert git(f"--git-dir={remote}", "rev-parse", "main").strip() == done.sha
    assert remote_log(remote) == ["change k1", "seed"]
    assert repo.read() == {"README": "seed\n", "t/a.yaml": "a: 1\n"}
    assert repo.commits_with_key("k1") == [done.sha]
    # The same key again, from this clone and from a fresh one: the remote's history decides.
    replayed = Commit(sha=done.sha, changed=True, replayed=True)
    assert repo.apply(change("k1", {"t/a.yaml": "a: 2\n"})) == replayed
    fresh = ssh_adapter(sshd, remote, tmp_path / "other-cache")
    assert fresh.apply(change("k1", {"t/a.yaml": "a: 3\n"})) == replayed
    assert remote_log(remote) == ["change k1", "seed"]
    assert f"Accepted publickey for {sshd.user} from 127.0.0.1" in sshd.log.read_text()
    # No URL in the clone's config, no key material anywhere in the cache or the logs.
    config = git(f"--git-dir={repo.path}", "config", "--list")
    assert "remote." not in config
    assert sshd.url(remote) not in config
    assert "127.0.0.1" not in config
    material = key_material(sshd.client_key)
    assert_shows_none_of(material, caplog.text)
    for path in files_under(tmp_path / "cache"):
        assert_shows_none_of(material, path.read_text(errors="replace"))


def test_the_doctor_rows_over_ssh_are_all_green_and_push_nothing(
    sshd: Sshd, remote: Path, tmp_path: Path
) -> None:
    repo = ssh_adapter(sshd, remote, tmp_path / "cache")
    rows = repo.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("gitops remote reachable", True),
        ("gitops remote authenticated", True),
        ("gitops remote branch", True),
        ("gitops remote push allowed", True),
    ]
    assert rows[0].detail == sshd.url(remote)
    assert rows[1].detail == f"key {sshd.client_key}"
    assert rows[2].detail == "main"
    assert remote_log(remote) == ["seed"]  # the dry run pushed nothing
    empty = bare(tmp_path / "empty.git", seed=False)
    rows = ssh_adapter(sshd, empty, tmp_path / "cache-empty").check()
    assert [r.ok for r in rows] == [True, True, True, True]
    assert rows[2].detail == "empty repository: made on first use"
    assert git(f"--git-dir={empty}", "for-each-ref").strip() == ""


@pytest.mark.parametrize("known", ["empty", "another host's key"])
def test_an_unverified_host_key_needs_a_person_and_shows_no_key(
    known: str, sshd: Sshd, remote: Path, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other_host_key", "someone-else")
    known_hosts = tmp_path / "known_hosts"
    # "another host's key" is the man in the middle: ssh's warning banner before the verdict
    # is longer than an error message keeps, and used to be taken for a network failure.
    known_hosts.write_text("" if known == "empty" else sshd.known_hosts_line(public_key(other)))
    repo = ssh_adapter(sshd, remote, tmp_path / "cache", known_hosts_path=known_hosts)
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert failed.value.retry is Retry.NEEDS_HUMAN
    assert "Host key verification failed" in str(failed.value)
    rows = repo.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("gitops remote reachable", True),
        ("gitops remote authenticated", False),
    ]
    assert "Host key verification failed" in rows[1].detail
    assert "KNOWN_HOSTS_PATH" in rows[1].fix
    material = key_material(sshd.client_key, other)
    material.append(sshd.host_public_key.split()[1])
    assert_shows_none_of(material, str(failed.value), *(" ".join(map(str, r)) for r in rows))
    assert remote_log(remote) == ["seed"]
    assert "Accepted publickey" not in sshd.log.read_text()


@pytest.mark.parametrize("key", ["a key the server does not know", "no key file"])
def test_a_refused_key_needs_a_person_and_is_never_shown(
    key: str, sshd: Sshd, remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = keygen(tmp_path / "stranger_key", "stranger")
    if key == "no key file":
        stranger = tmp_path / "missing_key"
    repo = ssh_adapter(sshd, remote, tmp_path / "cache", ssh_key_path=stranger)
    with pytest.raises(DriverError) as failed:
        repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert failed.value.retry is Retry.NEEDS_HUMAN
    assert "Permission denied" in str(failed.value)
    rows = repo.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("gitops remote reachable", True),
        ("gitops remote authenticated", False),
    ]
    assert "SSH_KEY_PATH" in rows[1].fix
    keys = [sshd.client_key] + ([stranger] if stranger.exists() else [])
    shown = [str(failed.value), caplog.text, *(" ".join(map(str, r)) for r in rows)]
    assert_shows_none_of(key_material(*keys), *shown)
    assert remote_log(remote) == ["seed"]


def test_key_and_known_hosts_paths_may_hold_blanks_and_percent_signs(
    sshd: Sshd, remote: Path, tmp_path: Path
) -> None:
    # ssh splits an option's value on blanks and expands %-tokens in both paths.
    odd = tmp_path / "keys 100%d"
    odd.mkdir()
    key = odd / "deploy key"
    key.write_bytes(sshd.client_key.read_bytes())
    key.chmod(0o600)
    known_hosts = odd / "known hosts"
    known_hosts.write_text(sshd.known_hosts.read_text())
    repo = ssh_adapter(
        sshd, remote, tmp_path / "cache dir", ssh_key_path=key, known_hosts_path=known_hosts
    )
    done = repo.apply(change("k1", {"a.yaml": "one\n"}))
    assert git(f"--git-dir={remote}", "rev-parse", "main").strip() == done.sha
