"""Zygote lifecycle on the runner side: exec, READY handshake, worker hand-off.

:class:`ZygoteHandle` execs ``python -I -B -m taskbox_sandbox.zygote <fd>`` with
the environment ``{"LANG": "C.UTF-8"}`` -- never the runner's, which holds the
grant token -- (``taskbox.launch``, which ``taskbox connect`` calls first thing) and talks to it over an AF_UNIX SOCK_SEQPACKET pair (one frame per
message, so each worker fd arrives attached to exactly its own ``worker`` frame).
This class sizes the pool, queues the ready workers, hands them to
:meth:`ZygoteHandle.take`, and resolves each worker's exit future from the
zygote's ``exit`` reports. Nothing here unpickles anything: all frames are JSON
(``taskbox_sandbox.framing``).

Pool sizing (the zygote keeps ``ready + running`` at the size it was last sent):
it starts at ``IDLE_WORKERS``; each take grows it to one spare beside every
running task (at most ``max_concurrency + 1``), so the next task never waits for
a fork; after ``IDLE_SHRINK_S`` with nothing running it shrinks back and the
surplus ready workers are retired. Each ready worker costs ~2.5 MiB of PSS, so
an idle runner at concurrency 8 holds one instead of nine; that one is always
ready, so the first task after a pause is as fast as any other.

Death of the zygote is noticed by the control socket closing (and a pidfd when
the kernel has one); every waiter and every worker exit future then fails or
resolves as ``lost``, and :attr:`ZygoteHandle.dead` is set for the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from taskbox.errors import SandboxCrashed, SandboxUnavailable
from taskbox.executor.limits import Limits
from taskbox.launch import Zygote, start_zygote

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import framing
else:
    from taskbox_sandbox import framing

__all__ = ["IDLE_SHRINK_S", "IDLE_WORKERS", "READY_TIMEOUT", "WorkerExit", "WorkerHandle",
           "ZygoteGone", "ZygoteHandle"]

#: The zygote must answer ``ready`` within this many seconds.
READY_TIMEOUT: Final = 10.0
#: Workers (ready + running) kept while idle, and at start.
IDLE_WORKERS: Final = 1
#: Seconds with no task running before the pool shrinks to ``IDLE_WORKERS``.
IDLE_SHRINK_S: Final = 1.0
_CONTROL_MAX: Final = 1 << 20
_STDERR_LINES: Final = 50


class ZygoteGone(SandboxCrashed):
    """The zygote died or was closed while we waited on it."""


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """How a worker ended, as the zygote's ``waitpid`` saw it."""

    status: int = 0
    cpu: float = 0.0
    lost: bool = False  # the zygote died before reporting it

    @property
    def signal(self) -> int | None:
        """The signal number that killed the worker, if one did."""
        if not self.lost and os.WIFSIGNALED(self.status):
            return os.WTERMSIG(self.status)
        return None

    @property
    def code(self) -> int | None:
        """The exit code, if the worker exited normally."""
        if not self.lost and os.WIFEXITED(self.status):
            return os.WEXITSTATUS(self.status)
        return None


@dataclass(eq=False, slots=True)
class WorkerHandle:
    """One ready or running worker: its pid, our end of its socket, its exit."""

    pid: int
    sock: socket.socket
    exited: asyncio.Future[WorkerExit]
    killed: bool = field(default=False)  # we sent SIGKILL
    memory_killed: bool = field(default=False)  # ... because of the RSS watchdog
    on_close: Callable[[WorkerHandle], None] | None = field(default=None)  # the pool's

    def kill(self) -> None:
        """SIGKILL the worker's process group (it made itself a group leader).

        Only while the zygote has not reported the worker reaped, so a recycled
        pid is never hit.
        """
        if self.exited.done():
            return
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        except PermissionError:  # pragma: no cover - only without the uid drop
            pass

    def close(self) -> None:
        """Close our end of the channel: the task is over, whatever its outcome."""
        self.sock.close()
        released, self.on_close = self.on_close, None
        if released is not None:
            released(self)


def _describe_status(ended: WorkerExit) -> str:
    if ended.signal is not None:
        return f"signal {ended.signal}"
    if ended.code == framing.EXIT_CONFINE_FAILED:
        return f"exit status {ended.code}: Confinement.apply failed"
    return f"exit status {ended.code}"


class ZygoteHandle:
    """One zygote process and its pool of ready workers."""

    def __init__(self, limits: Limits, max_concurrency: int,
                 logger: logging.Logger) -> None:
        self.limits = limits
        self.max_concurrency = max_concurrency
        self.logger = logger
        self.full_size = max_concurrency + 1
        self.idle_size = min(IDLE_WORKERS, self.full_size)
        self.size = self.idle_size  # what the zygote was last told to keep
        self._shrink: asyncio.TimerHandle | None = None
        self._in_use: set[WorkerHandle] = set()  # taken and not yet closed
        self.pid: int | None = None
        self.layers: dict[str, bool] = {}
        self.process_limit: int | None = None  # workers' RLIMIT_NPROC (confine.py)
        self.dead = asyncio.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._pidfd: int | None = None
        self._stderr_fd: int | None = None
        self._stderr_lines = 0
        self._ready: deque[WorkerHandle] = deque()
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._exits: dict[int, asyncio.Future[WorkerExit]] = {}
        self._ready_frame: asyncio.Future[dict[str, Any]] | None = None
        self._init_error: OSError | None = None
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    @property
    def ready_workers(self) -> int:
        """Workers forked, confined and waiting for a task."""
        return len(self._ready)

    # ------------------------------------------------------------------ start

    def spawn(self, started: Zygote | None = None) -> None:
        """Exec the zygote (or adopt ``started``) and queue its init frame; no event loop.

        Called at process start (``Executor.spawn``), the zygote imports and forks its
        first worker while the runner is still importing and connecting.

        Raises:
            SandboxUnavailable: the process could not be started.
        """
        if self._proc is not None:
            return
        try:
            self._proc, ours = started or start_zygote()
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the sandbox zygote: {exc}") from exc
        self.pid = self._proc.pid
        ours.setblocking(False)
        self._control = ours
        init = {"t": framing.FRAME_INIT, "limits": self.limits.to_wire(),
                "max_concurrency": self.max_concurrency, "pool": self.size}
        # A SEQPACKET frame is queued whole; the zygote reads it once it is up.
        try:
            ours.send(framing.encode(init))
        except OSError as exc:
            self._init_error = exc

    async def start(self) -> dict[str, bool]:
        """Exec the zygote (unless :meth:`spawn` did) and wait for its READY frame.

        Returns:
            The layer probe the zygote reported.

        Raises:
            SandboxUnavailable: the zygote did not start or answer in time.
        """
        loop = asyncio.get_running_loop()
        self.spawn()
        assert self._control is not None and self._proc is not None and self.pid is not None
        ours = self._control
        self._ready_frame = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_control)
        if self._proc.stderr is not None:
            self._stderr_fd = self._proc.stderr.fileno()
            os.set_blocking(self._stderr_fd, False)
            loop.add_reader(self._stderr_fd, self._on_stderr)
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(self.pid)
            loop.add_reader(self._pidfd, self._on_died, "exited")
        try:
            if self._init_error is not None:
                raise self._init_error
            async with asyncio.timeout(READY_TIMEOUT):
                ready = await self._ready_frame
        except (OSError, TimeoutError, ZygoteGone) as exc:
            await self.aclose()
            raise SandboxUnavailable(
                f"the sandbox zygote did not become ready: {exc or type(exc).__name__}"
            ) from exc
        except BaseException:  # cancelled: never leave the process behind
            self.kill()
            with contextlib.suppress(asyncio.CancelledError):
                await self.aclose()
            raise
        layers = ready.get("layers")
        self.layers = {str(k): bool(v) for k, v in layers.items()} \
            if isinstance(layers, dict) else {}
        limit = ready.get("process_limit")
        self.process_limit = limit if isinstance(limit, int) else None
        return self.layers

    # ------------------------------------------------------------------ control frames

    def _on_control(self) -> None:
        control = self._control
        if control is None:
            return
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(
                    control, _CONTROL_MAX, 4, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._on_died(f"control socket error: {exc}")
                return
            if not data and not fds:
                self._on_died("control socket closed")
                return
            try:
                message = framing.decode(data[framing.HEADER_SIZE:])
            except framing.FrameError:
                message = None
            if not isinstance(message, dict):
                for fd in fds:
                    os.close(fd)
                self._on_died("the zygote sent an invalid frame")
                return
            self._dispatch(message, fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        kind = message.get("t")
        pid = message.get("pid")
        if kind == framing.FRAME_WORKER and isinstance(pid, int) and len(fds) == 1:
            self._add_worker(pid, fds[0])
            return
        for fd in fds:
            os.close(fd)
        if kind == framing.FRAME_EXIT and isinstance(pid, int):
            status = message.get("status")
            cpu = message.get("cpu")
            result = WorkerExit(status=status if isinstance(status, int) else 0,
                                cpu=float(cpu) if isinstance(cpu, (int, float)) else 0.0)
            future = self._exits.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(result)
            for worker in self._ready:
                if worker.pid == pid:
                    # Died before it was used: its confinement failed, or something
                    # outside killed it. The zygote backs off and forks another.
                    self._ready.remove(worker)
                    worker.close()
                    self.logger.warning("sandbox worker %s died before use (%s)", pid,
                                        _describe_status(result))
                    break
        elif kind == framing.FRAME_READY and self._ready_frame is not None \
                and not self._ready_frame.done():
            self._ready_frame.set_result(message)

    def _add_worker(self, pid: int, fd: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        exited: asyncio.Future[WorkerExit] = loop.create_future()
        self._exits[pid] = exited
        worker = WorkerHandle(pid, sock, exited)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._ready.append(worker)

    def _on_stderr(self) -> None:
        fd = self._stderr_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            return
        for line in data.decode("utf-8", "replace").splitlines():
            if self._stderr_lines < _STDERR_LINES and line.strip():
                self._stderr_lines += 1
                self.logger.warning("sandbox zygote stderr: %s", line)

    def _on_died(self, reason: str) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        if self._shrink is not None:
            self._shrink.cancel()
            self._shrink = None
        loop = asyncio.get_running_loop()
        if self._control is not None:
            loop.remove_reader(self._control.fileno())
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
        if not self._closing:
            self.logger.error("sandbox zygote (pid %s) died: %s", self.pid, reason)
        gone = ZygoteGone("the sandbox zygote process died")
        if self._ready_frame is not None and not self._ready_frame.done():
            self._ready_frame.set_exception(gone)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(gone)
        for future in self._exits.values():
            if not future.done():
                future.set_result(WorkerExit(lost=True))
        self._exits.clear()
        while self._ready:
            self._ready.popleft().close()

    # ------------------------------------------------------------------ pool size

    @property
    def running(self) -> int:
        """Workers handed out whose task has not ended yet."""
        return len(self._in_use)

    def _release(self, worker: WorkerHandle) -> None:
        self._in_use.discard(worker)
        if not self._in_use and self.size > self.idle_size and not self.dead.is_set():
            self._arm_shrink()

    def _resize(self, size: int) -> None:
        if size != self.size:
            self.size = size
            self._send_control({"t": framing.FRAME_POOL, "size": size})

    def _arm_shrink(self) -> None:
        if self._shrink is not None:
            self._shrink.cancel()
        self._shrink = asyncio.get_running_loop().call_later(IDLE_SHRINK_S, self._idle)

    def _idle(self) -> None:
        """Nothing ran for IDLE_SHRINK_S: keep ``idle_size`` workers, retire the rest."""
        self._shrink = None
        if self.running or self.dead.is_set():
            return
        self._resize(self.idle_size)
        while len(self._ready) > self.idle_size:
            worker = self._ready.pop()  # the newest: the oldest are the most warmed up
            # "taken" first, so the zygote does not count its exit as a failure; the
            # worker sees its channel close before any task and exits.
            self._send_control({"t": framing.FRAME_TAKEN, "pid": worker.pid})
            self._exits.pop(worker.pid, None)
            worker.close()

    # ------------------------------------------------------------------ workers

    async def take(self) -> WorkerHandle:
        """Return a ready worker, waiting for one if none is ready.

        Raises:
            ZygoteGone: the zygote died (or was closed) meanwhile.
        """
        if self.dead.is_set():
            raise ZygoteGone("the sandbox zygote is not running")
        if self._shrink is not None:
            self._shrink.cancel()
            self._shrink = None
        # Keep one spare beside every running task, this one included: grow before
        # the next task has to wait for a fork.
        waiting = sum(1 for waiter in self._waiters if not waiter.done())
        self._resize(max(self.size, min(self.full_size, self.running + waiting + 2)))
        if self._ready:
            worker = self._ready.popleft()
        else:
            waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                worker = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._ready.appendleft(waiter.result())
                raise
        # Before the task is sent, so the zygote learns it before the worker can exit.
        self._send_control({"t": framing.FRAME_TAKEN, "pid": worker.pid})
        self._in_use.add(worker)
        worker.on_close = self._release
        return worker

    def _send_control(self, message: dict[str, Any]) -> None:
        control = self._control
        if control is None or self.dead.is_set():
            return
        try:
            control.send(framing.encode(message))
        except BlockingIOError:  # pragma: no cover - tiny frames, deep buffer
            self.logger.warning("sandbox control channel full; dropped %s", message.get("t"))
        except OSError as exc:
            self._on_died(f"control socket error: {exc}")

    # ------------------------------------------------------------------ close

    async def aclose(self) -> None:
        """Stop the zygote and its workers, and reap it.

        Idempotent and safe to call concurrently; the work is shielded from the
        caller's cancellation so the process is always reaped.
        """
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._aclose())
        await asyncio.shield(self._close_task)

    async def _aclose(self) -> None:
        self._closing = True
        self._send_control({"t": framing.FRAME_STOP})
        self._on_died("closed")
        loop = asyncio.get_running_loop()
        proc = self._proc
        if proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)
            self._proc = None
        if self._stderr_fd is not None:
            loop.remove_reader(self._stderr_fd)
            self._stderr_fd = None
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def kill(self) -> None:
        """SIGKILL the zygote (its workers follow through PDEATHSIG)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
