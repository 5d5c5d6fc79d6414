"""Settings: one pydantic-settings model, read from ``TENANTOPS_*`` variables.

Nothing is built at import time; ``Settings()`` is created by the CLI (or a test)
and passed into ``create_app(settings)``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tenantops.alerts.settings import AlertsSettings
from tenantops.drivers.access.settings import RedisAccessSettings
from tenantops.drivers.argocd.settings import ArgoCDSettings
from tenantops.drivers.gitops.settings import RemoteGitSettings
from tenantops.drivers.identity.settings import EntraSettings, KeycloakSettings
from tenantops.drivers.itsm.settings import ServiceNowSettings
from tenantops.drivers.kubernetes.settings import KubernetesSettings
from tenantops.drivers.notify.settings import ChannelsSettings
from tenantops.drivers.secrets.settings import VaultSettings
from tenantops.drivers.terraform.settings import TerraformSettings
from tenantops.finops.settings import FinOpsSettings
from tenantops.web.settings import WebSettings


class OIDCSettings(BaseModel):
    """OpenID Connect bearer-token verification (Keycloak, Entra ID, …).

    Off unless ``issuer`` is set. ``jwks_url`` defaults to the issuer's discovery
    document; ``roles_claim`` is a dotted path (Keycloak: ``realm_access.roles``).
    """

    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    subject_claim: str = "sub"
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_seconds: int = 30


# A bound against typos, not a design limit: a batch of 128 no-op steps still
# scales (docs/benchmarks.md), and step threads wait on I/O, not on the CPU.
MAX_WORKER_CONCURRENCY = 256


class WorkerSettings(BaseModel):
    """The runbook workers: in-process with ``serve``, or alone with ``tenantops worker``."""

    in_process: bool = Field(default=True, description="serve runs a worker in-process")
    concurrency: int = Field(
        default=4,
        ge=1,
        le=MAX_WORKER_CONCURRENCY,
        description="steps a worker claims at once, each run on a thread of its own",
    )
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    deadline_check_seconds: float = Field(default=15.0, gt=0, le=3600)
    lease_seconds: float = Field(
        default=20.0,
        ge=1,
        le=3600,
        description="a step held without a heartbeat this long is taken over by another worker",
    )


class SMTPSettings(BaseModel):
    """SMTP delivery of the notification outbox; off (outbox only) unless ``host`` is set."""

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(default="tenantops@localhost", alias="from")
    starttls: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    attempts: int = Field(default=3, ge=1, le=20, description="tries per delivery")
    backoff_seconds: float = Field(default=0.5, ge=0, le=60, description="first retry delay")

    model_config = {"populate_by_name": True}


# Bind addresses no reader can open: a link to this server names the loopback one.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - matched, not bound


class NotifySettings(BaseModel):
    """Who the stakeholder roles of a notification are (``to: legal`` and so on).

    Each is a list of e-mail addresses and ``<channel>:<name>`` recipients
    (``slack:secops``, ``teams:finance``, ``webhook:billing``, ``pagerduty:oncall``)
    whose endpoints ``TENANTOPS_CHANNELS__…`` configures.
    """

    legal: list[str] = Field(default_factory=lambda: ["legal@localhost"])
    finance: list[str] = Field(default_factory=lambda: ["finance@localhost"])
    governance: list[str] = Field(
        default_factory=lambda: ["governance@localhost"], description="the weekly SLA report"
    )
    security: list[str] = Field(default_factory=lambda: ["security@localhost"])
    auditor: list[str] = Field(
        default_factory=lambda: ["auditor@localhost"], description="evidence bundles are ready"
    )
    oncall: list[str] = Field(
        default_factory=lambda: ["oncall@localhost"],
        description="SLA breaches go here, and pages to role:oncall (the default policy)",
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8080",
        description="base of links in messages; unset: this server's host and port "
        "(Settings.own_url), so a link follows TENANTOPS_PORT",
    )


class HealthSettings(BaseModel):
    """Health checks of tenants: a URL per tenant, or the built-in probe of this server.

    ``base_url`` takes a ``{tenant}`` placeholder (the tenant's name), e.g.
    ``https://{tenant}.apps.example.com/healthz``; unset, the checks call
    ``/probe/tenants/{tenant}`` of this server (host and port from the settings).
    """

    base_url: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)


class GitOpsSettings(BaseModel):
    """The GitOps repository tenants are rendered into, and what Argo CD needs to read it.

    The local adapter keeps a real git repository at ``repo_path`` (default
    ``data_dir/gitops``), created on first use. Manifests are validated against
    the schemas of ``kubernetes_version`` — fixed, so a render is reproducible.
    """

    repo_path: Path | None = Field(default=None, description="default: data_dir/gitops")
    repo_url: str | None = Field(
        default=None, description="the URL Argo CD pulls from; default: file:// of repo_path"
    )
    branch: str = "main"
    kubernetes_version: str = "1.31.0"
    argocd_namespace: str = "argocd"
    argocd_project: str = "default"
    destination_server: str = "https://kubernetes.default.svc"
    ingress_namespace: str = "ingress-nginx"
    vault_server: str = "http://vault.vault.svc:8200"
    vault_mount: str = "secret"
    remote: RemoteGitSettings | None = Field(
        default=None,
        description="push to this remote git repository (SSH or HTTPS) instead of the local one",
    )


class AccessSettings(BaseModel):
    """Which adapter enforces queue pauses and rate limits: ``local`` (the embedded
    default, state in the database) or ``redis`` (Redis ACLs + a token bucket)."""

    adapter: Literal["local", "redis"] = "local"
    redis: RedisAccessSettings = Field(default_factory=RedisAccessSettings)


class IdentitySettings(BaseModel):
    """Which adapter holds tenants' groups: ``local`` (the database), ``keycloak`` or
    ``entra`` (Microsoft Graph)."""

    adapter: Literal["local", "keycloak", "entra"] = "local"
    keycloak: KeycloakSettings = Field(default_factory=KeycloakSettings)
    entra: EntraSettings = Field(default_factory=EntraSettings)


class SecretsSettings(BaseModel):
    """Which adapter keeps tenants' secret stores: ``local`` (references in the
    database) or ``vault`` (policies, KV v2 metadata and lease revocation; values
    never touched)."""

    adapter: Literal["local", "vault"] = "local"
    vault: VaultSettings = Field(default_factory=VaultSettings)


class EventsSettings(BaseModel):
    """The event outbox's relay: which broker it publishes to, and webhook delivery.

    ``broker = "none"`` (the embedded default) keeps events in the outbox only:
    readable with ``tenantops events tail`` and delivered to webhook
    subscriptions. The relay runs in ``serve`` and in ``worker``.
    """

    broker: Literal["none", "nats", "kafka"] = "none"
    relay: bool = Field(default=True, description="run the relay in serve and worker")
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    batch: int = Field(default=200, ge=1, le=5000, description="events per publish")
    lease_seconds: float = Field(
        default=15.0, ge=1, le=600, description="a relay silent this long hands over"
    )
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = Field(default="TENANTOPS", description="created if missing")
    nats_subject_prefix: str = Field(
        default="", description="prepended to the topic: '' publishes on tenant.lifecycle"
    )
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = Field(default="", description="prepended to the topic")
    kafka_options: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka settings (security.protocol, …)"
    )
    publish_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    signing_key: SecretStr | None = Field(
        default=None,
        description="derives every webhook secret; default: a key file in data_dir, made once",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_attempts: int = Field(default=8, ge=1, le=50, description="tries before dead")
    webhook_backoff_seconds: float = Field(default=2.0, ge=0, le=3600, description="first retry")
    webhook_backoff_max_seconds: float = Field(default=600.0, ge=0, le=86400)
    retention_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="events handed on and deliveries done are deleted after this; 0 keeps all",
    )


class OncallSettings(BaseModel):
    """On-call escalation: how often a worker sweeps for pages whose next level is due."""

    sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="a page's level is told at most this long after it falls due",
    )


class Settings(BaseSettings):
    """Everything tenantops reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="TENANTOPS_",
        env_nested_delimiter="__",
        extra="ignore",
        # A validation error must not echo a webhook URL, key or password back.
        hide_input_in_errors=True,
    )

    data_dir: Path = Path("tenantops-data")
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file in data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    regions: list[
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
    ] = Field(
        default_factory=list,
        description="Regions a tenant may be placed in (data residency), e.g. "
        '["eu-central-1","eu-west-1"]; empty: any region name is accepted',
    )
    log_level: str = "INFO"
    log_json: bool = True
    oidc: OIDCSettings = Field(default_factory=OIDCSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    oncall: OncallSettings = Field(default_factory=OncallSettings)
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    terraform: TerraformSettings = Field(default_factory=TerraformSettings)
    kubernetes: KubernetesSettings | None = Field(
        default=None,
        description="server-side apply, drift and emergency isolation; unset: in-memory cluster",
    )
    argocd: ArgoCDSettings | None = Field(
        default=None, description="sync and watch tenant Applications; unset: no cluster"
    )
    servicenow: ServiceNowSettings | None = Field(
        default=None,
        description="open and update ITSM records; unset: the embedded ITIL records",
    )
    channels: ChannelsSettings = Field(default_factory=ChannelsSettings)
    finops: FinOpsSettings = Field(default_factory=FinOpsSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    # A bootstrap admin token printed once on first start of an empty database,
    # so the embedded default is usable without an identity provider.
    bootstrap_admin: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``TENANTOPS_*`` variables, then the TOML file named by
        ``TENANTOPS_CONFIG_FILE`` (same names, nested as tables: ``[events]``,
        ``broker = "nats"``): the environment overrides the file."""
        path = os.environ.get("TENANTOPS_CONFIG_FILE")
        if not path:
            return init_settings, env_settings, file_secret_settings
        if not Path(path).is_file():
            raise ValueError(f"TENANTOPS_CONFIG_FILE={path}: no such file")
        try:
            from_file = TomlConfigSettingsSource(
                settings_cls, toml_file=Path(path), deep_merge=True
            )
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"TENANTOPS_CONFIG_FILE={path} is not valid TOML: {exc}") from None
        return init_settings, env_settings, from_file, file_secret_settings

    @model_validator(mode="after")
    def _links_follow_the_address(self) -> Settings:
        """An unset ``notify.dashboard_url`` is this server's own URL, not a fixed port.

        A message's links must open where ``serve`` listens (``TENANTOPS_HOST``,
        ``TENANTOPS_PORT``); an explicit ``TENANTOPS_NOTIFY__DASHBOARD_URL`` (a proxy,
        a public name) wins. Filled once, here: a later assignment to ``host`` or
        ``port`` does not run this again.
        """
        if "dashboard_url" not in self.notify.model_fields_set:
            # A copy: a NotifySettings passed in may be shared. Not through the
            # attribute: that would mark the URL as set explicitly.
            filled = self.notify.model_copy()
            filled.__dict__["dashboard_url"] = self.own_url()
            self.notify = filled
        return self

    def own_url(self) -> str:
        """``http://host:port`` of this server as a reader can open it.

        A wildcard bind address (``0.0.0.0``, ``::``) is no address to open: the
        loopback one stands in for it; an IPv6 address is bracketed.
        """
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def resolved_database_url(self) -> str:
        """The URL to connect to: the configured one, or the embedded SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'tenantops.db').resolve()}"

    def resolved_terraform(self) -> TerraformSettings:
        """The Terraform settings with ``work_dir`` under ``data_dir`` when it is relative."""
        tf = self.terraform
        if tf.work_dir.is_absolute():
            return tf
        return tf.model_copy(update={"work_dir": self.data_dir / tf.work_dir})

    def resolved_gitops_path(self) -> Path:
        """Where the GitOps repository lives: the configured path, or ``data_dir/gitops``."""
        if self.gitops.repo_path is not None:
            return self.gitops.repo_path
        return self.data_dir / "gitops"
