"""API shapes of the receiver: Alertmanager's webhook payload (version 4) and stored alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Labels = dict[str, str]


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertmanagerAlert(BaseModel):
    """One alert of a notification, as Alertmanager's webhook sends it.

    Unknown members are ignored, so a newer Alertmanager adding fields keeps
    working; a missing or mistyped member is a 422.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: AlertStatus
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL", max_length=8000)
    fingerprint: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("ends_at")
    @classmethod
    def _zero_is_none(cls, value: datetime | None) -> datetime | None:
        # A firing alert carries Go's zero time (0001-01-01T00:00:00Z): no end yet.
        return None if value is not None and value.year <= 1 else value

    @field_validator("labels", "annotations", mode="after")
    @classmethod
    def _no_nul(cls, values: Labels) -> Labels:
        # PostgreSQL text cannot hold NUL; one such label must not fail the whole group.
        return {k.replace("\x00", ""): v.replace("\x00", "") for k, v in values.items()}

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: Labels) -> Labels:
        if not labels.get("alertname"):
            raise ValueError("an alert needs an alertname label")
        return labels


class AlertmanagerPayload(BaseModel):
    """A webhook notification of Alertmanager, payload version "4" only."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    group_key: Annotated[str, Field(alias="groupKey", min_length=1, max_length=10000)]
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: Annotated[str, Field(max_length=200)]
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=2000)
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=10000)


class ReceiveResult(BaseModel):
    """What the receiver did with a notification (Alertmanager ignores the body)."""

    received: int = Field(description="Alerts in the notification")
    stored: int = Field(description="Alerts stored now")
    duplicates: int = Field(
        description="Alerts seen before (same group, fingerprint, status, start)"
    )
    runs_started: list[str] = Field(description="Playbook runs started by this notification")
    dispatch_errors: list[str] = Field(description="Why a playbook could not be started")


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: AlertStatus
    alertname: str
    fingerprint: str
    group_key: str
    receiver: str
    tenant_id: str | None
    tenant_label: str | None = Field(description="The tenant label as received")
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str | None
    received_at: datetime
    playbook: str | None
    run_id: str | None = Field(description="The run started, joined or signalled")
    closed_at: datetime | None = Field(description="Firing alert: when its resolution arrived")
    note: str | None
    dispatch_error: str | None


class AlertPage(BaseModel):
    """Alerts newest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[AlertRead]
    next_after: str | None
