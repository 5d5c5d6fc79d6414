"""Notifications: rendered per stakeholder into the outbox, delivered by a real SMTP server.

The SMTP server is ``aiosmtpd`` on 127.0.0.1; "failure" is a server that
answers 4xx/5xx or a port where nothing listens.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient

from tenantops.config import NotifySettings, Settings, SMTPSettings
from tenantops.db import Database
from tenantops.drivers.actions import STAKEHOLDERS, driver_actions
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.drivers.notify.render import render, template_names
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, Registry, StepFailed
from tests.conftest import TokenFactory

HOST = "127.0.0.1"


class Inbox:
    """An aiosmtpd handler that keeps what it accepts; ``refuse`` answers the next DATA."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.refuse: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_settings(base: Settings, port: int, attempts: int = 3) -> Settings:
    smtp = SMTPSettings(
        host=HOST, port=port, sender="ops@tenantops.example", attempts=attempts, backoff_seconds=0
    )
    return base.model_copy(update={"smtp": smtp})


def tenant(name: str = "acme") -> dict[str, Any]:
    return {
        "id": new_id(),
        "name": name,
        "display_name": "ACME Corp",
        "business_owner": "owner@acme.example",
        "contacts": ["ops@acme.example"],
        "compliance_classification": "confidential",
        "region": "eu-central-1",
        "tier": "standard",
        "monthly_budget": 2500,
        "currency": "EUR",
        "ticket_ref": "RITM0000001",
    }


def send(
    actions: Registry, t: dict[str, Any] | None, key: str, **params: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx = ActionContext(
        run_id="run-1",
        step_name="notify",
        tenant_id=t["id"] if t else None,
        params=params,
        idempotency_key=key,
        attempt=1,
        actor="amy",
        inputs={"tenant": t} if t else {},
    )
    result = actions["notify.send"].run(ctx)
    return result.output, result.evidence


# Rendering -------------------------------------------------------------------------------


def test_each_stakeholder_gets_its_own_wording() -> None:
    t = tenant()
    context = {"tenant": t, "vars": {"reason": "unpaid invoices"}, "run_id": "r1"}
    legal = render("suspension", audience="legal", context={**context, "dashboard_url": "x"})
    finance = render("suspension", audience="finance", context={**context, "dashboard_url": "x"})
    owner = render("suspension", audience="tenant_owner", context={**context, "dashboard_url": "x"})

    assert legal[0].startswith("[Legal]")
    assert "confidential" in legal[1]
    assert finance[0].startswith("[Finance]")
    assert "2500 EUR" in finance[1]
    assert owner[0] == "Your tenant acme has been suspended"
    assert all("unpaid invoices" in body for _, body in (legal, finance, owner))


def test_the_onboarding_pack_has_links_contacts_and_cost_controls() -> None:
    subject, body = render(
        "onboarding_pack",
        audience="tenant_owner",
        context={"tenant": tenant(), "vars": {}, "run_id": "r1", "dashboard_url": "https://ops"},
    )
    assert "acme" in subject
    assert "https://ops/tenants/acme" in body
    assert "ops@acme.example" in body
    assert "owner@acme.example" in body
    assert "2500 EUR" in body


def test_the_standard_runbooks_templates_exist() -> None:
    names = template_names()
    for name in ("suspension", "reactivation", "offboarding", "onboarding_pack", "break_glass"):
        assert name in names


# The outbox (no transport) -----------------------------------------------------------------


def test_without_smtp_a_message_is_stored_in_the_outbox(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    t = tenant()

    output, evidence = send(
        actions,
        t,
        "run-1/notify-owner",
        template="suspension",
        to="tenant_owner",
        vars={"reason": "unpaid"},
    )

    assert output["status"] == "stored"
    assert evidence["to"] == ["owner@acme.example"]
    assert evidence["audience"] == "tenant_owner"
    assert evidence["message_id"] == output["message_id"]


def test_stakeholder_roles_resolve_to_configured_addresses(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={"notify": NotifySettings(legal=["legal@corp.example", "dpo@corp.example"])}
    )
    actions = driver_actions(settings, db)
    t = tenant()

    _, legal = send(actions, t, "k1", template="suspension", to="legal")
    _, contacts = send(actions, t, "k2", template="suspension", to="contacts")
    _, direct = send(actions, t, "k3", template="suspension", to=["a@x.example", "b@x.example"])

    assert legal["to"] == ["legal@corp.example", "dpo@corp.example"]
    assert legal["subject"].startswith("[Legal]")
    assert contacts["to"] == ["ops@acme.example"]
    assert direct["to"] == ["a@x.example", "b@x.example"]
    assert direct["audience"] == "direct"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"template": "no_such_template", "to": "legal"}, "no template"),
        ({"template": "suspension", "to": "not-an-address"}, "not e-mail"),
        ({"template": "suspension", "to": []}, "no recipient"),
        ({"to": "legal"}, "needs a 'template'"),
        ({"template": "message", "to": "legal", "vars": {"subject": "s"}}, "failed"),
    ],
)
def test_a_message_that_cannot_be_made_fails_the_step_for_good(
    db: Database, settings: Settings, params: dict[str, Any], says: str
) -> None:
    actions = driver_actions(settings, db)
    with pytest.raises(StepFailed) as caught:
        send(actions, tenant(), "k", **params)
    assert not caught.value.retriable
    assert says in str(caught.value)


def test_a_replayed_step_returns_the_same_message(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    t = tenant()
    first, _ = send(actions, t, "k", template="reactivation", to="tenant_owner")
    again, _ = send(actions, t, "k", template="reactivation", to="tenant_owner")
    assert again == first
    assert OutboxNotifier(db).effect_count(tenant_id=t["id"]) == 1


# SMTP delivery -----------------------------------------------------------------------------


def test_smtp_delivers_once_with_the_outbox_id_as_message_id(
    db: Database, settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    actions = driver_actions(smtp_settings(settings, port), db)
    t = tenant()

    output, evidence = send(actions, t, "k", template="onboarding_pack", to="tenant_owner")
    replay, _ = send(actions, t, "k", template="onboarding_pack", to="tenant_owner")

    assert output["status"] == "sent"
    assert evidence["attempts"] == 1
    assert replay == output
    assert len(inbox.messages) == 1  # the replay did not send again
    envelope = inbox.messages[0]
    assert envelope.mail_from == "ops@tenantops.example"
    assert envelope.rcpt_tos == ["owner@acme.example"]
    mail = message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert mail["Message-ID"] == f"<{output['message_id']}@tenantops>"
    assert mail["Subject"] == "Welcome — your tenant acme is ready"


def test_a_temporary_refusal_is_retried_until_sent(
    db: Database, settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    inbox.refuse = ["451 4.3.0 try again later"]
    actions = driver_actions(smtp_settings(settings, port), db)

    output, evidence = send(actions, tenant(), "k", template="suspension", to="security")

    assert output["status"] == "sent"
    assert evidence["attempts"] == 2
    assert len(inbox.messages) == 1


def test_a_permanent_refusal_fails_at_once_and_shows_as_failed(
    db: Database,
    settings: Settings,
    smtp_server: tuple[Inbox, int],
    client: TestClient,
    auth: TokenFactory,
) -> None:
    inbox, port = smtp_server
    inbox.refuse = ["550 5.1.1 no such mailbox"]
    actions = driver_actions(smtp_settings(settings, port), db)

    with pytest.raises(StepFailed) as caught:
        send(actions, tenant(), "k", template="suspension", to="security")

    assert not caught.value.retriable
    [message] = client.get("/api/v1/notifications", headers=auth("oli", "ops_engineer")).json()[
        "items"
    ]
    assert message["status"] == "failed"
    assert message["attempts"] == 1
    assert "550" in message["last_error"]


def test_an_unreachable_server_is_retried_then_failed_then_sent_when_back(
    db: Database, settings: Settings, client: TestClient, auth: TokenFactory
) -> None:
    port = free_port()  # nothing listens here yet
    actions = driver_actions(smtp_settings(settings, port, attempts=3), db)
    t = tenant()
    ops = auth("oli", "ops_engineer")

    with pytest.raises(StepFailed) as caught:
        send(actions, t, "run-1/notify", template="suspension", to="legal")
    assert caught.value.retriable  # the engine will run the step again

    failed = client.get("/api/v1/notifications", params={"status": "failed"}, headers=ops).json()
    [message] = failed["items"]
    assert message["attempts"] == 3
    assert message["last_error"]

    inbox = Inbox()
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        output, evidence = send(actions, t, "run-1/notify", template="suspension", to="legal")
    finally:
        controller.stop()

    assert output["message_id"] == message["id"]
    assert output["status"] == "sent"
    assert evidence["attempts"] == 4
    assert len(inbox.messages) == 1
    shown = client.get(f"/api/v1/notifications/{message['id']}", headers=ops).json()
    assert shown["status"] == "sent"
    assert shown["sent_at"] is not None


# The read API ------------------------------------------------------------------------------


@pytest.fixture
def outbox(db: Database, settings: Settings) -> dict[str, str]:
    """Three stored messages: two for acme, one for globex; returns tenant ids by name."""
    actions = driver_actions(settings, db)
    acme, globex = tenant("acme"), tenant("globex")
    send(actions, acme, "a1", template="suspension", to="legal")
    send(actions, acme, "a2", template="suspension", to="tenant_owner")
    send(actions, globex, "g1", template="onboarding_pack", to="tenant_owner")
    return {"acme": acme["id"], "globex": globex["id"]}


def test_the_outbox_is_listed_newest_first_and_filtered(
    client: TestClient, auth: TokenFactory, outbox: dict[str, str]
) -> None:
    ops = auth("oli", "ops_engineer")

    everything = client.get("/api/v1/notifications", headers=ops).json()["items"]
    by_name = client.get("/api/v1/notifications", params={"tenant": "acme"}, headers=ops).json()
    by_id = client.get(
        "/api/v1/notifications", params={"tenant": outbox["globex"]}, headers=ops
    ).json()
    sent = client.get("/api/v1/notifications", params={"status": "sent"}, headers=ops).json()

    # Ids are time-ordered to the millisecond: messages of one millisecond may come in any order.
    assert sorted(m["tenant_name"] for m in everything) == ["acme", "acme", "globex"]
    millis = [m["created_at"][:23] for m in everything]
    assert millis == sorted(millis, reverse=True)
    assert {m["audience"] for m in by_name["items"]} == {"legal", "tenant_owner"}
    assert [m["template"] for m in by_id["items"]] == ["onboarding_pack"]
    assert sent["items"] == []
    globex = next(m for m in everything if m["tenant_name"] == "globex")
    assert globex["body"]
    assert globex["recipients"] == ["owner@acme.example"]


def test_the_outbox_pages_with_a_cursor(
    client: TestClient, auth: TokenFactory, outbox: dict[str, str]
) -> None:
    ops = auth("oli", "ops_engineer")
    first = client.get("/api/v1/notifications", params={"limit": 2}, headers=ops).json()
    rest = client.get(
        "/api/v1/notifications", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ops
    ).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    bad = client.get("/api/v1/notifications", params={"cursor": "nope"}, headers=ops)
    assert bad.status_code == 422


@pytest.mark.usefixtures("outbox")
def test_the_outbox_needs_a_staff_role(client: TestClient, auth: TokenFactory) -> None:
    assert client.get("/api/v1/notifications").status_code == 401
    owner = auth("olga", "tenant_owner", tenant="acme")
    refused = client.get("/api/v1/notifications", headers=owner)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    for role in ("auditor", "security", "governance", "admin", "account_manager"):
        assert client.get("/api/v1/notifications", headers=auth("x", role)).status_code == 200


def test_an_unknown_message_is_a_404_problem(client: TestClient, auth: TokenFactory) -> None:
    r = client.get(f"/api/v1/notifications/{new_id()}", headers=auth("oli", "ops_engineer"))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_an_unknown_status_filter_is_a_422(client: TestClient, auth: TokenFactory) -> None:
    r = client.get(
        "/api/v1/notifications", params={"status": "lost"}, headers=auth("oli", "ops_engineer")
    )
    assert r.status_code == 422


# ``message`` is the free-form template: its subject and body are the vars themselves.
@pytest.mark.parametrize("name", [n for n in template_names() if n != "message"])
def test_every_template_renders_for_every_stakeholder_with_no_vars(name: str) -> None:
    """A step that passes fewer vars than a template knows still sends a readable message."""
    for audience in STAKEHOLDERS:
        subject, body = render(
            name,
            audience=audience,
            context={"tenant": tenant(), "vars": {}, "run_id": "r1", "dashboard_url": ""},
        )
        assert subject
        assert body.strip()
