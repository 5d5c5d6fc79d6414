"""``tenantops runs`` (runs on a server, over HTTP), ``tenantops runbooks`` (the library)
and ``tenantops windows`` (maintenance windows, over HTTP).

``runbooks validate``, ``schema`` and ``test`` need no server: they read the
runbook files and, for ``test``, run one against a throwaway database in a
temporary directory with the local drivers.
"""

from tenantops.runbooks.cli.runbooks import runbooks_app
from tenantops.runbooks.cli.runs import runs_app
from tenantops.runbooks.cli.windows import windows_app

__all__ = ["runbooks_app", "runs_app", "windows_app"]
