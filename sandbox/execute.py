"""Runs one task inside a confined worker: wrapping, modes, print, results, errors.

A worker is a fresh fork of the zygote that has already applied every OS layer
(``confine.py``). :func:`worker_main` reads exactly one task from its channel,
runs it and always ends with ``os._exit``: nothing survives into another task.

Semantics follow n8n-python-runner.md §5 with its bugs fixed (§9.1):

* the code is wrapped through the AST, not by re-indenting text: line numbers
  are the user's and multi-line strings are unchanged; top-level ``return`` works;
* per-item mode with continueOnFail turns only the failing items into error
  items; syntax errors also become error items under continueOnFail;
* results are the JSON n8n's runner sends (``json.dumps(..., default=str)``):
  every non-JSON value becomes its ``str()`` (a datetime ``2024-02-29 13:45:30``,
  a Decimal, UUID, set, object...), tuples lists, float subclasses numbers; but
  strictly valid: NaN/Infinity -> null (n8n's runner emits bare ``NaN``);
* errors carry ``message`` with ``[line N]`` (``[line N, for item K]``),
  ``description``, a user-only ``stack``, ``lineNumber`` and ``itemIndex``;
* prints stream to the runner one frame per call, so they survive failures;
* ``_helpers`` (helpers.py) gives n8n's node helpers in both modes, one blocking
  ``rpc`` frame per call.

``print`` with keywords (n8n's raises ``TypeError``): with the default ``sep``
and ``end`` every argument is one n8n-formatted string (``'text'``, ``42``,
``{"k": 1}``). With any other ``sep`` or ``end`` the call is rendered as Python's
``print`` would render it (``str()`` of each argument joined by ``sep``, then
``end`` unless it is ``"\\n"``) and sent as one quoted string. A ``file`` other
than ``sys.stdout`` drops the call; ``flush`` is ignored.

A ``MemoryError`` is final: the first one that escapes user code, or reaches any
``except`` clause in user code (even one that swallows it), ends the task as a
memory-limit failure (sandbox-security.md §1.1: RLIMIT_AS errors are catchable).

Never imports ``taskbox``; logs nothing: it only writes frames.
"""

from __future__ import annotations

import _thread
import ast
import enum
import gc
import json
import os
import select
import socket
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any, Final, NoReturn

import orjson

from . import framing, helpers, restrict, workflow

__all__ = [
    "SHOWN_FILENAME",
    "TaskFailed",
    "compile_user_code",
    "encode_result",
    "format_print_args",
    "worker_main",
]

USER_FILENAME: Final = restrict.USER_FILENAME
#: The filename shown to users in stacks.
SHOWN_FILENAME: Final = "<code>"
#: Global name (not a valid identifier, so user code cannot spell it) of the hook
#: the AST rewrite calls at the top of every ``except`` clause.
_EXCEPT_HOOK: Final = "<taskbox-except>"
_WRAPPER_NAME: Final = "<module>"

_MAX_TEXT: Final = 65_536  # cap for an error message or stack, in characters
#: orjson writes dates ISO 8601 and dataclasses as objects; n8n's runner (json.dumps
#: with default=str) writes their str(): pass them through to ``_default``.
_STR_KEY_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: ... and keys that are not strings become strings. orjson takes twice as long with
#: this option, so a result is first encoded without it (identical output when every
#: key is a str; a non-str key fails the first try).
_JSON_OPTIONS: Final = _STR_KEY_OPTIONS | orjson.OPT_NON_STR_KEYS
_MEMORY_FRAME: Final = framing.encode({"t": framing.FRAME_ERROR, "kind": "memory"})
#: Results shorter than this go in one send (one syscall); longer ones in three.
_JOIN_LIMIT: Final = 1 << 16


class TaskFailed(Exception):
    """A whole-task failure to report as an ``error`` frame."""

    def __init__(self, error: dict[str, Any], kind: str = "error") -> None:
        super().__init__(error.get("message", ""))
        self.error = error
        self.kind = kind


# --------------------------------------------------------------------------- channel


class _Channel:
    """The worker's end of its socket: blocking frame I/O, thread-safe sends.

    Built in the zygote without a socket (:class:`Prepared`); each worker plugs in its own.
    """

    sock: socket.socket  # each worker's own, set by serve()

    def __init__(self, sock: socket.socket | None, max_frame: int) -> None:
        if sock is not None:
            self.sock = sock
        self.decoder = framing.FrameDecoder(max_frame)
        self.send_lock = _thread.allocate_lock()
        self._rpc_lock = _thread.allocate_lock()
        self._rpc_id = 0

    def send(self, frame: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(frame)

    def send_result(self, body: bytes) -> None:
        """Send the result frame (framing.RESULT_PREFIX, ``body``, ``}``).

        A large body goes as it is, after its header: joining it into one frame
        would copy it twice more (each copy faulting in fresh pages of a new process).
        """
        size = len(framing.RESULT_PREFIX) + len(body) + 1
        head = size.to_bytes(framing.HEADER_SIZE, "big") + framing.RESULT_PREFIX
        if len(body) < _JOIN_LIMIT:
            self.send(head + body + b"}")
            return
        with self.send_lock:
            self.sock.sendall(head)
            self.sock.sendall(body)
            self.sock.sendall(b"}")

    def recv(self) -> bytes | None:
        return framing.read_frame(self.sock.recv, self.decoder)

    def recv_items(self) -> bytes | bytearray | None:
        """The items frame: a large one is received straight into its own buffer."""
        return framing.read_frame_into(self.sock.recv, self.sock.recv_into, self.decoder)

    def call(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        """Call a runner-side helper and block for its reply.

        Bytes in ``params`` go as raw frames after the ``rpc`` frame, and the
        reply's come back the same way (framing.pack_buffers).

        Returns:
            ``(ok, data)`` as the runner answered.

        Raises:
            RuntimeError: the channel broke or the reply was not an ``rpc_reply``.
        """
        tagged, buffers = framing.pack_buffers(params)
        with self._rpc_lock:
            self._rpc_id += 1
            call_id = self._rpc_id
            head = framing.encode({"t": framing.FRAME_RPC, "id": call_id, "name": name, "params": tagged,
                                   "bufs": len(buffers)}, default=str)
            with self.send_lock:
                self.sock.sendall(head)
                for buffer in buffers:  # header and body apart: no copy of a large buffer
                    self.sock.sendall(len(buffer).to_bytes(framing.HEADER_SIZE, "big"))
                    self.sock.sendall(buffer)
            reply = framing.decode(self._recv_or_fail(name))
            if not isinstance(reply, dict) or reply.get("t") != framing.FRAME_RPC_REPLY \
                    or reply.get("id") != call_id:
                raise RuntimeError(f"RPC {name} failed: unexpected reply")
            count = reply.get("bufs", 0)
            if type(count) is not int or not 0 <= count <= framing.MAX_BUFFERS:
                raise RuntimeError(f"RPC {name} failed: unexpected reply")
            received = [self._recv_or_fail(name) for _ in range(count)]
            return bool(reply.get("ok")), framing.unpack_buffers(reply.get("data"), received)

    def _recv_or_fail(self, name: str) -> bytes:
        frame = self.recv()
        if frame is None:
            raise RuntimeError(f"RPC {name} failed: the runner closed the channel")
        return frame

    def rpc(self, name: str, params: list[Any]) -> Any:
        """:meth:`call`, raising ``RuntimeError`` for an error reply."""
        ok, data = self.call(name, params)
        if ok:
            return data
        raise RuntimeError(f"RPC {name} failed: {data}")


_channel: _Channel | None = None


def _rpc(name: str, params: list[Any]) -> Any:
    """Call the runner-side RPC ``name`` with ``params`` and return its data.

    Raises:
        RuntimeError: the call failed or no channel is open.
    """
    if _channel is None:
        raise RuntimeError("no runner channel")
    return _channel.rpc(name, params)


def _helper_call(name: str, params: list[Any]) -> tuple[bool, Any]:
    """The call ``_helpers`` makes: one RPC over the task's channel."""
    if _channel is None:
        return False, "node helpers are not available here (no runner channel)"
    return _channel.call(name, params)


def _memory_exit() -> NoReturn:
    """Report the memory limit with a pre-encoded frame (no allocation) and die."""
    try:
        if _channel is not None:
            # Another thread may be half-way through a frame: wait for it, briefly.
            _channel.send_lock.acquire(timeout=1.0)
            _channel.sock.sendall(_MEMORY_FRAME)
    finally:
        os._exit(3)


def _chain_has_memory_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 32:
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _except_hook() -> None:
    """Called first in every user ``except`` clause: a MemoryError ends the task."""
    if _chain_has_memory_error(sys.exc_info()[1]):
        _memory_exit()


# --------------------------------------------------------------------------- compile


class _ExceptHookInserter(ast.NodeTransformer):
    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        self.generic_visit(node)
        first = node.body[0]
        name = ast.copy_location(ast.Name(_EXCEPT_HOOK, ast.Load()), first)
        call = ast.Expr(ast.copy_location(ast.Call(name, [], []), first))
        node.body.insert(0, ast.copy_location(call, first))
        return node


def compile_user_code(code: str) -> types.CodeType:
    """Compile user code as the body of a function, keeping the user's line numbers.

    Leading ``from __future__`` imports (and a docstring before them) stay at
    module level, where Python requires them.

    Returns:
        The function's code object, named ``<module>``.

    Raises:
        SyntaxError: the code does not compile.
    """
    tree = ast.parse(code, filename=USER_FILENAME)
    body = tree.body
    split = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) and len(body) > 1 \
            and _is_future(body[1]):
        split = 1
    while split < len(body) and _is_future(body[split]):
        split += 1
    head, rest = body[:split], body[split:]
    fn = ast.FunctionDef(
        name=_WRAPPER_NAME,
        args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=rest or [ast.Pass(lineno=1, col_offset=0)],
        decorator_list=[], returns=None, type_comment=None, lineno=1, col_offset=0,
    )
    # Every node made here carries its location, so no walk of the whole tree is
    # needed; and without ``try`` in the text there is no except clause to hook,
    # without ``format``/``get_field`` no call for the format guard (restrict.py).
    if "try" in code:
        fn = _ExceptHookInserter().visit(fn)
    if "format" in code or "get_field" in code:
        fn = restrict.FormatGuard().visit(fn)
    module = ast.Module(body=[*head, fn], type_ignores=[])
    compiled = compile(module, USER_FILENAME, "exec", dont_inherit=True)
    for const in compiled.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == _WRAPPER_NAME:
            return const
    raise AssertionError("wrapper function not found")  # pragma: no cover


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


# --------------------------------------------------------------------------- errors


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "... (truncated)"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a hostile __str__
        return "<exception str() failed>"


def syntax_error(exc: SyntaxError) -> dict[str, Any]:
    """The error object for code that does not compile."""
    kind = type(exc).__name__
    text = exc.msg or _safe_str(exc)
    line = exc.lineno
    message = f"{kind}: {text}" + (f" [line {line}]" if line else "")
    error: dict[str, Any] = {"message": _clip(message), "description": kind}
    if line:
        error["lineNumber"] = line
        error["stack"] = _clip("".join(traceback.format_exception_only(
            type(exc), _renamed_syntax_error(exc))))
    return error


def _renamed_syntax_error(exc: SyntaxError) -> SyntaxError:
    copy = SyntaxError(exc.msg, (SHOWN_FILENAME, exc.lineno, exc.offset, exc.text,
                                 exc.end_lineno, exc.end_offset))
    return copy


def runtime_error(exc: BaseException, source_lines: list[str],
                  item_index: int | None = None) -> dict[str, Any]:
    """The error object for an exception raised while user code ran.

    The stack keeps user frames only, with the user's line numbers and the
    filename shown as ``<code>``.
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == USER_FILENAME]
    line = frames[-1].lineno if frames else None
    kind = type(exc).__name__
    if isinstance(exc, restrict.SecurityViolation):  # n8n's shape for a runtime refusal
        error: dict[str, Any] = {"message": restrict.SECURITY_VIOLATION,
                                 "description": exc.description}
        if line is not None:
            error["lineNumber"] = line
        if item_index is not None:
            error["itemIndex"] = item_index
        return error
    if isinstance(exc, SystemExit):
        text = "" if exc.code is None else _safe_str(exc)
    else:
        text = _safe_str(exc)
    message = f"{kind}: {text}" if text else kind
    if line is not None and item_index is not None:
        message += f" [line {line}, for item {item_index}]"
    elif line is not None:
        message += f" [line {line}]"
    elif item_index is not None:
        message += f" [for item {item_index}]"
    shown = traceback.StackSummary.from_list([
        traceback.FrameSummary(SHOWN_FILENAME, f.lineno, f.name, lookup_line=False,
                               line=_source_line(source_lines, f.lineno))
        for f in frames
    ])
    try:
        tail = "".join(traceback.format_exception_only(type(exc), exc))
    except Exception:
        tail = f"{kind}\n"
    stack = "Traceback (most recent call last):\n" + "".join(shown.format()) + tail
    error = {"message": _clip(message), "description": kind, "stack": _clip(stack)}
    if _socket_refused(exc):
        error["description"] = NETWORK_HINT
    if line is not None:
        error["lineNumber"] = line
    if item_index is not None:
        error["itemIndex"] = item_index
    return error


#: The description of a refused socket (seccomp and Landlock cut the network): what to
#: use instead. n8n shows it under the message.
NETWORK_HINT: Final = ("The sandbox gives user code no network access: make HTTP requests "
                       "with _helpers.httpRequest({'url': ...}), which n8n performs for the "
                       "node")


def _socket_refused(exc: BaseException) -> bool:
    """Whether the sandbox refused a socket call somewhere in the exception's chain.

    The refusal is a PermissionError out of the socket module; urllib (URLError.reason)
    and requests (__context__) wrap it in their own errors.
    """
    seen: list[BaseException | None] = [exc]
    for _ in range(8):
        if not seen:
            break
        current = seen.pop()
        if current is None:
            continue
        if isinstance(current, PermissionError) and any(
                os.path.basename(f.filename) == "socket.py"
                for f in traceback.extract_tb(current.__traceback__)):
            return True
        reason = getattr(current, "reason", None)
        seen += [current.__cause__, current.__context__,
                 reason if isinstance(reason, BaseException) else None]
    return False


def _source_line(lines: list[str], lineno: int | None) -> str:
    if lineno is None or not 0 < lineno <= len(lines):
        return ""
    return lines[lineno - 1].strip()


# --------------------------------------------------------------------------- print


def format_print_args(args: tuple[Any, ...]) -> list[str]:
    """Format one ``print`` call's arguments the way n8n does (§5.6)."""
    out: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            out.append(f"'{arg}'")
        elif arg is None or isinstance(arg, (bool, int, float)):
            out.append(str(arg))
        else:
            try:
                out.append(json.dumps(arg, ensure_ascii=False, default=str))
            except Exception:
                out.append(f"[Circular {type(arg).__name__}]")
    return out


class _Printer:
    """Streams each ``print`` call to the runner, capped at ``cap`` bytes per task."""

    def __init__(self, channel: _Channel, cap: int) -> None:
        self._channel = channel
        self._cap = cap
        self._used = 0
        self._cut = False

    def make(self) -> Callable[..., None]:
        emit = self.emit

        def print(*args: Any, sep: str | None = " ", end: str | None = "\n",
                  file: Any = None, flush: bool = False) -> None:
            if sep is not None and not isinstance(sep, str):
                raise TypeError(f"sep must be None or a string, not {type(sep).__name__}")
            if end is not None and not isinstance(end, str):
                raise TypeError(f"end must be None or a string, not {type(end).__name__}")
            if file is not None and file is not sys.stdout and file is not sys.__stdout__:
                return  # stderr or a file: dropped, only stdout reaches the node's log
            if (sep is None or sep == " ") and (end is None or end == "\n"):
                emit(format_print_args(args))
                return
            text = (" " if sep is None else sep).join(str(a) for a in args)
            if end is not None and end != "\n":
                text += end
            emit([f"'{text}'"])

        return print

    def emit(self, parts: list[str]) -> None:
        if self._cut:
            return
        # At least one byte per call, so a flood of empty print() calls ends at the
        # cap too (the runner counts the same way and kills a worker printing past it).
        size = max(sum(len(p) for p in parts), 1)
        if self._used + size > self._cap:
            size = max(sum(len(p.encode("utf-8", "surrogatepass")) for p in parts), 1)
        if self._used + size > self._cap:
            self._cut = True
            self._channel.send(framing.encode({"t": framing.FRAME_PRINT_CUT}))
            return
        self._used += size
        try:
            frame = framing.encode({"t": framing.FRAME_PRINT, "args": parts})
        except orjson.JSONEncodeError:
            frame = framing.encode({"t": framing.FRAME_PRINT, "args": [_clean_str(p) for p in parts]})
        self._channel.send(frame)


def _clean_str(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


# --------------------------------------------------------------------------- results


def _default(value: Any) -> Any:
    """What ``json.dumps(default=str)`` makes of a value orjson does not take as is."""
    if isinstance(value, float):  # a float subclass (numpy.float64): json writes a number
        return float(value)
    if isinstance(value, tuple):  # a namedtuple: json writes a list
        return list(value)
    return str(value)


def encode_result(value: Any, exact: bool = False) -> bytes:
    """Serialise a result as n8n's runner does, but as strict JSON.

    Every value ``json.dumps(value, default=str)`` would turn into a string gets
    the same string; NaN and Infinity become ``null`` (as JavaScript's
    ``JSON.stringify``). Values orjson refuses (huge ints, cycles, lone
    surrogates, deep nesting) go through a slower sanitising pass instead of
    failing; so does everything when ``exact`` is set (the code may return plain
    ``Enum`` members, which orjson would write as their value).
    """
    if not exact:
        for option in (_STR_KEY_OPTIONS, _JSON_OPTIONS):
            try:
                return orjson.dumps(value, default=_default, option=option)
            except orjson.JSONEncodeError:
                pass
    return orjson.dumps(_sanitize(value, 0, set()), default=_default, option=_JSON_OPTIONS)


def _sanitize(value: Any, depth: int, active: set[int]) -> Any:
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return int(value)
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, enum.Enum):  # json.dumps: str() unless a str/int/float mixin
        return str(value)
    if depth > 200:
        return "[Nested too deep]"
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            return f"[Circular {type(value).__name__}]"
        active.add(id(value))
        try:
            if isinstance(value, dict):
                return {_clean_str(_key(k)): _sanitize(v, depth + 1, active)
                        for k, v in value.items()}
            return [_sanitize(v, depth + 1, active) for v in value]
        finally:
            active.discard(id(value))
    try:
        orjson.dumps(value, option=_JSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return _clean_str(_default(value))
    return value


def _key(key: Any) -> str:
    """A dict key as json.dumps writes it (any other type: its str(), not a TypeError)."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return "true" if key else ("false" if key is False else "null")
    if isinstance(key, (int, float)) and not isinstance(key, enum.Enum):
        return json.dumps(key)
    return str(key)


def wrap_item(value: Any, index: int) -> dict[str, Any]:
    """Per-item output shape (n8n-python-runner.md §5.5)."""
    if isinstance(value, dict):
        if "json" in value:
            out: dict[str, Any] = {"json": value["json"]}
        elif "binary" in value:
            out = {"json": {k: v for k, v in value.items() if k != "binary"}}
        else:
            out = {"json": value}
        if "binary" in value:
            out["binary"] = value["binary"]
    else:
        out = {"json": value}
    out["pairedItem"] = {"item": index}
    return out


# --------------------------------------------------------------------------- task


class _Task:
    """One task's settings, decoded from the header frame and the items frame."""

    def __init__(self, header: dict[str, Any], items_json: bytes | bytearray) -> None:
        self.code = str(header.get("code", ""))
        self.per_item = header.get("mode") == "runOnceForEachItem"
        self.continue_on_fail = bool(header.get("continueOnFail"))
        self.query = header.get("query")
        items = decode_items(items_json) if items_json else []
        self.items: list[Any] = items if isinstance(items, list) else []


def decode_items(items_json: bytes | bytearray) -> Any:
    """Parse the input items with the cyclic GC out of the way.

    10,000 items are ~50,000 containers: parsed with the collector on, they trigger
    dozens of collections, and after them every later one (while the code runs, while
    the result is encoded) walks them again. JSON has no cycles, so they are frozen
    (``gc.freeze``) instead: refcounting still frees them, the collector skips them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        items = orjson.loads(items_json)
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return items


class Prepared:
    """Everything that does not depend on the task, built before it arrives.

    The zygote builds it once before forking (the policy, the builtins table,
    the importlib guards, the channel and printer objects, an empty
    ``os.environ``), so every worker shares those pages instead of building and
    so writing its own: a fork pays a copy-on-write fault for each page it
    writes, ~2 us each. A worker plugs its socket into the channel and, if its
    task does not come soon, makes a warm-up run through the compiler, the
    eval loop and the JSON codec: the faults a fresh fork pays on first touch
    then happen off the task's critical path.
    """

    def __init__(self, limits: dict[str, Any]) -> None:
        policy = restrict.ImportPolicy(limits.get("stdlib_allow", ()),
                                       limits.get("external_allow", ()),
                                       bool(limits.get("allow_transitive_imports")))
        self.table = restrict.safe_builtins(limits.get("builtins_deny", ()),
                                            policy.make_import())
        self.printer: Callable[..., None] = _no_print
        restrict.guard_importlib(policy)
        self.max_payload = int(limits.get("max_payload", framing.DEFAULT_MAX_FRAME))
        self.channel = _Channel(None, self.max_payload + 65_536)
        self.attach(_Printer(self.channel, int(limits.get("print_cap_bytes", 1 << 20))).make())
        # The zygote's LANG; a task sees nothing, or its own "env" (serve()).
        os.environ.clear()

    def attach(self, printer: Callable[..., None]) -> None:
        """Route the task's ``print`` to this worker's channel."""
        self.table["print"] = printer
        self.printer = printer

    def warm_up(self) -> None:
        """Exercise the hot path once on a dummy task (nothing is sent)."""
        code = compile_user_code(_WARM_UP_CODE)
        namespace = self.fresh_globals(None)
        namespace["_items"] = orjson.loads(b'[{"json": {"a": 1}}]')
        encode_result(types.FunctionType(code, namespace)())

    def fresh_globals(self, query: Any, item_index: int | None = None) -> dict[str, Any]:
        """A new namespace for one run of the user function.

        Args:
            query: the task's ``_query``.
            item_index: per-item mode: the index of ``_item`` (``_helpers.item_index``).
        """
        # One run per worker in all-items mode: it may use the table itself (copying
        # it dirties ~80 pages shared with the zygote). Items each get their own copy.
        table = self.table if item_index is None else dict(self.table)
        return {"__builtins__": table, "__name__": "__main__",
                "print": self.printer, "_query": query,
                "_helpers": helpers.Helpers(_helper_call, item_index),
                _EXCEPT_HOOK: _except_hook, restrict.FORMAT_GUARD: restrict.safe_format}


def _no_print(*args: Any, **kwargs: Any) -> None:
    """``print`` before a worker attached its channel (never reached by a task)."""


def warm_up_shared(rounds: int = 16) -> None:
    """Run the hot path in the zygote before it forks (no guards installed).

    CPython 3.11 specialises bytecode in place as it runs; doing that once in
    the zygote leaves the specialised code in pages every worker shares,
    instead of each worker writing to (and so copying) them on its first task.
    """
    table = dict(vars(__builtins__)) if isinstance(__builtins__, types.ModuleType) \
        else dict(__builtins__)
    for _ in range(rounds):
        code = compile_user_code(_WARM_UP_CODE)
        namespace = {"__builtins__": table, "_items": orjson.loads(b'[{"json": {"a": 1}}]'),
                     _EXCEPT_HOOK: _except_hook, restrict.FORMAT_GUARD: restrict.safe_format}
        framing.encode_raw(encode_result(types.FunctionType(code, namespace)()))
        format_print_args(("warm", 1, {"k": [1]}))
        framing.FrameDecoder().feed(framing.encode({"t": framing.FRAME_TASK, "code": "x"}))


_WARM_UP_CODE: Final = (
    "out = []\n"
    "for item in _items:\n"
    "    try:\n"
    "        out.append({'json': dict(item['json'], b=[i * 2 for i in range(3)])})\n"
    "    except Exception:\n"
    "        pass\n"
    "return out\n"
)


def run_task(task: _Task, prepared: Prepared) -> Any:
    """Run the task and return its result value (before JSON encoding).

    Raises:
        TaskFailed: a whole-task error to send as an ``error`` frame.
    """
    try:
        code = compile_user_code(task.code)
    except SyntaxError as exc:
        raise TaskFailed(syntax_error(exc)) from None
    except (ValueError, RecursionError) as exc:  # null bytes, absurd nesting
        raise TaskFailed({"message": f"SyntaxError: {exc}", "description": "SyntaxError"}) \
            from None
    lines = task.code.splitlines()
    # _input, _('Node'), _workflow ... (workflow.py): only if the code names them.
    data = workflow.Session.open(code, _helper_call, task.items, task.per_item)

    if not task.per_item:
        namespace = prepared.fresh_globals(task.query)
        namespace["_items"] = task.items
        try:
            if data is not None:
                namespace.update(data.names(None))
            value = types.FunctionType(code, namespace)()
            if data is not None:
                data.finish()
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included
            if _chain_has_memory_error(exc):
                _memory_exit()
            raise TaskFailed(runtime_error(exc, lines)) from None
        return [] if value is None else value

    results: list[Any] = []
    for index, item in enumerate(task.items):
        namespace = prepared.fresh_globals(task.query, index)
        namespace["_item"] = item
        try:
            if data is not None:
                namespace.update(data.names(index))
            value = types.FunctionType(code, namespace)()
        except BaseException as exc:
            if _chain_has_memory_error(exc):
                _memory_exit()
            error = runtime_error(exc, lines, index)
            if not task.continue_on_fail:
                raise TaskFailed(error) from None
            results.append({"json": {"error": error["message"]}, "pairedItem": {"item": index}})
            continue
        if value is not None:
            results.append(wrap_item(value, index))
    if data is not None:
        try:
            data.finish()
        except BaseException as exc:
            raise TaskFailed(runtime_error(exc, lines)) from None
    return results


def _payload_error(size: int, limit: int) -> dict[str, Any]:
    message = (f"Task result is too large: {size} bytes exceeds "
               f"N8N_RUNNERS_MAX_PAYLOAD ({limit} bytes)")
    return {"message": message, "description": message}


def serve(sock: socket.socket, limits: dict[str, Any], prepared: Prepared | None = None,
          warm_up: bool = True) -> Any:
    """Prepare, read one task from ``sock``, run it and send its outcome.

    Returns the task's items and result, for the caller to hold until ``os._exit``:
    freed one object at a time on the way out, 10,000 items cost the worker ~5 ms
    of CPU beside the runner's, for memory the exit returns anyway.

    ``prepared`` is the zygote's (shared by every fork); without one it is built here.
    ``warm_up=False`` (the runner is busy) skips the warm-up run.
    """
    global _channel
    if prepared is None:
        prepared = Prepared(limits)
    max_payload = prepared.max_payload
    channel = _channel = prepared.channel
    channel.sock = sock
    # Warm up only while idle: if the task is already waiting (tasks arriving
    # back to back), the warm-up would only delay it.
    if warm_up and not select.select([sock], [], [], 0)[0]:
        prepared.warm_up()
    header_frame = channel.recv()
    if header_frame is None:  # the runner closed the channel without a task
        return
    header = framing.decode(header_frame)
    items_frame = channel.recv_items()
    if not isinstance(header, dict) or header.get("t") != framing.FRAME_TASK or items_frame is None:
        return
    env = header.get("env")
    if isinstance(env, dict) and not limits.get("block_env_access", True):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    try:
        task = _Task(header, items_frame)
        value = run_task(task, prepared)
        body = encode_result(value, exact="Enum" in task.code)
    except TaskFailed as failed:
        channel.send(framing.encode({"t": framing.FRAME_ERROR, "kind": failed.kind, "error": failed.error},
                                    default=str))
        return
    except orjson.JSONDecodeError as exc:
        channel.send(framing.encode({"t": framing.FRAME_ERROR, "kind": "error", "error": {
            "message": f"Invalid input items: {exc}", "description": "ValueError"}}))
        return
    except (orjson.JSONEncodeError, RecursionError) as exc:
        message = f"Task result could not be serialized: {_safe_str(exc)}"
        channel.send(framing.encode({"t": framing.FRAME_ERROR, "kind": "error", "error": {
            "message": message, "description": "TypeError"}}))
        return
    if len(body) > max_payload:
        channel.send(framing.encode({"t": framing.FRAME_ERROR, "kind": "payload",
                                     "error": _payload_error(len(body), max_payload)}))
        return
    channel.send_result(body)
    return task, value


def worker_main(sock: socket.socket, limits: dict[str, Any],
                prepared: Prepared | None = None, warm_up: bool = True) -> NoReturn:
    """Entry point of a forked worker (after confinement); never returns.

    Args:
        sock: the worker's end of its channel to the runner.
        limits: ``Limits.to_wire()`` as the zygote received it.
        prepared: the zygote's :class:`Prepared`.
        warm_up: whether to make the warm-up run while waiting for the task.
    """
    status = 0
    try:
        kept = serve(sock, limits, prepared, warm_up)  # noqa: F841 (freed by the exit)
    except MemoryError:
        _memory_exit()
    except BaseException as exc:
        status = 1
        try:
            message = f"Internal sandbox error: {type(exc).__name__}: {_safe_str(exc)}"
            sock.sendall(framing.encode({"t": framing.FRAME_ERROR, "kind": "error", "error": {
                "message": message, "description": "SandboxError"}}))
        except BaseException:
            pass
    finally:
        os._exit(status)
