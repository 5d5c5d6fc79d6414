"""The Terraform adapter against the real binary, offline.

The plan/apply tests run ``tests/drivers/terraform_fixture`` — the inputs of
``terraform/tenant-bootstrap`` over ``terraform_data`` (the builtin provider,
nothing to download). The real module needs the Kubernetes provider from a
registry this machine cannot reach: that is the doctor/init failure test, with
a proxy that refuses so it fails fast and the same way everywhere.

A missing binary fails these tests in CI (``CI`` set; the machines it runs on
have terraform on PATH). On a laptop without terraform they are skipped with
that reason, as PostgreSQL-only tests are left out with TENANTOPS_TEST_STORES.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tenantops.drivers.errors import Retry
from tenantops.drivers.terraform.cli import FIX_BINARY, TerraformCli
from tenantops.drivers.terraform.port import TerraformError
from tenantops.drivers.terraform.settings import DEFAULT_MODULE, TerraformSettings
from tenantops.provisioning.manifests import TIERS, default_groups

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "terraform_fixture"


@pytest.fixture(scope="module")
def binary() -> str:
    found = shutil.which("terraform") or shutil.which("tofu")
    if found is None:
        reason = (
            "terraform (or tofu) is not on PATH: install terraform >= 1.5 to run the "
            "Terraform adapter tests"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run them)")
        pytest.skip(reason)
    return found


@pytest.fixture
def hermetic(tmp_path: Path) -> dict[str, SecretStr]:
    """An empty CLI config and plugin cache, and a proxy that refuses: no registry, fast."""
    config = tmp_path / "terraformrc"
    config.write_text("", encoding="utf-8")
    return {
        "TF_CLI_CONFIG_FILE": SecretStr(str(config)),
        "TF_PLUGIN_CACHE_DIR": SecretStr(""),
        "HTTPS_PROXY": SecretStr("http://127.0.0.1:9"),
        "HTTP_PROXY": SecretStr("http://127.0.0.1:9"),
        "NO_PROXY": SecretStr(""),
    }


@pytest.fixture
def cli(binary: str, tmp_path: Path, hermetic: dict[str, SecretStr]) -> TerraformCli:
    return TerraformCli(
        TerraformSettings(
            binary=binary,
            module_path=FIXTURE,
            work_dir=tmp_path / "work",
            timeout_seconds=30,
            env=hermetic,
        )
    )


def tenant_vars(name: str = "acme", tier: str = "basic") -> dict[str, Any]:
    return {
        "tenant": name,
        "tier": tier,
        "region": "eu-west",
        "compliance_classification": "internal",
        "business_owner": "Ada",
        "contacts": ["ops@acme.example"],
        "isolated": False,
        "groups": {g.name: g.access.value for g in default_groups(name)},
        "tier_size": dataclasses.asdict(TIERS[tier]),
    }


def state_of(cli: TerraformCli, tenant: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (cli.tenant_dir(tenant) / "terraform.tfstate").read_text(encoding="utf-8")
    )
    return data


def test_plan_is_json_evidence_with_a_stable_digest(cli: TerraformCli, tmp_path: Path) -> None:
    plan = cli.plan("acme", tenant_vars(), idempotency_key="run-1:plan")

    assert plan.has_changes
    # Bindings named as the GitOps render names them: <access>-<sha256(group)[:10]>.
    bindings = [
        f'terraform_data.binding["{g.access.value}-{hashlib.sha256(g.name.encode()).hexdigest()[:10]}"]'
        for g in default_groups("acme")
    ]
    assert plan.changes == {
        "create": sorted(
            [
                "terraform_data.namespace",
                "terraform_data.quota",
                "terraform_data.limits",
                'terraform_data.role["admin"]',
                'terraform_data.role["developer"]',
                'terraform_data.role["viewer"]',
                *bindings,
            ]
        )
    }
    namespace = next(
        rc
        for rc in plan.plan_json["resource_changes"]
        if rc["address"] == "terraform_data.namespace"
    )
    assert namespace["change"]["after"]["input"]["labels"]["tenantops.io/tier"] == "basic"
    evidence = json.loads(json.dumps(plan.as_dict()))
    assert evidence["digest"] == plan.digest
    assert evidence["plan"]["format_version"]

    # Same inputs, same (empty) state, another working directory: the same digest.
    other = TerraformCli(cli.settings.model_copy(update={"work_dir": tmp_path / "elsewhere"}))
    again = other.plan("acme", tenant_vars(), idempotency_key="run-2:plan")
    assert again.digest == plan.digest
    changed = other.plan("acme", tenant_vars(tier="premium"), idempotency_key="run-3:plan")
    assert changed.digest != plan.digest


def test_apply_writes_state_once_per_key_and_a_new_plan_shows_no_changes(
    cli: TerraformCli,
) -> None:
    plan = cli.plan("acme", tenant_vars(), idempotency_key="run-1:bootstrap")
    applied = cli.apply(plan)

    assert not applied.replayed
    assert applied.digest == plan.digest
    assert applied.outputs == {"namespace": "acme"}
    state = state_of(cli, "acme")
    assert {r["name"] for r in state["resources"]} == {
        "namespace",
        "quota",
        "limits",
        "role",
        "binding",
    }
    serial = state["serial"]

    # The step runs again after a crash: the same key applies nothing.
    again = cli.apply(plan)
    assert again.replayed
    assert again.digest == plan.digest
    assert state_of(cli, "acme")["serial"] == serial
    # ...and planning under that key returns the plan that was applied.
    assert cli.plan("acme", tenant_vars(), idempotency_key="run-1:bootstrap").digest == plan.digest

    fresh = cli.plan("acme", tenant_vars(), idempotency_key="run-2:bootstrap")
    assert not fresh.has_changes
    assert fresh.changes == {}
    assert cli.apply(fresh).changes == {}


def test_a_run_that_crashed_after_terraform_applied_is_recorded_not_applied_again(
    cli: TerraformCli, binary: str
) -> None:
    plan = cli.plan("acme", tenant_vars(), idempotency_key="run-1:bootstrap")
    work = cli.tenant_dir("acme")
    # The crash: the apply began (its start marker) and terraform finished, no end marker.
    key = hashlib.sha256(b"run-1:bootstrap").hexdigest()[:32]
    started = work / ".tenantops" / "applied" / f"{key}.started"
    started.parent.mkdir(parents=True)
    started.write_text(json.dumps({"digest": plan.digest}), encoding="utf-8")
    subprocess.run(
        [binary, "apply", "-input=false", "-no-color", plan.plan_file],
        cwd=work,
        capture_output=True,
        timeout=30,
        check=True,
    )
    serial = state_of(cli, "acme")["serial"]

    applied = cli.apply(plan)

    assert applied.digest == plan.digest
    assert state_of(cli, "acme")["serial"] == serial
    assert cli.apply(plan).replayed


def test_a_stale_plan_from_another_run_is_permanent(cli: TerraformCli) -> None:
    first = cli.plan("acme", tenant_vars(), idempotency_key="a")
    second = cli.plan("acme", tenant_vars(), idempotency_key="b")
    cli.apply(first)

    with pytest.raises(TerraformError) as caught:
        cli.apply(second)

    assert caught.value.retry is Retry.PERMANENT
    assert "plan again" in str(caught.value)


def test_a_key_reused_for_another_plan_is_refused(cli: TerraformCli) -> None:
    cli.apply(cli.plan("acme", tenant_vars(), idempotency_key="k"))
    other = cli.plan("acme", tenant_vars(tier="standard"), idempotency_key="k2")
    reused = dataclasses.replace(other, idempotency_key="k")

    with pytest.raises(TerraformError) as caught:
        cli.apply(reused)

    assert caught.value.retry is Retry.PERMANENT
    assert "already applied" in str(caught.value)


def test_an_invalid_module_is_permanent_with_terraforms_message(
    cli: TerraformCli, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(FIXTURE / "variables.tf", broken / "variables.tf")
    (broken / "main.tf").write_text(
        'resource "terraform_data" "x" {\n  input = var.no_such_variable\n}\n', encoding="utf-8"
    )
    bad = TerraformCli(cli.settings.model_copy(update={"module_path": broken}))

    with pytest.raises(TerraformError) as caught:
        bad.plan("acme", tenant_vars(), idempotency_key="k")

    assert caught.value.retry is Retry.PERMANENT
    assert "Reference to undeclared input variable" in str(caught.value)


def test_invalid_variables_are_permanent_with_the_modules_message(cli: TerraformCli) -> None:
    variables = tenant_vars()
    variables["groups"] = {"tenant-acme-admins": "root"}

    with pytest.raises(TerraformError) as caught:
        cli.plan("acme", variables, idempotency_key="k")

    assert caught.value.retry is Retry.PERMANENT
    assert "must be admin, developer or viewer" in str(caught.value)


def test_a_held_state_lock_is_retriable(cli: TerraformCli) -> None:
    cli.apply(cli.plan("acme", tenant_vars(), idempotency_key="first"))
    with (cli.tenant_dir("acme") / "terraform.tfstate").open("r+") as state:
        fcntl.lockf(state, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another terraform run holds
        with pytest.raises(TerraformError) as caught:
            cli.plan("acme", tenant_vars(tier="standard"), idempotency_key="second")

    assert caught.value.retry is Retry.RETRIABLE
    assert "state lock" in str(caught.value)


def test_a_missing_binary_needs_a_human_and_doctor_says_so(tmp_path: Path) -> None:
    cli = TerraformCli(
        TerraformSettings(
            binary=str(tmp_path / "no" / "terraform"),
            module_path=FIXTURE,
            work_dir=tmp_path / "work",
        )
    )

    with pytest.raises(TerraformError) as caught:
        cli.plan("acme", tenant_vars(), idempotency_key="k")
    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert "not found" in str(caught.value)

    [row] = cli.check()
    assert row.check == "terraform binary"
    assert not row.ok
    assert row.fix == FIX_BINARY
    assert "GitOps path" in row.fix


def test_the_real_module_without_a_registry_fails_init_with_the_mirror_fix(
    binary: str, tmp_path: Path, hermetic: dict[str, SecretStr]
) -> None:
    cli = TerraformCli(
        TerraformSettings(
            binary=binary,
            module_path=DEFAULT_MODULE,
            work_dir=tmp_path / "work",
            timeout_seconds=20,
            env=hermetic,
        )
    )
    started = time.monotonic()

    binary_row, init_row = cli.check()
    with pytest.raises(TerraformError) as caught:
        cli.plan("acme", tenant_vars(), idempotency_key="k")

    assert time.monotonic() - started < 40
    assert binary_row.ok
    assert "1." in binary_row.detail  # the version
    assert not init_row.ok
    assert "hashicorp/kubernetes" in init_row.detail
    assert "filesystem_mirror" in init_row.fix
    assert "provider_installation" in init_row.fix
    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert "filesystem_mirror" in str(caught.value)


def test_the_fixture_takes_exactly_the_real_modules_inputs() -> None:
    def declarations(path: Path) -> list[str]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [line for line in lines if not line.startswith("#")]

    assert declarations(FIXTURE / "variables.tf") == declarations(DEFAULT_MODULE / "variables.tf")
    assert set(dataclasses.asdict(TIERS["basic"])) <= set(
        (DEFAULT_MODULE / "variables.tf").read_text(encoding="utf-8").split()
    )


@pytest.mark.parametrize("directory", [ROOT / "terraform", FIXTURE])
def test_terraform_files_are_formatted(binary: str, directory: Path) -> None:
    done = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(directory)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_secrets_stay_out_of_messages_and_settings(cli: TerraformCli) -> None:
    settings = cli.settings.model_copy(
        update={"env": {**cli.settings.env, "KUBE_TOKEN": SecretStr("s3cr3t-token")}}
    )
    secretive = TerraformCli(settings)

    assert "s3cr3t-token" not in repr(settings)
    assert secretive.scrub("Authorization: Bearer s3cr3t-token") == "Authorization: Bearer ***"


def test_a_tenant_name_that_is_not_a_dns_label_is_refused(cli: TerraformCli) -> None:
    with pytest.raises(TerraformError) as caught:
        cli.plan("../etc", tenant_vars(), idempotency_key="k")
    assert caught.value.retry is Retry.PERMANENT
