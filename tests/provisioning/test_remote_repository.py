"""``TENANTOPS_GITOPS__REMOTE__URL`` sends the gitops.* steps to a remote repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenantops.config import Settings
from tenantops.doctor import gitops as gitops_probe
from tenantops.drivers.gitops.remote import RemoteGitRepo
from tenantops.provisioning.actions import gitops_actions, gitops_repo, platform_from
from tests.provisioning.test_actions import ctx


def bare(tmp_path: Path) -> Path:
    where = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(where)], check=True)
    return where


def test_provisioning_pushes_to_the_configured_remote(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", gitops={"remote": {"url": remote.as_uri()}})
    assert isinstance(gitops_repo(settings), RemoteGitRepo)
    assert platform_from(settings).repo_url == remote.as_uri()  # what Argo CD pulls

    result = gitops_actions(settings)["gitops.sync_tenant"].run(ctx())
    pushed = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%H %s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert pushed[0].startswith(str(result.evidence["commit"]))
    listing = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tenants/acme/" in listing
    assert not (tmp_path / "data" / "gitops").exists()  # the local repository is not used


def test_doctor_checks_the_remote_instead_of_the_local_path(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", gitops={"remote": {"url": remote.as_uri()}})
    findings = list(gitops_probe(settings))
    checks = [f.check for f in findings]
    assert "gitops: repository" not in checks
    assert all(f.status == "ok" for f in findings), findings
    assert len(findings) >= 3

    gone = Settings(
        data_dir=tmp_path / "data", gitops={"remote": {"url": (tmp_path / "nope.git").as_uri()}}
    )
    failed = [f for f in gitops_probe(gone) if f.status == "fail"]
    assert failed
    assert all(f.fix for f in failed)
