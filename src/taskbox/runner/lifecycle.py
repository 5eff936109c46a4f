"""Runner.run(): the process around the sessions.

Owns what outlives one connection: the health server, signals, the sandbox start-up,
and connecting (grant tokens, backoff, reconnect). Everything about one connection is in
``session.py`` (and the modules it composes: ``connection``, ``offer_loop``,
``rpc_router``, ``execution``); every way of stopping is in ``shutdown.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

from taskbox.config import Config
from taskbox.errors import AuthenticationFailed, ConnectionClosed, GrantRejected
from taskbox.logs import RUNNER_ID
from taskbox.policy import SecurityPolicy
from taskbox.protocol.offers import new_id
from taskbox.runner.execution import ExecutorLike, Sandbox
from taskbox.runner.health import HealthServer
from taskbox.runner.metrics import Metrics
from taskbox.runner.reaper import install_reaper
from taskbox.runner.reconnect import RateLimited, backoff, is_retryable, mint_grant_token
from taskbox.runner.session import Session
from taskbox.runner.shutdown import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_OK,
    IdleTimer,
    Shutdown,
    capture_signals,
)
from taskbox.runner.websocket import InvalidStatus, connect, is_loopback

__all__ = ["EXIT_AUTH", "EXIT_ERROR", "EXIT_OK", "Runner"]

log = logging.getLogger("taskbox.runner")

#: The sandbox starts after registration, or this many seconds after start at the latest.
SANDBOX_START_DELAY = 0.5
#: websockets' opening handshake and close timeouts, seconds.
OPEN_TIMEOUT, CLOSE_TIMEOUT = 10.0, 5.0
#: A grant token refused this many times in a row (with the auth token to mint more) is fatal.
MAX_GRANT_RETRIES = 3


class Runner:
    """The asyncio runner around RunnerProtocol and the sandbox executor.

    Args:
        config: the whole configuration.
        executor: the executor to use: `taskbox connect` passes one whose zygote it
            spawned at process start; tests pass fakes. Default: one made here.
        handle_signals: install SIGTERM/SIGINT handlers while running.
    """

    def __init__(self, config: Config, executor: ExecutorLike | None = None, *,
                 handle_signals: bool = True) -> None:
        self.config = config
        self.handle_signals = handle_signals
        self.policy = SecurityPolicy.from_limits(config.limits)
        self.runner_id = config.runner_id or new_id()
        self.shutdown = Shutdown(config.graceful_shutdown_timeout)
        self._sandbox = Sandbox(executor)
        # Gauges read at scrape time: the pool and the layers change after a zygote restart.
        self.metrics = Metrics(
            ready_workers=lambda: self.executor.ready_workers if self.executor else 0,
            layers=lambda: self.executor.layers if self.executor else {},
            slots=config.max_concurrency, busy_slots=self._busy_slots,
            zygote_restarts=lambda: getattr(self.executor, "restarts", 0))
        self.health: HealthServer | None = None
        self.session: Session | None = None  # the current connection, if any
        self._registered = asyncio.Event()
        self._idle = IdleTimer(config.auto_shutdown_timeout, self._busy, self._idle_fire)
        self._running = False

    @property
    def executor(self) -> ExecutorLike | None:
        return self._sandbox.executor

    @property
    def exit_code(self) -> int:
        return self.shutdown.exit_code

    # -- public --------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        self._running = True
        RUNNER_ID.set(self.runner_id)  # in every JSON log line from this task on
        unreap = install_reaper(asyncio.get_running_loop()) if self.handle_signals else None
        with capture_signals(self._on_signal if self.handle_signals else None):
            try:
                if self.config.health.enabled:
                    self.health = HealthServer(self.config.health.host, self.config.health.port,
                                               {"/metrics": self.metrics.render}, self.ready)
                    await self.health.start()
                async with asyncio.TaskGroup() as group:
                    starter = group.create_task(self._start_sandbox())
                    try:
                        return await self._serve()
                    finally:
                        starter.cancel()
            finally:
                self._idle.cancel()
                if self.executor is not None:
                    with contextlib.suppress(Exception):
                        await self.executor.aclose()
                if self.health is not None:
                    await self.health.aclose()
                if unreap is not None:
                    unreap()

    async def sandbox(self) -> ExecutorLike:
        """The executor once it has started (it starts after registration).

        Raises:
            RuntimeError: ``run()`` has not been started.
            SandboxCrashed: the sandbox failed to start.
        """
        if not self._running:
            raise RuntimeError("the runner is not running")
        return await self._sandbox.get()

    def ready(self) -> bool:
        """Readiness: registered with the broker and neither stopping nor draining."""
        return self.metrics.broker_connected and not self.shutdown.should_exit

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: stop now."""
        self.shutdown.request("stop requested")

    # -- connecting ----------------------------------------------------------------

    async def _serve(self) -> int:
        token: str | None = self.config.grant_token or None
        delays = backoff()
        deadline = time.monotonic() + self.config.connect_timeout
        auth_retries = 0
        while not self.shutdown.should_exit:
            try:
                if token is None:
                    if not self.config.auth_token:
                        log.error("connection to the broker lost and no N8N_RUNNERS_AUTH_TOKEN "
                                  "to mint a new grant token; exiting so the launcher restarts us")
                        return EXIT_ERROR
                    token = await mint_grant_token(self.config.broker_host_port,
                                                   self.config.auth_token)
                ws = await self._connect_unless_stopped(token)
                if ws is None:
                    return self.exit_code
                token = None  # grant tokens are single-use
                await self._session(ws)
            except AuthenticationFailed as exc:
                token = None
                auth_retries += 1
                if (isinstance(exc, GrantRejected) and self.config.auth_token
                        and auth_retries <= MAX_GRANT_RETRIES):
                    log.warning("%s; minting a new grant token", exc)
                    continue
                log.error("Authentication failed: %s", exc)
                return EXIT_AUTH
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                if not await self._retry_wait(exc, delays, deadline):
                    return EXIT_ERROR
                continue
            if self.shutdown.should_exit:
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
        return not await self.shutdown.wait(delay)

    async def _connect_unless_stopped(self, token: str) -> Any:
        """Connect, or ``None`` once a stop is requested first.

        A broker that accepts the TCP connection and never answers would otherwise
        hold a SIGTERM for the whole opening handshake timeout; nothing runs yet.
        """
        connecting = asyncio.ensure_future(self._connect(token))
        stopping = asyncio.ensure_future(self.shutdown.requested())
        try:
            await asyncio.wait((connecting, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        return None

    async def _connect(self, token: str) -> Any:
        url = f"{self.config.ws_url}?id={self.runner_id}"
        try:
            return await connect(
                url, additional_headers={"Authorization": f"Bearer {token}"},
                max_size=self.config.max_payload, open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT, ping_interval=None, compression=None,
                proxy=None if is_loopback(url) else True)
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
        session = self.session = Session(
            ws, self.config, runner_id=self.runner_id, sandbox=self._sandbox,
            policy=self.policy, metrics=self.metrics, shutdown=self.shutdown,
            registered=self._registered, on_activity=self._idle.reset)
        closed = await session.run()
        if not session.conn.got_info_request:
            raise GrantRejected("the broker closed the connection before "
                                "broker:inforequest (grant token rejected?)")
        log.info("connection closed (%s)", closed or f"code {ws.close_code}")

    # -- sandbox, idle, signals ------------------------------------------------------

    async def _start_sandbox(self) -> None:
        """Finish the sandbox's start-up; a task accepted meanwhile waits for READY.

        ``taskbox connect`` hands over an executor whose zygote it spawned at process
        start (``Executor.spawn``), so here only the READY handshake is left. Without
        one, importing the executor and spawning the zygote block the loop for ~20 ms:
        done after registration (or SANDBOX_START_DELAY at the latest) they do not
        delay the first offer.
        """
        executor = self._sandbox.executor
        if executor is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SANDBOX_START_DELAY):
                    await self._registered.wait()
            from taskbox.executor import Executor

            executor = self._sandbox.executor = Executor(
                self.config.limits, self.config.max_concurrency,
                logging.getLogger("taskbox.executor"))
        try:
            await executor.start()
        except Exception as exc:
            log.error("sandbox failed to start: %s", exc)
            self._sandbox.failed(exc)
            self.shutdown.request("the sandbox failed to start", force=True,
                                  exit_code=EXIT_ERROR)
            return
        self._sandbox.started(executor)

    def _busy_slots(self) -> int:
        session = self.session
        return len(session.executions) if session and session.executions is not None else 0

    def _busy(self) -> bool:
        return self._busy_slots() > 0

    def _idle_fire(self) -> None:
        log.info("idle for %.0f s: shutting down", self.config.auto_shutdown_timeout or 0)
        self.shutdown.request("idle timeout")

    def _on_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self.shutdown.request(signal.Signals(sig).name)

