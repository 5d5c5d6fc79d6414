"""ServiceNow's Table API against recorded exchanges replayed locally, and the ITIL records.

The replaying server is the one the Argo CD tests use: each request must be
the recorded one (method, path, query parameters, body keys, an
``Authorization`` header), and every scripted exchange must be asked for.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tenantops.auth.principal import SYSTEM
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.itsm.database import DatabaseItsm
from tenantops.drivers.itsm.port import Itsm, Ticket, TicketKind
from tenantops.drivers.itsm.servicenow import (
    ServiceNowError,
    ServiceNowItsm,
    correlation_of,
)
from tenantops.drivers.itsm.settings import ServiceNowSettings
from tenantops.itil import service as itil
from tests.drivers.test_argocd import Replay, free_port, replay  # noqa: F401
from tests.itil.helpers import make_tenant

CONTRACTS = Path(__file__).parent / "contracts" / "servicenow"
RECORDS: dict[str, Any] = json.loads((CONTRACTS / "records.json").read_text())
ERRORS: dict[str, Any] = json.loads((CONTRACTS / "errors.json").read_text())
PASSWORD = "sEcReTpAsSwOrD"
TOKEN = "sEcReToAuThToKeN"
KEY = RECORDS["correlation_id"]
SYS_ID = RECORDS["sys_id"]
# A later step of the run that opened KEY's record, as the engine names it (<run>/<step>).
STEP = "run-7f3a/step-5"


def ex(name: str) -> dict[str, Any]:
    found: dict[str, Any] = {**RECORDS["exchanges"], **ERRORS["exchanges"]}[name]
    return found


def settings(url: str, **kwargs: Any) -> ServiceNowSettings:
    # The instance URL must be https; the replay is plain HTTP on 127.0.0.1.
    base = ServiceNowSettings(
        username="tenantops.integration", password=SecretStr(PASSWORD), **kwargs
    )
    return base.model_copy(update={"instance_url": url})


@pytest.fixture
def snow(replay: Replay) -> Iterator[ServiceNowItsm]:  # noqa: F811
    client = ServiceNowItsm(settings(replay.url))
    yield client
    client.close()


def open_incident(itsm: Itsm, key: str = KEY) -> Ticket:
    return itsm.open(
        TicketKind.INCIDENT,
        tenant="acme",
        short_description="Tenant acme suspended: cost overrun",
        description="Spend passed 150% of budget; queue access paused by run 7f3a.",
        idempotency_key=key,
        fields={"urgency": "2", "impact": "2"},
    )


def test_open_looks_up_the_correlation_id_then_creates_a_record_linked_to_the_tenant(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("lookup_incident_none"), ex("create_incident"))
    ticket = open_incident(snow)

    assert (ticket.number, ticket.id, ticket.state) == ("INC0010023", SYS_ID, "1")
    assert (ticket.tenant, ticket.correlation_id, ticket.replayed) == ("acme", KEY, False)
    assert ticket.link.endswith(f"/nav_to.do?uri=incident.do?sys_id={SYS_ID}")
    lookup, create = replay.seen
    assert lookup.query["sysparm_query"].startswith(f"correlation_id={KEY}^")
    assert create.body["correlation_id"] == KEY
    assert create.body["correlation_display"] == "tenantops:acme"
    assert create.body["urgency"] == "2"
    expected = base64.b64encode(f"tenantops.integration:{PASSWORD}".encode()).decode()
    assert create.headers["authorization"] == f"Basic {expected}"
    assert create.headers["accept"] == "application/json"
    replay.assert_done()


def test_a_re_executed_open_finds_its_record_and_opens_no_second_one(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("lookup_incident_found"))
    ticket = open_incident(snow)
    assert ticket.replayed
    assert ticket.number == "INC0010023"
    assert [s.method for s in replay.seen] == ["GET"]  # no POST
    replay.assert_done()


@pytest.mark.parametrize(
    ("kind", "lookup", "create", "number"),
    [
        (TicketKind.CHANGE, "lookup_change_none", "create_change", "CHG0030042"),
        (TicketKind.PROBLEM, "lookup_problem_none", "create_problem", "PRB0040007"),
    ],
)
def test_changes_and_problems_go_to_their_tables(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
    kind: TicketKind,
    lookup: str,
    create: str,
    number: str,
) -> None:
    replay.script(ex(lookup), ex(create))
    ticket = snow.open(
        kind,
        tenant="acme",
        short_description="Tenant acme suspended: cost overrun",
        description="d",
        idempotency_key=KEY,
    )
    assert (ticket.kind, ticket.number) == (kind, number)
    replay.assert_done()


def test_update_patches_state_and_a_work_note_marked_with_the_key_then_get_reads_it(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(
        ex("lookup_incident_found"), ex("journal_none"), ex("update_incident"), ex("get_incident")
    )
    ticket = open_incident(snow)
    assert ticket.version == 0  # the instance's sys_mod_count: never updated yet
    updated = snow.update(
        ticket, idempotency_key="run-7f3a:step-5", state="2", work_notes="Queue access paused."
    )
    assert (updated.state, updated.version) == ("2", 1)  # one update since
    assert snow.get(updated).state == "2"
    assert "sys_mod_count" in replay.seen[2].query["sysparm_fields"].split(",")
    patch = replay.seen[2]
    assert patch.body == {
        "state": "2",
        "work_notes": "Queue access paused.\n[tenantops run-7f3a:step-5]",
    }
    replay.assert_done()


def test_a_re_run_update_does_not_post_its_work_note_twice(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("journal_found"), ex("update_incident_state_only"))
    ticket = Ticket(TicketKind.INCIDENT, SYS_ID, "INC0010023", "1", "acme", KEY)
    snow.update(ticket, idempotency_key="run-7f3a:step-5", state="2", work_notes="paused")
    assert replay.seen[1].body == {"state": "2"}
    replay.assert_done()


def test_a_journal_the_user_may_not_read_means_the_note_is_posted(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("journal_forbidden"), ex("update_incident"))
    ticket = Ticket(TicketKind.INCIDENT, SYS_ID, "INC0010023", "1", "acme", KEY)
    snow.update(ticket, idempotency_key="run-7f3a:step-5", state="2", work_notes="paused")
    assert "[tenantops run-7f3a:step-5]" in replay.seen[1].body["work_notes"]
    replay.assert_done()


def test_an_oauth_token_is_sent_as_a_bearer(replay: Replay) -> None:  # noqa: F811
    client = ServiceNowItsm(
        ServiceNowSettings(token=SecretStr(TOKEN)).model_copy(update={"instance_url": replay.url})
    )
    replay.script(ex("lookup_incident_found"))
    open_incident(client)
    assert replay.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    client.close()
    replay.assert_done()


def test_keys_that_do_not_fit_correlation_id_are_hashed_stably() -> None:
    assert correlation_of("run-1:step-2") == "run-1:step-2"
    long = "k" * 150
    assert correlation_of(long) == correlation_of(long)
    assert len(correlation_of(long)) <= 100
    assert "^" not in correlation_of("a^ORb=c")  # would change the encoded query


def test_fields_the_adapter_owns_cannot_be_overridden(snow: ServiceNowItsm) -> None:
    with pytest.raises(ServiceNowError) as raised:
        snow.open(
            TicketKind.INCIDENT,
            tenant="acme",
            short_description="s",
            description="d",
            idempotency_key=KEY,
            fields={"correlation_id": "other"},
        )
    assert raised.value.retry is Retry.PERMANENT


def call_for(snow: ServiceNowItsm, request: dict[str, Any]) -> Any:
    ticket = Ticket(TicketKind.INCIDENT, SYS_ID, "INC0010023", "1", "acme", KEY)
    if request["method"] == "PATCH":
        return lambda: snow.update(ticket, idempotency_key="k", state="2")
    if request["path"].endswith(SYS_ID):
        return lambda: snow.get(ticket)
    return lambda: open_incident(snow)


@pytest.mark.parametrize("name", sorted(ERRORS["exchanges"]))
def test_each_recorded_error_maps_to_its_verdict(
    snow: ServiceNowItsm,
    replay: Replay,  # noqa: F811
    name: str,
) -> None:
    exchange = ERRORS["exchanges"][name]
    if exchange["request"]["method"] == "POST":
        replay.script(ex("lookup_incident_none"))
    replay.script(exchange)
    call = call_for(snow, exchange["request"])
    with pytest.raises(ServiceNowError) as raised:
        call()
    error = raised.value
    assert error.retry is Retry(exchange["verdict"])
    assert error.status == exchange["response"]["status"]
    assert error.retry_after == exchange.get("retry_after")
    body = exchange["response"]["body"]
    if isinstance(body, dict):
        assert body["error"]["message"] in str(error)
    replay.assert_done()


def test_no_server_is_retriable() -> None:
    client = ServiceNowItsm(settings(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ServiceNowError) as raised:
        open_incident(client)
    assert raised.value.retry is Retry.RETRIABLE
    [row] = client.check()
    assert (row.check, row.ok) == ("servicenow reachable", False)
    client.close()


def test_no_password_or_token_in_errors_reprs_or_logs(
    replay: Replay,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = ServiceNowItsm(settings(replay.url))
    bearer = ServiceNowItsm(
        ServiceNowSettings(token=SecretStr(TOKEN)).model_copy(update={"instance_url": replay.url})
    )
    replay.script(ex("unauthorized"), ex("unauthorized"))
    errors = []
    for client in (basic, bearer):
        with pytest.raises(ServiceNowError) as raised:
            open_incident(client)
        errors.append(raised.value)
        client.close()
    shown = [repr(basic), repr(bearer), repr(basic.settings), repr(bearer.settings), caplog.text]
    shown += [str(e) for e in errors] + [repr(e) for e in errors]
    assert not [s for s in shown if "sEcReT" in s]
    replay.assert_done()


def test_doctor_reads_each_table(snow: ServiceNowItsm, replay: Replay) -> None:  # noqa: F811
    replay.script(ex("read_incident"), ex("read_change_request"), ex("read_problem"))
    rows = snow.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("servicenow reachable", True),
        ("servicenow login", True),
        ("servicenow can read incident", True),
        ("servicenow can read change_request", True),
        ("servicenow can read problem", True),
    ]
    replay.assert_done()


def test_doctor_says_how_to_fix_a_refused_login(snow: ServiceNowItsm, replay: Replay) -> None:  # noqa: F811
    unauthorized = {**ex("unauthorized"), "request": ex("read_incident")["request"]}
    replay.script(unauthorized)
    rows = snow.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("servicenow reachable", True),
        ("servicenow login", False),
    ]
    assert "TENANTOPS_SERVICENOW__" in rows[-1].fix
    replay.assert_done()


def test_settings_take_one_way_to_log_in() -> None:
    with pytest.raises(ValidationError):
        ServiceNowSettings(username="u", token=SecretStr(TOKEN))
    with pytest.raises(ValidationError):
        ServiceNowSettings(instance_url="http://acme.service-now.com")


# The ITIL records (the embedded default) ------------------------------------------------


def test_the_records_open_once_per_key_and_note_once_per_key(db: Database) -> None:
    make_tenant(db, "acme")
    itsm = DatabaseItsm(db)
    first = open_incident(itsm)
    again = open_incident(itsm)
    assert again.replayed
    assert again.id == first.id
    assert first.number == "INC0000001"
    updated = itsm.update(first, idempotency_key=STEP, state="2", work_notes="paused")
    itsm.update(first, idempotency_key=STEP, state="2", work_notes="paused")
    assert itsm.get(first).state == updated.state == "in_progress"
    with db.read() as session:
        notes = itil.timeline(session, itil.get(session, principal=SYSTEM, ref=first.id))
        assert [n.kind for n in notes] == ["work_note", "state"]
    with pytest.raises(DriverError) as mismatch:
        itsm.open(
            TicketKind.PROBLEM,
            tenant="acme",
            short_description="s",
            description="d",
            idempotency_key=KEY,
        )
    assert mismatch.value.retry is Retry.PERMANENT
    with pytest.raises(DriverError, match="no incident state"):
        itsm.update(first, idempotency_key="run-7f3a/step-6", state="99")
    with pytest.raises(DriverError, match="no tenant"):
        itsm.open(
            TicketKind.INCIDENT,
            tenant="nobody",
            short_description="s",
            description="d",
            idempotency_key="other",
        )


# One contract for every adapter of the port ------------------------------------------------


@pytest.fixture(params=["database", "servicenow"])
def any_itsm(
    request: pytest.FixtureRequest,
    replay: Replay,  # noqa: F811
    db: Database,
) -> Iterator[Itsm]:
    if request.param == "database":
        make_tenant(db, "acme")
        yield DatabaseItsm(db)
        return
    replay.script(
        ex("lookup_incident_none"),
        ex("create_incident"),
        ex("lookup_incident_found"),
        ex("journal_none"),
        ex("update_incident"),
        ex("get_incident"),
    )
    client = ServiceNowItsm(settings(replay.url))
    yield client
    client.close()
    replay.assert_done()


def test_contract_one_record_per_key_linked_to_the_tenant_and_updated_in_place(
    any_itsm: Itsm,
) -> None:
    first = open_incident(any_itsm)
    again = open_incident(any_itsm)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.id == first.id
    assert again.number == first.number
    assert first.tenant == "acme"
    assert first.kind is TicketKind.INCIDENT
    updated = any_itsm.update(first, idempotency_key=STEP, state="2", work_notes="paused")
    assert updated.id == first.id
    # ServiceNow answers its code, the ITIL records the name of the same state.
    assert updated.state in ("2", "in_progress")
    assert any_itsm.get(updated).state == updated.state
