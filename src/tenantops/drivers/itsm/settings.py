"""Connection settings of the ServiceNow adapter; password and token are ``SecretStr``."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator


class ServiceNowSettings(BaseModel):
    """The instance, one way to log in (basic or OAuth bearer), and how to link records."""

    instance_url: str = Field(
        default="https://example.service-now.com",
        pattern=r"^https://[^\s/]+/?$",
        description="The instance, e.g. https://acme.service-now.com.",
    )
    username: str = Field(default="", description="Basic auth user (a integration user).")
    password: SecretStr = Field(default=SecretStr(""))
    token: SecretStr = Field(
        default=SecretStr(""), description="An OAuth access token (used instead of basic auth)."
    )
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    correlation_display: str = Field(
        default="tenantops",
        max_length=100,
        description="Written to correlation_display: the system that opened the record.",
    )
    tenant_field: str | None = Field(
        default=None,
        pattern=r"^u_[a-z0-9_]+$",
        description="A custom field (e.g. u_tenant) that also gets the tenant's name.",
    )
    refresh_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How often each worker asks for the open mirror rows' tickets; 0: never.",
    )

    @model_validator(mode="after")
    def _one_login(self) -> ServiceNowSettings:
        if self.token.get_secret_value() and self.username:
            raise ValueError("set either a token or username/password, not both")
        return self
