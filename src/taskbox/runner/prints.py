"""How long a task's result waits for the answers to its prints.

Each ``print`` goes out at once as a ``logNodeOutput`` RPC, on the task's connection
and before its ``runner:taskdone``, so the broker sees every print first, in order.
n8n acts on such an RPC as soon as it reads it (the browser console in manual runs,
its stdout in production runs; protocol.md §10): its answer carries nothing a task
needs, and a broker that answers late or never (n8n's own test broker, a busy n8n)
must not hold a result up. So the result waits at most ``PRINT_ANSWER_WAIT`` for
those answers, never the RPC timeout; node helpers (``_helpers.*``) do wait for theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["PRINT_ANSWER_WAIT", "settle_prints"]

#: Seconds. 0: the prints are already on the wire ahead of taskdone, and real n8n
#: 2.41.1 shows them all with no wait (commit message of this module has the runs).
PRINT_ANSWER_WAIT = 0.0


async def settle_prints(prints: Sequence[asyncio.Future[Any]],
                        wait: float = PRINT_ANSWER_WAIT) -> None:
    """Give unanswered prints at most ``wait`` seconds, then forget them.

    Forgetting cancels the future: its call is dropped from the book of pending RPCs,
    so a late answer is ignored and nothing is kept for an answer that never comes.
    """
    pending = [p for p in prints if not p.done()]
    if pending and wait > 0:
        _, still = await asyncio.wait(pending, timeout=wait)
        pending = list(still)
    for future in pending:
        future.cancel()
