"""Bookkeeping for outstanding runner:rpc calls: ids and matching, no futures."""

from __future__ import annotations

from taskbox.protocol.offers import new_id

__all__ = ["PendingCalls"]


class PendingCalls:
    """call id -> task id for every runner:rpc still waiting for broker:rpcresponse."""

    def __init__(self) -> None:
        self._calls: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def open(self, task_id: str) -> str:
        """Allocate a call id for ``task_id``."""
        call_id = new_id(12)
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
