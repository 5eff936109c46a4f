"""One websocket to the broker, pumped both ways; the only code that calls ``ws.send``.

``Connection`` owns the socket and the sans-I/O ``RunnerProtocol`` (as websockets'
``asyncio/connection.py`` owns its ``Protocol``):

* receiving: ``receive_pump()`` reads frames, parses them (large ones in a thread) and
  feeds the core; malformed frames are logged and skipped;
* sending: every input to the core happens inside ``async with send_context()``, which
  refuses a closed connection on entry and, on exit, sends what the core produced (in
  order) and hands its events to the session. Callers that cannot await (a ``print``
  arriving from a worker) queue in the core and call ``send_soon()``; the write pump
  sends for them through the same choke point;
* a transport error while sending tells the core (``send_failed``) and raises
  ``ConnectionClosed``.

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
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Final

from taskbox.errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError
from taskbox.protocol import messages as m
from taskbox.protocol.buffers import (
    OFFLOAD_THRESHOLD,
    parse_broker_frame,
    split_buffers,
    stream_frame,
)
from taskbox.protocol.runner import RunnerEvent, RunnerProtocol
from taskbox.protocol.serde import serialize
from taskbox.runner.websocket import ConnectionClosed as WsClosed
from taskbox.runner.websocket import ConnectionClosedOK

__all__ = ["CLOSED_TEXT", "FRAGMENT", "STREAM_THRESHOLD", "Connection", "parse_frame"]

log = logging.getLogger("taskbox.runner")

#: Frames larger than this are sent as fragments, yielding to the loop in between.
STREAM_THRESHOLD: Final = 1 << 20
#: Target fragment size (~0.5 ms of masking).
FRAGMENT: Final = 1 << 18
#: What a request gets when the connection is gone before its answer arrived.
CLOSED_TEXT: Final = "connection to the broker is closed"

EventSink = Callable[[list[RunnerEvent]], None]


class Connection:
    """A registered (or registering) session with the broker.

    Args:
        ws: the open websocket (websockets' ``ClientConnection``).
        proto: the core for this connection; only this object feeds it.
        max_payload: N8N_RUNNERS_MAX_PAYLOAD; larger outgoing frames are replaced.
        on_events: called after every input, once its messages are sent, with the
            events it produced (maybe none).
        on_sent: called with every message written (metrics).
        on_malformed: called for every frame skipped as malformed (metrics).
    """

    def __init__(self, ws: Any, proto: RunnerProtocol, max_payload: int, on_events: EventSink,
                 *, on_sent: Callable[[m.RunnerMessage], None] | None = None,
                 on_malformed: Callable[[], None] | None = None) -> None:
        self.ws = ws
        self.proto = proto
        self.max_payload = max_payload
        self.got_info_request = False
        self._on_events = on_events
        self._on_sent = on_sent
        self._on_malformed = on_malformed
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.proto.closed

    def now(self) -> float:
        """The clock handed to the core: the loop's, so deadlines work with ``timeout_at``."""
        return self._loop.time()

    # -- sending ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def send_context(self) -> AsyncIterator[RunnerProtocol]:
        """Feed the core inside; on exit its messages are sent and its events handled.

        Raises:
            ConnectionClosed: the connection was already closed, or broke while sending.
        """
        if self.proto.closed:
            raise ConnectionClosed(CLOSED_TEXT)
        yield self.proto
        await self._flush()  # on failure the core has dropped its events with the connection
        self._on_events(self.proto.events_received())  # every input, events or not

    def send_soon(self) -> None:
        """Have the write pump send what the core queued (for callers that cannot await)."""
        self._wake.set()

    async def write_pump(self) -> None:
        """Send for ``send_soon`` callers until the connection closes."""
        with contextlib.suppress(ConnectionClosed):
            while not self.proto.closed:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            for msg in self.proto.messages_to_send():
                await self._send(msg)

    async def _send(self, msg: m.RunnerMessage) -> None:
        pieces: Iterable[bytes | memoryview] | None = None
        try:
            if isinstance(msg, m.RpcCall):
                params, buffers = split_buffers(msg.params)
                if buffers:
                    frame = serialize(dataclasses.replace(msg, params=params))
                    pieces = stream_frame(frame, buffers)  # the router checked size and shape
            if pieces is None:
                frame = serialize(msg, self.max_payload)
        except LocalProtocolError as exc:
            frame = self._oversize_replacement(msg, exc)
        except ValueError as exc:  # a helper call the router should have refused
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
            self.proto.send_failed()
            self._wake.set()  # let the write pump see the closed state and end
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

    # -- receiving ---------------------------------------------------------------------

    async def receive_pump(self) -> BaseException | None:
        """Feed every broker frame to the core until the socket closes.

        Returns:
            Why the connection ended (websockets' own exception where there is one, e.g.
            "sent 1009 (message too big)"), or None after a normal close.
        """
        closed: BaseException | None = None
        try:
            async for raw in _frames(self.ws):
                try:
                    msg = await parse_frame(raw)
                except RemoteProtocolError as exc:
                    log.warning("malformed frame from the broker skipped: %s", exc)
                    if self._on_malformed is not None:
                        self._on_malformed()
                    continue
                if msg is None:
                    log.debug("unknown message type ignored")
                    continue
                if isinstance(msg, m.InfoRequest):
                    self.got_info_request = True
                async with self.send_context() as proto:
                    proto.receive_message(msg, self.now())
        except (WsClosed, ConnectionClosed) as exc:
            # Keep websockets' own words even when a send noticed the close first.
            closed = exc.__cause__ if isinstance(exc.__cause__, WsClosed) else exc
        finally:
            self.proto.connection_lost()
            self._wake.set()
        return closed

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the websocket; the receive pump then ends."""
        with contextlib.suppress(OSError, WsClosed):
            await self.ws.close(code, reason)


async def parse_frame(raw: bytes) -> m.BrokerMessage | None:
    """Parse a broker frame; an rpcresponse's Buffers become bytes.

    Frames over ``OFFLOAD_THRESHOLD`` are parsed in a thread, a slice at a time.

    Raises:
        RemoteProtocolError: malformed frame (as ``serde.parse_broker``).
    """
    if len(raw) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(parse_broker_frame, raw)
    return parse_broker_frame(raw)


async def _frames(ws: Any) -> AsyncIterator[bytes]:
    """``async for raw in ws``, with text frames kept as UTF-8 bytes.

    orjson reads bytes as they are; decoding 36 MB to ``str`` first would cost
    the event loop ~25 ms for nothing. Ends on a normal close, like websockets'
    own iterator; raises ``ConnectionClosedError`` otherwise.
    """
    try:
        while True:
            raw = await ws.recv(decode=False)
            yield raw if isinstance(raw, bytes) else raw.encode()
    except ConnectionClosedOK:
        return


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
