"""Stopping the runner: every reason to stop, two flags, one stop sequence.

Reasons: SIGTERM/SIGINT, ``Runner.request_stop()``, ``broker:drain``, the idle timeout
(N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT) and a sandbox that cannot start. Each one calls
``Shutdown.request``; the flags are uvicorn's (``server.py``): ``should_exit`` after
the first request, ``force_exit`` after a second one (or a forced first one).

The sequence, in ``Shutdown.watch`` and nowhere else:

1. stop offering and reject accepts (at once, inside ``request``, so an accept racing
   the signal is already refused);
2. let running tasks finish until N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT (skipped when
   forced);
3. cancel stragglers (their ``Task was cancelled`` results are still sent) and give
   them ``CANCEL_GRACE`` seconds;
4. close the websocket with 1000; the runner then stops the health server and the
   sandbox (``Runner.run``).

A task outliving the grace period can never keep the process alive (n8n's runner has
exactly that bug, n8n-python-runner.md §4.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Final

from taskbox.protocol.runner import RunnerProtocol
from taskbox.runner.connection import Connection
from taskbox.runner.execution import Executions

__all__ = ["CANCEL_GRACE", "EXIT_AUTH", "EXIT_ERROR", "EXIT_OK", "IdleTimer", "Shutdown",
           "capture_signals"]

log = logging.getLogger("taskbox.runner")

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_AUTH: Final = 3
#: Seconds cancelled tasks get to kill their workers and report.
CANCEL_GRACE: Final = 5.0
#: The reason stragglers are cancelled with (logged on their task).
SHUTDOWN_REASON: Final = "runner shutting down"


class Shutdown:
    """The runner's stop state and its stop sequence.

    Args:
        grace: N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT, seconds.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.should_exit = False
        self.force_exit = False
        self.exit_code: int = EXIT_OK
        self._requested = asyncio.Event()
        self._proto: RunnerProtocol | None = None
        self._executions: Executions | None = None

    def attach(self, proto: RunnerProtocol, executions: Executions) -> None:
        """The current connection's core and tasks (a stop acts on them at once)."""
        self._proto, self._executions = proto, executions
        if self.should_exit:
            proto.stop_offering()

    def detach(self) -> None:
        self._proto = self._executions = None

    def request(self, reason: str, *, force: bool = False, exit_code: int | None = None) -> None:
        """Begin stopping; a second request (or ``force``) cancels running tasks now.

        Args:
            reason: logged on a second request (callers log the first themselves).
            force: skip the grace period.
            exit_code: the process exit code from now on.
        """
        if exit_code is not None:
            self.exit_code = exit_code
        if self.should_exit and not force:
            log.warning("second stop signal (%s): stopping now", reason)
            force = True
        self.should_exit = True
        self._requested.set()
        if self._proto is not None:
            self._proto.stop_offering()
        if force and not self.force_exit:
            self.force_exit = True
            if self._executions is not None:
                self._executions.cancel_all(SHUTDOWN_REASON)

    async def requested(self) -> None:
        """Return once a stop has been requested."""
        await self._requested.wait()

    async def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less if a stop is requested; True if it was."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._requested.wait()
        return self.should_exit

    async def watch(self, conn: Connection, executions: Executions) -> None:
        """The stop sequence for one connection; runs in its session's TaskGroup."""
        await self._requested.wait()
        conn.proto.stop_offering()
        if executions and not self.force_exit:
            log.info("waiting up to %.0f s for %d running task(s)", self.grace, conn.proto.busy)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.grace):
                    await executions.wait_idle()
        if len(executions):
            log.warning("cancelling %d task(s) still running", len(executions))
            executions.cancel_all(SHUTDOWN_REASON)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_GRACE):
                    await executions.wait_idle()
        await conn.aclose(1000, SHUTDOWN_REASON)


class IdleTimer:
    """N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT: stop after that long without a task.

    Args:
        timeout: seconds, or None (disabled).
        busy: whether a task is running now (then the next task end re-arms the timer).
        fire: called when the runner was idle for ``timeout`` seconds.
    """

    def __init__(self, timeout: float | None, busy: Callable[[], bool],
                 fire: Callable[[], None]) -> None:
        self._timeout = timeout
        self._busy = busy
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def reset(self) -> None:
        if not self._timeout:
            return
        self.cancel()
        self._handle = asyncio.get_running_loop().call_later(self._timeout, self._expired)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expired(self) -> None:
        self._handle = None
        if not self._busy():
            self._fire()


@contextlib.contextmanager
def capture_signals(on_signal: Callable[[int], None] | None) -> Iterator[None]:
    """SIGTERM and SIGINT call ``on_signal`` while inside; the old handlers come back after.

    ``None`` (or not the main thread) installs nothing.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if on_signal is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
