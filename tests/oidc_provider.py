"""A real OIDC provider on 127.0.0.1 for the web sign-in tests: node-oidc-provider.

An implementation that is not ours (OpenID Certified) checks what tenantops
sends: PKCE S256 (``code_verifier`` against ``code_challenge``), the code's single
use, the redirect URI, the client's secret; it signs RS256 ID tokens carrying the
``nonce``. ``tests/oidc/package.json`` pins it; ``npm ci`` installs it the first
time (the npm registry is reachable wherever the tests run). Without node the
tests fail in CI and skip on a laptop, as for the other real servers.

:class:`Provider.sign_in` plays the person at the provider's (development)
sign-in and consent pages with a plain HTTP client and hands back the URL the
provider redirects the browser to: the tenantops callback.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pytest

HERE = Path(__file__).parent / "oidc"
CLIENT_ID = "tenantops-web"
CLIENT_SECRET = "test-client-secret"  # a throwaway client of a throwaway provider
START_TIMEOUT = 30.0  # an upper bound for node to come up, not a timing assertion


def _node() -> str:
    found = shutil.which("node")
    npm = shutil.which("npm")
    if found is None or npm is None:
        reason = "node and npm are needed for the OIDC provider: apt-get install nodejs npm"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run it)", pytrace=False)
        pytest.skip(reason)
    # `make test` installs it first; a direct pytest run does it here, one process at a
    # time (test workers run in parallel and npm ci is not safe to run twice at once).
    with (HERE / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(
                    f"npm ci in {HERE} failed:\n{done.stdout}\n{done.stderr}", pytrace=False
                )
    return found


@dataclass
class Provider:
    """The running provider: its issuer URL and the one client registered for tenantops."""

    url: str
    redirect_uris: list[str]
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    log: list[str] = field(default_factory=list)

    def account(self, login: str, **claims: Any) -> str:
        """Give ``login`` these claims (roles, tenant, name…) at the provider."""
        r = httpx.put(f"{self.url}/test/accounts/{quote(login, safe='')}", json=claims)
        assert r.status_code == 204, r.text
        return login

    def sign_in(
        self,
        authorize_url: str,
        login: str,
        *,
        browser: httpx.Client | None = None,
        consent: bool = True,
    ) -> str:
        """Sign ``login`` in at the provider; the redirect back to tenantops (its URL).

        ``consent=False`` cancels at the consent page (the provider answers
        ``error=access_denied``). ``browser`` keeps the provider's cookies between
        sign-ins, as one browser would.
        """
        own = browser is None
        http = browser or httpx.Client()
        try:
            response = http.get(authorize_url)
            for _ in range(12):
                if response.is_redirect:
                    target = urljoin(str(response.url), response.headers["location"])
                    if any(target.startswith(uri) for uri in self.redirect_uris):
                        return target
                    response = http.get(target)
                    continue
                assert response.status_code == 200, response.text
                page = response.text
                action = re.search(r'<form[^>]*action="([^"]+)"', page)
                prompt = re.search(r'name="prompt" value="(\w+)"', page)
                assert action, page
                assert prompt, page
                url = urljoin(str(response.url), html.unescape(action.group(1)))
                if prompt.group(1) == "login":
                    form = {"prompt": "login", "login": login, "password": "any"}
                    response = http.post(url, data=form)
                elif consent:
                    response = http.post(url, data={"prompt": "consent"})
                else:
                    cancel = re.search(r'<a href="([^"]+)">\[ Cancel \]</a>', page)
                    assert cancel, page
                    response = http.get(urljoin(str(response.url), html.unescape(cancel.group(1))))
            raise AssertionError(f"the provider never sent the browser back: {response.text}")
        finally:
            if own:
                http.close()


@contextmanager
def run_provider(redirect_uris: list[str], log: Path) -> Iterator[Provider]:
    """node-oidc-provider on a free port of 127.0.0.1 for the duration of the block."""
    node = _node()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OIDC_PORT": "0",
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URIS": ",".join(redirect_uris),
    }
    with log.open("w") as err:
        proc = subprocess.Popen(
            [node, str(HERE / "provider.mjs")],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until it listens or dies
            if not line.startswith("listening "):
                proc.kill()
                raise AssertionError(f"the OIDC provider did not start: {log.read_text()}")
            url = line.split(" ", 1)[1].strip()
            httpx.get(f"{url}/.well-known/openid-configuration", timeout=START_TIMEOUT)
            yield Provider(url=url, redirect_uris=redirect_uris)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def discovery(url: str) -> dict[str, Any]:
    """The provider's discovery document (for tests that look at its endpoints)."""
    document: dict[str, Any] = json.loads(httpx.get(f"{url}/.well-known/openid-configuration").text)
    return document
