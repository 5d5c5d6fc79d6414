"""Real tenantops servers for end-to-end tests, as subprocesses, and their tokens.

Everything binds to 127.0.0.1, waits for readiness with a bounded poll and is
always stopped, whatever the test did.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tenantops.auth import tokens
from tenantops.auth.principal import SYSTEM, Role
from tenantops.db import Database

HOST = "127.0.0.1"
READY_WITHIN = 30.0  # seconds a server may take to answer /readyz


@contextmanager
def in_thread(app: FastAPI, port: int) -> Iterator[None]:
    """``app`` served by uvicorn on 127.0.0.1:``port`` in a thread of the test, until the end."""
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", ws="none")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_WITHIN
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.05)
    try:
        yield
    finally:
        instance.should_exit = True
        thread.join(10)


def mint_token(db: Database, subject: str, *roles: str, tenant: str | None = None) -> str:
    """A fresh API token for ``subject`` with ``roles``, written straight to ``db``."""
    with db.write() as session:
        issued = tokens.create_token(
            session,
            actor=SYSTEM,
            subject=subject,
            roles=[Role(r) for r in roles],
            tenant_id=tenant,
            ttl=None,
        )
    return issued.value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def tenantops_env(**settings: str) -> dict[str, str]:
    """This environment without any ``TENANTOPS_*`` of the caller, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTOPS_")}
    env.update({f"TENANTOPS_{k.upper()}": v for k, v in settings.items()})
    return env


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``tenantops ARGS`` in a subprocess, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "tenantops.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/readyz`` until it answers 200; fail early, with its output, if ``proc`` exits."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {url} not ready within {READY_WITHIN}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    if not log.exists():
        return ""
    return log.read_text(errors="replace")[-4000:]


@contextmanager
def serve_process(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``tenantops serve`` on a free port, its output going to ``log``; yields its URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantops.cli", "serve", "--host", HOST, "--port", str(port)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://{HOST}:{port}"
            wait_ready(url, proc, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


NATS_SERVER = "/usr/sbin/nats-server"


class NatsServer:
    """A NATS server with JetStream of a test's own, on a free port, stoppable and restartable.

    Its own (not the machine's shared one on 4222), so a test can take it down.
    Restarted on the same port and store directory, it keeps its streams.
    """

    def __init__(self, store: Path) -> None:
        if not Path(NATS_SERVER).exists():
            raise RuntimeError(f"{NATS_SERVER} is needed (Debian package nats-server)")
        self.store = store
        self.port = free_port()
        self.url = f"nats://{HOST}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [NATS_SERVER, "-a", HOST, "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((HOST, self.port)) == 0:
                    return
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port} within 20 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None
