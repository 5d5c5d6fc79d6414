"""Run ``terraform`` (or ``tofu``) per tenant: init, plan to a saved file, show it, apply it.

Each tenant gets its own working directory under ``work_dir`` (a copy of the
module, its variables, its local state unless a backend is configured). An
apply is recorded by a marker file keyed by the step's idempotency key: the
same key again returns what was recorded and runs nothing, so a re-executed
step never applies twice. Failures are mapped onto :class:`Retry`:

- binary missing, provider registry unreachable, denied credentials → needs a human;
- invalid configuration or variables, a stale saved plan → permanent;
- a held state lock, a cluster that did not answer, a command timeout → retriable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from tenantops.drivers.errors import CheckRow, Retry
from tenantops.drivers.terraform.port import (
    Applied,
    Plan,
    TerraformError,
    change_summary,
    plan_digest,
)
from tenantops.drivers.terraform.settings import TerraformSettings
from tenantops.kit.clock import utcnow

log = structlog.get_logger("tenantops.terraform")

FIX_BINARY = (
    "install terraform (>= 1.5) or tofu on this host, or set TENANTOPS_TERRAFORM__BINARY "
    "to its path; until then runbooks use the GitOps path"
)
FIX_MIRROR = (
    "mirror the providers: on a connected host run `terraform providers mirror <dir>` in "
    "the module, copy <dir> here and point the CLI config (TF_CLI_CONFIG_FILE) at it with "
    'provider_installation { filesystem_mirror { path = "<dir>" } }'
)
_TENANT = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MODULE_FILES = ("*.tf", "*.tf.json", ".terraform.lock.hcl")
_OVERRIDE = "zz_tenantops_backend_override.tf"
_REGISTRY = (
    "failed to query available provider packages",
    "failed to install provider",
    "could not connect to registry",
    "failed to request discovery document",
    "failed to download module",
    "registry.terraform.io",
    "registry.opentofu.org",
)
_LOCK = ("error acquiring the state lock", "state lock")
_TRANSIENT = (
    "connection refused",
    "i/o timeout",
    "tls handshake timeout",
    "context deadline exceeded",
    "connection reset by peer",
    "too many requests",
    "service unavailable",
    "the server is currently unable to handle the request",
)
_DENIED = ("unauthorized", "forbidden", "permission denied", "access denied")
_STALE = "saved plan is stale"


class TerraformCli:
    """The :class:`~tenantops.drivers.terraform.port.Provisioner` that runs the CLI."""

    def __init__(self, settings: TerraformSettings) -> None:
        self.settings = settings

    # Port -------------------------------------------------------------------------------

    def plan(self, tenant: str, variables: Mapping[str, Any], *, idempotency_key: str) -> Plan:
        """Init (when the module or backend changed), plan to a file, read it back as JSON."""
        work = self.tenant_dir(tenant)
        key = _key_id(idempotency_key)
        applied = _read_json(work / ".tenantops" / "applied" / f"{key}.json")
        recorded = _read_json(work / ".tenantops" / "plans" / f"{key}.json")
        if applied is not None and recorded is not None:
            return Plan.from_dict(recorded)  # this step already applied it
        binary = self.binary()
        self._prepare(work, variables)
        self._init(binary, work)
        plan_file = work / ".tenantops" / "plans" / f"{key}.tfplan"
        plan_file.parent.mkdir(parents=True, exist_ok=True)
        lock = f"-lock-timeout={self.settings.lock_timeout_seconds}s"
        self._run(
            binary,
            ["plan", "-input=false", "-no-color", lock, f"-out={plan_file}", "-detailed-exitcode"],
            cwd=work,
            stage="plan",
            ok_codes=(0, 2),
        )
        shown = self._run(binary, ["show", "-json", str(plan_file)], cwd=work, stage="show")
        try:
            plan_json: dict[str, Any] = json.loads(shown)
        except ValueError as exc:
            raise TerraformError(
                f"terraform show -json gave no JSON for {tenant}: {exc}", retry=Retry.PERMANENT
            ) from exc
        plan = Plan(
            tenant=tenant,
            idempotency_key=idempotency_key,
            digest=plan_digest(plan_json),
            changes=change_summary(plan_json),
            plan_json=plan_json,
            plan_file=str(plan_file),
            binary_version=str(plan_json.get("terraform_version") or ""),
        )
        _write(work / ".tenantops" / "plans" / f"{key}.json", plan.as_dict())
        return plan

    def apply(self, plan: Plan) -> Applied:
        """Apply the saved plan once per key; the same key and digest again is a replay."""
        work = self.tenant_dir(plan.tenant)
        key = _key_id(plan.idempotency_key)
        marker = work / ".tenantops" / "applied" / f"{key}.json"
        started = marker.with_suffix(".started")
        done = _read_json(marker)
        if done is not None:
            if done["digest"] != plan.digest:
                raise TerraformError(
                    f"idempotency key {plan.idempotency_key!r} already applied plan "
                    f"{done['digest']}, not {plan.digest}",
                    retry=Retry.PERMANENT,
                )
            return Applied(**{**done, "replayed": True})
        plan_file = Path(plan.plan_file)
        if not plan_file.is_file():
            raise TerraformError(
                f"the saved plan for {plan.tenant} ({plan_file}) is gone: plan again",
                retry=Retry.PERMANENT,
            )
        binary = self.binary()
        was_started = _read_json(started)
        _write(started, {"digest": plan.digest, "at": utcnow().isoformat()})
        lock = f"-lock-timeout={self.settings.lock_timeout_seconds}s"
        try:
            self._run(
                binary,
                ["apply", "-input=false", "-no-color", lock, str(plan_file)],
                cwd=work,
                stage="apply",
            )
        except TerraformError as exc:
            if not (
                _STALE in exc.output.lower()
                and was_started is not None
                and was_started.get("digest") == plan.digest
            ):
                started.unlink(missing_ok=True)
                raise
            # This key's apply started before and never recorded its end (a crash):
            # the plan is stale because the state moved. Done only if nothing is left.
            if not self._converged(binary, work):
                raise TerraformError(
                    f"an earlier run of {plan.idempotency_key!r} stopped during apply and "
                    f"{plan.tenant} still has changes: read the state, then plan again",
                    retry=Retry.NEEDS_HUMAN,
                    output=exc.output,
                ) from exc
            log.warning("terraform plan was applied by an earlier run", tenant=plan.tenant, key=key)
        outputs = self._outputs(binary, work)
        result = Applied(
            tenant=plan.tenant,
            idempotency_key=plan.idempotency_key,
            digest=plan.digest,
            applied_at=utcnow().isoformat(),
            changes=plan.changes,
            outputs=outputs,
        )
        _write(marker, result.as_dict())
        started.unlink(missing_ok=True)
        return result

    def check(self) -> list[CheckRow]:
        """Binary and version; whether the module initialises here (providers reachable)."""
        try:
            binary = self.binary()
        except TerraformError as exc:
            return [CheckRow("terraform binary", False, str(exc), FIX_BINARY)]
        try:
            version = self.version(binary)
        except TerraformError as exc:
            return [CheckRow("terraform binary", False, f"{binary}: {exc}", FIX_BINARY)]
        rows = [CheckRow("terraform binary", True, f"{binary} {version}", "")]
        module = self.settings.module_path
        if not any(module.glob("*.tf")):
            return [
                *rows,
                CheckRow(
                    "terraform module",
                    False,
                    f"{module} has no .tf files",
                    "set TENANTOPS_TERRAFORM__MODULE_PATH to the tenant-bootstrap module",
                ),
            ]
        scratch = self.settings.work_dir.resolve() / ".doctor"
        try:
            self._copy_module(scratch)
            self._run(
                binary,
                ["init", "-input=false", "-no-color", "-backend=false"],
                cwd=scratch,
                stage="init",
            )
        except TerraformError as exc:
            fix = FIX_MIRROR if _REGISTRY_HINT in str(exc) else "see the detail"
            detail = f"{module}: {(exc.output or str(exc))[:300]}"
            return [*rows, CheckRow("terraform init", False, detail, fix)]
        except OSError as exc:
            return [
                *rows,
                CheckRow(
                    "terraform init",
                    False,
                    f"{scratch}: {exc}",
                    "set TENANTOPS_TERRAFORM__WORK_DIR to a writable directory",
                ),
            ]
        return [*rows, CheckRow("terraform init", True, f"{module} initialises", "")]

    # Helpers ----------------------------------------------------------------------------

    def binary(self) -> str:
        """The configured binary, else ``terraform`` or ``tofu`` on PATH; needs a human if none."""
        wanted = self.settings.binary
        candidates = [wanted] if wanted else ["terraform", "tofu"]
        for name in candidates:
            if os.sep in name:
                if Path(name).is_file() and os.access(name, os.X_OK):
                    return name
                continue
            found = shutil.which(name)
            if found:
                return found
        raise TerraformError(
            f"{' or '.join(candidates)} not found (PATH or path)", retry=Retry.NEEDS_HUMAN
        )

    def version(self, binary: str) -> str:
        """``terraform version -json`` → ``1.11.4`` (first line of the text form as fallback)."""
        out = self._run(binary, ["version", "-json"], cwd=None, stage="version")
        try:
            return str(json.loads(out)["terraform_version"])
        except (ValueError, KeyError):
            return out.strip().splitlines()[0] if out.strip() else "unknown version"

    def tenant_dir(self, tenant: str) -> Path:
        """The tenant's working directory; the name is a DNS label, so never a path escape."""
        if not _TENANT.match(tenant):
            raise TerraformError(
                f"tenant name {tenant!r} is not a DNS-1123 label", retry=Retry.PERMANENT
            )
        return self.settings.work_dir.resolve() / tenant

    def _prepare(self, work: Path, variables: Mapping[str, Any]) -> None:
        self._copy_module(work)
        _write(work / "terraform.tfvars.json", dict(variables), mode=0o600)
        override = work / _OVERRIDE
        if self.settings.backend == "local":
            override.unlink(missing_ok=True)
        else:
            override.write_text(
                f'terraform {{\n  backend "{self.settings.backend}" {{}}\n}}\n', encoding="utf-8"
            )

    def _copy_module(self, work: Path) -> None:
        """Replace the module files in ``work`` with the module's (state and plans stay)."""
        source = self.settings.module_path
        if not source.is_dir():
            raise TerraformError(f"module {source} does not exist", retry=Retry.NEEDS_HUMAN)
        work.mkdir(parents=True, exist_ok=True)
        for pattern in ("*.tf", "*.tf.json"):
            for stale in work.glob(pattern):
                if stale.name != _OVERRIDE:
                    stale.unlink()
        for pattern in _MODULE_FILES:
            for path in source.glob(pattern):
                shutil.copy2(path, work / path.name)

    def _init(self, binary: str, work: Path) -> None:
        """``init`` when the module files or the backend changed since the last one."""
        backend_file = work / ".tenantops" / "backend.tfbackend"
        args = ["init", "-input=false", "-no-color"]
        if self.settings.backend_config:
            lines = [
                f"{k} = {_hcl_string(v.get_secret_value())}"
                for k, v in sorted(self.settings.backend_config.items())
            ]
            backend_file.parent.mkdir(parents=True, exist_ok=True)
            backend_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
            backend_file.chmod(0o600)
            args.append(f"-backend-config={backend_file}")
        stamp = work / ".tenantops" / "init.sha256"
        stamp.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256(self.settings.backend.encode())
        for path in [*sorted(work.glob("*.tf")), backend_file]:
            if path.is_file():
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        if (work / ".terraform").is_dir() and stamp.is_file():
            if stamp.read_text(encoding="utf-8") == h.hexdigest():
                return
            args.append("-reconfigure")
        self._run(binary, args, cwd=work, stage="init")
        stamp.write_text(h.hexdigest(), encoding="utf-8")

    def _converged(self, binary: str, work: Path) -> bool:
        """Whether a fresh plan with the tenant's current variables has nothing to do."""
        lock = f"-lock-timeout={self.settings.lock_timeout_seconds}s"
        args = ["plan", "-input=false", "-no-color", lock, "-detailed-exitcode"]
        return self._exec(binary, args, cwd=work, stage="plan", ok_codes=(0, 2)).returncode == 0

    def _outputs(self, binary: str, work: Path) -> dict[str, Any]:
        raw = json.loads(self._run(binary, ["output", "-json"], cwd=work, stage="output") or "{}")
        return {
            name: "(sensitive)" if o.get("sensitive") else o.get("value")
            for name, o in dict(raw).items()
        }

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: v.get_secret_value() for k, v in self.settings.env.items()})
        env["TF_IN_AUTOMATION"] = "1"
        env["TF_INPUT"] = "0"
        return env

    def _secrets(self) -> list[str]:
        values = [v.get_secret_value() for v in self.settings.env.values()]
        values += [v.get_secret_value() for v in self.settings.backend_config.values()]
        return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every configured secret value replaced by ``***``."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _run(
        self,
        binary: str,
        args: Sequence[str],
        *,
        cwd: Path | None,
        stage: str,
        ok_codes: Sequence[int] = (0,),
    ) -> str:
        """Run one command with a timeout; its stdout, or a mapped :class:`TerraformError`."""
        return self._exec(binary, args, cwd=cwd, stage=stage, ok_codes=ok_codes).stdout

    def _exec(
        self,
        binary: str,
        args: Sequence[str],
        *,
        cwd: Path | None,
        stage: str,
        ok_codes: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        command = [binary, *args]
        log.info("terraform", command=" ".join(command), cwd=str(cwd))
        try:
            done = subprocess.run(  # noqa: S603 - argv built here, no shell
                command,
                cwd=cwd,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.settings.timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            retry = Retry.NEEDS_HUMAN if stage == "init" else Retry.RETRIABLE
            raise TerraformError(
                f"terraform {stage} took longer than {self.settings.timeout_seconds:g}s"
                + (f" ({_REGISTRY_HINT}?)" if stage == "init" else ""),
                retry=retry,
            ) from exc
        except OSError as exc:
            raise TerraformError(f"cannot run {binary}: {exc}", retry=Retry.NEEDS_HUMAN) from exc
        if done.returncode in ok_codes:
            return done
        output = self.scrub(_errors_of(done.stderr) or done.stdout)
        retry, hint = _classify(stage, output)
        message = f"terraform {stage} failed: {output[:1500]}"
        if hint:
            message += f" [{hint}]"
        log.warning("terraform failed", message=message)
        raise TerraformError(message, retry=retry, output=output)


_REGISTRY_HINT = "provider registry unreachable"


def _classify(stage: str, output: str) -> tuple[Retry, str]:
    """Retry class and a short hint from a failed command's message."""
    text = output.lower()
    if any(s in text for s in _LOCK):
        return Retry.RETRIABLE, "state lock held by another run"
    if stage == "init" and any(s in text for s in _REGISTRY):
        # Retrying cannot fetch a provider on a host that cannot reach the registry:
        # someone must mirror the providers (or open the egress) first.
        return Retry.NEEDS_HUMAN, f"{_REGISTRY_HINT}: {FIX_MIRROR}"
    if _STALE in text:
        return Retry.PERMANENT, "the state changed since this plan: plan again"
    if any(s in text for s in _TRANSIENT):
        return Retry.RETRIABLE, "the cluster or backend did not answer"
    if any(s in text for s in _DENIED):
        return Retry.NEEDS_HUMAN, "credentials denied: check the provider's credentials"
    if stage == "apply":
        # An apply that failed half-way may have changed some objects: a person looks first.
        return Retry.NEEDS_HUMAN, "apply failed part-way; read the state before retrying"
    return Retry.PERMANENT, ""


def _errors_of(stderr: str) -> str:
    """The ``Error:`` blocks of terraform's stderr (drops CLI-config warnings), else all of it."""
    text = stderr.strip()
    index = text.find("Error:")
    return text[index:] if index >= 0 else text


def _key_id(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def _hcl_string(value: str) -> str:
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def _write(path: Path, data: Mapping[str, Any], *, mode: int = 0o644) -> None:
    """Write JSON atomically (a crash leaves the old file or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return dict(data)
