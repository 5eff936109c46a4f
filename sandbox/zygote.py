"""The zygote: a small, clean parent that forks confined single-use workers.

The runner execs it as ``python -I -B -m taskbox_sandbox.zygote <fd>`` with the
environment ``{"LANG": "C.UTF-8"}`` and nothing else, so no secret is in its
memory, its ``/proc/<pid>/environ`` or any worker forked from it
(sandbox-security.md §1.2, "the forked child must contain nothing worth
stealing"). It never runs user code and never imports ``taskbox`` (a meta-path
finder makes such an import fail loudly).

Protocol on the control socket (AF_UNIX SOCK_SEQPACKET, one frame per message,
see ``framing.py``):

1. runner -> ``{"t": "init", "limits": Limits.to_wire(), "max_concurrency": n}``
2. the zygote preloads the allowlisted modules, builds ``Confinement(limits,
   probe())`` once, and answers ``{"t": "ready", "pid", "layers"}``;
3. it keeps ``pool`` workers (ready + running, at most ``max_concurrency + 1``)
   forked ahead of demand; runner -> ``{"t": "pool", "size": n}`` resizes it
   (the runner grows it under load and shrinks it when idle). Each worker
   applies ``Confinement.apply([its channel fd])`` at once, then blocks reading
   its task. The runner's end of the worker's socketpair travels as
   ``{"t": "worker", "pid"}`` with the fd attached (SCM_RIGHTS);
4. runner -> ``{"t": "taken", "pid"}`` before it sends a worker its task. The
   replacement is forked when that worker exits (its task ended), so the fork
   and the new worker's confinement never compete for CPU with a running task;
   the one spare worker covers the next task meanwhile. Taken messages are read
   before children are reaped, so a used worker never counts as a failure;
5. the zygote reaps every child and reports ``{"t": "exit", "pid", "status",
   "cpu"}`` (raw wait status, CPU seconds), so the runner can name a signal;
6. runner -> ``{"t": "stop"}``, or the control socket closing: kill every
   worker, reap, exit.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any


class _NoTaskbox(MetaPathFinder):
    """Refuses ``import taskbox``: the sandbox side must never load the runner."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if fullname == "taskbox" or fullname.startswith("taskbox."):
            raise ImportError(f"the sandbox zygote must never import {fullname!r}")
        return None


sys.meta_path.insert(0, _NoTaskbox())

import _signal  # type: ignore[import-not-found]  # noqa: E402  (after the finder, on purpose)
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import errno  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import NoReturn  # noqa: E402

from . import execute, framing  # noqa: E402

__all__ = ["COMMON_MODULES", "CONFINE_FAILED", "main"]

#: Preloaded when an allowlist is ``*`` (loading "everything" would bloat every
#: fork); anything else still imports on demand inside the worker.
COMMON_MODULES: tuple[str, ...] = (
    "json", "datetime", "math", "re", "collections", "collections.abc", "itertools",
    "functools", "random", "string", "time", "calendar", "decimal", "fractions",
    "statistics", "copy", "operator", "textwrap", "base64", "hashlib", "uuid",
    "typing", "dataclasses", "enum", "urllib.parse", "html", "unicodedata",
    "zoneinfo", "difflib", "heapq", "bisect", "pprint",
)
#: Imported lazily by C code on behalf of allowed modules (restrict.py).
_LAZY_IMPORTS: tuple[str, ...] = ("_strptime", "encodings.idna", "encodings.latin_1",
                                  "encodings.ascii")
#: Importing these runs code with visible side effects (a browser, a GUI, prints).
_NEVER_PRELOAD: frozenset[str] = frozenset({
    "antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter", "__hello__",
    "__phello__",
})
#: A worker exits with this status when ``Confinement.apply`` fails.
CONFINE_FAILED = framing.EXIT_CONFINE_FAILED
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_CONTROL_MAX = 1 << 20
#: A worker forked while this many tasks run skips its warm-up run: its task will
#: come soon, and the ~0.6 ms of CPU the run takes would compete with the running
#: ones (execute.Prepared.warm_up). With nothing running it warms up while it waits.
_BUSY_NO_WARM_UP = 1
#: Handlers a worker puts back to the default (the zygote set them), as plain ints.
_RESET_SIGNALS = (int(signal.SIGCHLD), int(signal.SIGTERM), int(signal.SIGINT))


def _harden_self() -> None:
    """Die with the runner (PDEATHSIG) and become non-dumpable, before any worker exists.

    Not dumpable, a same-uid worker (a non-root runner, or a kernel without
    Landlock) cannot open ``/proc/<zygote>/mem`` and rewrite the process that forks
    every later worker, nor read its maps or environ. execve reset the runner's own
    flag, hence again here.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _trim_heap() -> None:
    """Give malloc's free pages back to the kernel (malloc_trim(3)) before forking.

    Fewer resident pages in the zygote means fewer page-table entries for every
    fork to copy, and less memory counted for the zygote.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _preload(limits: dict[str, Any]) -> None:
    names: list[str] = []
    for key in ("stdlib_allow", "external_allow"):
        entries = [str(e) for e in limits.get(key, ()) if e]
        if "*" in entries:
            if key == "stdlib_allow":
                names.extend(COMMON_MODULES)
        else:
            names.extend(entries)
    names.extend(_LAZY_IMPORTS)
    for name in dict.fromkeys(names):
        top = name.partition(".")[0]
        if top == "taskbox" or top in _NEVER_PRELOAD:
            continue
        # A broken or missing allowlisted module fails later, in the task that
        # imports it, with Python's own message.
        with contextlib.suppress(Exception):
            __import__(name)


class Zygote:
    """The fork loop. One instance per process; never returns from :meth:`serve`."""

    def __init__(self, control: socket.socket, limits: dict[str, Any],
                 max_concurrency: int, confinement: Any) -> None:
        self.control = control
        self.limits = limits
        self.full = max(1, max_concurrency) + 1
        self.target = self.full
        self.confinement = confinement
        self.prepared: execute.Prepared | None = None  # built in main(), shared by forks
        self.ready: set[int] = set()  # forked, not yet taken
        self.busy: set[int] = set()  # taken by the runner, not yet reaped
        self.live: set[int] = set()  # every unreaped worker
        self.failures = 0  # consecutive workers that died before being taken
        self.retry_at = 0.0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # -- control channel

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        frame = framing.encode(message)
        if fds:
            socket.send_fds(self.control, [frame], list(fds))
        else:
            self.control.sendall(frame)

    # -- workers

    def spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            self.retry_at = time.monotonic() + 0.5
            return
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            self._become_worker(theirs)
        theirs.close()
        self.live.add(pid)
        self.ready.add(pid)
        try:
            self.send({"t": framing.FRAME_WORKER, "pid": pid}, [ours.fileno()])
        finally:
            ours.close()

    def _become_worker(self, channel: socket.socket) -> NoReturn:  # pragma: no cover
        try:
            # _signal, not signal: its wrappers' enum conversions would touch (and so
            # copy) dozens of the zygote's pages in every worker.
            _signal.set_wakeup_fd(-1)
            for signum in _RESET_SIGNALS:
                _signal.signal(signum, _signal.SIG_DFL)
            self.confinement.apply([channel.fileno()])
        except BaseException:
            os._exit(CONFINE_FAILED)
        execute.worker_main(channel, self.limits, self.prepared,
                            warm_up=len(self.busy) < _BUSY_NO_WARM_UP)

    def top_up(self) -> None:
        now = time.monotonic()
        # A taken worker's replacement is forked when it exits (the task ended), so
        # the fork never competes with a running task; the spare covers the gap.
        while len(self.ready) + len(self.busy) < self.target and now >= self.retry_at:
            self.spawn()

    def reap(self) -> None:
        # The runner says "taken" before it hands the worker its task, so any such
        # message is already queued when the worker's SIGCHLD is: read them first,
        # or a used worker would look like one that died before use.
        if not self.drain_control():
            self.stop()
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.live.discard(pid)
            self.busy.discard(pid)
            if pid in self.ready:
                # Died before it was used: confinement failed or it was killed.
                self.ready.discard(pid)
                self.failures += 1
                delay = min(2.0, 0.01 * 2 ** min(self.failures, 8))
                self.retry_at = time.monotonic() + delay
            self.send({"t": framing.FRAME_EXIT, "pid": pid, "status": status,
                       "cpu": usage.ru_utime + usage.ru_stime})

    def kill_all(self) -> None:
        for pid in list(self.live):
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while self.live and time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.live.discard(pid)

    # -- loop

    def serve(self) -> NoReturn:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while True:
                self.top_up()
                timeout = None
                if len(self.ready) + len(self.busy) < self.target:
                    timeout = max(0, int((self.retry_at - time.monotonic()) * 1000) + 1)
                try:
                    events = poller.poll(timeout)
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
                # Every SIGCHLD writes to wake_r (set_wakeup_fd), so reaping on that
                # event alone misses no child; a byte left over (level-triggered poll)
                # only means one more reap() that finds nothing.
                for fd, _mask in events:
                    if fd == self.wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                        self.reap()
                    elif not self.drain_control():
                        self.stop()
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                raise
            self.stop()

    def drain_control(self) -> bool:
        """Handle every queued control message; False when the runner said stop or left."""
        while True:
            try:
                data = self.control.recv(_CONTROL_MAX, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True
            if not data:
                return False
            message = framing.decode(data[framing.HEADER_SIZE:])
            kind = message.get("t") if isinstance(message, dict) else None
            if kind == framing.FRAME_STOP:
                return False
            if kind == framing.FRAME_POOL:
                self.resize(message.get("size"))
            elif kind == framing.FRAME_TAKEN:
                pid = message.get("pid")
                if pid in self.ready:
                    self.ready.discard(pid)
                    self.busy.add(pid)
                    self.failures = 0
                    self.retry_at = 0.0

    def resize(self, size: Any) -> None:
        """Keep ``size`` workers from now on (surplus ready ones are retired by the runner)."""
        if isinstance(size, int) and not isinstance(size, bool):
            self.target = max(1, min(self.full, size))

    def stop(self) -> NoReturn:
        self.kill_all()
        os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the zygote on the control socket whose fd number is ``argv[1]``."""
    args = list(sys.argv if argv is None else argv)
    _harden_self()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner owns Ctrl-C
    control = socket.socket(fileno=int(args[1]))
    frame = control.recv(_CONTROL_MAX)
    if not frame:
        return 0
    init = framing.decode(frame[framing.HEADER_SIZE:])
    if not isinstance(init, dict) or init.get("t") != framing.FRAME_INIT:
        return 2
    limits: dict[str, Any] = dict(init.get("limits") or {})
    max_concurrency = int(init.get("max_concurrency", 1))
    _preload(limits)
    from .confine import Confinement, probe

    probed = probe()
    for name in limits.get("disable_layers") or ():  # testing only: the runner logs it
        if name in probed:
            probed[name] = False
    if not probed["prctl"]:  # both need no_new_privs first (or CAP_SYS_ADMIN)
        probed["landlock"] = probed["seccomp"] = False
    confinement = Confinement(limits, probed, workers=max(1, max_concurrency) + 1)
    zygote = Zygote(control, limits, max_concurrency, confinement)
    zygote.resize(init.get("pool"))
    execute.warm_up_shared()
    # Last, after every import the zygote itself makes: it installs the import guards.
    zygote.prepared = execute.Prepared(limits)
    # Everything allocated so far is shared with every worker; keep the
    # workers' garbage collector from touching (and so copying) those pages.
    gc.collect()
    _trim_heap()
    gc.freeze()
    # Report what workers get: a network namespace is probed but never applied
    # (seccomp and Landlock already cut the network; see confine.Confinement.apply).
    applied = {name: ok for name, ok in probed.items() if name != "netns"}
    zygote.send({"t": framing.FRAME_READY, "pid": os.getpid(), "layers": applied,
                 "process_limit": confinement.process_limit})
    zygote.serve()


if __name__ == "__main__":
    sys.exit(main())
