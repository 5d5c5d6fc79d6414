"""The ITIL records pages as their users meet them: the list, a record, moving it, notes.

Records are opened through the ITIL service (as the API and runbooks do); the
pages are read and their forms posted with the session of a local user, and
the result read back through the service. A tenant owner must see nothing of
another tenant's records on any page. Both stores.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.itil import service as itil
from tenantops.oncall import escalator
from tenantops.oncall import service as oncall
from tenantops.wiring import build_actions
from tests.conftest import Clock
from tests.itil.helpers import ADMIN, OPS, make_tenant
from tests.web.conftest import UserFactory, sign_in

ROW = re.compile(r'<tr data-record="([^"]+)"')


def signed_in(web: TestClient, user: UserFactory, name: str, *roles: str, **kw: Any) -> str:
    user(name, *roles, **kw)
    web.cookies.clear()  # whoever was signed in before
    return sign_in(web, name)


def open_record(
    db: Database,
    kind: str,
    title: str,
    *,
    tenant: str | None = None,
    priority: int = 3,
    actor: Principal = OPS,
    **extra: Any,
) -> str:
    with db.write() as session:
        return itil.open_record(
            session,
            kind=kind,
            title=title,
            description=extra.pop("description", ""),
            priority=priority,
            actor=actor,
            tenant=tenant,
            **extra,
        ).record.number


def move(db: Database, number: str, *states: str, actor: Principal = OPS) -> None:
    with db.write() as session:
        for state in states:
            itil.transition(session, actor=actor, ref=number, to=state, resolution="done")


def state_of(db: Database, number: str) -> tuple[str, int]:
    with db.read() as session:
        record = itil.get(session, principal=ADMIN, ref=number)
        return record.state, record.version


def rows(page: httpx.Response) -> list[str]:
    return ROW.findall(page.text)


def error_of(page: httpx.Response) -> str:
    found = re.search(r"data-error>([^<]*)<", page.text)
    assert found, page.text
    return unescape(found.group(1))


def flash_text(page: httpx.Response) -> str:
    found = re.search(r'data-flash="(ok|error)">\s*<p>([^<]*)</p>', page.text)
    assert found, page.text
    return unescape(found.group(2))


# --- the list -----------------------------------------------------------------------------


def test_the_list_pages_by_50_newest_first_and_filters(
    web: TestClient, db: Database, user: UserFactory, clock: Clock
) -> None:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    numbers = []
    with db.write() as session:
        for i in range(51):
            clock.advance(seconds=1)  # ids order by time: one a second keeps the order known
            opened = itil.open_record(
                session,
                kind="incident",
                title=f"slow {i}",
                description="",
                priority=3,
                actor=OPS,
                tenant="acme",
            )
            numbers.append(opened.record.number)
    clock.advance(seconds=1)
    change = open_record(db, "change", "new node pool", tenant="globex")
    clock.advance(seconds=1)
    problem = open_record(db, "problem", "leaky connection pool")
    move(db, numbers[0], "in_progress", "resolved")
    signed_in(web, user, "ada", "auditor")

    first = web.get("/records")
    assert first.status_code == 200
    assert 'href="/records" aria-current="page">Records</a>' in first.text
    newest_first = [problem, change, *reversed(numbers)]
    assert rows(first) == newest_first[:50]
    assert 'data-page="first"' not in first.text
    next_link = re.search(r'href="([^"]+)" data-page="next"', first.text)
    assert next_link
    second = web.get(unescape(next_link.group(1)))
    assert rows(second) == newest_first[50:]
    assert 'data-page="next"' not in second.text
    assert 'data-page="first"' in second.text

    assert rows(web.get("/records", params={"kind": "change"})) == [change]
    assert rows(web.get("/records", params={"tenant": "globex"})) == [change]
    assert rows(web.get("/records", params={"state": "resolved"})) == [numbers[0]]
    opened = rows(web.get("/records", params={"open": "1", "kind": "incident"}))
    assert numbers[0] not in opened
    assert len(opened) == 50
    paged = web.get("/records", params={"open": "1"})
    assert "open=1" in unescape(paged.text)  # the next page keeps the filter
    listed = web.get("/records", params={"tenant": "globex"}).text
    assert 'href="/tenants/globex"' in listed
    assert "new node pool" in listed

    wrong = web.get("/records", params={"kind": "outage"})
    assert wrong.status_code == 422
    assert error_of(wrong) == "There is no kind of record 'outage'."
    wrong = web.get("/records", params={"state": "exploded"})
    assert wrong.status_code == 422
    assert rows(wrong) == []
    nobody = web.get("/records", params={"tenant": "no-such-tenant"})
    assert nobody.status_code == 404
    assert rows(nobody) == []
    forged = web.get("/records", params={"cursor": "not a cursor!"})
    assert forged.status_code == 422
    assert "cursor is not one this API issued" in forged.text


def test_a_tenant_owner_sees_only_their_tenants_records(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    acme = make_tenant(db, "acme")
    make_tenant(db, "globex")
    mine = open_record(db, "incident", "acme is slow", tenant="acme", priority=1)  # paged
    theirs = open_record(db, "incident", "globex is down", tenant="globex")
    platform = open_record(db, "problem", "shared ingress flaps")
    signed_in(web, user, "olga", "tenant_owner", tenant=acme)

    listed = web.get("/records")
    assert rows(listed) == [mine]
    assert 'id="f-tenant"' not in listed.text  # no tenant filter to play with
    assert rows(web.get("/records", params={"tenant": "globex"})) == [mine]  # ignored
    assert web.get(f"/records/{mine}").status_code == 200
    for number in (theirs, platform):
        page = web.get(f"/records/{number}")
        assert page.status_code == 404
        assert "globex is down" not in page.text
        assert "shared ingress flaps" not in page.text
    own = web.get(f"/records/{mine}").text
    assert 'data-form="transition"' not in own  # tenant owners read, staff write
    assert 'data-form="note"' not in own
    assert "data-oncall-page" not in own  # its on-call page is for staff
    tenant_page = web.get("/tenants/acme").text
    assert ROW.findall(tenant_page) == [mine]
    assert "data-open-page" not in tenant_page


# --- a record -----------------------------------------------------------------------------


def test_the_record_page_shows_the_record_its_links_and_timeline(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    make_tenant(db, "acme")
    problem = open_record(db, "problem", "leaky connection pool")
    number = open_record(
        db,
        "incident",
        "orders API slow",
        tenant="acme",
        description="p99 over 2 s since 09:00",
        problem=problem,
        external={"system": "servicenow", "id": "INC0012345", "link": "https://sn.example/x"},
    )
    with db.write() as session:
        itil.assign(session, actor=OPS, ref=number, assigned_to="team-db")
        itil.add_note(session, actor=OPS, ref=number, text="restarted the pool")
    move(db, number, "in_progress", "resolved")
    signed_in(web, user, "ada", "auditor")

    page = web.get(f"/records/{number}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert f"<h1>{number} " in text
    assert 'data-state="resolved"' in text
    assert "3 moderate" in text
    assert '<a href="/tenants/acme" data-tenant>acme</a>' in text
    assert "team-db" in text
    assert f'<a href="/records/{problem}" data-problem>{problem}</a>' in text
    assert (
        '<a href="https://sn.example/x" rel="noopener noreferrer" data-external>INC0012345' in text
    )
    assert "p99 over 2 s since 09:00" in text
    assert '<p class="record-text" data-resolution>done</p>' in text
    kinds = re.findall(r'<tr data-note="([^"]+)"', text)
    assert kinds == ["assignment", "work_note", "state", "state"]
    assert "restarted the pool" in text
    assert "in_progress -> resolved" in text
    # An auditor reads; the forms are for those who may write.
    assert 'data-form="transition"' not in text
    assert 'data-form="note"' not in text
    # By id as well as by number; an unknown or forged one is the 404 page.
    with db.read() as session:
        record_id = itil.get(session, principal=ADMIN, ref=number).id
    assert web.get(f"/records/{record_id}").status_code == 200
    for ref in ("INC9999999", "no-such-record", "a%00b", "x" * 50):
        missing = web.get(f"/records/{ref}")
        assert missing.status_code == 404, ref
        assert "<h1>Not found</h1>" in missing.text
        assert "Traceback" not in missing.text


def test_moving_an_incident_through_the_form_with_every_refusal(
    web: TestClient, db: Database, user: UserFactory, settings: Settings
) -> None:
    make_tenant(db, "acme")
    number = open_record(db, "incident", "orders API down", tenant="acme", priority=1)
    send = build_actions(settings, db)["notify.send"]
    escalator.escalate_due(db, send, outbox=OutboxNotifier(db).queued)  # level 1 is told
    csrf = signed_in(web, user, "oli", "ops_engineer")

    page = web.get(f"/records/{number}").text
    assert re.findall(r'data-move="([^"]+)"', page) == ["cancelled", "in_progress", "resolved"]
    with db.read() as session:  # the P1 paged on-call (the ITIL hook): the record links it
        (paged,) = oncall.list_pages(session).items
    link = f'<a href="/oncall/pages/{paged.id}" data-oncall-page="{paged.id}">'
    assert f"<dt>On-call page</dt><dd>{link}triggered, level 1</a>" in page
    moved = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "1", "state": "in_progress", "note": "on it"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/records/{number}"
    after = web.get(f"/records/{number}")
    assert flash_text(after) == f"{number} is now in progress."
    assert state_of(db, number) == ("in_progress", 2)
    assert "on it" in after.text
    # Taking the P1 in hand acknowledged its page (the ITIL hook), seen on the tenant page.
    with db.read() as session:
        (paged,) = oncall.list_pages(session).items
    assert paged.status == "acknowledged"
    assert f'data-open-page="{paged.id}"' in web.get("/tenants/acme").text
    assert f"{link}acknowledged, level 1</a>" in after.text

    # Resolving needs a resolution: said next to the form, nothing changed.
    refused = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "2", "state": "resolved", "resolution": " "},
    )
    assert refused.status_code == 422
    assert "needs a resolution" in error_of(refused)
    assert state_of(db, number) == ("in_progress", 2)
    # A form shown before someone else moved the record is stale: 412.
    stale = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "1", "state": "resolved", "resolution": "x"},
    )
    assert stale.status_code == 412
    assert "read it again" in error_of(stale)
    # A state the machine does not allow from here: 422 naming the allowed ones.
    illegal = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "2", "state": "closed"},
    )
    assert illegal.status_code == 422
    assert "allowed: cancelled, on_hold, resolved" in error_of(illegal)
    assert state_of(db, number) == ("in_progress", 2)

    done = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "2", "state": "resolved", "resolution": "rolled back"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert state_of(db, number) == ("resolved", 3)
    assert "data-open-page" not in web.get("/tenants/acme").text  # its page is resolved


def test_a_change_is_authorised_only_by_whom_the_service_lets(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    make_tenant(db, "acme")
    number = open_record(db, "change", "bigger node pool", tenant="acme", actor=ADMIN)
    move(db, number, "assess", "authorize")

    signed_in(web, user, "oli", "ops_engineer")
    page = web.get(f"/records/{number}").text
    assert 'data-form="transition"' not in page
    assert "Governance or an admin authorises this change." in page
    assert 'data-form="note"' in page  # ops may still annotate it

    signed_in(web, user, "root", "admin")  # who opened it
    page = web.get(f"/records/{number}").text
    assert 'data-form="transition"' not in page
    assert "You opened this change: a different person must authorise it" in page

    csrf = signed_in(web, user, "gus", "governance")
    page = web.get(f"/records/{number}").text
    assert re.findall(r'data-move="([^"]+)"', page) == ["cancelled", "scheduled"]
    assert 'data-form="note"' not in page  # governance authorises, it does not annotate
    moved = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "3", "state": "scheduled"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert state_of(db, number)[0] == "scheduled"
    # Past authorisation governance may not move it (the service's rule, shown as the API's 403).
    refused = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "version": "4", "state": "implement"},
    )
    assert refused.status_code == 403
    assert "may not change ITIL records" in error_of(refused)
    assert state_of(db, number)[0] == "scheduled"


def test_work_notes_through_the_form_and_who_may_not(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    number = open_record(db, "problem", "leaky connection pool")
    csrf = signed_in(web, user, "sue", "security")
    added = web.post(
        f"/records/{number}/notes",
        data={"csrf_token": csrf, "text": "  heap dump attached  "},
        follow_redirects=False,
    )
    assert added.status_code == 303
    page = web.get(f"/records/{number}")
    assert flash_text(page) == f"Work note added to {number}."
    assert re.search(r"<td class=\"record-text\">heap dump attached</td>\s*<td>sue</td>", page.text)
    empty = web.post(f"/records/{number}/notes", data={"csrf_token": csrf, "text": "   "})
    assert empty.status_code == 422
    assert "needs text" in error_of(empty)

    csrf = signed_in(web, user, "ada", "auditor")
    refused = web.post(f"/records/{number}/notes", data={"csrf_token": csrf, "text": "hi"})
    assert refused.status_code == 403
    assert "do not allow you to annotate records" in refused.text
    moved = web.post(f"/records/{number}/transition", data={"csrf_token": csrf, "state": "assess"})
    assert moved.status_code == 403
    with db.read() as session:
        notes = itil.timeline(session, itil.get(session, principal=ADMIN, ref=number))
        assert [n.text for n in notes] == ["heap dump attached"]
    assert state_of(db, number)[0] == "new"


def test_forms_without_the_csrf_token_and_unknown_records_change_nothing(
    web: TestClient, db: Database, user: UserFactory
) -> None:
    number = open_record(db, "incident", "orders API slow")
    csrf = signed_in(web, user, "oli", "ops_engineer")
    for data in ({}, {"csrf_token": "forged"}):
        for path, form in (
            (f"/records/{number}/transition", {"state": "in_progress"}),
            (f"/records/{number}/notes", {"text": "hi"}),
        ):
            refused = web.post(path, data={**data, **form})
            assert refused.status_code == 403
            assert "did not come from this site" in refused.text
    assert state_of(db, number) == ("new", 1)
    for ref in ("INC9999999", "a%00b"):
        for path, form in (
            (f"/records/{ref}/transition", {"state": "in_progress"}),
            (f"/records/{ref}/notes", {"text": "hi"}),
        ):
            missing = web.post(path, data={"csrf_token": csrf, **form})
            assert missing.status_code == 404, path
    forged = web.post(
        f"/records/{number}/transition",
        data={"csrf_token": csrf, "state": "in_progress", "version": "1x"},
    )
    assert forged.status_code == 422
    assert "version is not a number" in error_of(forged)
    assert state_of(db, number) == ("new", 1)


def test_the_tenant_page_lists_its_records_and_staff_see_its_open_pages(
    web: TestClient, db: Database, user: UserFactory, clock: Clock
) -> None:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    inc = open_record(db, "incident", "orders API down", tenant="acme", priority=2)
    clock.advance(minutes=1)
    chg = open_record(db, "change", "bigger node pool", tenant="acme")
    other = open_record(db, "incident", "globex slow", tenant="globex")
    signed_in(web, user, "gus", "governance")

    page = web.get("/tenants/acme").text
    assert '<h2 id="records-title">Incidents, changes and problems</h2>' in page
    assert ROW.findall(page) == [chg, inc]
    assert f'<a href="/records/{chg}">{chg}</a>' in page
    assert other not in page
    assert "orders API down" in page  # the record, and its page
    assert len(re.findall(r"data-open-page=", page)) == 1
    assert "data-more-records" not in page

    signed_in(web, user, "fin", "finance")  # reads neither records nor pages
    page = web.get("/tenants/acme").text
    assert 'id="records-title"' not in page
    assert 'href="/records"' not in page


def test_without_a_session_the_pages_send_to_the_login(web: TestClient, db: Database) -> None:
    number = open_record(db, "incident", "orders API slow")
    for path in ("/records", f"/records/{number}"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")
