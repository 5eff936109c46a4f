"""The executor's side of ``_helpers``: bytes as raw frames, and a hostile worker's frames.

A real zygote and real workers; ``on_rpc`` is a fake that records what the runner
would forward to n8n.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from taskbox.executor import Executor, Limits, TaskOutcome, TaskSpec

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMITS = Limits(task_timeout=10.0, memory_limit_mb=256, max_payload=2_000_000,
                stdlib_allow=("json",), external_allow=("taskbox_sandbox",))


class Echo:
    """on_rpc that answers with what it got (bytes included) and records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    async def __call__(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        self.calls.append((name, params))
        return True, {"name": name, "params": params}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor() -> AsyncIterator[Executor]:
    async with Executor(LIMITS, max_concurrency=1) as ex:
        yield ex


async def run(executor: Executor, code: str, on_rpc: Echo) -> TaskOutcome:
    items: list[dict[str, Any]] = [{"json": {}}]
    spec = TaskSpec("task-1", code, "runOnceForAllItems", False, orjson.dumps(items), 1)
    return await executor.run(spec, lambda args: None, on_rpc)


async def test_bytes_cross_both_ways_intact(executor: Executor) -> None:
    echo = Echo()
    code = """
blob = bytes(range(256)) * 4000
got = _helpers.call("echo", blob, {"nested": [b"", bytearray(b"ab")]}, "text")
ok = got["params"] == [blob, {"nested": [b"", b"ab"]}, "text"]
return [{"ok": ok, "size": len(got["params"][0])}]
"""
    outcome = await run(executor, code, echo)
    assert outcome.ok, outcome.error
    assert outcome.result == [{"ok": True, "size": 1_024_000}]
    [(name, params)] = echo.calls
    assert name == "helpers.echo"
    assert params == [bytes(range(256)) * 4000, {"nested": [b"", b"ab"]}, "text"]
    assert isinstance(params[0], bytes)


async def test_buffers_over_max_payload_are_refused_without_a_call(executor: Executor) -> None:
    echo = Echo()
    code = """
try:
    _helpers.call("echo", b"x" * 1_500_000, b"y" * 1_000_000)
except _helpers.RpcError as e:
    return [{"error": e.message}]
"""
    outcome = await run(executor, code, echo)
    assert outcome.ok, outcome.error
    assert outcome.result == [{"error": "Helper call arguments are too large: more than "
                                        "2000000 bytes (N8N_RUNNERS_MAX_PAYLOAD)"}]
    assert echo.calls == []


async def test_hostile_frames_get_an_error_reply_and_the_next_task_runs(
        executor: Executor) -> None:
    echo = Echo()
    code = """
from taskbox_sandbox import execute, framing
ch = execute._channel
out = []
for head in ({"t": "rpc", "id": 1, "name": "helpers.x", "params": [], "bufs": 99999},
             {"t": "rpc", "id": 2, "name": "helpers.x", "params": [{"\\x00buf": 3}], "bufs": 1},
             {"t": "rpc", "id": 3, "name": 5, "params": []}):
    ch.sock.sendall(framing.encode(head))
    if head.get("bufs") == 1:
        ch.sock.sendall(framing.encode_raw(b"z"))
    reply = framing.decode(ch.recv())
    out.append([reply["id"], reply["ok"], reply["data"]])
return out
"""
    outcome = await run(executor, code, echo)
    assert outcome.ok, outcome.error
    assert outcome.result == [
        [1, False, "invalid RPC call: bad buffer count"],
        [2, False, "invalid RPC call: buffer tag 3 names no buffer"],
        [3, False, "invalid RPC call"]]
    assert echo.calls == []
    again = await run(executor, "return [{'fine': True}]", echo)
    assert again.result == [{"fine": True}]
