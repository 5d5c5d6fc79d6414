"""Settings of the notification channels: Slack, Teams, signed webhooks, PagerDuty, by name.

A recipient ``slack:secops`` names the entry ``secops`` of ``slack``. Names are
lower case (environment variables are read case-insensitively, so
``TENANTOPS_CHANNELS__SLACK__SECOPS`` arrives as ``secops``).

Slack and Teams incoming-webhook URLs carry their credential in the path, so
they are ``SecretStr`` like the signing secrets and routing keys. They are
checked by ``problems()`` rather than by validators: a pydantic validation
error prints the offending input, and the input here is the secret. For the
same reason these models hide inputs in their errors; pydantic honours that
only on the outermost model, so the application ``Settings`` must set
``hide_input_in_errors`` too.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SCHEMES = ("slack", "teams", "webhook", "pagerduty")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
PAGERDUTY_URL = "https://events.pagerduty.com"
Severity = Literal["critical", "error", "warning", "info"]


def _url_problem(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "is not a URL"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "is not an http(s) URL"
    return None


class WebhookChannel(BaseModel):
    """A generic webhook: JSON POSTs signed the Standard Webhooks way with ``secret``."""

    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="where to POST; not a secret (the signature is)")
    secret: SecretStr = Field(description="whsec_ + base64 key, shared with the receiver")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = _url_problem(value)
        if problem:
            raise ValueError(f"webhook url {problem}")
        return value


class PagerDutyChannel(BaseModel):
    """A PagerDuty service's Events API v2 integration."""

    model_config = ConfigDict(hide_input_in_errors=True)

    routing_key: SecretStr = Field(description="the integration key of the service")
    base_url: str = Field(default=PAGERDUTY_URL, description="events API host (tests: a local one)")
    severity: Severity = Field(default="error", description="severity of notify messages")
    source: str = Field(default="tenantops", min_length=1, max_length=255)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = _url_problem(value)
        if problem:
            raise ValueError(f"pagerduty base_url {problem}")
        return value.rstrip("/")


class ChannelsSettings(BaseModel):
    """Named channels a notification recipient can point at (``<scheme>:<name>``)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    slack: dict[str, SecretStr] = Field(
        default_factory=dict, description="name -> Slack incoming-webhook URL"
    )
    teams: dict[str, SecretStr] = Field(
        default_factory=dict, description="name -> Teams Workflows (Power Automate) webhook URL"
    )
    webhooks: dict[str, WebhookChannel] = Field(default_factory=dict)
    pagerduty: dict[str, PagerDutyChannel] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="per HTTP request")

    @field_validator("slack", "teams", "webhooks", "pagerduty", mode="before")
    @classmethod
    def _lower_case_names(cls, value: object) -> object:
        # Never raise here: the error would print the input, and the input holds secrets.
        if isinstance(value, dict):
            return {str(k).strip().lower(): v for k, v in value.items()}
        return value

    def configured(self) -> bool:
        """True when at least one channel is set up."""
        return bool(self.slack or self.teams or self.webhooks or self.pagerduty)

    def names(self, scheme: str) -> list[str]:
        """The configured names of ``scheme`` (``webhook`` reads ``webhooks``)."""
        table: dict[
            str, dict[str, SecretStr] | dict[str, WebhookChannel] | dict[str, PagerDutyChannel]
        ]
        table = {
            "slack": self.slack,
            "teams": self.teams,
            "webhook": self.webhooks,
            "pagerduty": self.pagerduty,
        }
        return sorted(table.get(scheme) or ())

    def problems(self) -> list[str]:
        """What is wrong with the channels, naming each one and never showing a secret."""
        found = [
            f"{scheme}:{name}: a channel name must match {NAME.pattern}"
            for scheme in SCHEMES
            for name in self.names(scheme)
            if not NAME.fullmatch(name)
        ]
        for scheme, urls in (("slack", self.slack), ("teams", self.teams)):
            for name, url in urls.items():
                problem = _url_problem(url.get_secret_value())
                if problem:
                    found.append(f"{scheme}:{name}: the webhook URL {problem}")
        for name, hook in self.webhooks.items():
            secret = hook.secret.get_secret_value()
            if not secret.startswith("whsec_"):
                found.append(f"webhook:{name}: the secret must start with whsec_")
                continue
            try:
                key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) < 16:
                found.append(f"webhook:{name}: the secret is not whsec_ + base64 of 16+ bytes")
        for name, pd in self.pagerduty.items():
            if not pd.routing_key.get_secret_value().strip():
                found.append(f"pagerduty:{name}: the routing key is empty")
        return found
