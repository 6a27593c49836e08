"""What the supervisor does after a sidecar's WhatsApp connection closed, by status code.

The table follows ../shared/whatsapp/README.md §4. The sidecar itself handles only 515 (it
reconnects in-process right after pairing); every other close ends the process, and this table
decides whether and when the next one starts.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    RECONNECT_NOW = "reconnect_now"  # start again at once
    BACKOFF = "backoff"  # start again after an exponential, jittered delay
    STOP = "stop"  # keep the session, stop, tell the operator
    WIPE_AND_STOP = "wipe_and_stop"  # the session is dead: delete it, stop, tell the operator


POLICY: dict[int, Action] = {
    515: Action.RECONNECT_NOW,  # restart required (after pairing)
    408: Action.BACKOFF,  # connection lost, timed out, refused
    428: Action.BACKOFF,  # connection closed by the server or the network
    500: Action.BACKOFF,  # bad session / unknown stream error
    503: Action.BACKOFF,  # service unavailable
    401: Action.WIPE_AND_STOP,  # logged out on the phone: the credentials are void
    403: Action.STOP,  # account blocked or banned
    405: Action.STOP,  # our WhatsApp Web version was rejected: BAILEYS_WA_VERSION needs updating
    411: Action.STOP,  # multi-device mismatch
    440: Action.STOP,  # replaced: another client uses this session; reconnecting would fight it
    400: Action.STOP,  # the server certificate did not verify: a configuration error
}

# Reasons that override the code: every QR expired unscanned. Starting again would post new QRs
# into the conversation on and on.
REASON_POLICY: dict[str, Action] = {"qrRefsExhausted": Action.STOP}


def action_for(status_code: int | None, reason: str | None) -> Action:
    if reason in REASON_POLICY:
        return REASON_POLICY[reason]
    if status_code is None:
        return Action.BACKOFF
    return POLICY.get(status_code, Action.BACKOFF)
