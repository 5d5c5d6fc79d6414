"""Connection settings of the Argo CD adapter; the token is a ``SecretStr`` and never shown."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class ArgoCDSettings(BaseModel):
    """Where the Argo CD API server is, the token it takes, and how long to wait on it."""

    url: str = Field(
        default="https://argocd.example.invalid",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="The Argo CD API server (as `argocd --server`, with scheme).",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="A project-role or account token allowed `applications, get` and `sync`.",
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_path: Path | None = Field(
        default=None, description="CA bundle that signed the server's certificate."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Per HTTP request.")
    wait_seconds: float = Field(default=300.0, gt=0, description="Default sync wait.")
    poll_initial_seconds: float = Field(default=2.0, gt=0)
    poll_max_seconds: float = Field(default=15.0, gt=0)
    history_entries: int = Field(default=5, ge=0, le=50, description="History kept as evidence.")

    def verify(self) -> bool | str:
        """What httpx verifies TLS with: the CA bundle if set, the system's, or nothing."""
        if not self.verify_tls:
            return False
        return str(self.ca_path) if self.ca_path is not None else True
