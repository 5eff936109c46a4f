"""One websocket to the broker: the only code that calls ``ws.send``.

Every outgoing frame goes through ``flush()``, which drains the protocol's
``messages_to_send()`` in order. A transport failure marks the connection broken and
raises ConnectionClosed; the lifecycle decides whether to reconnect.

Frames go out as UTF-8 bytes in text frames (no decode/encode round trip). A frame
over ``STREAM_THRESHOLD`` bytes goes as websocket fragments of about ``FRAGMENT``
bytes with a yield to the event loop between them: masking 36 MB in one piece
alone takes ~60 ms. A ``runner:rpc`` carrying bytes (node helpers) is never built
in one piece: its buffers' n8n JSON is written slice by slice while it is sent
(protocol/buffers.py). n8n's ``ws`` server and the embedded broker reassemble
fragments; the payload limit applies to the whole message either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsClosed

from taskbox.errors import ConnectionClosed, LocalProtocolError
from taskbox.protocol import messages as m
from taskbox.protocol.buffers import split_buffers, stream_frame
from taskbox.protocol.runner import RunnerProtocol
from taskbox.protocol.serde import serialize

__all__ = ["FRAGMENT", "STREAM_THRESHOLD", "Connection"]

log = logging.getLogger("taskbox.runner")

#: Frames larger than this are sent as fragments, yielding to the loop in between.
STREAM_THRESHOLD: Final = 1 << 20
#: Target fragment size (~0.5 ms of masking).
FRAGMENT: Final = 1 << 18


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
        pieces: Iterable[bytes | memoryview] | None = None
        try:
            if isinstance(msg, m.RpcCall):
                params, buffers = split_buffers(msg.params)
                if buffers:
                    frame = serialize(dataclasses.replace(msg, params=params))
                    pieces = stream_frame(frame, buffers)  # on_rpc checked size and shape
            if pieces is None:
                frame = serialize(msg, self.max_payload)
        except LocalProtocolError as exc:
            frame = self._oversize_replacement(msg, exc)
        except ValueError as exc:  # a helper call on_rpc should have refused
            log.error("cannot send %s with its buffers (%s); sending it without params",
                      msg.TYPE, exc)
            assert isinstance(msg, m.RpcCall)
            frame = serialize(dataclasses.replace(msg, params=[]), self.max_payload)
            pieces = None
        if pieces is None and len(frame) > STREAM_THRESHOLD:
            pieces = (memoryview(frame)[i:i + FRAGMENT] for i in range(0, len(frame), FRAGMENT))
        try:
            if pieces is None:
                await self.ws.send(frame, text=True)
            else:
                await self.ws.send(_paced(pieces), text=True)
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


async def _paced(pieces: Iterable[bytes | memoryview]) -> AsyncIterator[bytes]:
    """Group ``pieces`` into fragments of about FRAGMENT bytes; yield to the loop after each."""
    batch: list[bytes | memoryview] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= FRAGMENT:
            yield b"".join(batch)
            batch, size = [], 0
            await asyncio.sleep(0)
    if batch:
        yield b"".join(batch)
