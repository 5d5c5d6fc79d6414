"""``terraform.plan_apply`` as a runbook step, with the real terraform binary, offline.

The module is the test stand-in of tenant-bootstrap (same variables, only the
builtin ``terraform_data``), so no provider has to be downloaded.
"""

from __future__ import annotations

from pathlib import Path

from tenantops.config import Settings
from tenantops.provisioning.actions import terraform_actions
from tests.drivers.test_terraform import FIXTURE, binary
from tests.provisioning.test_actions import ctx

__all__ = ["binary"]  # the fixture: terraform on PATH (fails in CI when missing)


def test_a_step_plans_and_applies_once_with_the_plan_as_evidence(
    tmp_path: Path, binary: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        terraform={"binary": binary, "module_path": str(FIXTURE), "work_dir": "tf"},
    )
    action = terraform_actions(settings)["terraform.plan_apply"]
    first = action.run(ctx("terraform"))
    assert (tmp_path / "tf" / "acme").is_dir()  # the work dir lives under the data dir
    plan = first.evidence["plan"]
    assert plan["tenant"] == "acme"
    assert plan["digest"]
    assert first.evidence["applied"]

    again = action.run(ctx("terraform"))  # the same step run again: nothing applied twice
    assert again.evidence["plan"]["digest"] == plan["digest"]
    assert again.evidence["applied"]["replayed"] is True


def test_not_chosen_the_step_is_done_without_effect_and_names_the_gitops_path(
    tmp_path: Path,
) -> None:
    action = terraform_actions(Settings(data_dir=tmp_path))["terraform.plan_apply"]
    result = action.run(ctx("terraform"))
    assert result.evidence["skipped"] is True
    assert "TENANTOPS_TERRAFORM__BINARY" in result.evidence["reason"]
    assert not (tmp_path / "terraform-work").exists()


def test_chosen_but_not_installed_the_runbook_keeps_the_gitops_path(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, terraform={"binary": str(tmp_path / "no-such-tofu")})
    result = terraform_actions(settings)["terraform.plan_apply"].run(ctx("terraform"))
    assert result.evidence["skipped"] is True
    assert "not found" in result.evidence["reason"]
    assert "GitOps" in result.evidence["reason"]
