"""A real OpenSSH server on 127.0.0.1 for the SSH tests of the remote GitOps adapter.

:func:`running_sshd` generates a host key and a client key into a work
directory, writes an ``sshd_config`` that accepts only that client key (no
password, no keyboard-interactive, no PAM) for the current user, starts
``/usr/sbin/sshd -D -e`` on a free port, waits with a bounded poll until the
port greets with an SSH banner, and always stops the server. The tests run as
root in a container, so root may log in with a key (``prohibit-password``).

A missing ``sshd`` fails the tests, it never skips them: ``apt-get install
openssh-server`` (``.ci/run`` does it). The system's own sshd is never started
or touched: the server here reads only its own configuration.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import HOST, free_port

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it
READY_WITHIN = 15.0  # seconds sshd may take to greet on its port
START_ATTEMPTS = 3  # another process may take the free port before sshd binds it


@dataclass(frozen=True)
class Sshd:
    """A running sshd: where it listens, whom it lets in, and the keys a client needs."""

    port: int
    user: str
    client_key: Path  # private key in authorized_keys
    known_hosts: Path  # the server's host key, as ssh looks it up
    host_public_key: str  # "ssh-ed25519 AAAA…" of the server
    log: Path

    def url(self, repository: Path) -> str:
        """``ssh://user@127.0.0.1:port/abs/path.git`` for a repository on this machine."""
        return f"ssh://{self.user}@{HOST}:{self.port}{repository.resolve()}"

    def known_hosts_line(self, public_key: str) -> str:
        """A known_hosts line binding ``public_key`` to this server's host and port."""
        return f"[{HOST}]:{self.port} {public_key}\n"


def keygen(path: Path, comment: str) -> Path:
    """A new passphrase-less ed25519 key at ``path`` (public half at ``path.pub``)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def public_key(private: Path) -> str:
    """``type base64`` of a key made by :func:`keygen`, without its comment."""
    kind, blob, *_ = Path(f"{private}.pub").read_text().split()
    return f"{kind} {blob}"


def sshd_config(work: Path, *, port: int, host_key: Path, authorized: Path, user: str) -> str:
    return "\n".join(
        [
            f"ListenAddress {HOST}",
            f"Port {port}",
            f"HostKey {host_key}",
            f"PidFile {work / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # tmp_path's modes are pytest's, not a home directory's
            "PermitRootLogin prohibit-password",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ]
    )


def greets(port: int) -> bool:
    """True when something on ``port`` answers with an SSH version banner."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as conn:
            conn.settimeout(1)
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_sshd(work: Path) -> Iterator[Sshd]:
    """An sshd on a free 127.0.0.1 port that lets the current user in with one key."""
    if not SSHD.is_file():
        pytest.fail(
            f"{SSHD} is missing: apt-get install --no-install-recommends openssh-server "
            "(the SSH tests run a real sshd; they never skip)",
            pytrace=False,
        )
    try:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    except OSError as exc:
        pytest.fail(f"sshd needs its privilege separation dir {PRIVSEP_DIR}: {exc}", pytrace=False)
    work.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    host_key = keygen(work / "ssh_host_ed25519_key", "tenantops-test-host")
    client_key = keygen(work / "client_ed25519", "tenantops-test-client")
    authorized = work / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    log = work / "sshd.log"
    last = ""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        config = work / "sshd_config"
        config.write_text(
            sshd_config(work, port=port, host_key=host_key, authorized=authorized, user=user)
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + READY_WITHIN
            while process.poll() is None and time.monotonic() < deadline:
                if greets(port):
                    break
                time.sleep(0.05)
            if process.poll() is not None:
                last = log.read_text(errors="replace")
                if "Address already in use" in last:
                    continue  # lost the port to another process: try another one
                pytest.fail(f"sshd exited at start:\n{last}", pytrace=False)
            if not greets(port):
                pytest.fail(
                    f"sshd did not greet on {HOST}:{port} within {READY_WITHIN} s:\n"
                    + log.read_text(errors="replace"),
                    pytrace=False,
                )
            known_hosts = work / "known_hosts"
            server = Sshd(
                port=port,
                user=user,
                client_key=client_key,
                known_hosts=known_hosts,
                host_public_key=public_key(host_key),
                log=log,
            )
            known_hosts.write_text(server.known_hosts_line(server.host_public_key))
            yield server
            return
        finally:
            stop(process)
    pytest.fail(f"sshd found no free port in {START_ATTEMPTS} attempts:\n{last}", pytrace=False)
