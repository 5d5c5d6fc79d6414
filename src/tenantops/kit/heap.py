"""Keeping the startup heap out of Python's garbage collections.

A started tenantops process holds ~200,000 long-lived objects (modules, the
app, its routes, the SQLAlchemy mappers). Every full collection of the cyclic
collector walks all of them: ~130 ms on a 2-core machine, landing on whichever
request or step happens to allocate at that moment (decision 0029). They live
as long as the process, so they are collected once and frozen out of every
later collection; what requests create afterwards is collected as usual.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect the garbage of startup, then leave the survivors out of later collections.

    Call once, when the process is built and before it serves: objects frozen
    here are never examined again by the cyclic collector (reference counting
    still frees them), so it must not run per request or per test.
    """
    gc.collect()
    gc.freeze()
