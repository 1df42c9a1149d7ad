"""``[core] hostname_callable`` of the distributed test's Celery workers.

Both workers run on one machine, so the host name cannot tell them apart; each worker's environment
sets ``HERE_BATCH_WORKER_NAME`` and task instances record it as their ``hostname``.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``$HERE_BATCH_WORKER_NAME``, else the fully qualified host name."""
    return os.environ.get("HERE_BATCH_WORKER_NAME") or socket.getfqdn()
