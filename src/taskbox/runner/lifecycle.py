"""Runner.run(): connect, register, offer, execute, reconnect, shut down.

Order on stop (SIGTERM/SIGINT, broker:drain, idle timeout): stop offering and reject
accepts; let running tasks finish until the grace period ends; cancel stragglers (their
results are still sent); close the websocket with 1000; stop the health server and the
sandbox. A second signal skips the wait. A task outliving the grace period can never keep
the process alive (n8n's runner has exactly that bug, n8n-python-runner.md §4.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any, Protocol

import orjson
import websockets
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus

from taskbox.config import Config
from taskbox.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    GrantRejected,
    RemoteProtocolError,
)
from taskbox.executor.task import PrintSink, RpcCall, TaskOutcome, TaskSpec, failure
from taskbox.policy import SecurityPolicy
from taskbox.protocol import messages as m
from taskbox.protocol.offers import OFFER_INTERVAL, new_id
from taskbox.protocol.runner import (
    Accepted,
    CancelTask,
    DrainRequested,
    Event,
    Registered,
    RpcResult,
    RunnerProtocol,
    StartTask,
)
from taskbox.runner.connection import Connection
from taskbox.runner.dispatch import SettingsError, build_spec, precheck
from taskbox.runner.health import HealthServer
from taskbox.runner.helpers import check_params, frames, parse_frame, refusal
from taskbox.runner.metrics import Metrics
from taskbox.runner.reaper import install_reaper
from taskbox.runner.reconnect import RateLimited, backoff, mint_grant_token

__all__ = ["EXIT_AUTH", "EXIT_ERROR", "EXIT_OK", "Runner"]

log = logging.getLogger("taskbox.runner")

EXIT_OK, EXIT_ERROR, EXIT_AUTH = 0, 1, 3
RUNNER_NAME = "taskbox"
CANCELLED_MESSAGE = "Task was cancelled"


class ExecutorLike(Protocol):
    layers: dict[str, bool]

    @property
    def ready_workers(self) -> int: ...

    async def start(self) -> dict[str, bool]: ...
    async def run(self, spec: TaskSpec, on_print: PrintSink, on_rpc: RpcCall) -> TaskOutcome: ...
    async def aclose(self) -> None: ...


class Runner:
    """The asyncio runner around RunnerProtocol and the sandbox executor."""

    def __init__(self, config: Config, executor: ExecutorLike | None = None, *,
                 handle_signals: bool = True) -> None:
        self.config = config
        self.handle_signals = handle_signals
        self.executor = executor  # None: made after registration, see _start_executor
        self.policy = SecurityPolicy.from_limits(config.limits)
        self.runner_id = config.runner_id or new_id()
        # Gauges read at scrape time: the pool and the layers change after a zygote restart.
        self.metrics = Metrics(
            ready_workers=lambda: self.executor.ready_workers if self.executor else 0,
            layers=lambda: self.executor.layers if self.executor else {},
            slots=config.max_concurrency, busy_slots=lambda: len(self._tasks),
            zygote_restarts=lambda: getattr(self.executor, "restarts", 0))
        self.conn: Connection | None = None
        self.health: HealthServer | None = None
        self._runs: dict[str, asyncio.Task[Any]] = {}  # task id -> executor.run()
        self._tasks: set[asyncio.Task[Any]] = set()  # task id -> _execute()
        self._rpc_waiters: dict[str, asyncio.Future[tuple[bool, Any]]] = {}
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._force = False
        self._draining = False
        self._executor_ready: asyncio.Task[dict[str, bool]] | None = None
        self._registered = asyncio.Event()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.exit_code = EXIT_OK

    # -- public --------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop) if self.handle_signals else []
        unreap = install_reaper(loop) if self.handle_signals else None
        try:
            if self.config.health.enabled:
                self.health = HealthServer(self.config.health.host, self.config.health.port,
                                           {"/metrics": self.metrics.render}, self.ready)
                await self.health.start()
            self._executor_ready = asyncio.create_task(self._start_executor())
            self._executor_ready.add_done_callback(self._executor_started)
            return await self._serve()
        finally:
            await self._cleanup()
            for sig in installed:
                loop.remove_signal_handler(sig)
            if unreap is not None:
                unreap()

    async def sandbox(self) -> ExecutorLike:
        """The executor once it has started (it starts after registration).

        Raises:
            RuntimeError: ``run()`` has not been started.
        """
        if self._executor_ready is None:
            raise RuntimeError("the runner is not running")
        await asyncio.shield(self._executor_ready)
        assert self.executor is not None
        return self.executor

    def ready(self) -> bool:
        """Readiness: registered with the broker and neither stopping nor draining."""
        return self.metrics.broker_connected and not (self._stopping or self._draining)

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: stop now."""
        if self._stopping:
            log.warning("second stop signal: stopping now")
            self._force = True
            for run in self._runs.values():
                run.cancel()
        self._stopping = True
        self._stop_event.set()
        if self.conn is not None:
            self.conn.proto.stop_offering()

    # -- connection loop -----------------------------------------------------------

    async def _serve(self) -> int:
        token: str | None = self.config.grant_token or None
        delays = backoff()
        deadline = time.monotonic() + self.config.connect_timeout
        auth_retries = 0
        while not self._stopping:
            try:
                if token is None:
                    if not self.config.auth_token:
                        log.error("connection to the broker lost and no N8N_RUNNERS_AUTH_TOKEN "
                                  "to mint a new grant token; exiting so the launcher restarts us")
                        return EXIT_ERROR
                    token = await mint_grant_token(self.config.broker_host_port,
                                                   self.config.auth_token)
                ws = await self._connect(token)
                token = None  # grant tokens are single-use
                await self._session(ws)
            except AuthenticationFailed as exc:
                token = None
                auth_retries += 1
                if (isinstance(exc, GrantRejected) and self.config.auth_token
                        and auth_retries <= 3):
                    log.warning("%s; minting a new grant token", exc)
                    continue
                log.error("Authentication failed: %s", exc)
                return EXIT_AUTH
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                if not await self._retry_wait(exc, delays, deadline):
                    return EXIT_ERROR
                continue
            if self._stopping or self._draining:
                return self.exit_code
            log.warning("connection to the broker closed unexpectedly")
            self.metrics.reconnects.inc()
            delays, auth_retries = backoff(), 0
            deadline = time.monotonic() + self.config.connect_timeout
        return self.exit_code

    async def _retry_wait(self, exc: BaseException, delays: Iterator[float],
                          deadline: float) -> bool:
        """Sleep before the next attempt; False once the broker stayed away too long."""
        if time.monotonic() > deadline:
            log.error("broker at %s unreachable for %.0f s, giving up: %s",
                      self.config.broker_host_port, self.config.connect_timeout, exc)
            return False
        delay = next(delays)
        if isinstance(exc, RateLimited) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        log.info("cannot reach the broker (%s); retrying in %.1f s", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)
        return not self._stopping

    async def _connect(self, token: str) -> Any:
        url = f"{self.config.ws_url}?id={self.runner_id}"
        try:
            return await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"},
                max_size=self.config.max_payload, open_timeout=10, close_timeout=5,
                ping_interval=None, compression=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise GrantRejected(
                    f"the broker refused the grant token (HTTP {status} at /runners/_ws)"
                ) from exc
            if status == 429:
                raise RateLimited("rate-limited at /runners/_ws (HTTP 429)") from exc
            raise ConnectionClosed(f"websocket upgrade answered HTTP {status}") from exc

    async def _session(self, ws: Any) -> None:
        proto = RunnerProtocol(RUNNER_NAME, self.config.max_concurrency)
        if self._stopping:
            proto.stop_offering()
        conn = self.conn = Connection(ws, proto, self.config.max_payload, self.metrics.on_sent)
        offers = asyncio.create_task(self._offer_loop(conn))
        stopper = asyncio.create_task(self._stop_watch(conn))
        got_info_request = False
        closed: BaseException | None = None
        try:
            async for raw in frames(ws):
                try:
                    msg = await parse_frame(raw)  # large frames in a thread
                except RemoteProtocolError as exc:
                    log.warning("malformed frame from the broker skipped: %s", exc)
                    self.metrics.malformed_frames.inc()
                    continue
                if msg is None:
                    log.debug("unknown message type ignored")
                    continue
                got_info_request = got_info_request or isinstance(msg, m.InfoRequest)
                proto.receive_message(msg, conn.now())
                await conn.flush()
                self._handle_events(conn, proto.events_received())
        except (WsClosed, ConnectionClosed) as exc:
            # Keep websockets' own words, e.g. "sent 1009 (message too big)" for a frame
            # over N8N_RUNNERS_MAX_PAYLOAD, even when a send noticed the close first.
            closed = exc.__cause__ if isinstance(exc.__cause__, WsClosed) else exc
        finally:
            offers.cancel()
            stopper.cancel()
            conn.broken = True
            self.metrics.broker_connected = False
            lost = proto.connection_lost()
            for task_id in lost:  # the broker has already failed them
                run = self._runs.get(task_id)
                if run is not None:
                    run.cancel()
        if not got_info_request:
            raise GrantRejected("the broker closed the connection before "
                                       "broker:inforequest (grant token rejected?)")
        log.info("connection closed (%s)", closed or f"code {ws.close_code}")

    async def _offer_loop(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(OFFER_INTERVAL)
                if conn.proto.offering:
                    conn.proto.tick(conn.now())
                    await conn.flush()

    async def _stop_watch(self, conn: Connection) -> None:
        """Graceful stop for signals and idle timeout: wait for tasks, then close."""
        await self._stop_event.wait()
        conn.proto.stop_offering()
        await self._finish_running(self.config.graceful_shutdown_timeout)
        await conn.close(1000, "runner shutting down")

    async def _finish_running(self, grace: float) -> None:
        if self._tasks and not self._force:
            log.info("waiting up to %.0f s for %d running task(s)", grace, len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=grace)
        if self._tasks:
            log.warning("cancelling %d task(s) still running", len(self._tasks))
            for run in self._runs.values():
                run.cancel()
            await asyncio.wait(set(self._tasks), timeout=5.0)

    # -- events --------------------------------------------------------------------

    def _handle_events(self, conn: Connection, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, StartTask):
                task = asyncio.create_task(self._execute(conn, event.task_id, event.settings))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(event, Accepted):
                self.metrics.offers_accepted.inc()
                self._reset_idle()
            elif isinstance(event, CancelTask):
                log.info("task %s cancelled by the broker: %s", event.task_id, event.reason,
                         extra={"task_id": event.task_id})
                run = self._runs.get(event.task_id)
                if run is not None:
                    run.cancel()
            elif isinstance(event, RpcResult):
                waiter = self._rpc_waiters.pop(event.call_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((event.ok, event.data))
            elif isinstance(event, Registered):
                log.info("registered with the broker as %s (runner id %s)", RUNNER_NAME,
                         self.runner_id)
                self._registered.set()
                self.metrics.broker_connected = True
                self._reset_idle()
            elif isinstance(event, DrainRequested):
                log.info("broker:drain received: finishing running tasks, then closing")
                self._draining = True
                self.exit_code = EXIT_OK
                self._stop_event.set()

    async def _start_executor(self) -> dict[str, bool]:
        """Start the sandbox once the first offers are out.

        Importing the executor and spawning the zygote block the loop for ~20 ms; done
        after registration (or 0.5 s at the latest) they no longer delay the first
        offer. A task accepted meanwhile waits for the zygote's READY.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._registered.wait(), 0.5)
        if self.executor is None:
            from taskbox.executor import Executor

            self.executor = Executor(self.config.limits, self.config.max_concurrency,
                                     logging.getLogger("taskbox.executor"))
        return await self.executor.start()

    def _executor_started(self, task: asyncio.Task[dict[str, bool]]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("sandbox failed to start: %s", exc)
            self.exit_code = EXIT_ERROR
            self._stopping = True
            self._force = True
            self._stop_event.set()
        else:
            self.metrics.set_layers(task.result())

    # -- tasks ---------------------------------------------------------------------

    async def _execute(self, conn: Connection, task_id: str, settings: dict[str, Any]) -> None:
        started = time.monotonic()
        prints: list[asyncio.Future[tuple[bool, Any]]] = []
        rpc_calls = 0
        extra = {"task_id": task_id}

        def on_print(args: list[str]) -> None:
            prints.append(self._rpc(conn, task_id, "logNodeOutput", args))

        async def on_rpc(name: str, params: list[Any]) -> tuple[bool, Any]:
            # A node helper from user code (runner/helpers.py); params and the
            # answer hold bytes where n8n has Buffers.
            nonlocal rpc_calls
            rpc_calls += 1
            if rpc_calls > self.config.rpc_max_calls:
                return False, (f"Too many helper calls: the limit is {self.config.rpc_max_calls}"
                               " per task (TASKBOX_RPC_MAX_CALLS)")
            problem = refusal(name) or await check_params(params, self.config.max_payload)
            if problem is not None:
                return False, problem
            try:
                return await asyncio.wait_for(self._rpc(conn, task_id, name, params),
                                              self.config.rpc_timeout)
            except TimeoutError:
                return False, f"Helper call {name} timed out after {self.config.rpc_timeout:g} s"

        outcome: TaskOutcome | None
        spec: TaskSpec | None
        try:
            spec = build_spec(task_id, settings)
        except SettingsError as exc:
            spec = None
            outcome = TaskOutcome(error={"message": str(exc), "description": "SettingsError"},
                                  kind="error")
        else:
            extra.update(workflow_id=spec.workflow_id, workflow_name=spec.workflow_name,
                         node_id=spec.node_id, node_name=spec.node_name)
            outcome = precheck(spec, self.policy)
        log.debug("task %s started", task_id, extra={**extra, "event": "task_start"})
        if outcome is None:
            assert spec is not None  # only a valid spec passes the precheck
            outcome = await self._run_sandboxed(spec, on_print, on_rpc)
        if prints:  # logNodeOutput answers must arrive before taskdone (protocol.md §10)
            await asyncio.wait(prints, timeout=self.config.rpc_timeout)
        duration = time.monotonic() - started
        self.metrics.observe_task(outcome.kind, duration)
        if outcome.ok:
            result = (orjson.Fragment(outcome.result_json) if outcome.result_json is not None
                      else outcome.result)
            sent = conn.proto.finish_task(task_id, conn.now(), result=result)
        else:
            sent = conn.proto.finish_task(task_id, conn.now(), error=outcome.error)
        with contextlib.suppress(ConnectionClosed):
            await conn.flush()
        log.info("task %s finished: %s in %.1f ms%s", task_id, outcome.kind, duration * 1000,
                 "" if sent else " (not reported: the broker already dropped it)",
                 extra={**extra, "duration_ms": round(duration * 1000, 3), "event": "task_end",
                        "outcome": outcome.kind})
        self._reset_idle()

    async def _run_sandboxed(self, spec: TaskSpec, on_print: PrintSink,
                             on_rpc: RpcCall) -> TaskOutcome:
        assert self._executor_ready is not None
        run = asyncio.create_task(self._run_when_ready(spec, on_print, on_rpc))
        self._runs[spec.task_id] = run
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            if not run.cancelled():  # we ourselves were cancelled: propagate
                run.cancel()
                raise
            return failure(spec, CANCELLED_MESSAGE, "TaskCancelled", kind="cancelled")
        except Exception as exc:  # the executor itself broke: still answer the task
            log.exception("executor failed on task %s", spec.task_id,
                          extra={"task_id": spec.task_id})
            return failure(spec, f"Internal error while running the task: {exc}",
                           type(exc).__name__, kind="error")
        finally:
            self._runs.pop(spec.task_id, None)

    async def _run_when_ready(self, spec: TaskSpec, on_print: PrintSink,
                              on_rpc: RpcCall) -> TaskOutcome:
        assert self._executor_ready is not None
        await asyncio.shield(self._executor_ready)
        assert self.executor is not None  # set before _executor_ready can finish
        return await self.executor.run(spec, on_print, on_rpc)

    def _rpc(self, conn: Connection, task_id: str, name: str,
             params: list[Any]) -> asyncio.Future[tuple[bool, Any]]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        if conn.broken:
            waiter.set_result((False, "connection to the broker is closed"))
            return waiter
        call_id = conn.proto.send_rpc(task_id, name, params)
        self._rpc_waiters[call_id] = waiter

        def forget(fut: asyncio.Future[tuple[bool, Any]]) -> None:
            self._rpc_waiters.pop(call_id, None)
            if fut.cancelled():  # timed out or the task was killed: a late reply is ignored
                conn.proto.calls.resolve(call_id, task_id)

        waiter.add_done_callback(forget)
        flush = asyncio.ensure_future(conn.flush())
        flush.add_done_callback(_log_flush_error)
        return waiter

    # -- idle, signals, cleanup ----------------------------------------------------

    def _reset_idle(self) -> None:
        timeout = self.config.auto_shutdown_timeout
        if not timeout:
            return
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._idle_handle = asyncio.get_running_loop().call_later(timeout, self._idle_fire)

    def _idle_fire(self) -> None:
        if self._tasks:
            return  # the next task end re-arms the timer
        log.info("idle for %.0f s: shutting down", self.config.auto_shutdown_timeout or 0)
        self._stopping = True
        self._stop_event.set()
        if self.conn is not None:
            self.conn.proto.stop_offering()  # accepts racing the shutdown are rejected

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        return installed

    def _on_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self.request_stop()

    async def _cleanup(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        for run in self._runs.values():
            run.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if self.conn is not None and not self.conn.broken:
            await self.conn.close(1000, "runner shutting down")
        if self._executor_ready is not None and not self._executor_ready.done():
            self._executor_ready.cancel()
        if self.executor is not None:
            with contextlib.suppress(Exception):
                await self.executor.aclose()
        if self.health is not None:
            await self.health.aclose()


def _log_flush_error(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("flush failed: %s", task.exception())
