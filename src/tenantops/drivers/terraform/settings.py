"""Settings of the Terraform adapter; backend config values and extra env are ``SecretStr``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

# src/tenantops/drivers/terraform/settings.py -> the repository root (a source checkout).
DEFAULT_MODULE = Path(__file__).resolve().parents[4] / "terraform" / "tenant-bootstrap"


class TerraformSettings(BaseModel):
    """Which binary, which module, where each tenant's working directory and state live."""

    binary: str = Field(
        default="",
        description="terraform or tofu (a name on PATH or a path); empty finds either on PATH.",
    )
    module_path: Path = Field(
        default=DEFAULT_MODULE, description="The root module applied once per tenant."
    )
    work_dir: Path = Field(
        default=Path("terraform-work"),
        description="One working directory (and local state) per tenant below this.",
    )
    timeout_seconds: float = Field(
        default=600.0, gt=0, description="Per terraform command (init, plan, show, apply)."
    )
    lock_timeout_seconds: int = Field(
        default=0, ge=0, description="How long plan/apply wait for a held state lock."
    )
    backend: str = Field(
        default="local",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Backend type; anything but local adds an empty backend block to fill.",
    )
    backend_config: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="`-backend-config` key/values (written to a 0600 file, never on argv).",
    )
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra environment (e.g. KUBE_TOKEN, TF_CLI_CONFIG_FILE) for terraform.",
    )
