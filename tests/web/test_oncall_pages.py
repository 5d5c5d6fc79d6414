"""The on-call pages as their users meet them: who sees what, answering a page, refusals.

Pages are triggered through the on-call service (and one by opening a P1
incident, as the ITIL records do); the page is answered through the web form
with the session of a local user, and the result read back through the JSON
API or the service. Both stores.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.itil import service as itil
from tenantops.oncall import service as oncall
from tests.conftest import Actors, Clock
from tests.itil.helpers import make_tenant
from tests.web.conftest import UserFactory, sign_in

OLI = Principal("oli", frozenset({Role.OPS_ENGINEER}))
ROOT = Principal("root", frozenset({Role.ADMIN}))
DOCUMENT: dict[str, Any] = {
    "rotations": {
        "primary": {
            "timezone": "UTC",
            "start": "2029-12-31T09:00:00",
            "length": "7d",
            "members": ["ann@example.com", "bob@example.com"],
        }
    },
    "policies": {
        "urgent": {
            "levels": [
                {"targets": ["rotation:primary"], "after": "5m"},
                {"targets": ["rotation:primary", "role:governance"], "after": "15m"},
            ],
            "repeat": 1,
        }
    },
    "default": "urgent",
}
PAGE_ROW = re.compile(r'<tr data-page="([^"]+)" data-status="([^"]+)"')


def signed_in(web: TestClient, user: UserFactory, name: str, *roles: str, **kw: Any) -> str:
    user(name, *roles, **kw)
    web.cookies.clear()  # whoever was signed in before
    return sign_in(web, name)


def trigger(db: Database, key: str, summary: str, *, tenant: str | None = None) -> str:
    with db.write() as session:
        return oncall.trigger(
            session, key=key, summary=summary, severity="critical", actor=OLI, tenant_id=tenant
        ).id


def status_of(db: Database, page_id: str) -> str:
    with db.read() as session:
        return oncall.get_page(session, page_id=page_id).status


def section(html: str, section_id: str) -> str:
    """The HTML of ``<section id=section_id>`` (to assert what is in which part)."""
    start = html.index(f'id="{section_id}"')
    return html[start : html.index("</section>", start)]


def flash_text(page: httpx.Response) -> str:
    found = re.search(r'data-flash="(ok|error)">\s*<p>([^<]*)</p>', page.text)
    assert found, page.text
    return unescape(found.group(2))


def test_the_page_shows_who_is_on_call_the_policies_and_the_open_and_resolved_pages(
    web: TestClient, db: Database, user: UserFactory, clock: Clock
) -> None:
    with db.write() as session:
        oncall.apply_config(session, DOCUMENT, ROOT)
    acme = make_tenant(db, "acme")
    down = trigger(db, "k-down", "orders API down", tenant=acme)
    clock.advance(minutes=1)  # ids order by time: one page a minute keeps "newest first" known
    slow = trigger(db, "k-slow", "checkout slow")
    clock.advance(minutes=1)
    done = trigger(db, "k-done", "disk full on db-1")
    with db.write() as session:
        oncall.acknowledge_page(session, page_id=slow, actor=OLI)
        oncall.resolve_page(session, page_id=done, actor=OLI)
    signed_in(web, user, "oli", "ops_engineer")

    page = web.get("/oncall")
    assert page.status_code == 200
    text = page.text
    assert 'href="/oncall" aria-current="page">On-call</a>' in text
    # Open pages, newest first; the resolved one only below.
    opened = section(text, "open-pages")
    assert PAGE_ROW.findall(opened) == [(slow, "acknowledged"), (down, "triggered")]
    assert "orders API down" in opened
    assert 'href="/tenants/acme"' in opened
    assert "critical" in opened
    assert "not yet told (of 2)" in opened  # the escalator has not swept yet
    assert "2030-01-01 09:00:00 UTC" in opened  # since, and the first escalation is due now
    assert "acknowledged by oli: no further escalation" in opened
    # Acknowledge only while triggered; resolve while open.
    assert f'action="/oncall/pages/{down}/acknowledge"' in opened
    assert f'action="/oncall/pages/{down}/resolve"' in opened
    assert f'action="/oncall/pages/{slow}/acknowledge"' not in opened
    assert f'action="/oncall/pages/{slow}/resolve"' in opened
    assert 'name="csrf_token"' in opened
    resolved = section(text, "resolved-pages")
    assert PAGE_ROW.findall(resolved) == [(done, "resolved")]
    assert "disk full on db-1" not in opened
    # Who is on call, until when.
    now = section(text, "on-call-now")
    assert '<tr data-rotation="primary">' in now
    assert "<td data-member>ann@example.com" in now
    assert "2029-12-31 09:00:00 UTC" in now
    assert "2030-01-07 09:00:00 UTC" in now
    # The policy in force: version, who applied it, its levels.
    policies = section(text, "policies")
    assert 'data-config-version="1">version 1' in policies
    assert "<dd>root</dd>" in policies
    assert 'data-policy="urgent"' in policies
    assert "rotation:primary, role:governance" in policies
    assert "<td>15m</td>" in policies
    assert "1 more time" in policies


def test_without_a_configuration_the_built_in_default_is_shown(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    signed_in(web, user, "ada", "auditor")
    text = web.get("/oncall").text
    assert 'data-config-version="default"' in text
    assert "role:oncall, role:governance" in text
    assert "data-no-rotations" in text
    assert "data-no-open-pages" in text


def test_readers_see_pages_without_buttons_and_others_not_at_all(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    acme = make_tenant(db, "acme")
    page_id = trigger(db, "k1", "orders API down", tenant=acme)
    for name, role in (("ada", "auditor"), ("amy", "account_manager"), ("gus", "governance")):
        signed_in(web, user, name, role)
        page = web.get("/oncall")
        assert page.status_code == 200, role
        assert PAGE_ROW.findall(page.text) == [(page_id, "triggered")]
        assert "/acknowledge" not in page.text
        assert "/resolve" not in page.text
        assert web.get(f"/oncall/pages/{page_id}").status_code == 200
    for name, role, tenant in (("fin", "finance", None), ("olga", "tenant_owner", acme)):
        signed_in(web, user, name, role, tenant=tenant)
        home = web.get("/")
        assert 'href="/oncall"' not in home.text, role
        refused = web.get("/oncall")
        assert refused.status_code == 403
        assert "orders API down" not in refused.text
        detail = web.get(f"/oncall/pages/{page_id}")
        assert detail.status_code == 403
        assert "orders API down" not in detail.text


def test_a_tenant_bound_user_sees_no_page_even_with_a_staff_role(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    # The on-call service does not scope pages by tenant: a tenant-bound principal,
    # whatever else it holds, would see every tenant's pages. The web shows none.
    acme = make_tenant(db, "acme")
    globex = make_tenant(db, "globex")
    page_id = trigger(db, "k1", "globex is down", tenant=globex)
    csrf = signed_in(web, user, "olga", "tenant_owner", "ops_engineer", tenant=acme)
    assert 'href="/oncall"' not in web.get("/").text
    assert web.get("/oncall").status_code == 403
    assert web.get(f"/oncall/pages/{page_id}").status_code == 403
    refused = web.post(f"/oncall/pages/{page_id}/acknowledge", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert status_of(db, page_id) == "triggered"
    assert "globex is down" not in web.get("/tenants/acme").text


def test_acknowledge_and_resolve_through_the_forms(
    web: TestClient, db: Database, user: UserFactory, client: TestClient, actors: Actors
) -> None:
    page_id = trigger(db, "k1", "orders API down")
    csrf = signed_in(web, user, "sue", "security")

    acked = web.post(
        f"/oncall/pages/{page_id}/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert acked.status_code == 303
    assert acked.headers["location"] == "/oncall"
    after = web.get("/oncall")
    assert flash_text(after) == "Acknowledged: orders API down (now acknowledged)."
    assert PAGE_ROW.findall(after.text) == [(page_id, "acknowledged")]
    assert "data-flash" not in web.get("/oncall").text  # shown once
    api = client.get(f"/api/v1/oncall/pages/{page_id}", headers=actors.ops).json()
    assert api["status"] == "acknowledged"
    assert api["acknowledged_by"] == "sue"

    # Resolving from the page's own page comes back to it, with the timeline grown.
    resolved = web.post(
        f"/oncall/pages/{page_id}/resolve",
        data={"csrf_token": csrf, "back": "page"},
        follow_redirects=False,
    )
    assert resolved.headers["location"] == f"/oncall/pages/{page_id}"
    detail = web.get(f"/oncall/pages/{page_id}")
    assert flash_text(detail) == "Resolved: orders API down (now resolved)."
    events = re.findall(r'<tr data-event="([^"]+)"', detail.text)
    assert events == ["triggered", "acknowledged", "resolved"]
    assert "by sue" in detail.text
    assert 'data-action="resolve"' not in detail.text  # nothing left to answer
    assert status_of(db, page_id) == "resolved"
    assert PAGE_ROW.findall(section(web.get("/oncall").text, "resolved-pages")) == [
        (page_id, "resolved")
    ]


def test_answers_are_refused_without_the_token_or_the_role(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    page_id = trigger(db, "k1", "orders API down")
    csrf = signed_in(web, user, "oli", "ops_engineer")
    for verb in ("acknowledge", "resolve"):
        for data in ({}, {"csrf_token": "forged"}):
            refused = web.post(f"/oncall/pages/{page_id}/{verb}", data=data)
            assert refused.status_code == 403
            assert "did not come from this site" in refused.text
    assert status_of(db, page_id) == "triggered"

    csrf = signed_in(web, user, "ada", "auditor")
    for verb in ("acknowledge", "resolve"):
        refused = web.post(f"/oncall/pages/{page_id}/{verb}", data={"csrf_token": csrf})
        assert refused.status_code == 403
        assert f"do not allow you to {verb} pages" in refused.text
    assert status_of(db, page_id) == "triggered"


def test_unknown_and_forged_page_ids_are_the_404_page(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    csrf = signed_in(web, user, "oli", "ops_engineer")
    unknown = "01890000-0000-7000-8000-000000000000"
    for path in (f"/oncall/pages/{unknown}", "/oncall/pages/a%00b", "/oncall/pages/" + "x" * 80):
        page = web.get(path)
        assert page.status_code == 404, path
        assert "Traceback" not in page.text
        assert "<h1>Not found</h1>" in page.text
        answered = web.post(path + "/acknowledge", data={"csrf_token": csrf})
        assert answered.status_code == 404, path


def test_a_p1_incident_pages_and_its_page_links_to_the_record(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    make_tenant(db, "acme")
    with db.write() as session:
        record = itil.open_record(
            session,
            kind="incident",
            title="orders API down",
            description="",
            priority=1,
            actor=OLI,
            tenant="acme",
        ).record
        number, record_id = record.number, record.id
    signed_in(web, user, "oli", "ops_engineer")
    ((page_id, status),) = PAGE_ROW.findall(web.get("/oncall").text)
    assert status == "triggered"
    detail = web.get(f"/oncall/pages/{page_id}").text
    assert f'href="/records/{record_id}" data-record' in detail
    assert web.get(f"/records/{record_id}").status_code == 200
    assert number in web.get(f"/records/{record_id}").text


def test_without_a_session_the_pages_send_to_the_login(web: TestClient, db: Database) -> None:
    page_id = trigger(db, "k1", "orders API down")
    for path in ("/oncall", f"/oncall/pages/{page_id}"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")
