"""The executor: runs one task in one confined worker and enforces the limits.

(Over 600 lines on purpose: everything the runner enforces on a hostile worker --
deadline, kill and reap, frame caps, print cap, RSS watch -- is read in one place.)

The runner codes against :class:`Executor`::

    executor = Executor(limits, max_concurrency, logger)
    executor.spawn()                         # optional, before the loop: the zygote loads
    layers = await executor.start()          # zygote up, READY, layers checked
    outcome = await executor.run(spec, on_print, on_rpc, deadline=deadline)
    await executor.aclose()

Where each limit is enforced (the worker is hostile; the parent trusts nothing
it sends and keeps serving after every failure):

=====================  ====================================================
wall clock             here: one deadline per task (``asyncio.timeout_at``),
                       then SIGKILL of the worker's process group
memory                 worker: RLIMIT_AS/DATA (``confine.py``); any MemoryError
                       that reaches user code ends the task (``execute.py``);
                       here: RSS watchdog on ``/proc/<pid>/statm`` every 25 ms
CPU                    worker: RLIMIT_CPU (soft == hard); here: naming SIGXCPU
                       or a SIGKILL after the CPU budget was used
signals                here: the zygote reports the wait status; we name it
result size            worker: checks before sending; here: the frame caps
                       (:class:`_FrameBudget`), checked before a frame is parsed
print output           worker stops sending; here: the byte cap and marker, and a
                       worker that goes on printing past it is killed
the event loop         here: the read loop yields after every batch, so a flood
                       cannot starve other tasks, deadlines or heartbeats
=====================  ====================================================

After every outcome, whatever the worker sent, its whole process group is
SIGKILLed and the slot is released only once the zygote has reported it reaped:
a frame never means the process is done (a task can forge its own result on its
channel and go on running).

Every whole-task failure goes through :func:`taskbox.executor.task.failure`, so
continueOnFail turns it into error items (protocol.md §9.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from taskbox.errors import SandboxCrashed, SandboxUnavailable
from taskbox.executor import probe
from taskbox.executor.limits import Limits
from taskbox.executor.pool import WorkerExit, WorkerHandle, ZygoteGone, ZygoteHandle
from taskbox.executor.task import HelperCall, PrintSink, TaskOutcome, TaskSpec, failure
from taskbox.launch import Zygote
from taskbox.protocol.messages import format_seconds
from taskbox.protocol.serde import is_json_value

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import framing
else:
    from taskbox_sandbox import framing

__all__ = ["Executor"]

_RSS_INTERVAL: Final = 0.025
_EXIT_GRACE: Final = 2.0  # how long to wait for a dead worker's wait status
_EOF_GRACE: Final = 0.25  # ... before killing a worker that closed its channel
_FRAME_SLACK: Final = 65_536  # frame overhead allowed above max_payload
_REAP_PATIENCE: Final = 10.0  # after a second SIGKILL, before giving the slot up anyway
#: orjson writes a control character as ``\\u00XX``: a print of ``cap`` characters can
#: take six times as many bytes on the wire.
_JSON_ESCAPE_GROWTH: Final = 6
#: Bytes of runner memory one parsed JSON value may take, at most, per element
#: (an empty list or dict and its pointer; see :func:`_parse_cost`).
_BYTES_PER_ELEMENT: Final = 64
#: Frames at most this long are parsed without counting their elements first.
_CHEAP_FRAME: Final = 1 << 20
#: Frames handled before the read loop lets other tasks run.
_FRAMES_PER_TURN: Final = 256
_RESTART_DELAYS: Final = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)
#: Exit status of a worker whose ``Confinement.apply`` failed (zygote.py).
_CONFINE_FAILED: Final = framing.EXIT_CONFINE_FAILED
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
_ERROR_KEYS: Final = {"message": str, "description": str, "stack": str,
                      "lineNumber": int, "itemIndex": int}


class Executor:
    """Runs tasks in single-use confined workers forked by a zygote."""

    def __init__(self, limits: Limits, max_concurrency: int,
                 logger: logging.Logger | None = None) -> None:
        """Args:
        limits: values the sandbox enforces (sent to the zygote, but for the
            task environment, which goes to each worker with its task).
        max_concurrency: tasks that may run at once; the zygote keeps one more
            worker than this ready.
        logger: defaults to ``taskbox.executor``.
        """
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.limits = limits
        self._task_env = dict(limits.task_env)
        self.max_concurrency = max_concurrency
        self.logger = logger or logging.getLogger("taskbox.executor")
        self.layers: dict[str, bool] = {}
        self.restarts = 0  # zygotes replaced after dying (taskbox_zygote_restarts_total)
        self._zygote: ZygoteHandle | None = None
        self._starting: ZygoteHandle | None = None
        self._zygote_up = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._running: set[WorkerHandle] = set()
        #: Workers whose task ended, waiting to be reported reaped -> their slot's release.
        self._reaping: dict[WorkerHandle, Callable[[], None]] = {}

    @property
    def zygote_pid(self) -> int | None:
        """The current zygote's pid (``None`` before start or while restarting)."""
        return self._zygote.pid if self._zygote is not None else None

    @property
    def ready_workers(self) -> int:
        """Confined workers waiting for a task right now."""
        return self._zygote.ready_workers if self._zygote is not None else 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> dict[str, bool]:
        """Start the zygote and check the confinement layers.

        Also marks the runner process non-dumpable, so no worker can read its
        ``/proc/<pid>/environ`` or memory.

        Returns:
            The probe result, ``{layer: available}``.

        Raises:
            SandboxUnavailable: the zygote did not start, or a layer named in
                ``limits.require_layers`` is missing.
        """
        zygote = self._starting or self._spawn()
        try:
            layers = await zygote.start()
        finally:
            self._starting = None
        missing = probe.missing_layers(self.limits.require_layers, layers)
        if missing:
            await zygote.aclose()
            raise SandboxUnavailable(
                f"required sandbox layers are missing: {', '.join(missing)} "
                f"({probe.describe_layers(layers)})")
        try:
            self._check_degraded(layers)
        except SandboxUnavailable:
            await zygote.aclose()
            raise
        self.layers = layers
        self._install(zygote)
        self.logger.info("sandbox ready: zygote pid %s keeps %d workers ready, %d under load; "
                         "layers %s; workers' process limit %s", zygote.pid, zygote.idle_size,
                         zygote.full_size, probe.describe_layers(layers), zygote.process_limit)
        blocked = (probe.unreadable_for(self.limits.worker_uid, self.limits.worker_gid)
                   if layers.get("setuid") else None)
        if blocked:
            self.logger.warning(
                "workers run as uid %d, which cannot read %s (the Python installation): "
                "user code can import only the modules preloaded at start-up (the "
                "allowlisted ones); other imports fail with 'not readable by uid %d'. "
                "Fix: %s", self.limits.worker_uid, blocked, self.limits.worker_uid,
                probe.unreadable_fix(self.limits.worker_uid, self.limits.worker_gid),
                extra={"event": "python_unreadable"})
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="taskbox-zygote-supervisor")
        return dict(layers)

    def spawn(self, started: Zygote | None = None) -> None:
        """Start the zygote process now (or adopt ``started``); ``start()`` finishes.

        Before the event loop runs: the zygote's imports and first fork then overlap
        the runner's own imports and connecting instead of following them. A zygote
        that cannot be started is reported by ``start()``, which tries again.
        """
        if self._starting is None and self._zygote is None:
            with contextlib.suppress(SandboxUnavailable):
                self._spawn(started)

    def _spawn(self, started: Zygote | None = None) -> ZygoteHandle:
        # Before the zygote gets its limits, so before any worker can exist.
        if not probe.set_dumpable(False):
            self.logger.warning("could not mark the runner non-dumpable (prctl failed)")
        zygote = ZygoteHandle(self.limits, self.max_concurrency, self.logger)
        zygote.spawn(started)
        self._starting = zygote  # so aclose() reaps it even if start() never runs
        return zygote

    def _check_degraded(self, layers: dict[str, bool]) -> None:
        """Warn about (or refuse) a sandbox that lacks a layer it needs here.

        Raises:
            SandboxUnavailable: not root and no Landlock, without the opt-out.
        """
        if self.limits.disable_layers:
            self.logger.error("TASKBOX_TEST_DISABLE_LAYERS=%s: these sandbox layers are "
                              "switched off on purpose (testing only, never in production)",
                              ",".join(self.limits.disable_layers))
        if layers.get("setuid"):
            return
        self.logger.warning(
            "workers run as the runner's own uid %d (not root, so no uid drop): only "
            "no_new_privs, non-dumpable processes, seccomp and Landlock keep user code "
            "away from the runner's and the zygote's files, /proc entries and signals",
            os.getuid())
        if layers.get("landlock"):
            return
        unprotected = ("every file the runner's uid can read (configuration, mounted "
                       "secrets, service-account tokens), other processes' /proc/<pid> "
                       "entries (cmdline, status), and abstract unix sockets of the host")
        if not self.limits.allow_no_landlock:
            raise SandboxUnavailable(
                "Landlock is not available and the runner is not root, so workers would "
                f"share its uid with nothing between them and {unprotected}. Use a kernel "
                "with Landlock (5.13+, 'landlock' in lsm=), run as root so workers drop to "
                "TASKBOX_WORKER_UID, or set TASKBOX_ALLOW_NO_LANDLOCK=true to start anyway")
        self.logger.warning("TASKBOX_ALLOW_NO_LANDLOCK=true: starting without Landlock as "
                            "non-root; user code can read %s", unprotected)

    def _install(self, zygote: ZygoteHandle) -> None:
        self._zygote = zygote
        self._zygote_up.set()

    async def _supervise(self) -> None:
        """Replace a zygote that died while we were not closing."""
        while not self._closing:
            zygote = self._zygote
            if zygote is None:  # pragma: no cover - start() installs one first
                return
            await zygote.dead.wait()
            if self._closing:
                return
            self._zygote_up.clear()
            await zygote.aclose()
            for attempt in range(1_000_000):
                if self._closing:
                    return
                await asyncio.sleep(_RESTART_DELAYS[min(attempt, len(_RESTART_DELAYS) - 1)])
                replacement = ZygoteHandle(self.limits, self.max_concurrency, self.logger)
                try:
                    layers = await replacement.start()
                except SandboxUnavailable as exc:
                    self.logger.error("sandbox zygote restart failed: %s", exc)
                    continue
                missing = probe.missing_layers(self.limits.require_layers, layers)
                if missing:
                    await replacement.aclose()
                    self.logger.error("restarted zygote lacks required layers: %s",
                                      ", ".join(missing))
                    continue
                self.layers = layers
                self._install(replacement)
                self.restarts += 1  # taskbox_zygote_restarts_total
                self.logger.warning("sandbox zygote restarted: pid %s", replacement.pid)
                break

    async def aclose(self) -> None:
        """Kill every worker and the zygote, and reap them. Idempotent."""
        self._closing = True
        for worker in list(self._running):
            worker.kill()
        if self._starting is not None:
            await self._starting.aclose()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._zygote is not None:
            await self._zygote.aclose()  # resolves every exit future still open
        # The zygote is gone and every exit future resolved: release what is left.
        for release in list(self._reaping.values()):
            release()
        self._zygote_up.clear()

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ run

    async def run(self, spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall, *,
                  deadline: float | None = None) -> TaskOutcome:
        """Run one task in a fresh worker.

        Args:
            spec: the task.
            on_print: called at once with each ``print`` call's formatted args.
            on_rpc: awaited for each helper RPC the code makes.
            deadline: when the task's time is up, on the loop's clock; the runner takes
                it at accept. Default: ``task_timeout`` from now.

        Returns:
            The outcome; whole-task failures (timeout, memory, CPU, signal,
            payload, sandbox crash) are outcomes too, shaped by ``failure()``.

        Raises:
            asyncio.CancelledError: after killing the worker's process group.
        """
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.limits.task_timeout
        worker: WorkerHandle | None = None
        # Enforced apart from the read loop: the worker dies at the deadline even
        # if nothing else on the event loop gets a turn.
        timer: asyncio.TimerHandle | None = None
        try:
            async with asyncio.timeout_at(deadline) as scope:
                worker = await self._take_worker()
                self._running.add(worker)
                timer = loop.call_at(deadline, worker.kill)
                return await self._drive(worker, spec, on_print, on_rpc)
        except TimeoutError:
            if not scope.expired():
                raise
            if worker is not None:
                worker.kill()
                if worker.memory_killed:
                    return self._memory_failure(spec)
            return failure(spec, "Task execution timed out after "
                           f"{format_seconds(self.limits.task_timeout)}", kind="timeout")
        except asyncio.CancelledError:
            if worker is not None:
                worker.kill()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._await_exit(worker))
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if worker is None:
                self._slots.release()
            else:
                self._running.discard(worker)
                # Whatever the outcome: kill the whole process group (threads,
                # atexit and __del__ die with it) and free the slot once reaped.
                worker.kill()
                worker.close()
                self._release_when_reaped(worker)

    def _release_when_reaped(self, worker: WorkerHandle) -> None:
        """Give the slot back once the zygote reports the worker reaped.

        Callbacks on the exit future, not a task: this runs once per task, and a
        task with its timeout and shield cost the event loop more than the rest of
        the release. After ``_EXIT_GRACE`` the worker is killed again; after
        ``_REAP_PATIENCE`` more the slot is released anyway.
        """
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def release(_exited: object = None) -> None:
            if worker not in self._reaping:
                return
            self._reaping.pop(worker)
            if timer is not None:
                timer.cancel()
            self._slots.release()

        def give_up() -> None:
            self.logger.error("sandbox worker %s was not reaped %.0f s after SIGKILL; "
                              "releasing its slot anyway", worker.pid,
                              _EXIT_GRACE + _REAP_PATIENCE)
            release()

        def kill_again() -> None:
            nonlocal timer
            worker.kill()
            timer = loop.call_later(_REAP_PATIENCE, give_up)

        if worker.exited.done():
            self._slots.release()
            return
        self._reaping[worker] = release
        timer = loop.call_later(_EXIT_GRACE, kill_again)
        worker.exited.add_done_callback(release)

    async def _take_worker(self) -> WorkerHandle:
        while True:
            if self._closing or self._supervisor is None:
                raise SandboxCrashed("the sandbox executor is not running")
            await self._zygote_up.wait()
            zygote = self._zygote
            if zygote is None:  # pragma: no cover - set together with the event
                continue
            try:
                return await zygote.take()
            except ZygoteGone:
                self._zygote_up.clear()  # the supervisor sets it again

    async def _await_exit(self, worker: WorkerHandle,
                          grace: float = _EXIT_GRACE) -> WorkerExit | None:
        """The worker's wait status, or ``None`` if not reported within ``grace``."""
        try:
            async with asyncio.timeout(grace):
                return await asyncio.shield(worker.exited)
        except TimeoutError:
            return None

    def _memory_failure(self, spec: TaskSpec) -> TaskOutcome:
        return failure(spec, f"Task exceeded the memory limit of "
                       f"{self.limits.memory_limit_mb} MiB", kind="memory")

    async def _drive(self, worker: WorkerHandle, spec: TaskSpec, on_print: PrintSink,
                     on_rpc: HelperCall) -> TaskOutcome:
        loop = asyncio.get_running_loop()
        sock = worker.sock
        task: dict[str, Any] = {
            "t": framing.FRAME_TASK, "code": spec.code, "mode": spec.node_mode,
            "continueOnFail": spec.continue_on_fail, "query": spec.query,
        }
        if not self.limits.block_env_access:  # N8N_BLOCK_RUNNER_ENV_ACCESS=false
            task["env"] = self._task_env
        header = framing.encode(task, default=str)
        items = spec.items_json or b"[]"
        prefix = len(items).to_bytes(framing.HEADER_SIZE, "big")
        watch = _RssWatch(loop, worker, self.limits.memory_limit_mb * 1024 * 1024)
        prints = _PrintCap(on_print, self.limits.print_cap_bytes)
        try:
            if len(items) < 65_536:
                await loop.sock_sendall(sock, header + prefix + items)
            else:
                await loop.sock_sendall(sock, header + prefix)
                await loop.sock_sendall(sock, items)
        except OSError:
            pass  # the worker died before reading; its exit status tells why
        budget = _FrameBudget(self.limits)
        decoder = framing.FrameDecoder(budget.max_frame)
        call: _RpcFrames | None = None  # an rpc frame still waiting for its buffers
        try:
            while True:
                try:
                    data = await loop.sock_recv(sock, 1 << 18)
                except OSError:
                    data = b""
                if not data:
                    break
                try:
                    frames = decoder.feed(data)
                except framing.FrameTooLarge as exc:
                    worker.kill()
                    return budget.too_large(spec, exc.size)
                refused = budget.check_partial(decoder)
                for count, frame in enumerate(frames, 1):
                    if count % _FRAMES_PER_TURN == 0:
                        await asyncio.sleep(0)  # a batch of tiny frames is long too
                    if call is not None:
                        if call.add(frame):
                            await self._answer_rpc(worker, call, on_rpc)
                            call = None
                        continue
                    refused = refused or budget.refuse(frame, prints)
                    if refused is not None:
                        break
                    outcome = await self._handle_frame(frame, worker, spec, prints, on_rpc)
                    if isinstance(outcome, _RpcFrames):
                        call = outcome
                    elif outcome is not None:
                        return outcome
                if refused is not None:
                    worker.kill()
                    return failure(spec, refused, kind="payload")
                # sock_recv returns at once while bytes are queued: without this a
                # flood would keep every other task, timer and heartbeat waiting.
                await asyncio.sleep(0)
        finally:
            watch.stop()
        # No final frame. A dead worker is reported by the zygote within a few
        # milliseconds; one that merely closed its channel is killed.
        ended = await self._await_exit(worker, _EOF_GRACE)
        if ended is None:
            worker.kill()
            # A dead zygote resolves the exit at once (lost); a live one that is slow
            # under load still reports how the worker died (e.g. its CPU limit). The
            # task's deadline bounds this wait.
            ended = await self._await_exit(worker, _EXIT_GRACE + _REAP_PATIENCE)
        return self._death_outcome(spec, ended or WorkerExit(lost=True), worker)

    async def _handle_frame(self, frame: bytes, worker: WorkerHandle, spec: TaskSpec,
                            prints: _PrintCap, on_rpc: HelperCall
                            ) -> TaskOutcome | _RpcFrames | None:
        spliceable = result_outcome(frame)
        if spliceable is not None:
            return spliceable
        try:
            message = framing.decode(frame)
        except framing.FrameError:
            message = None
        kind = message.get("t") if isinstance(message, dict) else None
        if kind == framing.FRAME_PRINT:
            assert isinstance(message, dict)
            args = message.get("args")
            # The worker sends strings only; anything else is dropped, never str()'d
            # (a list of a million empty lists would grow into gigabytes of text).
            if isinstance(args, list) and all(isinstance(a, str) for a in args):
                prints.add(args)
            return None
        if kind == framing.FRAME_PRINT_CUT:
            prints.cut()
            return None
        if kind == framing.FRAME_RPC:
            assert isinstance(message, dict)
            call = _RpcFrames(message, _frame_limit(self.limits))
            if call.complete:
                await self._answer_rpc(worker, call, on_rpc)
                return None
            return call  # its buffers follow as raw frames
        if kind == framing.FRAME_RESULT:
            assert isinstance(message, dict)
            return TaskOutcome(result=message.get("result"))
        if kind == framing.FRAME_ERROR:
            assert isinstance(message, dict)
            return self._error_outcome(spec, message)
        worker.kill()
        return failure(spec, "The sandbox worker sent an invalid frame", kind="error")

    async def _answer_rpc(self, worker: WorkerHandle, call: _RpcFrames,
                          on_rpc: HelperCall) -> None:
        """Run one helper call and send the reply, its buffers as raw frames after it."""
        message = call.message
        name = message.get("name")
        params = message.get("params")
        ok: bool
        data: Any
        if call.error is not None:
            ok, data = False, call.error
        elif not isinstance(name, str) or not isinstance(params, list):
            ok, data = False, "invalid RPC call"
        else:
            try:
                params = framing.unpack_buffers(params, call.buffers)
            except framing.FrameError as exc:
                ok, data = False, f"invalid RPC call: {exc}"
            else:
                try:
                    ok, data = await on_rpc(name, params)
                except Exception as exc:
                    ok, data = False, str(exc) or type(exc).__name__
        head = {"t": framing.FRAME_RPC_REPLY, "id": message.get("id"), "ok": bool(ok), "data": data,
                "bufs": 0}
        buffers: list[bytes] = []
        try:  # orjson refuses bytes: only an answer holding some is walked in Python
            reply = framing.encode(head)
        except (orjson.JSONEncodeError, TypeError):
            try:
                head["data"], buffers = framing.pack_buffers(data)
            except framing.FrameError as exc:
                head["ok"], head["data"] = False, f"RPC reply could not be sent: {exc}"
            head["bufs"] = len(buffers)
            reply = framing.encode(head, default=str)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            await loop.sock_sendall(worker.sock, reply)
            for buffer in buffers:  # no copy of a large buffer into a bigger one
                await loop.sock_sendall(worker.sock,
                                        len(buffer).to_bytes(framing.HEADER_SIZE, "big"))
                await loop.sock_sendall(worker.sock, buffer)

    def _error_outcome(self, spec: TaskSpec, message: dict[str, Any]) -> TaskOutcome:
        kind = message.get("kind")
        if kind == "memory":
            return self._memory_failure(spec)
        raw = message.get("error")
        fields: dict[str, Any] = {}
        if isinstance(raw, dict):
            for key, expected in _ERROR_KEYS.items():
                value = raw.get(key)
                if isinstance(value, expected) and not isinstance(value, bool):
                    fields[key] = value
        text = fields.pop("message", None) or "Unknown error"
        description = fields.pop("description", "")
        return failure(spec, text, description,
                       kind="payload" if kind == "payload" else "error", **fields)

    def _death_outcome(self, spec: TaskSpec, ended: WorkerExit,
                       worker: WorkerHandle) -> TaskOutcome:
        if worker.memory_killed:
            return self._memory_failure(spec)
        if ended.lost:
            return failure(spec, "The sandbox crashed while the task was running "
                           "(the sandbox process died); the task did not finish",
                           kind="signal")
        signum = ended.signal
        cpu_limit = self.limits.effective_cpu_limit_s
        # With soft == hard RLIMIT_CPU the kernel sends SIGKILL, not SIGXCPU, so
        # a SIGKILL we did not send, after (about) the whole CPU budget was used,
        # is the CPU limit. rusage lags the kernel's precise clock by a tick or
        # more under load, hence the margin.
        # We may have sent a SIGKILL too (after its channel closed, when the exit
        # report was slow): a worker that used its whole CPU budget still hit the limit.
        if signum == signal.SIGXCPU or (signum == signal.SIGKILL
                                        and ended.cpu >= cpu_limit * 0.8):
            return failure(spec, f"Task exceeded the CPU time limit of "
                           f"{format_seconds(cpu_limit)}", kind="cpu")
        if signum == signal.SIGKILL and worker.killed:
            return failure(spec, "Task process closed its channel without sending a "
                           "result and was killed", kind="signal")
        if signum is not None:
            name = _signal_name(signum)
            return failure(spec, f"Task process was killed by signal {name}", kind="signal")
        if ended.code == _CONFINE_FAILED:
            return failure(spec, "The sandbox worker could not apply its confinement",
                           kind="signal")
        return failure(spec, f"Task process exited unexpectedly with code {ended.code} "
                       "before sending a result", kind="signal")


_RESULT_PREFIX = framing.RESULT_PREFIX  # how sandbox/execute.py writes results


def result_outcome(frame: bytes) -> TaskOutcome | None:
    """A result frame in the worker's own shape, with its JSON kept for splicing.

    The value is validated ON ITS OWN (``is_json_value``): only one complete JSON
    value passes, so a hostile worker's bytes cannot close the object early and add
    keys (``staticData``, ``taskId``) once spliced into runner:taskdone. Anything else
    returns None and goes through the general frame parser.
    """
    if not (frame.startswith(_RESULT_PREFIX) and frame.endswith(b"}")):
        return None
    body = frame[len(_RESULT_PREFIX):-1]
    return TaskOutcome(result_json=body) if is_json_value(body) else None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _RpcFrames:
    """One ``rpc`` frame and the raw buffer frames that follow it (framing.py).

    The worker is hostile: the count is capped at ``framing.MAX_BUFFERS`` and the
    bytes at ``max_payload`` (what one ``runner:rpc`` may carry anyway); past the
    cap the frames are read and dropped, and the call is answered with an error.
    """

    __slots__ = ("buffers", "error", "expected", "limit", "message", "size")

    def __init__(self, message: dict[str, Any], limit: int) -> None:
        self.message = message
        self.limit = limit
        self.buffers: list[bytes] = []
        self.size = 0
        self.error: str | None = None
        count = message.get("bufs", 0)
        if type(count) is not int or not 0 <= count <= framing.MAX_BUFFERS:
            self.error = "invalid RPC call: bad buffer count"
            count = 0
        self.expected = count

    @property
    def complete(self) -> bool:
        """All announced buffers have arrived (at once for a call without any)."""
        return len(self.buffers) >= self.expected

    def add(self, frame: bytes) -> bool:
        """Take the next buffer frame; True once all have arrived."""
        self.size += len(frame)
        if self.size > self.limit:
            self.error = (f"Helper call arguments are too large: more than {self.limit} "
                          "bytes (N8N_RUNNERS_MAX_PAYLOAD)")
            self.buffers.append(b"")  # counted, not kept
        else:
            self.buffers.append(frame)
        return self.complete


def _frame_limit(limits: Limits) -> int:
    """Most bytes a result, error or helper call may take: an honest worker built it
    within its memory limit, and the runner will not hold more for it either."""
    return min(limits.max_payload, limits.memory_limit_mb * 1024 * 1024)


def _parse_cost(frame: bytes) -> int:
    """An upper estimate of the runner memory ``orjson.loads(frame)`` would take.

    Each element costs at most an object of ~56 bytes and a pointer; elements are
    counted by their separators, so a 25 MB ``[[],[],...]`` frame (8 M lists, ~0.5 GB
    parsed) is refused before it is parsed. Brackets and commas inside strings
    overcount, never undercount.
    """
    elements = frame.count(b",") + frame.count(b"[") + frame.count(b"{")
    return len(frame) + _BYTES_PER_ELEMENT * elements


_PRINT_PREFIX: Final = framing.PRINT_PREFIX


class _FrameBudget:
    """Per-task caps on what a worker may send, checked before frames are parsed.

    * a frame's announced length: print frames up to what the print cap can take
      after JSON escaping, every other frame up to :func:`_frame_limit`;
    * a large frame's parse cost (:func:`_parse_cost`) within the same budgets;
    * print frames after the print cap was reached: the worker's printer stops
      at the cap, so a worker that keeps sending is hostile and is killed.
    """

    __slots__ = ("_limits", "_print_cost", "_result_cost", "max_frame", "max_print")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.max_print = _JSON_ESCAPE_GROWTH * limits.print_cap_bytes + _FRAME_SLACK
        self._result_cost = _frame_limit(limits) + _FRAME_SLACK
        self._print_cost = max(self.max_print, _BYTES_PER_ELEMENT * limits.print_cap_bytes)
        self.max_frame = max(self.max_print, self._result_cost)

    def too_large(self, spec: TaskSpec, size: int) -> TaskOutcome:
        """The failure for a frame whose length alone is over every cap."""
        return failure(spec, self._too_large_text(size), kind="payload")

    def _too_large_text(self, size: int) -> str:
        limits = self._limits
        if limits.max_payload <= limits.memory_limit_mb * 1024 * 1024:
            return (f"Task result is too large: {size} bytes exceeds "
                    f"N8N_RUNNERS_MAX_PAYLOAD ({limits.max_payload} bytes)")
        return (f"Task result is too large: {size} bytes exceeds the memory limit of "
                f"{limits.memory_limit_mb} MiB")

    def check_partial(self, decoder: framing.FrameDecoder) -> str | None:
        """Refuse a print frame still arriving whose announced length is over its cap."""
        if decoder.pending > self.max_print and decoder.buffered >= len(_PRINT_PREFIX) \
                and decoder.peek(len(_PRINT_PREFIX)) == _PRINT_PREFIX:
            return self._too_large_text(decoder.pending)
        return None

    def refuse(self, frame: bytes, prints: _PrintCap) -> str | None:
        """Why this complete frame must not be parsed (``None``: go ahead)."""
        is_print = frame.startswith(_PRINT_PREFIX)
        if is_print:
            if prints.flooding(len(frame)):
                return ("The task kept printing after its print output limit of "
                        f"{self._limits.print_cap_bytes} bytes was reached; it was stopped")
            if len(frame) > self.max_print:
                return self._too_large_text(len(frame))
        if len(frame) <= _CHEAP_FRAME:
            return None
        cost = _parse_cost(frame)
        if cost > (self._print_cost if is_print else self._result_cost):
            return (f"Task result is too large: parsing its {len(frame)} bytes would take "
                    f"more than the memory limit of {self._limits.memory_limit_mb} MiB")
        return None


class _PrintCap:
    """Forwards prints until ``cap`` bytes, then one marker, then nothing."""

    __slots__ = ("_after_cut", "_cap", "_cut", "_sink", "_used")

    #: Print bytes tolerated after the cut (the worker's and our count may differ
    #: by one call) before the worker counts as flooding.
    _FLOOD_SLACK: Final = 65_536

    def __init__(self, sink: PrintSink, cap: int) -> None:
        self._sink = sink
        self._cap = cap
        self._used = 0
        self._cut = False
        self._after_cut = 0

    def flooding(self, frame_size: int) -> bool:
        """Count one print frame; True once a worker prints far past the cut."""
        if self._cut:
            self._after_cut += max(frame_size, 1)
        return self._after_cut > self._FLOOD_SLACK

    def add(self, args: list[str]) -> None:
        if self._cut:
            return
        # Every call costs at least one byte, as in the worker (execute._Printer), so
        # a flood of empty print() calls ends at the cap like any other.
        size = max(sum(len(a) for a in args), 1)
        if self._used + size > self._cap:
            size = max(sum(len(a.encode("utf-8", "surrogatepass")) for a in args), 1)
        if self._used + size > self._cap:
            self.cut()
            return
        self._used += size
        self._sink(args)

    def cut(self) -> None:
        if not self._cut:
            self._cut = True
            self._sink([f"[Output truncated - print output exceeded {self._cap} bytes]"])


class _RssWatch:
    """Polls the worker's resident set while it runs; SIGKILLs it over the limit.

    A backstop behind RLIMIT_AS/DATA (sandbox-security.md §1.8); it costs one
    ``/proc/<pid>/statm`` read per interval and nothing for tasks shorter than
    one interval.
    """

    __slots__ = ("_handle", "_limit", "_loop", "_path", "_worker")

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: WorkerHandle,
                 limit_bytes: int) -> None:
        self._loop = loop
        self._worker = worker
        self._limit = limit_bytes
        self._path = f"/proc/{worker.pid}/statm"
        self._handle: asyncio.TimerHandle | None = loop.call_later(_RSS_INTERVAL, self._check)

    def _check(self) -> None:
        self._handle = None
        try:
            fd = os.open(self._path, os.O_RDONLY)
            try:
                fields = os.read(fd, 128).split()
            finally:
                os.close(fd)
            rss = int(fields[1]) * _PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return  # gone
        if rss > self._limit:
            self._worker.memory_killed = True
            self._worker.kill()
            return
        self._handle = self._loop.call_later(_RSS_INTERVAL, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
