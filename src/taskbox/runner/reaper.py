"""No ``<defunct>`` processes in a container: taskbox reaps the orphans it makes.

When a zygote dies, its workers (killed by PDEATHSIG) and anything it had not waited
for are re-parented. Normally they go to the container's PID 1, which only reaps if it
is an init (n8n's image starts its launcher under ``tini``). When ``taskbox connect`` is
PID 1 itself (``docker run`` of our image without ``--init``), or runs under a PID 1 that
does not reap (n8n's launcher started without tini), they would stay ``<defunct>`` until
the container's ``pids_limit`` is reached.

So taskbox makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``: orphans of its
descendants come to it, not to PID 1) and reaps every exited child on SIGCHLD, as tini
does. That includes the zygote itself: the executor notices its death through a pidfd and
its control socket, not its exit status, and ``subprocess.Popen`` treats a child reaped
by someone else as exited (ECHILD -> returncode 0), so nothing waits on it forever.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Callable

__all__ = ["install_reaper", "reap_children"]

log = logging.getLogger("taskbox.runner")

_PR_SET_CHILD_SUBREAPER = 36


def reap_children() -> int:
    """Wait for every child that has exited, without blocking; returns how many."""
    reaped = 0
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process: libc is in it
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def install_reaper(loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """Become a subreaper (or be PID 1) and reap children on SIGCHLD.

    Returns:
        The uninstaller, or None where neither applies (then PID 1 reaps, as usual).
    """
    pid1 = os.getpid() == 1
    if not (pid1 or _become_subreaper()):
        return None
    try:
        loop.add_signal_handler(signal.SIGCHLD, reap_children)
    except (NotImplementedError, RuntimeError):  # not the main thread
        return None
    if pid1:
        log.info("running as PID 1: reaping exited child processes",
                 extra={"event": "pid1_reaper"})
    reap_children()  # anything that exited before the handler was there

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGCHLD)
        reap_children()

    return uninstall
