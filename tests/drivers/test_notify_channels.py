"""Notification channels: Slack, Teams, signed webhooks and PagerDuty against local servers.

One ``http.server`` on 127.0.0.1 plays every vendor. It checks each request
against the vendor's documented shape (a request that does not fit is answered
the way the vendor refuses it, and recorded as a problem) and answers like the
vendor: by default success, or the replies a test scripts. The recorded
exchanges in ``tests/drivers/contracts/*.json`` (documented request example,
responses and what each must mean for a retry) drive the error-mapping tests.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from tenantops.config import SMTPSettings
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.drivers.notify.pagerduty import PagerDutyEvents
from tenantops.drivers.notify.port import Envelope, OutgoingMessage, Transport
from tenantops.drivers.notify.routing import RoutingTransport, is_recipient, parse_recipient
from tenantops.drivers.notify.settings import ChannelsSettings, PagerDutyChannel, WebhookChannel
from tenantops.drivers.notify.slack import SlackWebhook
from tenantops.drivers.notify.smtp import SmtpTransport
from tenantops.drivers.notify.teams import TeamsWebhook
from tenantops.drivers.notify.webhook import ChannelError, SignedWebhook, http_client
from tenantops.events.webhooks import verify
from tenantops.kit.clock import set_clock
from tenantops.notifications.models import OutboxMessage
from tests.drivers.test_notify import Inbox

HOST = "127.0.0.1"
CONTRACTS = Path(__file__).parent / "contracts"
ROUTING_KEY = "R0123456789abcdefghijklmnopqrstu"  # 32 characters, as PagerDuty wants
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK_SECRET_PATH = "/slack/services/T0001/B0001/sEcReTsLaCkToKeN"
TEAMS_SECRET_PATH = "/teams/workflows/abc/triggers/manual/paths/invoke?sig=sEcReTtEaMsSiG"
SEVERITIES = {"critical", "error", "warning", "info"}


def contract(vendor: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / f"{vendor}.json").read_text())
    return loaded


# The vendors ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    vendor: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def slack_problems(req: Request) -> list[str]:
    """Slack's incoming-webhook payload: ``text`` and Block Kit blocks within their limits."""
    p = req.json
    found = [] if _text(p.get("text"), 40_000) else ["text missing"]
    blocks = p.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return [*found, "blocks must be a list of 1-50"]
    header, *sections = blocks
    if header.get("type") != "header" or header["text"].get("type") != "plain_text":
        found.append("first block is not a plain_text header")
    if not _text(header["text"].get("text"), 150):
        found.append("header text over 150 characters")
    for s in sections:
        if s.get("type") != "section" or s["text"].get("type") != "mrkdwn":
            found.append(f"not a mrkdwn section: {s}")
        elif not _text(s["text"].get("text"), 3000):
            found.append("section text over 3000 characters")
    return found


def teams_problems(req: Request) -> list[str]:
    """A Workflows webhook message carrying one Adaptive Card 1.4 made of TextBlocks."""
    p = req.json
    if p.get("type") != "message" or not isinstance(p.get("attachments"), list):
        return ["not a message with attachments"]
    [attachment] = p["attachments"]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return [f"contentType {attachment.get('contentType')!r}"]
    card = attachment["content"]
    found = []
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        found.append("not an AdaptiveCard 1.4")
    if "adaptivecards.io/schemas/adaptive-card.json" not in card.get("$schema", ""):
        found.append("no $schema")
    if not card.get("body"):
        found.append("empty card")
    for block in card.get("body", []):
        if block.get("type") != "TextBlock" or not isinstance(block.get("text"), str):
            found.append(f"not a TextBlock: {block}")
    return found


def pagerduty_problems(req: Request) -> list[str]:
    """An Events API v2 event: routing key, action, dedup key, and a trigger's payload."""
    if req.path != "/pd/v2/enqueue":
        return [f"path {req.path}"]
    p = req.json
    found = []
    if p.get("routing_key") != ROUTING_KEY:
        found.append("routing_key")
    if p.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        found.append(f"event_action {p.get('event_action')!r}")
    if not _text(p.get("dedup_key"), 255):
        found.append("dedup_key")
    if p.get("event_action") == "trigger":
        payload = p.get("payload") or {}
        if not _text(payload.get("summary"), 1024):
            found.append("payload.summary")
        if not _text(payload.get("source"), 255):
            found.append("payload.source")
        if payload.get("severity") not in SEVERITIES:
            found.append(f"payload.severity {payload.get('severity')!r}")
        if not isinstance(payload.get("custom_details", {}), dict):
            found.append("payload.custom_details")
    elif "payload" in p:
        found.append("payload on an acknowledge/resolve")
    return found


def webhook_problems(req: Request) -> list[str]:
    """Signed with the shared secret (the receiver's ``verify``) and carrying the six fields."""
    if not verify(WHSEC, req.headers, req.body):
        return ["signature does not verify"]
    keys = set(req.json)
    wanted = {"message_id", "subject", "body", "audience", "template", "tenant"}
    found = [] if keys == wanted else [f"fields {sorted(keys)}"]
    if req.headers["webhook-id"] != req.json["message_id"]:
        found.append("webhook-id is not the message id")
    return found


CHECKS = {
    "slack": (slack_problems, Reply(400, "invalid_payload"), Reply(200, "ok")),
    "teams": (teams_problems, Reply(400, '{"error":{"code":"InvalidRequestContent"}}'), Reply(202)),
    "hook": (webhook_problems, Reply(401, "signature mismatch"), Reply(204)),
    "pd": (
        pagerduty_problems,
        Reply(400, '{"status":"invalid event","message":"Event object is invalid"}'),
        None,  # 202 with the dedup key, made per request
    ),
}


@dataclass
class Vendors:
    """Every vendor on one local server; ``script[vendor]`` holds the next replies."""

    base: str = ""
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # PagerDuty: dedup key -> state

    def got(self, vendor: str) -> list[Request]:
        return [r for r in self.requests if r.vendor == vendor]

    def answer(self, req: Request) -> Reply:
        check, refusal, success = CHECKS[req.vendor]
        problems = check(req)
        if problems:
            self.problems += [f"{req.vendor}: {p}" for p in problems]
            return refusal
        queued = self.script.get(req.vendor)
        if queued:
            return queued.pop(0)
        if success is not None:
            return success
        event = req.json
        state = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}
        self.incidents[event["dedup_key"]] = state[event["event_action"]]
        body = {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}
        return Reply(202, json.dumps(body), {"content-type": "application/json"})


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    state = Vendors()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            vendor = self.path.split("/")[1]
            req = Request(vendor, self.path, headers, body)
            state.requests.append(req)
            if headers.get("content-type") != "application/json":
                reply = Reply(415, "unsupported media type")
            else:
                reply = state.answer(req)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(reply.body.encode())))
            self.end_headers()
            self.wfile.write(reply.body.encode())

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((HOST, 0), Handler)
    state.base = f"http://{HOST}:{server.server_port}"
    # A short poll interval: shutdown() waits for it, once per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def channels_for(v: Vendors) -> ChannelsSettings:
    return ChannelsSettings(
        slack={"secops": SecretStr(v.base + SLACK_SECRET_PATH)},
        teams={"finance": SecretStr(v.base + TEAMS_SECRET_PATH)},
        webhooks={"billing": WebhookChannel(url=v.base + "/hook/billing", secret=SecretStr(WHSEC))},
        pagerduty={
            "oncall": PagerDutyChannel(
                routing_key=SecretStr(ROUTING_KEY), base_url=v.base + "/pd", severity="critical"
            )
        },
    )


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with http_client(5.0) as client:
        yield client


Route = Callable[..., RoutingTransport]


@pytest.fixture
def route(vendors: Vendors, http: httpx.Client) -> Route:
    """``route(smtp=None)``: a routing transport to every vendor, on the test's HTTP client."""

    def make(smtp: Transport | None = None) -> RoutingTransport:
        return RoutingTransport(channels_for(vendors), smtp=smtp, client=http)

    return make


def envelope(
    to: tuple[str, ...], message_id: str = "0193a9d2-0000-7000-8000-000000000001"
) -> Envelope:
    return Envelope(
        message_id=message_id,
        sender="ops@tenantops.example",
        to=to,
        subject="[Security] Tenant acme suspended",
        body="The tenant acme was suspended.\n\nReason: unpaid invoices & <overdue> > 90 days\n",
    )


@dataclass(frozen=True)
class FullEnvelope(Envelope):
    """An envelope carrying what the outbox row knows (the proposed port change)."""

    audience: str | None = None
    template: str | None = None
    tenant_name: str | None = None


def verdict_of(call: Any) -> DriverError:
    with pytest.raises(DriverError) as caught:
        call()
    return caught.value


# Recipients ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scheme", "name"),
    [
        ("security@corp.example", "email", "security@corp.example"),
        ("slack:secops", "slack", "secops"),
        ("Teams:Finance", "teams", "finance"),
        ("webhook:billing", "webhook", "billing"),
        ("pagerduty:on-call_1", "pagerduty", "on-call_1"),
    ],
)
def test_a_recipient_is_an_address_or_names_a_channel(value: str, scheme: str, name: str) -> None:
    parsed = parse_recipient(value)
    assert (parsed.scheme, parsed.name) == (scheme, name)


@pytest.mark.parametrize(
    "value", ["sms:ops", "slack:", "slack:bad/name", "no-at-sign", "a b@x", ""]
)
def test_anything_else_is_refused_for_good(value: str) -> None:
    assert not is_recipient(value)
    assert verdict_of(lambda: parse_recipient(value)).retry is Retry.PERMANENT


def test_an_unconfigured_channel_is_permanent_and_nobody_gets_the_message(
    vendors: Vendors,
    route: Route,
) -> None:
    transport = route()
    error = verdict_of(lambda: transport.deliver(envelope(("slack:secops", "slack:legal"))))
    assert error.retry is Retry.PERMANENT
    assert "slack:legal" in str(error)
    assert "no such channel" in str(error)
    assert vendors.requests == []  # not even the configured one: a retry after the fix sends once


def test_e_mail_without_an_smtp_server_is_permanent(vendors: Vendors, route: Route) -> None:
    transport = route()
    error = verdict_of(lambda: transport.deliver(envelope(("legal@corp.example",))))
    assert error.retry is Retry.PERMANENT
    assert "TENANTOPS_SMTP__HOST" in str(error)


# Settings ------------------------------------------------------------------------------------


class AppSettings(BaseSettings):
    """How the lead's ``Settings`` will hold the channels (``channels: ChannelsSettings``)."""

    model_config = SettingsConfigDict(
        env_prefix="TENANTOPS_", env_nested_delimiter="__", extra="ignore"
    )
    channels: ChannelsSettings = ChannelsSettings()


def test_channels_come_from_the_environment_and_never_show_their_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TENANTOPS_CHANNELS__SLACK__SECOPS", "https://hooks.slack.com/services/T/B/tok"
    )
    monkeypatch.setenv("TENANTOPS_CHANNELS__TEAMS", '{"Finance": "https://x.example/p?sig=abc"}')
    monkeypatch.setenv("TENANTOPS_CHANNELS__WEBHOOKS__BILLING__URL", "https://billing.example/hook")
    monkeypatch.setenv("TENANTOPS_CHANNELS__WEBHOOKS__BILLING__SECRET", WHSEC)
    monkeypatch.setenv("TENANTOPS_CHANNELS__PAGERDUTY__ONCALL__ROUTING_KEY", ROUTING_KEY)

    channels = AppSettings().channels

    assert channels.names("slack") == ["secops"]
    assert channels.names("teams") == ["finance"]
    assert channels.webhooks["billing"].url == "https://billing.example/hook"
    assert channels.pagerduty["oncall"].base_url == "https://events.pagerduty.com"
    assert channels.problems() == []
    shown = repr(channels) + str(channels.model_dump())
    for secret in ("tok", "sig=abc", WHSEC, ROUTING_KEY):
        assert secret not in shown


def test_a_settings_error_does_not_print_the_secret_it_was_given() -> None:
    with pytest.raises(ValidationError) as caught:
        ChannelsSettings.model_validate({"webhooks": {"billing": {"secret": WHSEC}}})
    assert "webhooks.billing.url" in str(caught.value)
    assert WHSEC not in str(caught.value)


def test_a_misconfigured_channel_stops_the_transport_naming_it_not_its_secret() -> None:
    channels = ChannelsSettings(
        slack={"secops": SecretStr("hooks.slack.com/services/T/B/tok")},
        webhooks={"billing": WebhookChannel(url="https://b.example", secret=SecretStr("plain"))},
    )
    with pytest.raises(ValueError, match="slack:secops") as caught:
        RoutingTransport(channels)
    assert "webhook:billing" in str(caught.value)
    assert "tok" not in str(caught.value)
    assert "plain" not in str(caught.value)


# Request shapes --------------------------------------------------------------------------------


def _same_shape(
    ours: Any, documented: Any, where: str = "$", free: tuple[str, ...] = ()
) -> list[str]:
    """Where ``ours`` differs in structure from the documented example (keys and types).

    Paths in ``free`` (a contract's ``free_form``) may hold any object.
    """
    if where in free:
        return [] if isinstance(ours, dict) else [f"{where}: not an object"]
    if isinstance(documented, dict):
        if not isinstance(ours, dict) or set(ours) != set(documented):
            return [f"{where}: keys {sorted(ours) if isinstance(ours, dict) else ours}"]
        return [
            p for k in documented for p in _same_shape(ours[k], documented[k], f"{where}.{k}", free)
        ]
    if isinstance(documented, list):
        if not isinstance(ours, list) or not ours:
            return [f"{where}: not a list"]
        found = []
        for i, item in enumerate(ours):
            options = [_same_shape(item, d, f"{where}[{i}]", free) for d in documented]
            if all(options):
                found += min(options, key=len)
        return found
    if documented is None:
        return [] if ours is None else [f"{where}: not null"]
    return [] if isinstance(ours, type(documented)) else [f"{where}: {type(ours).__name__}"]


def test_slack_gets_a_header_and_mrkdwn_sections_with_control_characters_escaped(
    vendors: Vendors, http: httpx.Client
) -> None:
    slack = SlackWebhook("secops", SecretStr(vendors.base + SLACK_SECRET_PATH), http)
    slack.deliver(envelope(("slack:secops",)))

    [req] = vendors.got("slack")
    assert vendors.problems == []
    assert req.path == SLACK_SECRET_PATH
    sent = req.json
    assert _same_shape(sent, contract("slack")["request"]["example"]) == []
    assert sent["blocks"][0]["text"]["text"] == "[Security] Tenant acme suspended"
    section = sent["blocks"][1]["text"]["text"]
    assert "unpaid invoices &amp; &lt;overdue&gt; &gt; 90 days" in section


def test_slack_splits_a_long_body_within_block_limits(vendors: Vendors, http: httpx.Client) -> None:
    slack = SlackWebhook("secops", SecretStr(vendors.base + SLACK_SECRET_PATH), http)
    long_line = "x" * 7000
    slack.post(subject="S" * 400, body=f"{long_line}\n" + "line\n" * 2000)
    [req] = vendors.got("slack")
    assert vendors.problems == []  # header cut to 150, sections to 3000, at most 50 blocks
    assert req.json["blocks"][1]["text"]["text"] == "x" * 3000


def test_teams_gets_an_adaptive_card_in_a_message_envelope(
    vendors: Vendors, http: httpx.Client
) -> None:
    teams = TeamsWebhook("finance", SecretStr(vendors.base + TEAMS_SECRET_PATH), http)
    teams.deliver(envelope(("teams:finance",)))

    [req] = vendors.got("teams")
    assert vendors.problems == []
    assert _same_shape(req.json, contract("teams")["request"]["example"]) == []
    texts = [b["text"] for b in req.json["attachments"][0]["content"]["body"]]
    assert texts == [
        "[Security] Tenant acme suspended",
        "The tenant acme was suspended.",
        "Reason: unpaid invoices & <overdue> > 90 days",
    ]


def test_the_signed_webhook_verifies_with_the_event_webhook_scheme(
    vendors: Vendors, http: httpx.Client
) -> None:
    hook = SignedWebhook(
        "billing", WebhookChannel(url=vendors.base + "/hook/billing", secret=SecretStr(WHSEC)), http
    )
    plain = envelope(("webhook:billing",))
    set_clock(lambda: datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    try:
        hook.deliver(
            FullEnvelope(
                message_id=plain.message_id,
                sender=plain.sender,
                to=plain.to,
                subject=plain.subject,
                body=plain.body,
                audience="security",
                template="suspension",
                tenant_name="acme",
            )
        )
    finally:
        set_clock(None)

    [req] = vendors.got("hook")
    assert vendors.problems == []  # webhooks.verify accepted the signature
    assert req.headers["webhook-id"] == "0193a9d2-0000-7000-8000-000000000001"
    assert req.headers["webhook-timestamp"] == str(
        int(datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp())
    )
    assert _same_shape(req.json, contract("webhook")["request"]["example"]) == []
    assert req.json["audience"] == "security"
    assert req.json["tenant"] == "acme"
    tampered = {**req.headers, "webhook-id": "another"}
    assert not verify(WHSEC, tampered, req.body)


def test_pagerduty_triggers_acknowledges_and_resolves_one_alert_by_its_dedup_key(
    vendors: Vendors, http: httpx.Client
) -> None:
    channel = PagerDutyChannel(routing_key=SecretStr(ROUTING_KEY), base_url=vendors.base + "/pd")
    pd = PagerDutyEvents("oncall", channel, http)
    key = "tenantops/acme/cost-overrun"

    confirmed = pd.trigger(
        summary="Tenant acme over budget",
        source="tenantops",
        severity="warning",
        dedup_key=key,
        custom_details={"tenant": "acme", "spend": 3100},
    )
    assert vendors.incidents == {key: "triggered"}
    pd.trigger(summary="again", source="tenantops", severity="warning", dedup_key=key)
    pd.acknowledge(key)
    assert vendors.incidents == {key: "acknowledged"}
    pd.resolve(key)

    assert confirmed == key
    assert vendors.problems == []
    assert vendors.incidents == {key: "resolved"}
    actions = [r.json["event_action"] for r in vendors.got("pd")]
    assert actions == ["trigger", "trigger", "acknowledge", "resolve"]
    first = vendors.got("pd")[0].json
    documented = contract("pagerduty")["request"]
    assert _same_shape(first, documented["example"], free=tuple(documented["free_form"])) == []
    assert set(documented["severities"]) == SEVERITIES
    assert first["payload"]["severity"] == "warning"
    assert first["payload"]["custom_details"] == {"tenant": "acme", "spend": 3100}


def test_pagerduty_refuses_an_undocumented_severity_without_calling(
    vendors: Vendors, http: httpx.Client
) -> None:
    channel = PagerDutyChannel(routing_key=SecretStr(ROUTING_KEY), base_url=vendors.base + "/pd")
    pd = PagerDutyEvents("oncall", channel, http)
    error = verdict_of(
        lambda: pd.trigger(summary="s", source="tenantops", severity="high", dedup_key="k")
    )
    assert error.retry is Retry.PERMANENT
    assert verdict_of(lambda: pd.resolve("")).retry is Retry.PERMANENT
    assert vendors.requests == []


def test_a_pagerduty_recipient_triggers_with_the_message_id_as_dedup_key(
    vendors: Vendors, route: Route
) -> None:
    transport = route()
    sent = envelope(("pagerduty:oncall",))
    transport.deliver(sent)
    transport.deliver(sent)  # a repeated delivery adds to the same alert: nobody is paged twice

    assert vendors.problems == []
    assert vendors.incidents == {sent.message_id: "triggered"}
    event = vendors.got("pd")[0].json
    assert event["payload"]["summary"] == sent.subject
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["body"] == sent.body


# What answers mean ----------------------------------------------------------------------------


def _client_for(vendor: str, v: Vendors, http: httpx.Client) -> Any:
    if vendor == "slack":
        return SlackWebhook("secops", SecretStr(v.base + SLACK_SECRET_PATH), http)
    if vendor == "teams":
        return TeamsWebhook("finance", SecretStr(v.base + TEAMS_SECRET_PATH), http)
    if vendor == "webhook":
        return SignedWebhook(
            "billing", WebhookChannel(url=v.base + "/hook/billing", secret=SecretStr(WHSEC)), http
        )
    channel = PagerDutyChannel(routing_key=SecretStr(ROUTING_KEY), base_url=v.base + "/pd")
    return PagerDutyEvents("oncall", channel, http)


SCRIPT_KEY = {"slack": "slack", "teams": "teams", "webhook": "hook", "pagerduty": "pd"}
EXCHANGES = [
    pytest.param(
        vendor, exchange, id=f"{vendor}-{exchange['response']['status']}-{exchange['name']}"
    )
    for vendor in ("slack", "teams", "webhook", "pagerduty")
    for exchange in contract(vendor)["exchanges"]
]


@pytest.mark.parametrize(("vendor", "exchange"), EXCHANGES)
def test_each_documented_answer_maps_to_what_a_retry_would_do(
    vendors: Vendors, http: httpx.Client, vendor: str, exchange: dict[str, Any]
) -> None:
    response = exchange["response"]
    vendors.script[SCRIPT_KEY[vendor]] = [
        Reply(response["status"], response["body"], response.get("headers", {}))
    ]
    client = _client_for(vendor, vendors, http)
    sent = envelope((f"{vendor}:x",))

    if exchange["verdict"] == "ok":
        client.deliver(sent)
        assert vendors.problems == []
        return
    error = verdict_of(lambda: client.deliver(sent))
    assert isinstance(error, ChannelError)
    assert error.retry is Retry(exchange["verdict"])
    assert error.status == response["status"]
    assert error.retry_after == exchange.get("retry_after")
    assert str(error).startswith(client.channel)
    for secret in ("sEcReT", ROUTING_KEY, WHSEC):
        assert secret not in str(error)
    assert vendors.problems == []  # it was refused for the scripted reason, not a bad request


def test_a_body_echoing_the_secret_url_is_scrubbed(vendors: Vendors, http: httpx.Client) -> None:
    url = vendors.base + SLACK_SECRET_PATH
    vendors.script["slack"] = [Reply(404, f"no_service for {url}")]
    error = verdict_of(
        lambda: SlackWebhook("secops", SecretStr(url), http).post(subject="s", body="b")
    )
    assert "sEcReT" not in str(error)
    assert "no_service for <url>" in str(error)


def test_no_listener_and_no_answer_are_retriable() -> None:
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen()  # accepts connections, never answers
        port = silent.getsockname()[1]
        with socket.socket() as s:
            s.bind((HOST, 0))
            closed = s.getsockname()[1]  # nothing listens once this socket closes
        with http_client(0.2) as client:
            refused = SlackWebhook("a", SecretStr(f"http://{HOST}:{closed}/x"), client)
            silent_hook = SlackWebhook("b", SecretStr(f"http://{HOST}:{port}/x"), client)
            no_connection = verdict_of(lambda: refused.post(subject="s", body="b"))
            no_answer = verdict_of(lambda: silent_hook.post(subject="s", body="b"))
    assert no_connection.retry is Retry.RETRIABLE
    assert "slack:a: no answer" in str(no_connection)
    assert no_answer.retry is Retry.RETRIABLE
    assert "Timeout" in str(no_answer)


# Routing and partial failure --------------------------------------------------------------------


class Recorded:
    """A transport in place of SMTP that keeps what it was given (SMTP itself: test_notify)."""

    def __init__(self) -> None:
        self.delivered: list[Envelope] = []

    def deliver(self, envelope: Envelope) -> None:
        self.delivered.append(envelope)


def test_each_recipient_gets_its_copy_through_its_own_channel(
    vendors: Vendors, route: Route
) -> None:
    smtp = Recorded()
    transport = route(smtp)
    to = (
        "security@corp.example",
        "slack:secops",
        "dpo@corp.example",
        "teams:finance",
        "webhook:billing",
        "pagerduty:oncall",
        "slack:secops",
    )
    transport.deliver(envelope(to))

    assert vendors.problems == []
    assert [e.to for e in smtp.delivered] == [("security@corp.example", "dpo@corp.example")]
    assert sorted(r.vendor for r in vendors.requests) == ["hook", "pd", "slack", "teams"]


def test_a_partial_failure_names_the_failed_and_a_retry_skips_the_delivered(
    vendors: Vendors,
    route: Route,
) -> None:
    smtp = Recorded()
    transport = route(smtp)
    vendors.script["slack"] = [Reply(429, "rate_limited", {"Retry-After": "3"})]
    sent = envelope(("security@corp.example", "slack:secops", "teams:finance"))

    error = verdict_of(lambda: transport.deliver(sent))
    assert isinstance(error, ChannelError)
    assert error.retry is Retry.RETRIABLE
    assert error.retry_after == 3
    assert str(error).startswith("delivered to 2 of 3 recipients; slack:secops: HTTP 429")

    transport.deliver(sent)
    assert len(smtp.delivered) == 1
    assert len(vendors.got("teams")) == 1
    assert len(vendors.got("slack")) == 2


def test_the_least_hopeful_failure_decides_the_verdict(vendors: Vendors, route: Route) -> None:
    transport = route()
    vendors.script["slack"] = [Reply(503, "")]
    vendors.script["teams"] = [Reply(404, "")]
    vendors.script["hook"] = [Reply(403, "")]
    sent = envelope(("slack:secops", "teams:finance", "webhook:billing"))
    error = verdict_of(lambda: transport.deliver(sent))
    assert error.retry is Retry.NEEDS_HUMAN
    assert all(name in str(error) for name in ("slack:secops", "teams:finance", "webhook:billing"))


# End to end through the outbox -------------------------------------------------------------------


def outgoing(*to: str) -> OutgoingMessage:
    return OutgoingMessage(
        to=to,
        subject="[Security] Tenant acme suspended",
        body="The tenant acme was suspended.\n",
        template="suspension",
        audience="security",
        tenant_name="acme",
    )


def outbox_row(db: Database) -> OutboxMessage:
    with db.read() as session:
        return session.scalars(select(OutboxMessage)).one()


@pytest.fixture
def smtp_port() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname=HOST, port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_a_failing_channel_is_retried_with_backoff_ends_failed_then_sent_when_back(
    db: Database, vendors: Vendors, route: Route, smtp_port: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_port
    smtp = SmtpTransport(SMTPSettings(host=HOST, port=port))
    transport = route(smtp)
    slept: list[float] = []
    notifier = OutboxNotifier(db, transport, attempts=3, backoff_seconds=0.5, sleep=slept.append)
    vendors.script["slack"] = [Reply(500, "rollup_error")] * 3
    message = outgoing("security@corp.example", "slack:secops")

    with pytest.raises(DriverError) as caught:
        notifier.send(message, idempotency_key="run-1/notify-security")

    assert caught.value.retriable  # the engine runs the step again later
    assert slept == [0.5, 1.0]
    row = outbox_row(db)
    assert row.status == "failed"
    assert row.attempts == 3
    assert row.last_error is not None
    assert "slack:secops: HTTP 500: rollup_error" in row.last_error
    assert "delivered to 1 of 2 recipients" in row.last_error
    assert len(inbox.messages) == 1  # the mail went once, not once per attempt

    delivery = notifier.send(message, idempotency_key="run-1/notify-security")

    assert delivery.status == "sent"
    assert delivery.attempts == 4
    assert outbox_row(db).status == "sent"
    assert len(vendors.got("slack")) == 4
    assert len(inbox.messages) == 1
    assert vendors.problems == []


def test_a_permanent_refusal_is_not_retried_and_stays_visible(
    db: Database, vendors: Vendors, route: Route
) -> None:
    slept: list[float] = []
    notifier = OutboxNotifier(db, route(), attempts=3, sleep=slept.append)
    vendors.script["teams"] = [Reply(404, '{"error":{"code":"WorkflowNotFound"}}')]

    with pytest.raises(DriverError) as caught:
        notifier.send(outgoing("teams:finance"), idempotency_key="k")

    assert caught.value.retry is Retry.PERMANENT
    assert slept == []
    row = outbox_row(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None
    assert "teams:finance: HTTP 404" in row.last_error
    assert "sEcReT" not in row.last_error


def test_an_unconfigured_channel_fails_the_message_visibly(
    db: Database, vendors: Vendors, route: Route
) -> None:
    notifier = OutboxNotifier(db, route(), sleep=lambda _: None)
    with pytest.raises(DriverError) as caught:
        notifier.send(outgoing("slack:secops", "slack:nope"), idempotency_key="k")
    assert caught.value.retry is Retry.PERMANENT
    row = outbox_row(db)
    assert row.status == "failed"
    assert row.last_error is not None
    assert "slack:nope" in row.last_error
    assert vendors.requests == []
