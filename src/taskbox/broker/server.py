"""The embedded n8n-compatible task broker (asyncio + aiohttp).

One aiohttp server on one port serves what n8n's broker serves (protocol.md §2, §3):

* ``POST /runners/auth`` — auth token -> single-use grant token;
* ``GET /runners/_ws?id=<runnerId>`` — the runner websocket, checked before the upgrade
  (400 / 401 / 403 / 429 / 503);
* ``GET /healthz`` — ``{"status":"ok"}``.

All protocol decisions (offer pool, matching, accept window and strikes, timeouts, the
task map) are made by the sans-I/O ``taskbox.protocol.broker.BrokerProtocol``; this
module feeds it frames and time, and carries out what it decides. Frames are parsed and
written through ``taskbox.protocol.serde`` only. Each connection has one writer task fed
by a queue: that is the only place that writes to a runner's socket, so frames leave in
the order the core decided them.

It is the standalone broker (``serve``), the peer the runner's tests talk to, and the
harness of the benchmarks and the security scorecard: besides ``submit`` it records
every frame in ``events`` and offers fault-injection hooks (``send_raw``,
``disconnect``).

Why one module of ~890 lines (house style asks for a reason above ~600): it is one
class, the I/O shell of ``BrokerProtocol`` for many sockets at once; its parts (HTTP
admission, the per-connection reader and writer, the core's outputs, the requester
API) share the connection table and the core, and every decision already lives in
the core. What is not the broker's I/O lives beside it: admission in ``grants.py``
(grant tokens, rate limits), the test harness in ``harness.py`` (the frame log),
node helpers in ``helpers.py``, workflow data in ``workflow_data.py``.

Must not import taskbox.runner, taskbox.executor or anything from ``sandbox/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import WSMsgType, web

from taskbox.errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError
from taskbox.protocol.broker import (
    MSG_DISCONNECTED,
    MSG_UNRESPONSIVE,
    BrokerEvent,
    BrokerProtocol,
    DataRequested,
    NodeOutput,
    RequestFinished,
    RpcRequested,
    RunnerDropped,
    TaskAssigned,
    TaskStarted,
)
from taskbox.protocol.buffers import parse_runner_frame
from taskbox.protocol.messages import (
    DEFAULT_MAX_PAYLOAD,
    BrokerMessage,
    InfoRequest,
    RpcResponse,
    RunnerInfo,
    TaskSettings,
)
from taskbox.protocol.serde import dumps_json, parse_broker, serialize, to_wire

from .grants import GrantStore, RateLimiter
from .harness import FrameLog, FrameRecord, preview
from .helpers import OFFLOAD_THRESHOLD, call_helper
from .workflow_data import build_response

__all__ = ["EmbeddedBroker", "RequestOutcome", "serve"]

logger = logging.getLogger("taskbox.broker")

RUNNERS_PATH = "/runners"
MSG_SHUTTING_DOWN = "The task broker is shutting down"

# WebSocket close codes (RFC 6455 §7.4.1) as n8n uses them (protocol.md §12).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002  # n8n: failed heartbeat check



@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What a ``submit`` ends with.

    Attributes:
        status: ``"done"`` (runner:taskdone) or ``"error"`` (runner:taskerror, or a
            broker-made error: timeout, disconnect, cancel, request timeout).
        result: ``data["result"]`` of taskdone, else None.
        data: the whole taskdone ``data`` (result, customData, staticData), else None.
        error: the taskerror ``error`` as sent, or ``{"message": ...}`` from the broker.
        prints: ``logNodeOutput`` params, one list per RPC, in arrival order.
        task_id: the task id that ran (the last one tried if none ran), or ``""``.
        runner_id: the runner that held it, if any.
        submitted_at: monotonic time of ``submit``.
        accepted_at: monotonic time the runner's ``runner:taskaccepted`` arrived.
        done_at: monotonic time the outcome was decided.
    """

    status: Literal["done", "error"]
    result: Any = None
    data: dict[str, Any] | None = None
    error: Any = None
    prints: list[list[Any]] = field(default_factory=list)
    task_id: str = ""
    runner_id: str | None = None
    submitted_at: float = 0.0
    accepted_at: float | None = None
    done_at: float = 0.0

    @property
    def ok(self) -> bool:
        """True for ``status == "done"``."""
        return self.status == "done"


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[RequestOutcome]
    submitted_at: float
    prints: list[list[Any]] = field(default_factory=list)
    task_id: str = ""
    runner_id: str | None = None
    accepted_at: float | None = None
    on_print: Callable[[list[Any]], None] | None = None
    context: dict[str, Any] | None = None  # what data requests are answered from


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes
    binary: bool
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Barrier:
    reached: asyncio.Future[None]


class _Ping:
    pass


_PING = _Ping()
_Outgoing = BrokerMessage | _Raw | _Close | _Ping | _Barrier


class _Connection:
    """One runner websocket, registered or not yet."""

    def __init__(self, runner_id: str, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.runner_id = runner_id
        self.request = request
        self.ws = ws
        self.queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self.registered = False
        self.lost = False  # deregistered from the core; nothing more is read or matched
        self.closing = False
        self.alive = True  # answered the last heartbeat ping
        self.pongs = 0  # heartbeat answers so far (tests count them)
        self.ponged = asyncio.Event()  # set at each answer
        self.writer: asyncio.Task[None] | None = None
        self.helpers: set[asyncio.Task[None]] = set()
        self.finished = asyncio.Event()

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


def _json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=dumps_json(body), content_type="application/json")


class EmbeddedBroker:
    """An n8n-compatible task broker on one port, plus a Python requester API.

    Args:
        host: listen address.
        port: listen port; 0 picks a free one (see ``port`` after ``start``).
        auth_token: the ``N8N_RUNNERS_AUTH_TOKEN`` runners exchange at ``/runners/auth``;
            None generates a random one (read it from ``auth_token``).
        task_timeout: execution timeout (s), from ``tasksettings`` on.
        accept_timeout: accept window (s) for ``broker:taskofferaccept``.
        request_timeout: how long (s) a request waits for a matching offer.
        heartbeat_interval: seconds between websocket pings; a runner that did not answer
            the previous one is closed (1002).
        grant_ttl: grant token lifetime (s).
        max_payload: largest frame (bytes) either way.
        rate_limit: requests per second per client on ``/runners/auth`` and on upgrades;
            None or 0 disables the limit.
        close_timeout: seconds to wait for a runner's close frame before aborting.
        events_limit: how many frames ``events`` keeps.
        clock: monotonic seconds (grants, rate limits, core deadlines, event times).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_token: str | None = None,
        task_timeout: float = 60.0,
        accept_timeout: float = 2.0,
        request_timeout: float = 60.0,
        heartbeat_interval: float = 30.0,
        grant_ttl: float = 30.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        rate_limit: float | None = 5.0,
        *,
        close_timeout: float = 2.0,
        events_limit: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be greater than 0")
        self.host = host
        self.auth_token = auth_token if auth_token is not None else secrets.token_hex(32)
        self.task_timeout = task_timeout
        self.accept_timeout = accept_timeout
        self.request_timeout = request_timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_payload = max_payload
        self.close_timeout = close_timeout
        self._requested_port = port
        self._port: int | None = None
        self._clock = clock
        self._core = BrokerProtocol(accept_timeout=accept_timeout, task_timeout=task_timeout,
                                    request_timeout=request_timeout, reachable=self._reachable)
        self._grants = GrantStore(grant_ttl, clock)
        self._auth_limiter = RateLimiter(rate_limit, clock)
        self._ws_limiter = RateLimiter(rate_limit, clock)
        self._registered: dict[str, _Connection] = {}
        self._connections: set[_Connection] = set()
        self._pending: dict[str, _Pending] = {}
        self._request_seq = 0
        self._frames = FrameLog(events_limit, clock)
        self._runners_changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._app_runner: web.AppRunner | None = None
        self._started = False
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; ``port`` and ``uri`` are valid afterwards."""
        if self._started:
            raise RuntimeError("broker already started")
        self._started = True
        app = web.Application()
        app.router.add_post(f"{RUNNERS_PATH}/auth", self._handle_auth)
        app.router.add_get(f"{RUNNERS_PATH}/_ws", self._handle_ws)
        app.router.add_get("/healthz", self._handle_healthz)
        self._app_runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                         shutdown_timeout=self.close_timeout + 1.0)
        await self._app_runner.setup()
        site = web.TCPSite(self._app_runner, self.host, self._requested_port)
        await site.start()
        self._port = int(self._app_runner.addresses[0][1])
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(),
                                              name="taskbox-broker-heartbeat")
        logger.info("Task broker listening on %s", self.uri)

    async def aclose(self) -> None:
        """Shut down: close every runner with 1001, fail open requests, stop the server."""
        if self._closing:
            return
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._connections):
            self._lose(conn, {"message": MSG_DISCONNECTED, "description": MSG_SHUTTING_DOWN})
            self._close(conn, CLOSE_GOING_AWAY, "shutting-down")
        now = self._clock()
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_result(RequestOutcome(
                    "error", error={"message": MSG_SHUTTING_DOWN}, prints=pending.prints,
                    task_id=pending.task_id, runner_id=pending.runner_id,
                    submitted_at=pending.submitted_at, accepted_at=pending.accepted_at,
                    done_at=now))
        conns = [c.finished.wait() for c in self._connections]
        if conns:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout + 2.0):
                    await asyncio.gather(*conns)
        for conn in list(self._connections):
            conn.abort()
        if self._app_runner is not None:
            await self._app_runner.cleanup()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._heartbeat is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        self._frames.close()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- properties ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        if self._port is None:
            raise RuntimeError("broker not started")
        return self._port

    @property
    def uri(self) -> str:
        """``http://<host>:<port>``, the value for ``N8N_RUNNERS_TASK_BROKER_URI``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def runner_ids(self) -> list[str]:
        """Registered runners (sent ``runner:info``), in registration order."""
        return list(self._registered)

    @property
    def running_task_ids(self) -> list[str]:
        """Tasks that got ``broker:tasksettings`` and have not finished."""
        return self._core.running_task_ids()

    @property
    def protocol(self) -> BrokerProtocol:
        """The sans-I/O core (read-only use: offers, strikes, task phases)."""
        return self._core

    @property
    def events(self) -> list[FrameRecord]:
        """A copy of the frame log: ``(monotonic time, runner_id, "in"|"out", message)``.

        ``message`` is the wire-shaped dict; frames that did not parse (or have an unknown
        type) appear as ``{"type": None, "raw": <first 200 chars>}`` (harness.py).
        """
        return self._frames.snapshot()

    def clear_events(self) -> None:
        """Forget the frame log."""
        self._frames.clear()

    def mint_grant_token(self) -> str:
        """A grant token, exactly as a successful ``POST /runners/auth`` would give."""
        return self._grants.mint()

    # --- requester API ------------------------------------------------------------------

    async def submit(
        self,
        settings: dict[str, Any],
        *,
        task_type: str = "python",
        timeout: float | None = None,
        on_print: Callable[[list[Any]], None] | None = None,
        context: dict[str, Any] | None = None,
    ) -> RequestOutcome:
        """Ask for a task and wait for its outcome (safe to call concurrently).

        Args:
            settings: sent unchanged as ``broker:tasksettings.settings``.
            task_type: matched exactly against offers' ``taskType``.
            timeout: this task's execution timeout (s); default ``task_timeout``.
            on_print: called with each ``logNodeOutput``'s params as it arrives (they
                are in the outcome's ``prints`` too).
            context: the rest of the workflow for data requests
                (``workflow_data.load_context``); None answers from the settings alone.

        Returns:
            The outcome; errors (including broker timeouts) are outcomes, not exceptions.

        Raises:
            RuntimeError: the broker is not running.
        """
        if not self._started or self._closing:
            raise RuntimeError("broker is not running")
        self._request_seq += 1
        request_id = f"req-{self._request_seq}"
        now = self._clock()
        pending = _Pending(asyncio.get_running_loop().create_future(), now, on_print=on_print,
                           context=context)
        self._pending[request_id] = pending
        try:
            self._core.submit(request_id, task_type, settings, now, task_timeout=timeout)
            self._flush()
            return await pending.future
        except asyncio.CancelledError:
            # Cancelling the caller cancels the awaited future too: "no result yet".
            if pending.future.cancelled() or not pending.future.done():
                self._core.cancel_request(request_id, self._clock(), "Task cancelled by requester")
                self._flush()
            raise
        finally:
            self._pending.pop(request_id, None)

    async def cancel(self, task_id: str, reason: str = "Task cancelled") -> bool:
        """User cancel: ``broker:taskcancel {reason}``; the requester gets "Task was cancelled".

        Returns:
            False if the task is unknown or already finished.
        """
        cancelled = self._core.cancel_task(task_id, self._clock(), reason)
        self._flush()
        return cancelled

    async def drain(self) -> None:
        """Send ``broker:drain`` to every runner; new submits fail from now on."""
        self._core.drain(self._clock())
        self._flush()
        await self._written()

    async def wait_for_runners(self, n: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until at least ``n`` runners are registered.

        Returns:
            The registered runner ids.

        Raises:
            TimeoutError: fewer than ``n`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while len(self._registered) < n:
                await self._runners_changed.wait()
        return self.runner_ids

    async def wait_for_event(self, predicate: Callable[[FrameRecord], bool],
                             timeout: float = 10.0) -> FrameRecord:
        """The first logged frame matching ``predicate`` (already logged, or the next one).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        return await self._frames.wait_for(predicate, timeout)

    # --- fault injection ----------------------------------------------------------------

    async def send_raw(self, runner_id: str, data: bytes | str, *, binary: bool = False) -> None:
        """Send an arbitrary frame to a runner (text unless ``binary``), in queue order.

        Raises:
            KeyError: no connection with that id.
            ConnectionClosed: the connection went away before the frame was written.
        """
        conn = self._find(runner_id)
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conn.queue.put_nowait(_Raw(payload, binary, done))
        await done

    async def disconnect(self, runner_id: str, code: int | None = None) -> None:
        """Drop a runner's connection: a close frame with ``code``, or a TCP abort.

        ``None`` (or 1005/1006/1015, codes that never appear in a close frame) aborts the
        TCP connection, so the runner sees 1006. Its tasks fail with "Node execution
        failed", as for any disconnect.

        Raises:
            KeyError: no connection with that id.
        """
        conn = self._find(runner_id)
        self._lose(conn, {"message": MSG_DISCONNECTED})
        if code is None or code in (1005, 1006, 1015):
            conn.abort()
        else:
            self._close(conn, code, "")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout + 2.0):
                await conn.finished.wait()

    def _reachable(self, runner_id: str) -> bool:
        conn = self._registered.get(runner_id)
        return conn is not None and not conn.closing and not conn.ws.closed

    def _find(self, runner_id: str) -> _Connection:
        conn = self._registered.get(runner_id)
        if conn is not None:
            return conn
        for candidate in self._connections:
            if candidate.runner_id == runner_id and not candidate.lost:
                return candidate
        raise KeyError(runner_id)

    # --- HTTP handlers ------------------------------------------------------------------

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        return _json_response(200, {"status": "ok"})

    async def _handle_auth(self, request: web.Request) -> web.Response:
        if not self._auth_limiter.allow(request.remote or ""):
            return _json_response(429, {"message": "Too many requests"})
        try:
            # An HTTP body, not a protocol frame: serde only knows wire messages.
            body = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, ValueError):
            return _json_response(400, {"code": 400, "message": "invalid_json"})
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            return _json_response(400, {"code": 400, "message": "invalid_type"})
        # Constant-time compare; a different length fails too (protocol.md §3.1).
        if not hmac.compare_digest(body["token"].encode(), self.auth_token.encode()):
            return _json_response(403, {"code": 403, "message": "Forbidden"})
        return _json_response(200, {"data": {"token": self._grants.mint()}})

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        # Every check happens before the upgrade (protocol.md §3.2, n8n PR #26848).
        if self._closing:
            return _json_response(503, {"message": "Service Unavailable"})
        if not self._ws_limiter.allow(request.remote or ""):
            return _json_response(429, {"message": "Too many requests"})
        runner_id = request.query.get("id", "")
        if not runner_id:
            return _json_response(400, {"message": "Missing runner id"})
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme != "Bearer" or not token:
            return _json_response(401, {"message": "Unauthorized"})
        ws = web.WebSocketResponse(autoping=False, max_msg_size=self.max_payload,
                                   compress=False, timeout=self.close_timeout,
                                   decode_text=False)
        if not ws.can_prepare(request).ok:
            return _json_response(400, {"message": "Expected a WebSocket upgrade"})
        if not self._grants.consume(token):
            return _json_response(403, {"message": "Forbidden"})
        await ws.prepare(request)
        conn = _Connection(runner_id, request, ws)
        self._connections.add(conn)
        conn.writer = asyncio.create_task(self._writer(conn), name=f"taskbox-broker-w-{runner_id}")
        conn.queue.put_nowait(InfoRequest())
        try:
            await self._reader(conn)
        finally:
            self._lose(conn, {"message": MSG_DISCONNECTED})
            await self._finish_connection(conn)
        return ws

    # --- connection I/O -----------------------------------------------------------------

    async def _reader(self, conn: _Connection) -> None:
        ws = conn.ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                # decode_text=False: text frames arrive as bytes; orjson takes them as is.
                await self._on_frame(conn, msg.data)
            elif msg.type is WSMsgType.PING:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.alive = True
                conn.pongs += 1
                conn.ponged.set()
            else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. 1009 over max_payload)
                if msg.type is WSMsgType.ERROR:
                    logger.warning("Runner %s connection error: %s", conn.runner_id, msg.data)
                return

    async def _on_frame(self, conn: _Connection, raw: bytes) -> None:
        try:
            # A runner:rpc's Buffers arrive as bytes, decoded a slice at a time.
            if len(raw) > OFFLOAD_THRESHOLD:
                parsed = await asyncio.to_thread(parse_runner_frame, raw)
            else:
                parsed = parse_runner_frame(raw)
        except RemoteProtocolError as exc:
            logger.error('Couldn\'t parse message from runner "%s": %s', conn.runner_id, exc)
            self._record(conn.runner_id, "in", preview(raw))
            return
        if parsed is None:  # unknown type: ignored (protocol.md §12)
            self._record(conn.runner_id, "in", preview(raw))
            return
        self._record(conn.runner_id, "in", to_wire(parsed))
        if conn.lost:
            return
        if not conn.registered:
            # Anything before runner:info is ignored (protocol.md §1 rule 2, §12).
            if isinstance(parsed, RunnerInfo):
                self._register(conn, parsed)
            return
        if isinstance(parsed, RunnerInfo):
            return
        self._core.receive_message(conn.runner_id, parsed, self._clock())
        self._flush()

    def _register(self, conn: _Connection, info: RunnerInfo) -> None:
        runner_id = conn.runner_id
        old = self._registered.pop(runner_id, None)
        if old is not None and old is not conn:
            # Same runner id twice: the older connection goes, its tasks fail (§12).
            logger.warning("Runner id %s connected again; closing the older connection",
                           runner_id)
            old.lost = True  # add_runner below deregisters it in the core
            self._close(old, CLOSE_NORMAL, "replaced")
        conn.registered = True
        self._registered[runner_id] = conn
        self._core.add_runner(runner_id, info.name, list(info.types), self._clock())
        self._flush()
        self._notify_runners_changed()

    def _lose(self, conn: _Connection, error: dict[str, Any]) -> None:
        """Deregister ``conn`` at once (its offers are never matched again)."""
        if conn.lost:
            return
        conn.lost = True
        if conn.registered and self._registered.get(conn.runner_id) is conn:
            del self._registered[conn.runner_id]
            self._core.remove_runner(conn.runner_id, self._clock(), error)
            self._flush()
            self._notify_runners_changed()

    def _close(self, conn: _Connection, code: int, reason: str) -> None:
        """Queue a close frame behind what is already queued; abort if it hangs."""
        if conn.closing:
            return
        conn.closing = True
        conn.queue.put_nowait(_Close(code, reason))
        self._spawn(self._close_watchdog(conn))

    async def _close_watchdog(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(self.close_timeout + 1.0):
                await conn.finished.wait()
        except TimeoutError:
            logger.debug("Runner %s did not close in time; aborting", conn.runner_id)
            conn.abort()

    async def _finish_connection(self, conn: _Connection) -> None:
        writer = conn.writer
        if writer is not None and not writer.done():
            if conn.closing:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    async with asyncio.timeout(self.close_timeout + 1.0):
                        await asyncio.shield(writer)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        for task in list(conn.helpers):
            task.cancel()
        self._fail_raw_sends(conn)
        self._connections.discard(conn)
        conn.finished.set()

    def _fail_raw_sends(self, conn: _Connection) -> None:
        while not conn.queue.empty():
            item = conn.queue.get_nowait()
            if isinstance(item, _Raw) and not item.done.done():
                item.done.set_exception(ConnectionClosed(f"runner {conn.runner_id} is gone"))
            elif isinstance(item, _Barrier) and not item.reached.done():
                item.reached.set_result(None)

    async def _writer(self, conn: _Connection) -> None:
        """The only code that writes to ``conn``'s socket."""
        ws = conn.ws
        try:
            while True:
                item = await conn.queue.get()
                if isinstance(item, _Close):
                    await ws.close(code=item.code, message=item.reason.encode())
                    return
                if isinstance(item, _Ping):
                    await ws.ping()
                    continue
                if isinstance(item, _Barrier):
                    if not item.reached.done():
                        item.reached.set_result(None)
                    continue
                if isinstance(item, _Raw):
                    self._record(conn.runner_id, "out", self._raw_view(item.data))
                    await ws.send_frame(item.data,
                                        WSMsgType.BINARY if item.binary else WSMsgType.TEXT)
                    if not item.done.done():
                        item.done.set_result(None)
                    continue
                try:
                    if isinstance(item, RpcResponse) and isinstance(
                            item.data, dict | list | orjson.Fragment):
                        # Helper replies can carry megabytes of Buffer numbers.
                        frame = await asyncio.to_thread(serialize, item, self.max_payload)
                    else:
                        frame = serialize(item, self.max_payload)
                except LocalProtocolError as exc:
                    self._unsendable(item, exc)
                    continue
                self._record(conn.runner_id, "out", to_wire(item))
                await ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("Write to runner %s failed: %s", conn.runner_id, exc)
            self._lose(conn, {"message": MSG_DISCONNECTED})
            conn.abort()
        finally:
            self._fail_raw_sends(conn)

    def _raw_view(self, data: bytes) -> dict[str, Any]:
        try:
            parsed = parse_broker(data) if len(data) <= OFFLOAD_THRESHOLD else None
        except RemoteProtocolError:
            parsed = None
        return to_wire(parsed) if parsed is not None else preview(data)

    def _unsendable(self, item: BrokerMessage, exc: LocalProtocolError) -> None:
        now = self._clock()
        logger.error("Cannot send %s: %s", item.TYPE, exc)
        if isinstance(item, TaskSettings):
            self._core.abort_task(item.task_id, now, "Task settings exceed the maximum payload",
                                  {"message": str(exc)})
        elif isinstance(item, RpcResponse) and item.status == "success":
            self._core.respond_rpc(item.task_id, item.call_id, "error", {"message": str(exc)})
        self._flush()

    async def _written(self) -> None:
        """Wait until every registered runner's writer got past what is queued now."""
        loop = asyncio.get_running_loop()
        barriers: list[asyncio.Future[None]] = []
        for conn in self._registered.values():
            if not conn.closing:
                fut: asyncio.Future[None] = loop.create_future()
                conn.queue.put_nowait(_Barrier(fut))
                barriers.append(fut)
        if barriers:
            # A connection that dies first never reaches its barrier; don't hang on it.
            await asyncio.wait(barriers, timeout=self.close_timeout)

    # --- the core's outputs -------------------------------------------------------------

    def _flush(self) -> None:
        """Carry out everything the core decided; call after every core input."""
        while True:
            messages = self._core.messages_to_send()
            events = self._core.events_received()
            if not messages and not events:
                break
            for runner_id, msg in messages:
                conn = self._registered.get(runner_id)
                if conn is not None and not conn.closing:
                    conn.queue.put_nowait(msg)
            for event in events:
                self._on_core_event(event)
        self._schedule_tick()

    def _on_core_event(self, event: BrokerEvent) -> None:
        if isinstance(event, DataRequested):
            asking = self._pending.get(event.request_id)
            answer = build_response(asking.context if asking else None, event.settings,
                                    event.params)
            self._core.respond_data(event.task_id, event.data_request_id, answer)
            return
        if isinstance(event, RpcRequested):
            conn = self._registered.get(event.runner_id)
            if conn is not None:
                task = asyncio.create_task(self._run_helper(event),
                                           name=f"taskbox-broker-rpc-{event.call_id}")
                conn.helpers.add(task)
                task.add_done_callback(conn.helpers.discard)
            return
        if isinstance(event, RunnerDropped):
            conn = self._registered.pop(event.runner_id, None)
            if conn is not None:
                conn.lost = True  # the core already deregistered it
                self._close(conn, event.code, event.reason)
                self._notify_runners_changed()
            return
        pending = self._pending.get(event.request_id)
        if pending is None:
            return
        if isinstance(event, TaskAssigned):
            pending.task_id, pending.runner_id = event.task_id, event.runner_id
        elif isinstance(event, TaskStarted):
            pending.task_id, pending.runner_id = event.task_id, event.runner_id
            pending.accepted_at = self._clock()
        elif isinstance(event, NodeOutput):
            pending.prints.append(list(event.params))
            if pending.on_print is not None:
                pending.on_print(pending.prints[-1])
        elif isinstance(event, RequestFinished) and not pending.future.done():
            data = event.data
            pending.future.set_result(RequestOutcome(
                status=event.status,
                result=data.get("result") if event.status == "done" and data else None,
                data=data,
                error=event.error,
                prints=pending.prints,
                task_id=event.task_id or pending.task_id,
                runner_id=event.runner_id or pending.runner_id,
                submitted_at=pending.submitted_at,
                accepted_at=pending.accepted_at,
                done_at=self._clock(),
            ))

    async def _run_helper(self, event: RpcRequested) -> None:
        status, data = await call_helper(event.name, event.params, event.settings)
        if not self._core.respond_rpc(event.task_id, event.call_id, status, data):
            logger.debug("Dropping late %s reply for finished task %s", event.name, event.task_id)
        self._flush()

    def _schedule_tick(self) -> None:
        deadline = self._core.next_deadline()
        if deadline == self._timer_when or self._closing:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        self._core.tick(self._clock())
        self._flush()

    # --- liveness -----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # n8n's sweep: close whoever missed the previous ping, ping the rest (§2).
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            for conn in list(self._connections):
                if conn.lost or conn.closing:
                    continue
                if not conn.alive:
                    logger.warning("Runner %s failed the heartbeat check; closing it",
                                   conn.runner_id)
                    self._lose(conn, {"message": MSG_UNRESPONSIVE})
                    self._close(conn, CLOSE_PROTOCOL_ERROR, "failed-heartbeat-check")
                    continue
                conn.alive = False
                conn.queue.put_nowait(_PING)

    # --- small helpers ------------------------------------------------------------------

    def _record(self, runner_id: str, direction: str, message: dict[str, Any]) -> None:
        self._frames.record(runner_id, direction, message)

    def _notify_runners_changed(self) -> None:
        self._runners_changed.set()
        self._runners_changed = asyncio.Event()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def serve(host: str = "127.0.0.1", port: int = 5679, auth_token: str | None = None,
                **kwargs: Any) -> None:
    """Run a standalone broker until cancelled.

    Args:
        host: listen address.
        port: listen port (n8n's default is 5679; 0 picks a free one).
        auth_token: ``N8N_RUNNERS_AUTH_TOKEN``. It is never logged.
        **kwargs: any other ``EmbeddedBroker`` argument.
    """
    broker = EmbeddedBroker(host=host, port=port, auth_token=auth_token, **kwargs)
    await broker.start()
    logger.info("Task broker ready at %s", broker.uri)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.aclose()
