"""Polls: remember each poll's options and secret; decrypt votes; keep the tally shown.

WhatsApp encrypts each vote with a key derived from the poll's `messageSecret` (Baileys rc14 no
longer decrypts them for us): key0 = HMAC-SHA256(key=32 zero bytes, poll secret); key =
HMAC-SHA256(key=key0, poll id ‖ creator JID ‖ voter JID ‖ "Poll Vote" ‖ 0x01); AES-256-GCM with
the vote's IV and AAD "poll id \\0 voter JID". The plaintext is a PollVoteMessage whose field 1
repeats SHA-256(option name) for each chosen option. Which JID form (phone or LID) the voter's
phone used is not always knowable, so every form we know is tried; GCM tells the right one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from loguru import logger

from bridge.convert.draft import PollDefinition, PollVote
from bridge.ids import InstanceId
from bridge.jobs.runtime import WorkerContext
from bridge.store import keys

POLL_TTL_SECONDS = 90 * 24 * 3600


def vote_key(secret: bytes, poll_id: str, creator_jid: str, voter_jid: str) -> bytes:
    key0 = hmac.new(bytes(32), secret, hashlib.sha256).digest()
    sign = poll_id.encode() + creator_jid.encode() + voter_jid.encode() + b"Poll Vote\x01"
    return hmac.new(key0, sign, hashlib.sha256).digest()


def _selected_hashes(plaintext: bytes) -> list[bytes]:
    """PollVoteMessage field 1 (repeated bytes), read without a protobuf library."""
    hashes, i = [], 0
    while i < len(plaintext):
        tag, i = _varint(plaintext, i)
        wire = tag & 7
        if wire == 2:
            length, i = _varint(plaintext, i)
            if tag >> 3 == 1:
                hashes.append(plaintext[i:i + length])
            i += length
        elif wire == 0:
            _, i = _varint(plaintext, i)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return hashes


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def decrypt_vote(vote: PollVote, secret: bytes, creators: Iterable[str],
                 voters: Iterable[str]) -> tuple[str, list[bytes]] | None:
    """The voter JID that decrypts the vote and the chosen options' hashes, or None."""
    payload = base64.b64decode(vote.enc_payload_b64)
    iv = base64.b64decode(vote.enc_iv_b64)
    for voter in dict.fromkeys(voters):
        for creator in dict.fromkeys(creators):
            key = vote_key(secret, vote.poll_wa_message_id, creator, voter)
            aad = f"{vote.poll_wa_message_id}\0{voter}".encode()
            try:
                return voter, _selected_hashes(AESGCM(key).decrypt(iv, payload, aad))
            except InvalidTag:
                continue
    return None


def remember(ctx: WorkerContext, instance_id: InstanceId, wa_message_id: str,
             poll: PollDefinition, *, cw_message_id: int, conversation_id: int) -> None:
    state = {"poll": asdict(poll), "cw_message_id": cw_message_id,
             "conversation_id": conversation_id, "votes": {}}
    ctx.redis.set(keys.poll(instance_id, wa_message_id), json.dumps(state),
                  ex=POLL_TTL_SECONDS)


def record_vote(
    ctx: WorkerContext, instance_id: InstanceId, vote: PollVote, creators: Iterable[str],
    voters: Iterable[str],
) -> tuple[dict[str, Any], str] | None:
    """Decrypt and store a vote; returns the poll state and the tally text, or None."""
    raw = ctx.redis.get(keys.poll(instance_id, vote.poll_wa_message_id))
    if raw is None:
        logger.bind(poll=vote.poll_wa_message_id).warning("Vote on a poll we never saw")
        return None
    state: dict[str, Any] = json.loads(raw)
    poll = state["poll"]
    if not poll.get("secret_b64"):
        return None
    decrypted = decrypt_vote(vote, base64.b64decode(poll["secret_b64"]), creators,
                             [v for v in voters if v])
    if decrypted is None:
        logger.bind(poll=vote.poll_wa_message_id).warning("A poll vote could not be decrypted")
        return None
    voter, hashes = decrypted
    by_hash = {hashlib.sha256(o.encode()).digest(): o for o in poll["options"]}
    # A new vote replaces the voter's previous one (an empty vote withdraws it).
    state["votes"][voter] = [by_hash[h] for h in hashes if h in by_hash]
    ctx.redis.set(keys.poll(instance_id, vote.poll_wa_message_id), json.dumps(state),
                  ex=POLL_TTL_SECONDS)
    return state, tally(poll["question"], poll["options"], state["votes"].values())


def tally(question: str, options: Iterable[str], votes: Iterable[list[str]]) -> str:
    """`📊 question` and one `• option: n` line per option, in the poll's order."""
    counts = dict.fromkeys(options, 0)
    for chosen in votes:
        for option in chosen:
            if option in counts:
                counts[option] += 1
    return "\n".join([f"📊 {question}", *(f"• {o}: {n}" for o, n in counts.items())])
