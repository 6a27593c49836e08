"""Telling the operators about a Redis outage: a note when it lasts, another when it ends.

While Redis does not answer, notes cannot take their usual way (a mailbox in Redis, drained by
the worker), so the first one is posted into Chatwoot by serve itself. The conversations are
those the running numbers notify, as serve last read them (`InstanceRunner.record`).
"""

from __future__ import annotations

import asyncio

from loguru import logger

from bridge.chatwoot.client import ChatwootClient
from bridge.relay.dispatch import Dispatcher
from bridge.relay.intake import Intake
from bridge.sidecar.supervisor import InstanceSupervisor
from bridge.texts import Texts


def install(intake: Intake, supervisor: InstanceSupervisor, dispatcher: Dispatcher,
            chatwoot: ChatwootClient, texts: Texts) -> None:
    async def long_outage(seconds: float) -> None:
        content = texts.redis_unreachable.format(seconds=int(seconds))
        for account_id, conversation_id in _targets(supervisor):
            await asyncio.to_thread(chatwoot.create_message, account_id, conversation_id,
                                    content=content, message_type="outgoing", private=True)
        logger.bind(seconds=int(seconds)).error("Redis has been out of reach for a while")

    async def recovered(seconds: float, journaled: int) -> None:
        content = texts.redis_back.format(seconds=int(seconds), count=journaled)
        for account_id, conversation_id in _targets(supervisor):
            await dispatcher.note(account_id, conversation_id, content)

    intake.on_long_outage = long_outage
    intake.on_recovered = recovered


def _targets(supervisor: InstanceSupervisor) -> list[tuple[int, int]]:
    found: dict[tuple[int, int], None] = {}
    for runner in supervisor.runners():
        record = runner.record
        if record and record.notify_account_id and record.notify_conversation_id:
            found[record.notify_account_id, record.notify_conversation_id] = None
    return list(found)
