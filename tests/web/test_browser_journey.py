"""The whole journey in Chromium against a live server with its in-process worker.

An account manager requests a tenant through the form; governance and security
approve it from their inboxes in a second browser context; the onboarding run
is watched on its page (htmx polling) until it succeeds; the dashboard counts
the new active tenant; security starts an Access Review from the tenant page;
its owner sees it in the portal and nothing of any other tenant. Every page
passes axe-core, and the main pages are photographed
(``TENANTOPS_UPDATE_SCREENSHOTS=1`` refreshes ``docs/screenshots/``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantops.db import Database
from tests.factories import tenant_body
from tests.servers import bearer, mint_token, serve_process, tenantops_env
from tests.web.test_browser import (
    CHROMIUM_ARGS,
    PASSWORD,
    VIEWPORT,
    WAIT_MS,
    add_user,
    axe_violations,
    chromium,  # noqa: F401 - the fixture
    playwright_api,
    shoot,
)

RUN_MS = 120_000  # an upper bound for the onboarding run on a loaded machine, not a target


@pytest.fixture
def working_server(db: Database, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``tenantops serve`` with its in-process worker, as ``make run`` starts it."""
    env = tenantops_env(
        database_url=db.url,
        data_dir=str(tmp_path / "data"),
        worker__in_process="true",
        worker__poll_seconds="0.2",
        events__relay="false",
        log_json="false",
        bootstrap_admin="false",
    )
    with serve_process(env, tmp_path / "server.log") as url:
        yield url, env


def sign_in(page: Any, url: str, username: str, landing: str = "/") -> None:
    page.goto(f"{url}/login?next={landing}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}{landing}")


def sign_out(page: Any, url: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/login")


def approve(page: Any, url: str, username: str, comment: str, tmp_path: Path) -> None:
    """``username`` opens the inbox, approves acme's onboarding with ``comment``."""
    sign_in(page, url, username, "/approvals")
    mine = page.locator('section[aria-labelledby="yours"]')
    row = mine.locator("tr", has=page.get_by_role("link", name="acme"))
    row.get_by_label(re.compile("Comment")).fill(comment)
    if username == "gus":
        assert axe_violations(page) == []
        shoot(page, tmp_path, "approvals.png")
    row.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(rf"{re.escape(url)}/approvals"))
    assert page.get_by_role("status").first.is_visible()
    assert mine.locator("tr", has=page.get_by_role("link", name="acme")).count() == 0
    sign_out(page, url)


def test_request_approve_watch_onboarding_and_see_the_dashboard_and_portal(
    chromium: str,  # noqa: F811 - the fixture
    working_server: tuple[str, dict[str, str]],
    db: Database,
    tmp_path: Path,
) -> None:
    url, env = working_server
    for name, role in (
        ("amy", "account_manager"),
        ("gus", "governance"),
        ("sue", "security"),
        ("root", "admin"),
    ):
        add_user(env, "create", name, "--role", role)
    # Another tenant the owner must never see.
    am = bearer(mint_token(db, "amy", "account_manager"))
    other = httpx.post(
        f"{url}/api/v1/tenants", json=tenant_body(name="globex"), headers=am, timeout=30
    )
    assert other.status_code == 201, other.text

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets the test inject axe-core; the app itself allows no inline script.
            requester = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            requester.set_default_timeout(WAIT_MS)
            page = requester.new_page()

            # The account manager requests the tenant through the form.
            sign_in(page, url, "amy", "/tenants/new")
            assert axe_violations(page) == []
            page.get_by_label("Name (DNS label").fill("acme")
            page.get_by_label("Display name").fill("ACME Corp")
            page.get_by_label("Business owner").fill("owner@acme.example")
            page.get_by_label("Compliance class").select_option("confidential")
            page.get_by_label("Region").fill("eu-central-1")
            page.get_by_label("Tier").select_option("standard")
            page.get_by_label("Monthly budget").fill("2500")
            page.get_by_label("Currency").fill("EUR")
            page.get_by_role("button", name="Request tenant").click()
            page.wait_for_url(f"{url}/tenants/acme")
            assert page.locator("[data-state]").first.get_attribute("data-state") == "requested"

            # Governance and security approve from their inboxes, in a second context.
            deciders = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            deciders.set_default_timeout(WAIT_MS)
            inbox = deciders.new_page()
            approve(inbox, url, "gus", "risk reviewed: RISK-142", tmp_path)
            approve(inbox, url, "sue", "security baseline ok", tmp_path)

            # The requester watches the onboarding run on its page until it succeeds.
            page.goto(f"{url}/tenants/acme")
            page.locator("tr[data-run] a").first.click()
            page.wait_for_url(re.compile(rf"{re.escape(url)}/runs/[0-9a-f-]+$"))
            state = page.locator("[data-state]").first
            page.wait_for_function(
                "document.querySelector('[data-state]').dataset.state == 'succeeded'",
                timeout=RUN_MS,
            )
            assert state.get_attribute("data-state") == "succeeded"
            assert page.locator("[data-finished]").get_attribute("data-finished") == "yes"
            steps = page.locator("li.run-step")
            assert steps.count() > 5
            assert page.locator('li.run-step[data-status="succeeded"]').count() == steps.count()
            assert re.search(r"\b[0-9a-f]{40}\b", page.content())  # the GitOps commit SHA
            assert axe_violations(page) == []
            shoot(page, tmp_path, "run.png")

            page.goto(f"{url}/tenants/acme")
            assert page.locator("[data-state]").first.get_attribute("data-state") == "active"
            assert axe_violations(page) == []
            shoot(page, tmp_path, "tenant.png")
            sign_out(page, url)

            # Security starts an Access Review from the tenant page and lands on its run.
            sign_in(inbox, url, "sue", "/tenants/acme")
            review = inbox.locator('form[data-checklist-form="access-review"]')
            assert axe_violations(inbox) == []
            review.get_by_label("Reason").fill("quarterly review")
            review.get_by_role("button", name="Start access review").click()
            inbox.wait_for_url(re.compile(rf"{re.escape(url)}/runs/[0-9a-f-]+$"))
            assert "Access review started" in inbox.locator('[data-flash="ok"]').inner_text()
            assert axe_violations(inbox) == []
            inbox.goto(f"{url}/tenants/acme")
            assert inbox.locator("[data-open-run]").count() == 1  # a link now, not a button
            assert review.count() == 0
            sign_out(inbox, url)

            # The dashboard counts acme active, with an activation time and the SLA met.
            sign_in(page, url, "root")
            acme = page.locator('tbody tr[data-tenant="acme"]')
            assert "active" in acme.inner_text()
            assert page.locator('[data-kpi="sla_attainment"]').inner_text() == "100.0%"
            assert axe_violations(page) == []
            shoot(page, tmp_path, "dashboard.png")

            # The tenant's owner sees acme in the portal, and nothing of globex anywhere.
            add_user(env, "create", "olga", "--role", "tenant_owner", "--tenant", "acme")
            owner = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            owner.set_default_timeout(WAIT_MS)
            theirs = owner.new_page()
            sign_in(theirs, url, "olga", "/portal")
            assert "ACME Corp" in theirs.content()
            assert axe_violations(theirs) == []
            shoot(theirs, tmp_path, "portal.png")
            # A budget request through the form: the browser's own validation lets it through.
            budget = theirs.locator('form[data-form="budget"]')
            budget.get_by_label("New monthly budget").fill("3000.50")
            budget.get_by_label("Currency").fill("EUR")
            budget.get_by_label("Justification").fill("new analytics workload")
            budget.get_by_role("button", name="Request the budget change").click()
            theirs.wait_for_selector('tr[data-kind="budget"]')
            for path in ("/portal", "/", "/runs", "/tenants"):
                theirs.goto(f"{url}{path}")
                assert "globex" not in theirs.content(), path
            refused = theirs.goto(f"{url}/tenants/globex")
            assert refused is not None
            assert refused.status == 404
        finally:
            browser.close()
