"""The runner's side of node helpers (issue 6): what it forwards and how bytes travel.

User code calls ``_helpers.httpRequest(...)`` and friends (``sandbox/helpers.py``);
the worker sends an ``rpc`` frame, the executor awaits the runner's ``on_rpc``, and
the runner forwards the call to n8n as ``runner:rpc`` (protocol.md §11):

* names: only ``helpers.*`` leaves the runner; anything else (``logNodeOutput``,
  which would dodge the print cap, or junk) is refused here with n8n's own
  ``"Method not allowed"``. n8n checks its allowlist on top.
* bytes: inside the runner, params and replies hold plain ``bytes``. On the wire
  they are n8n's ``{"type":"Buffer","data":[...]}``: written slice by slice while
  the frame is sent (``Connection``), read slice by slice in a thread
  (:func:`parse_frame`), so a 10 MB buffer never blocks the event loop for long
  (protocol/buffers.py has the numbers).

Must not import anything from ``sandbox/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

from websockets.exceptions import ConnectionClosedOK

from taskbox.protocol import messages as m
from taskbox.protocol.buffers import check_rpc_params, has_bytes, parse_broker_frame

__all__ = ["HELPER_PREFIX", "METHOD_NOT_ALLOWED", "check_params", "frames", "parse_frame",
           "refusal"]

#: n8n resolves RPC names on the node's execute functions: ``helpers.<method>``.
HELPER_PREFIX: Final = "helpers."
#: n8n's answer for a name outside its allowlist (protocol.md §11).
METHOD_NOT_ALLOWED: Final = "Method not allowed"
#: Frames (and params) above this many bytes are converted in a thread.
OFFLOAD_THRESHOLD: Final = 1 << 20


def refusal(name: str) -> str | None:
    """Why the runner will not forward an RPC named ``name``, or None to forward it."""
    if name.startswith(HELPER_PREFIX) and len(name) > len(HELPER_PREFIX):
        return None
    return METHOD_NOT_ALLOWED


async def check_params(params: list[Any], max_payload: int) -> str | None:
    """Why a helper call with ``params`` cannot be sent, or None if it can.

    Params holding bytes are checked off the event loop when large.
    """
    if not has_bytes(params):
        return None  # Connection sends (or trims) them like any other frame
    total = _byte_count(params)
    try:
        if total > OFFLOAD_THRESHOLD:
            await asyncio.to_thread(check_rpc_params, params, max_payload)
        else:
            check_rpc_params(params, max_payload)
    except ValueError as exc:
        return f"Helper call cannot be sent: {exc}"
    return None


def _byte_count(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, dict):
        return sum(_byte_count(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_byte_count(v) for v in value)
    return 0


async def parse_frame(raw: bytes) -> m.BrokerMessage | None:
    """Parse a broker frame; an rpcresponse's Buffers become bytes.

    Frames over ``OFFLOAD_THRESHOLD`` are parsed in a thread, a slice at a time.

    Raises:
        RemoteProtocolError: malformed frame (as ``serde.parse_broker``).
    """
    if len(raw) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(parse_broker_frame, raw)
    return parse_broker_frame(raw)


async def frames(ws: Any) -> AsyncIterator[bytes]:
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
