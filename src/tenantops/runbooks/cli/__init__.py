"""``tenantops runs`` (runs on a server, over HTTP) and ``tenantops runbooks`` (the library).

``runbooks validate``, ``schema`` and ``test`` need no server: they read the
runbook files and, for ``test``, run one against a throwaway database in a
temporary directory with the local drivers.
"""

from tenantops.runbooks.cli.runbooks import runbooks_app
from tenantops.runbooks.cli.runs import runs_app

__all__ = ["runbooks_app", "runs_app"]
