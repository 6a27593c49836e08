"""The worker class of `ponte worker`'s pool: an RQ SimpleWorker that leaves with its pool.

The pool forks its workers, and each worker forks RQ's scheduler (the process that moves retries
into the queue when they are due). When a parent dies without stopping its children (SIGKILL,
the OOM killer), supervisord starts a new pool, and the old processes would go on as orphans
outside the program's process group, surviving even supervisord's own stop (an orphan scheduler
also keeps the scheduler lock, so the new pool's retries wait for it). Each worker and each
scheduler therefore watches its parent and, once it is gone, asks itself for a warm shutdown.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from loguru import logger
from rq import SimpleWorker
from rq.scheduler import RQScheduler

_WATCH_SECONDS = 1.0


class PoolWorker(SimpleWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        _watch_parent()
        return bool(super().work(*args, **kwargs))

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         *args: Any, **kwargs: Any) -> None:
        if burst:
            super()._start_scheduler(burst, logging_level, *args, **kwargs)
            return
        # RQ's own _start_scheduler, with a scheduler that watches this worker (RQ forks it
        # here, and again when it finds it dead).
        self.scheduler = _Scheduler(self.queues, connection=self.connection,
                                    logging_level=logging_level or self.log.level,
                                    serializer=self.serializer)
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if self.scheduler.acquired_locks:
            self.scheduler.start()  # type: ignore[no-untyped-call]


class _Scheduler(RQScheduler):
    def work(self) -> None:
        _watch_parent()
        super().work()  # type: ignore[no-untyped-call]


def _watch_parent() -> None:
    threading.Thread(target=_leave_with, args=(os.getppid(),), name="parent-watch",
                     daemon=True).start()


def _leave_with(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
        time.sleep(_WATCH_SECONDS)
    logger.bind(pid=os.getpid()).warning("Parent process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # RQ's warm shutdown, handled in the main thread
