"""The offer loop: ``tick(now)`` every OFFER_INTERVAL, through the send choke point.

The core decides what to offer (``OfferBook``: open offers + accepted tasks == max
concurrency, protocol.md §7); this loop only gives it the time. It ends when the
connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib

from taskbox.errors import ConnectionClosed
from taskbox.protocol.offers import OFFER_INTERVAL
from taskbox.runner.connection import Connection

__all__ = ["offer_loop"]


async def offer_loop(conn: Connection, interval: float = OFFER_INTERVAL) -> None:
    """Refresh offers until the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval)
            async with conn.send_context() as proto:
                proto.tick(conn.now())
