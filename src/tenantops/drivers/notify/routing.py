"""The routing transport: one envelope to each recipient, by the recipient's scheme.

A recipient is an e-mail address (carried by the SMTP transport, all addresses
in one SMTP transaction) or names a configured channel: ``slack:<name>``,
``teams:<name>``, ``webhook:<name>``, ``pagerduty:<name>``. So
``TENANTOPS_NOTIFY__SECURITY='["security@corp.example","slack:secops"]'``
mails the security team and posts to their Slack channel.

Before anything is sent every recipient is checked: an unknown scheme, a
channel that is not configured, or e-mail with no SMTP server is a
``permanent`` error naming it, and nobody gets the message — so fixing the
configuration and retrying sends it once to everyone.

Partial failure (ADR 0013): each attempt tries every recipient still owed the
message, remembers the ones that took it, and raises one error listing the
ones that did not. The next attempt of the same message (the outbox's retry,
or the engine's retry of the step in this process) skips those that have it.
The memory is per process and bounded: after a restart, or on another worker,
a retry sends to everyone again — at-least-once, and every channel carries the
outbox message id (``Message-ID``, ``webhook-id``, PagerDuty's dedup key) for
receivers that deduplicate. The error's verdict is the least hopeful of the
failures (needs a human > permanent > retriable): a retry is only worth it
when every remaining failure may pass.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Protocol

import httpx

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.notify.pagerduty import PagerDutyEvents
from tenantops.drivers.notify.port import Envelope, Transport
from tenantops.drivers.notify.settings import NAME, SCHEMES, ChannelsSettings
from tenantops.drivers.notify.slack import SlackWebhook
from tenantops.drivers.notify.teams import TeamsWebhook
from tenantops.drivers.notify.webhook import ChannelError, SignedWebhook, http_client

EMAIL = "email"
_CHANNEL = re.compile(r"(?P<scheme>[a-z]+):(?P<name>\S+)", re.IGNORECASE)
_SEVERITY = {Retry.RETRIABLE: 0, Retry.PERMANENT: 1, Retry.NEEDS_HUMAN: 2}
REMEMBERED = 10_000  # partly delivered messages kept in memory, oldest forgotten first


class Channel(Protocol):
    """A configured destination: carries one envelope, or raises ``DriverError``."""

    channel: str

    def deliver(self, envelope: Envelope) -> None: ...


@dataclass(frozen=True)
class Recipient:
    """A parsed recipient: ``scheme`` is ``email`` or a channel scheme."""

    scheme: str
    name: str

    def __str__(self) -> str:
        return self.name if self.scheme == EMAIL else f"{self.scheme}:{self.name}"


def parse_recipient(value: str) -> Recipient:
    """``slack:secops`` -> ``Recipient("slack", "secops")``; an address -> scheme ``email``.

    Raises a permanent ``DriverError`` for anything else (``sms:ops``, ``no-at``).
    """
    text = value.strip()
    if not text or any(c.isspace() for c in text):
        raise DriverError(f"{value!r} is not a recipient", retry=Retry.PERMANENT)
    found = _CHANNEL.fullmatch(text)
    if found:
        scheme, name = found["scheme"].lower(), found["name"].lower()
        if scheme not in SCHEMES:
            if "@" in text:  # "user:tag@example.com" is an address after all
                return Recipient(EMAIL, text)
            raise DriverError(
                f"{text!r}: unknown channel {scheme!r} (known: {', '.join(SCHEMES)})",
                retry=Retry.PERMANENT,
            )
        if not NAME.fullmatch(name):
            raise DriverError(
                f"{text!r}: a channel name must match {NAME.pattern}", retry=Retry.PERMANENT
            )
        return Recipient(scheme, name)
    if "@" not in text:
        raise DriverError(
            f"{text!r} is neither an e-mail address nor <channel>:<name> ({', '.join(SCHEMES)})",
            retry=Retry.PERMANENT,
        )
    return Recipient(EMAIL, text)


def is_recipient(value: str) -> bool:
    """True when ``value`` parses as a recipient (configured or not)."""
    try:
        parse_recipient(value)
    except DriverError:
        return False
    return True


def build_channels(channels: ChannelsSettings, client: httpx.Client) -> dict[str, Channel]:
    """Every configured channel, keyed ``scheme:name``."""
    built: dict[str, Channel] = {}
    for name, url in channels.slack.items():
        built[f"slack:{name}"] = SlackWebhook(name, url, client)
    for name, url in channels.teams.items():
        built[f"teams:{name}"] = TeamsWebhook(name, url, client)
    for name, hook in channels.webhooks.items():
        built[f"webhook:{name}"] = SignedWebhook(name, hook, client)
    for name, pd in channels.pagerduty.items():
        built[f"pagerduty:{name}"] = PagerDutyEvents(name, pd, client)
    return built


class RoutingTransport:
    """``Transport`` that sends each recipient its copy: SMTP for addresses, channels by name."""

    def __init__(
        self,
        channels: ChannelsSettings,
        *,
        smtp: Transport | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        problems = channels.problems()
        if problems:
            raise ValueError("notification channels misconfigured: " + "; ".join(problems))
        self._client = client or http_client(channels.timeout_seconds)
        self._owns_client = client is None
        self.smtp = smtp
        self.channels = build_channels(channels, self._client)
        self._lock = threading.Lock()
        self._delivered: OrderedDict[str, set[str]] = OrderedDict()

    def close(self) -> None:
        """Close the HTTP client (if this transport made it)."""
        if self._owns_client:
            self._client.close()

    def has_pagerduty(self, name: str) -> bool:
        return isinstance(self.channels.get(f"pagerduty:{name.lower()}"), PagerDutyEvents)

    def pagerduty(self, name: str) -> PagerDutyEvents:
        """The configured PagerDuty service ``name`` (for trigger/acknowledge/resolve steps)."""
        found = self.channels.get(f"pagerduty:{name.lower()}")
        if not isinstance(found, PagerDutyEvents):
            raise DriverError(
                f"no PagerDuty channel {name!r} (set TENANTOPS_CHANNELS__PAGERDUTY__"
                f"{name.upper()}__ROUTING_KEY)",
                retry=Retry.PERMANENT,
            )
        return found

    def check(self, recipients: tuple[str, ...] | list[str]) -> list[Recipient]:
        """The recipients parsed, each one routable; else one permanent error naming them all."""
        parsed: list[Recipient] = []
        wrong: list[str] = []
        for value in dict.fromkeys(recipients):
            try:
                recipient = parse_recipient(value)
            except DriverError as exc:
                wrong.append(str(exc).removesuffix(f" ({Retry.PERMANENT.value})"))
                continue
            if recipient.scheme == EMAIL and self.smtp is None:
                wrong.append(
                    f"{recipient}: e-mail, but no SMTP server is set (TENANTOPS_SMTP__HOST)"
                )
            elif recipient.scheme != EMAIL and str(recipient) not in self.channels:
                known = ", ".join(sorted(self.channels)) or "none"
                wrong.append(f"{recipient}: no such channel is configured (configured: {known})")
            else:
                parsed.append(recipient)
        if wrong:
            raise DriverError("cannot route: " + "; ".join(wrong), retry=Retry.PERMANENT)
        return parsed

    def _already(self, message_id: str) -> set[str]:
        with self._lock:
            return set(self._delivered.get(message_id, ()))

    def _remember(self, message_id: str, done: set[str], *, complete: bool) -> None:
        with self._lock:
            if complete:
                self._delivered.pop(message_id, None)
                return
            self._delivered[message_id] = done
            self._delivered.move_to_end(message_id)
            while len(self._delivered) > REMEMBERED:
                self._delivered.popitem(last=False)

    def deliver(self, envelope: Envelope) -> None:
        recipients = self.check(envelope.to)
        done = self._already(envelope.message_id)
        owed = [r for r in recipients if str(r) not in done]
        failures: list[tuple[str, DriverError]] = []

        emails = tuple(str(r) for r in owed if r.scheme == EMAIL)
        if emails:
            assert self.smtp is not None  # check() refused e-mail without SMTP
            try:
                self.smtp.deliver(replace(envelope, to=emails))
            except DriverError as exc:
                failures.append((", ".join(emails), exc))
            else:
                done.update(emails)

        for recipient in (r for r in owed if r.scheme != EMAIL):
            key = str(recipient)
            try:
                self.channels[key].deliver(envelope)
            except DriverError as exc:
                failures.append((key, exc))
            else:
                done.add(key)

        self._remember(envelope.message_id, done, complete=not failures)
        if failures:
            raise _combined(failures, delivered=len(done), total=len(recipients))


def _combined(
    failures: list[tuple[str, DriverError]], *, delivered: int, total: int
) -> ChannelError:
    worst = max((exc.retry for _, exc in failures), key=_SEVERITY.__getitem__)
    waits = [
        exc.retry_after
        for _, exc in failures
        if isinstance(exc, ChannelError) and exc.retry_after is not None
    ]
    statuses = [exc.status for _, exc in failures if isinstance(exc, ChannelError)]
    # A channel's error names the channel; the verdict is shown per failure only when several.
    reasons = "; ".join(
        (text if text.startswith(f"{who}:") else f"{who}: {text}")
        + (f" ({exc.retry.value})" if len(failures) > 1 else "")
        for who, exc in failures
        for text in [str(exc.args[0]) if exc.args else str(exc)]
    )
    return ChannelError(
        f"delivered to {delivered} of {total} recipients; {reasons}",
        retry=worst,
        status=statuses[0] if len(statuses) == 1 else None,
        retry_after=max(waits) if waits else None,
    )
