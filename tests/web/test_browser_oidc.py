"""'Sign in with …' in a real Chromium: a live ``tenantops serve`` and node-oidc-provider.

Reuses the fixtures and helpers of ``test_browser`` (Debian's Chromium, axe-core).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantops.db import Database
from tests.oidc_provider import Provider, run_provider
from tests.servers import HOST, free_port, tenantops_env, wait_ready
from tests.web.test_browser import (
    CHROMIUM_ARGS,
    VIEWPORT,
    WAIT_MS,
    axe_violations,
    chromium,
    playwright_api,
)

__all__ = ["chromium"]  # a fixture, used by name


@pytest.fixture
def sso_server(db: Database, tmp_path: Path) -> Iterator[tuple[str, Provider]]:
    """``tenantops serve`` whose login offers the provider; its URL and the provider."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with run_provider([f"{url}/login/oidc/callback"], tmp_path / "provider.log") as provider:
        env = tenantops_env(
            database_url=db.url,
            data_dir=str(tmp_path / "data"),
            worker__in_process="false",
            events__relay="false",
            log_json="false",
            oidc__issuer=provider.url,
            oidc__audience="tenantops-api",
            web__oidc_client_id=provider.client_id,
            web__oidc_client_secret=provider.client_secret,
            web__oidc_scopes="openid profile tenantops",
            web__oidc_display_name="Test IdP",
        )
        log = tmp_path / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tenantops.cli",
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_ready(url, proc, log)
                yield url, provider
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)


def test_sign_in_with_the_identity_provider(
    chromium: str, sso_server: tuple[str, Provider], tmp_path: Path
) -> None:
    url, provider = sso_server
    provider.account("gwen", roles=["governance"], name="Gwen")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.goto(f"{url}/runs")
            page.wait_for_url(f"{url}/login?next=%2Fruns")
            button = page.get_by_role("link", name="Sign in with Test IdP")
            assert button.is_visible()
            assert axe_violations(page) == []
            page.screenshot(path=str(tmp_path / "login-sso.png"))

            button.click()
            page.wait_for_url(f"{provider.url}/**")
            page.locator('input[name="login"]').fill("gwen")
            page.locator('input[name="password"]').fill("any")
            page.get_by_role("button", name="Sign-in").click()
            page.get_by_role("button", name="Continue").click()

            page.wait_for_url(f"{url}/runs")
            assert "gwen (governance)" in page.locator("header").inner_text()
            cookies = {c["name"]: c for c in context.cookies(url)}
            assert cookies["tenantops_session"]["httpOnly"]
            assert "tenantops_oidc" not in cookies, "the flow cookie is spent"
        finally:
            browser.close()
