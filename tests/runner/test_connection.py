"""runner/connection.py against a scripted websocket: the pump and the send choke point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from taskbox.errors import ConnectionClosed
from taskbox.protocol import messages as m
from taskbox.protocol.runner import Registered, RunnerEvent, RunnerProtocol
from taskbox.runner.connection import Connection
from tests.utils import MS


class FakeWs:
    """Frames in from a queue; frames out recorded; ``fail_sends`` breaks the transport."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.fail_sends = False
        self.close_code: int | None = None

    def feed(self, *frames: dict[str, Any] | bytes) -> None:
        for frame in frames:
            self.incoming.put_nowait(frame if isinstance(frame, bytes) else orjson.dumps(frame))

    def end(self) -> None:
        self.incoming.put_nowait(ConnectionClosedOK(Close(1000, ""), Close(1000, ""), True))

    async def recv(self, decode: bool = False) -> bytes:
        item = await self.incoming.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def send(self, frame: bytes | AsyncIterable[bytes], text: bool = True) -> None:
        if self.fail_sends:
            raise ConnectionClosedError(None, None)
        if not isinstance(frame, bytes):
            frame = b"".join([piece async for piece in frame])
        self.sent.append(orjson.loads(frame))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self.end()


def connection(max_payload: int = 1 << 20) -> tuple[FakeWs, Connection, list[Any]]:
    ws = FakeWs()
    log: list[Any] = []

    def on_events(events: list[RunnerEvent]) -> None:
        # Events come after the frames their input produced were written.
        log.append(("events", events, len(ws.sent)))

    conn = Connection(ws, RunnerProtocol("taskbox", 1), max_payload, on_events,
                      on_malformed=lambda: log.append("malformed"))
    return ws, conn, log


async def test_the_pump_answers_skips_bad_frames_and_hands_events_after_sending() -> None:
    ws, conn, log = connection()
    ws.feed({"type": "broker:inforequest"}, b"{not json", {"type": "broker:somethingnew"},
            {"type": "broker:runnerregistered"})
    ws.end()
    assert await asyncio.wait_for(conn.receive_pump(), 5000 * MS) is None
    assert [f["type"] for f in ws.sent] == ["runner:info", "runner:taskoffer"]
    # runner:info went out before the (empty) events of its input were handed on.
    assert log == [("events", [], 1), "malformed", ("events", [Registered()], 2)]
    assert conn.got_info_request and conn.closed


async def test_a_send_failure_tells_the_core_and_raises() -> None:
    ws, conn, _ = connection()
    ws.fail_sends = True
    with pytest.raises(ConnectionClosed) as info:
        async with conn.send_context() as proto:
            proto.receive_message(m.InfoRequest(), conn.now())
    assert isinstance(info.value.__cause__, ConnectionClosedError)
    assert conn.proto.closed
    with pytest.raises(ConnectionClosed):  # refused on entry from now on
        async with conn.send_context():
            pass


async def test_the_write_pump_sends_for_callers_that_cannot_await() -> None:
    ws, conn, _ = connection()
    pump = asyncio.create_task(conn.write_pump())
    conn.proto.receive_message(m.InfoRequest(), conn.now())
    conn.send_soon()
    ws.feed({"type": "broker:runnerregistered"})
    ws.end()
    await asyncio.wait_for(conn.receive_pump(), 5000 * MS)
    await asyncio.wait_for(pump, 5000 * MS)  # ends with the connection
    assert ws.sent[0] == {"type": "runner:info", "name": "taskbox", "types": ["python"]}


async def test_a_result_over_max_payload_becomes_a_task_error() -> None:
    ws, conn, _ = connection(max_payload=2000)
    proto = conn.proto
    proto.receive_message(m.RunnerRegistered(), 0.0)
    (offer,) = proto.messages_to_send()
    assert isinstance(offer, m.TaskOffer)
    proto.receive_message(m.TaskOfferAccept("t1", offer.offer_id), 0.0)
    proto.receive_message(m.TaskSettings("t1", {}), 0.0)
    async with conn.send_context() as p:
        p.finish_task("t1", 0.0, result=["x" * 5000])
    error = next(f for f in ws.sent if f["type"] == "runner:taskerror")
    assert error["error"] == {"message": "Task result is too large for N8N_RUNNERS_MAX_PAYLOAD "
                                         "(2000 bytes)", "description": "LimitExceeded"}
    assert not any(f["type"] == "runner:taskdone" for f in ws.sent)


async def test_aclose_ends_the_receive_pump() -> None:
    ws, conn, _ = connection()
    pump = asyncio.create_task(conn.receive_pump())
    await conn.aclose(1000, "bye")
    assert await asyncio.wait_for(pump, 5000 * MS) is None
    assert ws.close_code == 1000 and conn.closed
