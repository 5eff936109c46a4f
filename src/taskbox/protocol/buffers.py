"""n8n's Buffer JSON on the wire, converted in slices so no event loop stalls.

n8n passes Node Buffers through ``runner:rpc`` / ``broker:rpcresponse`` as
``{"type":"Buffer","data":[byte, ...]}`` (protocol.md §11): 10 MB of bytes are
~36 MB of JSON holding 10 million numbers. orjson holds the GIL for the whole of
one call, so a single ``loads`` of such a frame blocks every thread of the
process, the event loop included, for ~0.3 s, and a ``dumps`` for ~0.2 s. Here
every conversion is cut into slices that each take a millisecond or two:

* out (bytes -> JSON): :func:`split_buffers` swaps each ``bytes`` value of a
  message for a placeholder string, the message is serialized as usual (small),
  and :func:`stream_frame` yields that frame with each placeholder replaced by
  the buffer's JSON, one slice at a time. The caller sends the pieces as
  websocket fragments, yielding to the loop between them; no 36 MB string is
  ever built. :func:`buffer_json` builds one in one piece for callers that
  cannot stream (the embedded broker), in a thread.
* in (JSON -> bytes): :func:`cut_buffers` finds each Buffer object in the raw
  frame, decodes its numbers a slice at a time and leaves a placeholder string
  behind; the rest of the frame is parsed as usual and :func:`revive` puts the
  bytes back. A thread running it lets the event loop in between slices (the
  interpreter's switch interval is 5 ms).

A Buffer object in the raw text is recognised by the exact bytes n8n's
``JSON.stringify`` writes, ``{"type":"Buffer","data":[``: inside a JSON string
those quotes would be escaped, so the match is always a real object. Anything
else (spaces, more keys, numbers out of range) is left to the ordinary parser.

Pure: stdlib and orjson only; no I/O, no clock, no asyncio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import orjson

from taskbox.protocol import messages as m

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import framing
else:  # the one sandbox module taskbox may import: a pure codec (house-style.md §1)
    from taskbox_sandbox import framing
from taskbox.protocol.serde import dumps_json, parse_broker, parse_runner

__all__ = [
    "BUFFER_PREFIX",
    "OFFLOAD_THRESHOLD",
    "buffer_json",
    "buffer_json_size",
    "check_rpc_params",
    "cut_buffers",
    "has_bytes",
    "is_buffer",
    "parse_broker_frame",
    "parse_runner_frame",
    "revive",
    "split_buffers",
    "stream_frame",
]

#: How n8n's JSON.stringify writes a Buffer, up to its first number.
BUFFER_PREFIX: Final = b'{"type":"Buffer","data":['
_SUFFIX: Final = b"]}"
#: Bytes per slice when writing numbers (~1.5 ms of orjson).
ENCODE_SLICE: Final = 1 << 16
#: JSON bytes per slice when reading numbers (~3 ms of orjson).
DECODE_SLICE: Final = 1 << 18
#: Frames and buffers above this many bytes are converted in a thread, by the runner
#: and by the embedded broker alike, so neither event loop stalls on one.
OFFLOAD_THRESHOLD: Final = 1 << 20
#: Placeholder strings: a NUL, a name, the buffer's index.
_PLACEHOLDER: Final = "\x00taskbox-buffer:"
_PLACEHOLDER_JSON: Final = b'"\\u0000taskbox-buffer:'  # how orjson and n8n write it
_MAX_DEPTH: Final = 256
_BELOW_10: Final = bytes(range(10))
_BELOW_100: Final = bytes(range(100))


def is_buffer(value: Any) -> bool:
    """True for n8n's Buffer object: exactly ``type: "Buffer"`` and a ``data`` list."""
    return isinstance(value, dict) and len(value) == 2 and value.get("type") == "Buffer" \
        and isinstance(value.get("data"), list)


# --- bytes -> JSON ------------------------------------------------------------------------


def _number_slices(data: bytes | memoryview) -> Iterator[bytes | memoryview]:
    view = memoryview(data)
    for offset in range(0, len(view), ENCODE_SLICE):
        text = orjson.dumps(list(view[offset:offset + ENCODE_SLICE]))
        if offset:
            yield b","
        yield memoryview(text)[1:-1]


def _buffer_parts(data: bytes) -> Iterator[bytes | memoryview]:
    yield BUFFER_PREFIX
    yield from _number_slices(data)
    yield _SUFFIX


def buffer_json(data: bytes) -> bytes:
    """``{"type":"Buffer","data":[...]}`` for ``data``, built slice by slice.

    Only the final join is one long C call (a copy); run it in a thread for
    large buffers.
    """
    return b"".join(_buffer_parts(data))


def buffer_json_size(data: bytes) -> int:
    """Exact length of :func:`buffer_json` ``(data)``, counted slice by slice."""
    view = memoryview(data)
    digits = 0
    for offset in range(0, len(view), ENCODE_SLICE):
        part = bytes(view[offset:offset + ENCODE_SLICE])
        digits += len(part) + len(part.translate(None, _BELOW_10)) \
            + len(part.translate(None, _BELOW_100))
    commas = max(len(view) - 1, 0)
    return len(BUFFER_PREFIX) + digits + commas + len(_SUFFIX)


class _BytesFound(Exception):
    pass


def _refuse_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _BytesFound
    return str(value)


def has_bytes(value: Any) -> bool:
    """True if ``value`` holds a ``bytes``-like value anywhere.

    Asked of every helper call's params, so it is one orjson pass (orjson hands
    bytes to ``default``) instead of a walk in Python: a large JSON body costs
    milliseconds, not a stall.
    """
    try:
        orjson.dumps(value, default=_refuse_bytes, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        return isinstance(exc.__cause__, _BytesFound)
    return False


def split_buffers(value: Any) -> tuple[Any, list[bytes]]:
    """Swap every bytes-like value for a placeholder string.

    Returns:
        ``(value with placeholders, buffers)``, ready for :func:`stream_frame`
        once serialized. Without bytes, ``value`` itself and ``[]``.

    Raises:
        ValueError: nested too deeply.
    """
    if not has_bytes(value):
        return value, []
    buffers: list[bytes] = []

    def placeholder(data: bytes) -> str:
        buffers.append(data)
        return f"{_PLACEHOLDER}{len(buffers) - 1}"

    return framing.swap_bytes(value, placeholder), buffers


def _placeholders(frame: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of each placeholder string in ``frame``, checked to be 0..count-1."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        start = frame.find(_PLACEHOLDER_JSON, pos)
        if start < 0:
            break
        digits_at = start + len(_PLACEHOLDER_JSON)
        end = frame.find(b'"', digits_at)
        if end < 0 or frame[digits_at:end] != str(len(spans)).encode():
            raise ValueError("a string in the message looks like a buffer placeholder")
        spans.append((start, end + 1))
        pos = end + 1
    if len(spans) != count:
        raise ValueError("a string in the message looks like a buffer placeholder")
    return spans


def stream_frame(frame: bytes, buffers: list[bytes]) -> Iterator[bytes | memoryview]:
    """Yield ``frame`` with each placeholder replaced by its buffer's JSON, in slices.

    Args:
        frame: a serialized message whose values came from :func:`split_buffers`.
        buffers: the buffers :func:`split_buffers` returned.

    Raises:
        ValueError: the placeholders in ``frame`` do not match ``buffers`` (a
            string in the message imitated one); raised before anything is yielded.
    """
    spans = _placeholders(frame, len(buffers))
    return _stream(memoryview(frame), spans, buffers)


def _stream(frame: memoryview, spans: list[tuple[int, int]],
            buffers: list[bytes]) -> Iterator[bytes | memoryview]:
    pos = 0  # a frame starts with '{"type"' and ends with '}': no empty pieces
    for (start, end), buffer in zip(spans, buffers, strict=True):
        yield frame[pos:start]
        yield from _buffer_parts(buffer)
        pos = end
    yield frame[pos:]


def check_rpc_params(params: list[Any], max_size: int) -> None:
    """Check that a ``runner:rpc`` with ``params`` can be streamed (:func:`stream_frame`).

    Args:
        params: the call's params, bytes included.
        max_size: ``N8N_RUNNERS_MAX_PAYLOAD``.

    Raises:
        ValueError: the frame would exceed ``max_size`` bytes, a string imitates a
            placeholder, or the params are nested too deeply.
    """
    tagged, buffers = split_buffers(params)
    body = dumps_json(tagged)
    _placeholders(body, len(buffers))
    overhead = 256  # type, callId, taskId, name
    size = len(body) + overhead + sum(4 * len(b) + len(BUFFER_PREFIX) for b in buffers)
    if size > max_size:  # the bound is over: count exactly
        size = len(body) + overhead + sum(buffer_json_size(b) for b in buffers)
    if size > max_size:
        raise ValueError(f"the call is about {size} bytes on the wire, over "
                         f"N8N_RUNNERS_MAX_PAYLOAD ({max_size} bytes)")


# --- JSON -> bytes ------------------------------------------------------------------------


def _decode_numbers(raw: bytes, start: int, end: int) -> bytes:
    """The bytes written as ``raw[start:end]`` (``1,2,3``), a slice at a time.

    Raises:
        ValueError: not a list of integers 0-255.
    """
    parts: list[bytes] = []
    pos = start
    while pos < end:
        stop = min(pos + DECODE_SLICE, end)
        if stop < end:
            comma = raw.find(b",", stop, end)
            stop = end if comma < 0 else comma
        try:
            values = orjson.loads(b"[" + raw[pos:stop] + b"]")
            parts.append(bytes(values))
        except TypeError as exc:  # a float, a string, a bool...
            raise ValueError(str(exc)) from exc
        pos = stop + 1
    return b"".join(parts)


def cut_buffers(raw: bytes) -> tuple[bytes, list[bytes]]:
    """Take every Buffer object out of a JSON frame, decoded into bytes.

    Returns:
        ``(frame, buffers)``: each Buffer object replaced by a placeholder
        string that :func:`revive` resolves; ``(raw, [])`` when there is none,
        or when the frame already contains placeholder-like text.
    """
    if BUFFER_PREFIX not in raw or _PLACEHOLDER_JSON in raw:
        return raw, []
    out: list[bytes] = []
    buffers: list[bytes] = []
    pos = 0
    search = 0
    while True:
        start = raw.find(BUFFER_PREFIX, search)
        if start < 0:
            break
        body = start + len(BUFFER_PREFIX)
        end = raw.find(b"]", body)
        search = body
        if end < 0 or raw[end + 1:end + 2] != b"}":
            continue  # more keys after data: not n8n's shape, leave it to the parser
        try:
            buffer = _decode_numbers(raw, body, end)
        except ValueError:
            continue
        out.append(raw[pos:start])
        out.append(f'"\\u0000taskbox-buffer:{len(buffers)}"'.encode())
        buffers.append(buffer)
        pos = search = end + 2
    out.append(raw[pos:])
    return b"".join(out), buffers


def revive(value: Any, buffers: list[bytes], depth: int = 0) -> Any:
    """Turn placeholders (from :func:`cut_buffers`) and Buffer objects into bytes.

    Returns:
        ``value`` with bytes where the buffers were (containers are copied only
        when something inside them changed).
    """
    if isinstance(value, str):
        if buffers and value.startswith(_PLACEHOLDER):
            index = value[len(_PLACEHOLDER):]
            if index.isascii() and index.isdigit() and int(index) < len(buffers):
                return buffers[int(index)]
        return value
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        if is_buffer(value):
            try:
                return bytes(value["data"])
            except (TypeError, ValueError):
                return value
        changed = {k: revive(v, buffers, depth + 1) for k, v in value.items()}
        return value if all(changed[k] is value[k] for k in value) else changed
    if isinstance(value, list):
        items = [revive(v, buffers, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _parse_reviving(raw: bytes, parse: Callable[[bytes], Any], carrier: type[Any],
                    field: str) -> Any:
    """Parse with ``parse``; Buffers inside ``carrier.<field>`` come back as bytes.

    Buffers are cut out before parsing and revived in that field only; a frame of
    another type is parsed as it came (its Buffer objects, if any, are user data and
    stay JSON objects).
    """
    stripped, buffers = cut_buffers(raw)
    msg: Any = parse(stripped)
    if not isinstance(msg, carrier):
        return parse(raw) if buffers else msg
    if not buffers and BUFFER_PREFIX not in raw:
        return msg  # nothing to revive: skip the walk (a large JSON answer is common)
    value = getattr(msg, field)
    revived = revive(value, buffers)
    return msg if revived is value else dataclasses.replace(msg, **{field: revived})


def parse_broker_frame(raw: bytes) -> m.BrokerMessage | None:
    """:func:`~taskbox.protocol.serde.parse_broker`, with an rpcresponse's Buffers as bytes.

    Raises:
        RemoteProtocolError: as ``parse_broker``.
    """
    msg: m.BrokerMessage | None = _parse_reviving(raw, parse_broker, m.RpcResponse, "data")
    return msg


def parse_runner_frame(raw: bytes) -> m.RunnerMessage | None:
    """:func:`~taskbox.protocol.serde.parse_runner`, with a runner:rpc's Buffers as bytes.

    Raises:
        RemoteProtocolError: as ``parse_runner``.
    """
    msg: m.RunnerMessage | None = _parse_reviving(raw, parse_runner, m.RpcCall, "params")
    return msg
