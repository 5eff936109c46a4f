"""One websocket to the broker: the only code that calls ``ws.send``.

Every outgoing frame goes through ``flush()``, which drains the protocol's
``messages_to_send()`` in order. A transport failure marks the connection broken and
raises ConnectionClosed; the lifecycle decides whether to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsClosed

from taskbox.errors import ConnectionClosed, LocalProtocolError
from taskbox.protocol import messages as m
from taskbox.protocol.runner import RunnerProtocol
from taskbox.protocol.serde import serialize

__all__ = ["Connection"]

log = logging.getLogger("taskbox.runner")


class Connection:
    """A registered (or registering) session with the broker."""

    def __init__(self, ws: ClientConnection, proto: RunnerProtocol, max_payload: int,
                 on_sent: Callable[[m.RunnerMessage], None] | None = None) -> None:
        self.ws = ws
        self.proto = proto
        self.max_payload = max_payload
        self.broken = False
        self._lock = asyncio.Lock()
        self._on_sent = on_sent

    @staticmethod
    def now() -> float:
        return time.monotonic()

    async def flush(self) -> None:
        """Send everything the protocol produced, in order.

        Raises:
            ConnectionClosed: the socket broke while sending.
        """
        async with self._lock:
            for msg in self.proto.messages_to_send():
                await self._send(msg)

    async def _send(self, msg: m.RunnerMessage) -> None:
        if self.broken:
            raise ConnectionClosed("connection to the broker is closed")
        try:
            frame = serialize(msg, self.max_payload)
        except LocalProtocolError as exc:
            frame = self._oversize_replacement(msg, exc)
        try:
            await self.ws.send(frame.decode())
        except WsClosed as exc:
            self.broken = True
            raise ConnectionClosed("connection to the broker closed while sending") from exc
        if self._on_sent is not None:
            self._on_sent(msg)

    def _oversize_replacement(self, msg: m.RunnerMessage, exc: LocalProtocolError) -> bytes:
        """A frame over N8N_RUNNERS_MAX_PAYLOAD would make the broker drop us: send an error."""
        log.error("%s", exc)
        if isinstance(msg, (m.TaskDone, m.TaskErrorReport)):
            error: dict[str, Any] = {
                "message": f"Task result is too large for N8N_RUNNERS_MAX_PAYLOAD "
                           f"({self.max_payload} bytes)",
                "description": "LimitExceeded"}
            return serialize(m.TaskErrorReport(msg.task_id, error), self.max_payload)
        if isinstance(msg, m.RpcCall):
            trimmed = m.RpcCall(msg.call_id, msg.task_id, msg.name,
                                ["[Output truncated - print output too large]"])
            return serialize(trimmed, self.max_payload)
        raise exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(OSError, WsClosed):
            await self.ws.close(code, reason)
        self.broken = True
