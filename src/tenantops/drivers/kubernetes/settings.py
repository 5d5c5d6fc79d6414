"""Connection settings of the Kubernetes adapter; the token is a ``SecretStr`` and never shown.

Without a token, the in-cluster service account is used: its token and CA
under ``service_account_dir``, and ``KUBERNETES_SERVICE_HOST``/``_PORT`` for
the address when ``api_url`` is left at its default.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

IN_CLUSTER_URL = "https://kubernetes.default.svc"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesSettings(BaseModel):
    """Where the API server is, the bearer token it takes, and how to trust it."""

    api_url: str = Field(
        default=IN_CLUSTER_URL,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="The API server (as in a kubeconfig's `server:`).",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token; empty uses the in-cluster service account token.",
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_path: Path | None = Field(
        default=None, description="CA bundle of the API server (in cluster: the SA's ca.crt)."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Per HTTP request.")
    field_manager: str = Field(default="tenantops", min_length=1, max_length=128)
    force: bool = Field(
        default=True,
        description="Take over fields another manager owns (tenantops is the source of truth).",
    )
    service_account_dir: Path = Field(default=SERVICE_ACCOUNT_DIR)

    def bearer(self) -> str:
        """The token to send: the configured one, else the service account's, else empty."""
        token = self.token.get_secret_value()
        if token:
            return token
        path = self.service_account_dir / "token"
        return path.read_text().strip() if path.is_file() else ""

    def url(self) -> str:
        """The API server address; in cluster, from the service environment variables."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if self.api_url == IN_CLUSTER_URL and host and not self.token.get_secret_value():
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            return f"https://{f'[{host}]' if ':' in host else host}:{port}"
        return self.api_url.rstrip("/")

    def verify(self) -> bool | str:
        """What httpx verifies TLS with: the CA bundle, the service account's, or the system's."""
        if not self.verify_tls:
            return False
        if self.ca_path is not None:
            return str(self.ca_path)
        sa_ca = self.service_account_dir / "ca.crt"
        return str(sa_ca) if sa_ca.is_file() else True
