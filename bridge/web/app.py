"""The Starlette app of `ponte serve`: routes, and a lifespan that runs the supervisor.

The webhook, the status endpoints and the instance supervisor share one asyncio loop. On
shutdown (SIGTERM via uvicorn) the supervisor stops every sidecar after its auth writes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from loguru import logger
from starlette.applications import Starlette

from bridge import metrics
from bridge.chatwoot.client import ChatwootClient
from bridge.config import Settings
from bridge.relay import outage
from bridge.relay.dispatch import Dispatcher
from bridge.relay.intake import Intake
from bridge.relay.journal import Journal
from bridge.relay.outbound import OutboundSender
from bridge.sidecar.supervisor import InstanceSupervisor
from bridge.store import connection
from bridge.store.registry import Registry
from bridge.web import admin, page, status, webhook
from bridge.web.services import Services

# A mailbox whose drain was lost (a worker killed holding its lock) waits out the lock's TTL and
# then at most this long; a pass is one SMEMBERS and an EXISTS per pending mailbox.
SWEEP_INTERVAL_SECONDS = 5.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def create_app(settings: Settings, *, project_root: Path = PROJECT_ROOT) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.redis_connection_url()
        redis_async = connection.async_client(url)
        redis_sync = connection.sync_client(url)
        registry = Registry(redis_async)
        dispatcher = Dispatcher(redis_async, redis_sync,
                                ignore_chats=frozenset(settings.baileys_ignore_chats),
                                spool=settings.spool_dir)
        supervisor = InstanceSupervisor(settings, registry, dispatcher,
                                        project_root=project_root)
        intake = Intake(Journal(settings.journal_dir,
                                max_bytes=settings.server_journal_max_mb * 1024 * 1024),
                        redis_async,
                        outage_note_after_s=settings.server_redis_outage_note_seconds)
        dispatcher.attach(intake)
        intake.after_outage.append(lambda: dispatcher.sweep(after_outage=True))
        supervisor.attach(intake)
        http = httpx.AsyncClient()  # attachments from Chatwoot
        recorder = metrics.Recorder(redis_async)
        outbound = OutboundSender(settings, redis_async, dispatcher, recorder, http)
        supervisor.companions.append(outbound.consume)
        chatwoot = ChatwootClient(settings.chatwoot_url, settings.chatwoot_token,
                                  timeout_s=settings.chatwoot_api_timeout / 1000)
        services = Services(settings=settings, redis=redis_async, registry=registry,
                            dispatcher=dispatcher, supervisor=supervisor, outbound=outbound,
                            chatwoot=chatwoot, recorder=recorder, intake=intake)
        app.state.services = services
        webhook.attach(services)
        outage.install(intake, supervisor, dispatcher, chatwoot, services.texts)
        # Before any sidecar runs: a journal a crash left is replayed first, and whatever the
        # sidecars say from now on queues behind it.
        await intake.start()
        await supervisor.resume()
        sweeper = asyncio.create_task(dispatcher.run_sweeper(SWEEP_INTERVAL_SECONDS),
                                      name="mailbox-sweeper")
        # Everything loaded so far lives as long as serve: keep it out of the collector's full
        # passes, which otherwise walk every module and class each time and stalled webhook
        # answers by ~0.1 s under load (bench/webhook.py).
        gc.freeze()
        logger.bind(port=settings.server_port).info("Ponte serve is up")
        try:
            yield
        finally:
            logger.info("Ponte serve is stopping")
            sweeper.cancel()
            # Sidecars get their stop_wait to finish session writes; serve exits within a bound
            # whatever happens (a sidecar left behind stops on its own at stdin EOF).
            bound = settings.baileys_stop_wait_ms / 1000 * 2 + 5
            try:
                await asyncio.wait_for(supervisor.shutdown(), bound)
            except TimeoutError:
                logger.bind(seconds=bound).error("Sidecars did not all stop in time")
            await asyncio.gather(sweeper, return_exceptions=True)
            await intake.close()  # what is still journaled is replayed at the next start
            await http.aclose()
            chatwoot.close()
            await recorder.close()
            await redis_async.aclose()
            redis_sync.close()

    # Each web module owns its routes; this is the one place that gathers them.
    routes = [*webhook.ROUTES, *status.ROUTES, *page.ROUTES, *admin.ROUTES]
    return Starlette(routes=routes, lifespan=lifespan)
