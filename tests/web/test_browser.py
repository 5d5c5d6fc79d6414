"""The web UI in a real Chromium (Debian's, no browser download) against a live server.

Chromium missing fails in CI and skips on a laptop (the policy of
``tests.promstack.binary``). Screenshots go to the test's directory; with
``TENANTOPS_UPDATE_SCREENSHOTS=1`` they also replace ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantops.db import Database
from tests.factories import tenant_body
from tests.promstack import binary
from tests.servers import bearer, mint_token, run_cli, serve_process, tenantops_env
from tests.web.conftest import PASSWORD

playwright_api = pytest.importorskip("playwright.sync_api")

HERE = Path(__file__).parent
AXE = HERE / "axe.min.js"
SCREENSHOTS = HERE.parent.parent / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000  # an upper bound for a page to settle, not a timing assertion


@pytest.fixture
def chromium() -> str:
    return binary("chromium", "chromium")


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A live ``tenantops serve`` on the test store; its URL and the CLI's environment."""
    env = tenantops_env(
        database_url=db.url,
        data_dir=str(tmp_path / "data"),
        worker__in_process="false",
        events__relay="false",
        log_json="false",
        bootstrap_admin="false",  # the tests make their own users and tokens
    )
    with serve_process(env, tmp_path / "server.log") as url:
        yield url, env


def add_user(env: dict[str, str], *args: str) -> None:
    """``tenantops users ARGS --password-stdin`` in a subprocess, as an operator would."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tenantops.cli", "users", *args, "--password-stdin"],
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def axe_violations(page: Any) -> list[str]:
    """Serious and critical axe-core findings on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    if os.environ.get("TENANTOPS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)


def sign_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url(f"{url}/login?next=%2F")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def rows(page: Any) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "tbody tr[data-tenant]", "rows => rows.map(r => r.dataset.tenant)"
    )
    return names


def test_sign_in_see_filter_and_sort_the_dashboard(
    chromium: str, server: tuple[str, dict[str, str]], db: Database, tmp_path: Path
) -> None:
    url, env = server
    add_user(env, "create-admin", "root")
    am = bearer(mint_token(db, "amy", "account_manager"))
    made: dict[str, str] = {}
    for name, tier, region in (
        ("orbit", "premium", "eu-central-1"),
        ("nebula", "standard", "eu-west-1"),
        ("quasar", "standard", "us-east-1"),
    ):
        body = tenant_body(name=name, display_name=name.title() + " Ltd", tier=tier, region=region)
        r = httpx.post(f"{url}/api/v1/tenants", json=body, headers=am, timeout=30)
        assert r.status_code == 201, r.text
        made[name] = r.json()["id"]
    # Two of them go live, so the dashboard has activations and SLA outcomes to show.
    who = {
        role: bearer(mint_token(db, f"web-{role}", role))
        for role in ("governance", "security", "ops_engineer", "qa")
    }
    for name in ("orbit", "nebula"):
        tenant = f"{url}/api/v1/tenants/{made[name]}"
        for role in ("governance", "security"):
            r = httpx.post(
                f"{tenant}/approvals",
                json={"role": role, "decision": "approve"},
                headers=who[role],
                timeout=30,
            )
            assert r.status_code == 200, r.text
        for event, role in (
            ("start_provisioning", "ops_engineer"),
            ("provisioned", "ops_engineer"),
            ("verified", "qa"),
        ):
            r = httpx.post(
                f"{tenant}/lifecycle-events", json={"event": event}, headers=who[role], timeout=30
            )
            assert r.status_code == 200, r.text
    add_user(env, "create", "olga", "--role", "tenant_owner", "--tenant", "nebula")
    assert run_cli("users", "list", env=env).stdout.count("\n") == 2

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets the test inject axe-core; the app itself allows no inline script.
            admin = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            admin.set_default_timeout(WAIT_MS)
            page = admin.new_page()
            page.goto(f"{url}/")
            page.wait_for_url(f"{url}/login?next=%2F")
            assert axe_violations(page) == []
            shoot(page, tmp_path, "login.png")

            sign_in(page, url, "root")
            assert page.get_by_role("heading", name="Tenant KPIs").is_visible()
            assert rows(page) == ["nebula", "orbit", "quasar"]
            assert page.locator('[data-kpi="sla_attainment"]').inner_text() == "100.0%"
            assert axe_violations(page) == []

            # Filter by tier: htmx swaps the table in place and pushes the URL.
            page.get_by_label("Tier").select_option("premium")
            page.wait_for_url(f"{url}/?state=&region=&tier=premium&sort=name")
            page.wait_for_function("document.querySelectorAll('tbody tr[data-tenant]').length == 1")
            assert rows(page) == ["orbit"]

            # Sort: plain links, so it works without JavaScript too.
            page.goto(f"{url}/")
            page.locator('a[data-sort="name"]').click()
            page.wait_for_url(f"{url}/?sort=-name")
            assert rows(page) == ["quasar", "orbit", "nebula"]
            page.goto(f"{url}/")
            shoot(page, tmp_path, "dashboard.png")

            # htmx requests carry the session's CSRF token (csrf.js sets hx-headers on body).
            headers = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))")
            token = page.locator('meta[name="csrf-token"]').get_attribute("content")
            assert token
            assert headers == {"X-CSRF-Token": token}

            # A form post without the CSRF token is refused, with the session cookie sent.
            refused = page.request.post(f"{url}/logout", form={"next": "/"})
            assert refused.status == 403
            still_in = page.request.get(f"{url}/", max_redirects=0)
            assert still_in.status == 200

            # A tenant owner in a second browser sees only their own tenant.
            owner = browser.new_context(viewport=VIEWPORT)
            owner.set_default_timeout(WAIT_MS)
            theirs = owner.new_page()
            sign_in(theirs, url, "olga")
            assert rows(theirs) == ["nebula"]
            assert "orbit" not in theirs.content()

            # On a phone the header wraps and nothing widens the page: no sideways scrolling,
            # "Sign out" on screen.
            phone = browser.new_context(viewport=PHONE)
            phone.set_default_timeout(WAIT_MS)
            small = phone.new_page()
            sign_in(small, url, "root")
            for path in ("/", "/tenants/orbit", "/approvals", "/runs"):
                small.goto(f"{url}{path}")
                wide = small.evaluate("document.documentElement.scrollWidth")
                assert wide <= small.evaluate("window.innerWidth"), path
                box = small.get_by_role("button", name="Sign out").bounding_box()
                assert box, path
                assert box["x"] + box["width"] <= PHONE["width"], path
                if path == "/":
                    shoot(small, tmp_path, "dashboard-phone.png")

            # Signing out through the page's own form works.
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{url}/login")
            page.goto(f"{url}/")
            page.wait_for_url(f"{url}/login?next=%2F")
        finally:
            browser.close()
