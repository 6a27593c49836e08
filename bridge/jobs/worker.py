"""The worker class of `ponte worker`'s pool: an RQ SimpleWorker that leaves with its pool.

The pool forks its workers, and each worker forks RQ's scheduler (the process that moves retries
into the queue when they are due). When a parent dies without stopping its children (SIGKILL,
the OOM killer), supervisord starts a new pool, and the old processes would go on as orphans
outside the program's process group, surviving even supervisord's own stop (an orphan scheduler
also keeps the scheduler lock, so the new pool's retries wait for it). Each worker and each
scheduler therefore watches its parent and, once it is gone, asks itself for a warm shutdown.

RQ's scheduler also ends on the first Redis error, and its worker looks for a dead scheduler only
at its maintenance pass (every ten minutes): a Redis restart would hold every delayed retry that
long. Ours waits for Redis and goes on.
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

from bridge.store.connection import unavailable

_WATCH_SECONDS = 1.0
_REDIS_RETRY_SECONDS = 0.5
_UNSUBSCRIBE_SECONDS = 2.0


class PoolWorker(SimpleWorker):
    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        if not burst:  # a burst worker leaves by itself once the queues are empty
            _watch_parent()
        return bool(super().work(burst, *args, **kwargs))

    def unsubscribe(self) -> None:
        """RQ's, bounded. It closes the pubsub connection while its listener thread may still
        be reading it, and that close sometimes never returned: one worker of the pool then
        hung at every warm shutdown until it was killed (30 s in the tests, supervisord's
        stopwaitsecs in production). The process is leaving; the connection goes with it."""
        closing = threading.Thread(target=super().unsubscribe, name="unsubscribe", daemon=True)
        closing.start()
        closing.join(_UNSUBSCRIBE_SECONDS)
        if closing.is_alive():
            logger.bind(worker=self.name).debug("Pubsub close did not return; leaving anyway")

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
        while True:
            try:
                super().work()  # type: ignore[no-untyped-call]
                return
            except Exception as err:
                if not unavailable(err):
                    raise
                logger.bind(error=type(err).__name__).warning(
                    "Scheduler lost Redis; going on once it answers")
                time.sleep(_REDIS_RETRY_SECONDS)


def _watch_parent() -> None:
    threading.Thread(target=_leave_with, args=(os.getppid(),), name="parent-watch",
                     daemon=True).start()


def _leave_with(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
        time.sleep(_WATCH_SECONDS)
    logger.bind(pid=os.getpid()).warning("Parent process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # RQ's warm shutdown, handled in the main thread
