"""Length-prefixed JSON frames: the only codec between runner, zygote and workers.

Pure: no I/O, no clock. Both ends of every pipe use it -- the runner from asyncio,
the zygote and workers from blocking code -- so it imports nothing but orjson and
never imports ``taskbox``. It is the one module ``taskbox`` may import from here.

Wire format (house-style.md habit 8)::

    +----------------------+---------------------------+
    | length: uint32, BE   | payload: ``length`` bytes |
    +----------------------+---------------------------+

A payload is UTF-8 JSON (usually an object with a ``"t"`` type key), or, for the
task's input items, the raw JSON bytes the broker sent (never re-encoded, never
pickled). A receiver refuses any frame whose announced length exceeds its cap
*before* buffering it, so a hostile peer cannot make the reader allocate.

Frame types (``"t"``), by channel:

* control (runner <-> zygote, one frame per SOCK_SEQPACKET message):
  ``init`` (runner), ``ready``, ``worker`` (+ one fd via SCM_RIGHTS), ``exit``
  (zygote), ``taken``, ``pool``, ``stop`` (runner).
* task (runner <-> one worker, SOCK_STREAM): ``task`` header, then one raw items
  frame (runner); ``print``, ``rpc``, then exactly one ``result`` or ``error``
  (worker); ``rpc_reply`` (runner, answers ``rpc``).

Bytes in an ``rpc`` or ``rpc_reply`` (node helpers' buffers, issue 6) are not put
into the JSON: :func:`pack_buffers` swaps each one for a tag ``{"\\u0000buf": i}``,
the frame says how many follow (``"bufs": n``), and buffer ``i`` goes as the
``i``-th raw frame after it. No base64, no list of numbers: a 10 MB buffer costs
one copy into the socket. n8n's ``{"type": "Buffer", "data": [...]}`` exists only
on the websocket, and the runner converts to and from it.

Every type has a constant below (``FRAME_*``); code on both ends uses them, never the
bare string (as ``taskbox.protocol.messages`` names every websocket type).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson

__all__ = [
    "BUFFER_TAG",
    "DEFAULT_MAX_FRAME",
    "DIRECT_SIZE",
    "EXIT_CONFINE_FAILED",
    "FRAME_ERROR",
    "FRAME_EXIT",
    "FRAME_INIT",
    "FRAME_POOL",
    "FRAME_PRINT",
    "FRAME_PRINT_CUT",
    "FRAME_READY",
    "FRAME_RESULT",
    "FRAME_RPC",
    "FRAME_RPC_REPLY",
    "FRAME_STOP",
    "FRAME_TAKEN",
    "FRAME_TASK",
    "FRAME_WORKER",
    "HEADER_SIZE",
    "LAYERS",
    "MAX_BUFFERS",
    "PRINT_PREFIX",
    "RESULT_PREFIX",
    "FrameDecoder",
    "FrameError",
    "FrameTooLarge",
    "decode",
    "encode",
    "encode_raw",
    "pack_buffers",
    "read_frame",
    "read_frame_into",
    "unpack_buffers",
]

HEADER_SIZE: Final = 4

# Frame types (the ``"t"`` key), by channel; see the module docstring.
# control, runner -> zygote
FRAME_INIT: Final = "init"
FRAME_TAKEN: Final = "taken"
FRAME_STOP: Final = "stop"
FRAME_POOL: Final = "pool"  # {"size": n}: workers to keep, ready + running
# control, zygote -> runner
FRAME_READY: Final = "ready"
FRAME_WORKER: Final = "worker"
FRAME_EXIT: Final = "exit"
# task, runner -> worker
FRAME_TASK: Final = "task"
FRAME_RPC_REPLY: Final = "rpc_reply"
# task, worker -> runner
FRAME_PRINT: Final = "print"
FRAME_PRINT_CUT: Final = "print_cut"
FRAME_RPC: Final = "rpc"
FRAME_RESULT: Final = "result"
FRAME_ERROR: Final = "error"
#: The confinement layers, in the order they are applied: the keys of the ``ready``
#: frame's ``layers`` (confine.probe()), and the names TASKBOX_REQUIRE_LAYERS accepts.
LAYERS: Final = ("rlimits", "prctl", "setuid", "landlock", "seccomp", "netns")
#: A worker's exit status when its confinement could not be applied (zygote.py); the
#: runner reports it as a sandbox failure, not as the task's doing.
EXIT_CONFINE_FAILED: Final = 70
#: How a worker writes its result frame: this prefix, the result's JSON, ``}``. The
#: runner checks the prefix byte for byte before it splices the JSON (supervisor.py).
RESULT_PREFIX: Final = b'{"t":"' + FRAME_RESULT.encode() + b'","result":'
#: The start of every print frame (orjson keeps key order): lets the runner cap print
#: frames before parsing them.
PRINT_PREFIX: Final = b'{"t":"' + FRAME_PRINT.encode() + b'",'
#: Hard ceiling for any frame: the length field is 32 bits.
MAX_LENGTH: Final = 2**32 - 1
DEFAULT_MAX_FRAME: Final = 16 * 1024 * 1024
#: Key of the one-entry object that stands for buffer ``i`` (``{BUFFER_TAG: i}``).
#: The NUL keeps it apart from any key a real document would use.
BUFFER_TAG: Final = "\x00buf"
#: Most buffers one ``rpc`` / ``rpc_reply`` may carry.
MAX_BUFFERS: Final = 1024
#: Nesting depth :func:`pack_buffers` / :func:`unpack_buffers` walk (orjson's own
#: limit is 254 levels, so no valid frame is refused).
_MAX_DEPTH: Final = 256


class FrameError(ValueError):
    """The byte stream is not a valid sequence of frames."""


class FrameTooLarge(FrameError):
    """A frame announced more bytes than the receiver accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


def encode_raw(payload: bytes) -> bytes:
    """Frame bytes that are already JSON (e.g. the broker's ``items``) as they are.

    Args:
        payload: the frame body.

    Returns:
        The header followed by ``payload``.

    Raises:
        FrameTooLarge: ``payload`` does not fit the 32-bit length field.
    """
    size = len(payload)
    if size > MAX_LENGTH:
        raise FrameTooLarge(size, MAX_LENGTH)
    return size.to_bytes(HEADER_SIZE, "big") + payload


def encode(obj: Any, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """Serialise ``obj`` with orjson and frame it.

    Args:
        obj: any value orjson can serialise.
        default: orjson's ``default=`` hook for other types.
        option: orjson ``OPT_*`` flags.

    Returns:
        One complete frame.

    Raises:
        orjson.JSONEncodeError: ``obj`` cannot be serialised.
        FrameTooLarge: the encoding does not fit the 32-bit length field.
    """
    return encode_raw(orjson.dumps(obj, default=default, option=option))


def decode(payload: bytes | bytearray | memoryview) -> Any:
    """Parse one frame body.

    Raises:
        FrameError: the body is not valid JSON.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"invalid JSON frame: {exc}") from exc


class FrameDecoder:
    """Incremental splitter: bytes in, complete frame bodies out.

    Feed it whatever a ``recv`` returned; :meth:`feed` returns every body completed
    so far, in order (asyncio style), or :meth:`push` then :meth:`next_frame` pop
    them one at a time (blocking style). After a :class:`FrameError` the decoder
    is unusable (the stream has lost its framing) and every later call raises.
    """

    __slots__ = ("_buffer", "_error", "_need", "_ready", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        """Args:
        max_size: the largest body accepted, in bytes.
        """
        self.max_size = max_size
        self._buffer = bytearray()
        self._need = -1  # body length of the frame being read, -1 while reading a header
        self._ready: deque[bytes] = deque()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buffer)

    @property
    def pending(self) -> int:
        """Announced body size of the frame being read (-1 between frames)."""
        return self._need

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes of the frame being read, so a receiver can judge its
        type before the rest arrives (empty between frames)."""
        return bytes(self._buffer[:size]) if self._need >= 0 else b""

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; complete frames queue up for :meth:`next_frame`.

        Raises:
            FrameTooLarge: a header announced a body larger than ``max_size``.
        """
        if self._error is not None:
            raise self._error
        buf = self._buffer
        buf += data
        while True:
            if self._need < 0:
                if len(buf) < HEADER_SIZE:
                    return
                need = int.from_bytes(buf[:HEADER_SIZE], "big")
                if need > self.max_size:
                    self._error = FrameTooLarge(need, self.max_size)
                    buf.clear()
                    raise self._error
                del buf[:HEADER_SIZE]
                self._need = need
            need = self._need
            if len(buf) < need:
                return
            # One copy, not two (``buf[:need]`` alone would copy): a 10 MB buffer
            # frame costs the runner's event loop a single memcpy.
            with memoryview(buf) as view, view[:need] as body:
                self._ready.append(bytes(body))
            del buf[:need]  # O(1) at the front of a bytearray
            self._need = -1

    def take_pending(self) -> tuple[bytearray, int]:
        """Hand over the frame being read, to be received straight into place.

        Returns:
            A buffer of the frame's full size holding the bytes received so far, and
            how many those are. The decoder then waits for the next header.

        Raises:
            FrameError: no frame is partly read, or complete frames are still queued.
        """
        if self._need < 0 or self._ready or len(self._buffer) >= self._need:
            raise FrameError("no partly read frame to hand over")
        body = bytearray(self._need)
        filled = len(self._buffer)
        body[:filled] = self._buffer
        self._buffer.clear()
        self._need = -1
        return body, filled

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the bodies of all frames now complete.

        Raises:
            FrameTooLarge: a header announced a body larger than ``max_size``.
        """
        self.push(data)
        frames = list(self._ready)
        self._ready.clear()
        return frames

    def next_frame(self) -> bytes | None:
        """Pop the oldest complete frame, or ``None`` if none is complete."""
        if self._ready:
            return self._ready.popleft()
        return None


def read_frame(recv: Callable[[int], bytes], decoder: FrameDecoder,
               chunk: int = 65536) -> bytes | None:
    """Block until one frame is complete, pulling bytes through ``recv``.

    The caller supplies the I/O (``sock.recv``), so this stays pure.

    Args:
        recv: returns up to ``n`` bytes, ``b""`` at end of stream.
        decoder: holds bytes across calls; use one per stream.
        chunk: bytes asked for per call (more while a large frame is pending).

    Returns:
        The next body, or ``None`` at a clean end of stream (nothing pending).

    Raises:
        FrameError: the stream ended inside a frame, or a frame was too large.
    """
    frame = _read(recv, decoder, chunk)
    return None if frame is None else bytes(frame)


def read_frame_into(recv: Callable[[int], bytes], recv_into: Callable[[memoryview], int],
                    decoder: FrameDecoder, chunk: int = 65536) -> bytes | bytearray | None:
    """:func:`read_frame`, with a large body received straight into one buffer.

    A body of :data:`DIRECT_SIZE` bytes or more is not gathered chunk by chunk and
    copied out: once its header is in, the rest goes into a bytearray of its full
    size (``recv_into``, e.g. ``sock.recv_into``), which is returned as it is. For
    a new process, whose every fresh page faults, that is one buffer and one copy
    instead of three.
    """
    return _read(recv, decoder, chunk, recv_into)


#: Bodies at least this long are received in place by :func:`read_frame_into`.
DIRECT_SIZE: Final = 1 << 18


def _read(recv: Callable[[int], bytes], decoder: FrameDecoder, chunk: int,
          recv_into: Callable[[memoryview], int] | None = None) -> bytes | bytearray | None:
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        if recv_into is not None and decoder.pending >= DIRECT_SIZE:
            body, filled = decoder.take_pending()
            with memoryview(body) as view:
                while filled < len(body):
                    got = recv_into(view[filled:])
                    if not got:
                        raise FrameError("stream ended inside a frame")
                    filled += got
            return body
        want = chunk
        if decoder.pending > 0:
            want = max(chunk, min(decoder.pending - decoder.buffered, 1 << 24))
        data = recv(want)
        if not data:
            if decoder.buffered or decoder.pending >= 0:
                raise FrameError("stream ended inside a frame")
            return None
        decoder.push(data)


def pack_buffers(value: Any) -> tuple[Any, list[bytes]]:
    """Swap every bytes-like value for a :data:`BUFFER_TAG` object.

    Dicts, lists and tuples are copied (tuples become lists); anything else is
    kept as it is, for the JSON encoder to deal with.

    Args:
        value: e.g. an RPC's params or its reply data.

    Returns:
        ``(tagged, buffers)``: ``tagged`` holds ``{BUFFER_TAG: i}`` where
        ``buffers[i]`` was.

    Raises:
        FrameError: more than :data:`MAX_BUFFERS` buffers, or nested too deeply.
    """
    buffers: list[bytes] = []

    def tag(data: bytes) -> dict[str, int]:
        if len(buffers) >= MAX_BUFFERS:
            raise FrameError(f"more than {MAX_BUFFERS} buffers in one message")
        buffers.append(data)
        return {BUFFER_TAG: len(buffers) - 1}

    return swap_bytes(value, tag), buffers


def swap_bytes(value: Any, swap: Callable[[bytes], Any]) -> Any:
    """Copy ``value`` with each bytes-like leaf replaced by ``swap(bytes(leaf))``.

    Dicts, lists and tuples are copied (tuples become lists); other values are kept.
    Shared by both ends: the runner uses it for n8n's Buffer placeholders.

    Raises:
        FrameError: ``value`` is nested too deeply (or whatever ``swap`` raises).
    """

    def walk(item: Any, depth: int) -> Any:
        if isinstance(item, (bytes, bytearray, memoryview)):
            return swap(bytes(item))
        if depth > _MAX_DEPTH:
            raise FrameError("value is nested too deeply")
        if isinstance(item, dict):
            return {k: walk(v, depth + 1) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v, depth + 1) for v in item]
        return item

    return walk(value, 0)


def unpack_buffers(value: Any, buffers: list[bytes]) -> Any:
    """Inverse of :func:`pack_buffers`: put ``buffers[i]`` where ``{BUFFER_TAG: i}`` is.

    Returns:
        ``value`` itself when ``buffers`` is empty (nothing to find), else a copy.

    Raises:
        FrameError: a tag names no buffer, or ``value`` is nested too deeply.
    """
    if not buffers:
        return value

    def walk(item: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise FrameError("value is nested too deeply")
        if isinstance(item, dict):
            if len(item) == 1 and BUFFER_TAG in item:
                index = item[BUFFER_TAG]
                if type(index) is not int or not 0 <= index < len(buffers):
                    raise FrameError(f"buffer tag {index!r} names no buffer")
                return buffers[index]
            return {k: walk(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, depth + 1) for v in item]
        return item

    return walk(value, 0)
