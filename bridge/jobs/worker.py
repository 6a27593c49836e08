"""The worker class of `ponte worker`'s pool: an RQ SimpleWorker that leaves with its pool.

The pool forks its workers. When the pool process dies without stopping them (SIGKILL, the OOM
killer), supervisord starts a new pool, and the old workers would go on as orphans outside the
program's process group, surviving even supervisord's own stop. Each worker therefore watches its
parent and, once it is gone, asks itself for a warm shutdown: it finishes its job and exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from loguru import logger
from rq import SimpleWorker

_WATCH_SECONDS = 1.0


class PoolWorker(SimpleWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        parent = os.getppid()
        threading.Thread(target=_leave_with, args=(parent,), name="pool-watch",
                         daemon=True).start()
        return bool(super().work(*args, **kwargs))


def _leave_with(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
        time.sleep(_WATCH_SECONDS)
    logger.bind(pid=os.getpid()).warning("Worker pool is gone; this worker stops")
    os.kill(os.getpid(), signal.SIGTERM)  # RQ's warm shutdown, handled in the main thread
