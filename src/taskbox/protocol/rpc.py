"""Bookkeeping for outstanding runner -> broker requests: ids and matching, no futures.

One table for every kind of request that waits for an answer from the broker
(``runner:rpc`` today); a request id is unique across kinds, so a new kind only needs
its own message, not its own table.
"""

from __future__ import annotations

from collections.abc import Callable

from taskbox.protocol.offers import new_id

__all__ = ["PendingCalls"]


class PendingCalls:
    """call id -> task id for every runner:rpc still waiting for broker:rpcresponse."""

    def __init__(self, id_factory: Callable[[int], str] = new_id) -> None:
        self._calls: dict[str, str] = {}
        self._new_id = id_factory

    def __len__(self) -> int:
        return len(self._calls)

    def open(self, task_id: str) -> str:
        """Allocate a call id for ``task_id``."""
        call_id = self._new_id(12)
        while call_id in self._calls:  # pragma: no cover - 62**12 ids
            call_id = self._new_id(12)
        self._calls[call_id] = task_id
        return call_id

    def resolve(self, call_id: str, task_id: str) -> bool:
        """Close a call; False for unknown ids or a task id that does not match."""
        if self._calls.get(call_id) != task_id:
            return False
        del self._calls[call_id]
        return True

    def drop_task(self, task_id: str) -> list[str]:
        """Forget every call of a finished task; returns their ids."""
        ids = [c for c, t in self._calls.items() if t == task_id]
        for call_id in ids:
            del self._calls[call_id]
        return ids
