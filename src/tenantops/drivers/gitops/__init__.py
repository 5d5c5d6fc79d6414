"""The GitOps port and its local adapter (a real git repository on disk)."""

from tenantops.drivers.gitops.local import LocalGitRepo
from tenantops.drivers.gitops.port import Change, Commit, GitOpsRepo

__all__ = ["Change", "Commit", "GitOpsRepo", "LocalGitRepo"]
