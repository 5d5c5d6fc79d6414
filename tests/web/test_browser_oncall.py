"""The on-call and records pages in a real Chromium (Debian's, no browser download).

A P1 incident opened through the ITIL service pages on-call; an ops engineer
signs in, finds the page on ``/oncall`` and acknowledges it by clicking; the
store says who acknowledged it. axe-core finds no serious or critical issue
on the on-call page, the page's own page, the records list and the record.
Chromium missing fails in CI and skips on a laptop (``tests.promstack.binary``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.itil import service as itil
from tenantops.oncall import service as oncall
from tests.itil.helpers import make_tenant
from tests.promstack import binary
from tests.servers import serve_process, tenantops_env
from tests.web.test_browser import (
    CHROMIUM_ARGS,
    VIEWPORT,
    WAIT_MS,
    add_user,
    axe_violations,
    shoot,
    sign_in,
)
from tests.web.test_oncall_pages import DOCUMENT, ROOT

playwright_api = pytest.importorskip("playwright.sync_api")

OLI = Principal("oli", frozenset({Role.OPS_ENGINEER}))


@pytest.fixture
def chromium() -> str:
    return binary("chromium", "chromium")


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A live ``tenantops serve`` on the test store (no worker: the page stays as triggered)."""
    env = tenantops_env(
        database_url=db.url,
        data_dir=str(tmp_path / "data"),
        worker__in_process="false",
        events__relay="false",
        log_json="false",
        bootstrap_admin="false",
    )
    with serve_process(env, tmp_path / "server.log") as url:
        yield url, env


def test_acknowledge_a_page_by_clicking(
    chromium: str, server: tuple[str, dict[str, str]], db: Database, tmp_path: Path
) -> None:
    url, env = server
    with db.write() as session:  # a rotation and a policy of its own, not the default
        oncall.apply_config(session, DOCUMENT, ROOT)
    make_tenant(db, "acme")
    with db.write() as session:
        number = itil.open_record(
            session,
            kind="incident",
            title="orders API down",
            description="HTTP 503 on every checkout",
            priority=1,
            actor=OLI,
            tenant="acme",
        ).record.number
    with db.read() as session:
        (paged,) = oncall.list_pages(session).items
    assert paged.status == "triggered"
    add_user(env, "create", "oli", "--role", "ops_engineer")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            # bypass_csp lets the test inject axe-core; the app itself allows no inline script.
            context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            sign_in(page, url, "oli")

            page.get_by_role("link", name="On-call").click()
            page.wait_for_url(f"{url}/oncall")
            row = page.locator(f'tr[data-page="{paged.id}"]')
            assert row.get_attribute("data-status") == "triggered"
            assert page.locator('tr[data-rotation="primary"] td[data-member]').is_visible()
            assert axe_violations(page) == []

            row.get_by_role("button", name="Acknowledge").click()
            page.wait_for_selector(f'tr[data-page="{paged.id}"][data-status="acknowledged"]')
            assert page.url == f"{url}/oncall"
            flash = page.locator("[data-flash]")
            assert (
                flash.inner_text() == f"Acknowledged: {number} orders API down (now acknowledged)."
            )
            assert row.get_by_role("button", name="Acknowledge").count() == 0
            assert row.get_by_role("button", name="Resolve").is_visible()
            assert axe_violations(page) == []
            shoot(page, tmp_path, "oncall.png")

            page.get_by_role("link", name=f"{number} orders API down").click()
            page.wait_for_url(f"{url}/oncall/pages/{paged.id}")
            assert page.locator('tr[data-event="acknowledged"]').count() == 1
            assert axe_violations(page) == []

            page.get_by_role("link", name="the ITIL record").click()
            page.wait_for_url(f"{url}/records/*")
            assert page.locator('[data-move="closed"]').count() == 0  # not resolved yet
            assert page.locator('[data-move="in_progress"]').is_visible()
            assert axe_violations(page) == []

            page.get_by_role("link", name="Records", exact=True).click()
            page.wait_for_url(f"{url}/records")
            assert page.locator(f'tr[data-record="{number}"]').is_visible()
            assert axe_violations(page) == []
        finally:
            browser.close()

    with db.read() as session:
        answered = oncall.get_page(session, page_id=paged.id)
    assert answered.status == "acknowledged"
    assert answered.acknowledged_by == "oli"
