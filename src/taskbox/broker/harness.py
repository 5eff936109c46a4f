"""The embedded broker's test harness: a log of every frame, and waiting on it.

Tests, the benchmarks and the security scorecard assert on the exact frames a runner
exchanged (``EmbeddedBroker.events``, ``wait_for_event``); production use of the broker
never needs it, so it lives here, apart from the broker's I/O. ``events_limit=0``
keeps nothing (waiters still work).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["FrameLog", "FrameRecord", "preview"]

#: One logged frame: (monotonic time, runner id, ``"in"`` | ``"out"``, the message as a
#: wire-shaped dict).
FrameRecord = tuple[float, str, str, dict[str, Any]]
Predicate = Callable[[FrameRecord], bool]


def preview(raw: bytes | str) -> dict[str, Any]:
    """How a frame that did not parse (or has an unknown type) appears in the log."""
    text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
    return {"type": None, "raw": text[:200]}


class FrameLog:
    """The last ``limit`` frames, and futures waiting for one that matches.

    Args:
        limit: frames kept (oldest dropped first).
        clock: monotonic seconds, stamped on each record.
    """

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._records: collections.deque[FrameRecord] = collections.deque(maxlen=max(limit, 0))
        self._waiters: list[tuple[Predicate, asyncio.Future[FrameRecord]]] = []
        self._clock = clock

    def snapshot(self) -> list[FrameRecord]:
        return list(self._records)

    def clear(self) -> None:
        self._records.clear()

    def record(self, runner_id: str, direction: str, message: dict[str, Any]) -> None:
        entry: FrameRecord = (self._clock(), runner_id, direction, message)
        if self._records.maxlen:
            self._records.append(entry)
        for waiter in list(self._waiters):
            predicate, fut = waiter
            if not fut.done() and predicate(entry):
                fut.set_result(entry)
                self._waiters.remove(waiter)

    async def wait_for(self, predicate: Predicate, timeout: float) -> FrameRecord:
        """The first logged frame matching ``predicate`` (already logged, or the next one).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        for entry in self._records:
            if predicate(entry):
                return entry
        fut: asyncio.Future[FrameRecord] = asyncio.get_running_loop().create_future()
        waiter = (predicate, fut)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def close(self) -> None:
        """Cancel every waiter (the broker is shutting down)."""
        for _, fut in self._waiters:
            fut.cancel()
        self._waiters.clear()
