"""Reaping orphans when taskbox is a container's first process (PID 1).

A killed zygote's workers (PDEATHSIG) and any worker a dying zygote leaves behind are
re-parented to PID 1. Normally that is an init (n8n's image starts its launcher under
``tini``); when ``taskbox connect`` is itself PID 1 (``docker run`` of our image without
``--init``), nobody else would wait for them and they would stay ``<defunct>`` until the
container's ``pids_limit`` is reached. So, as PID 1 only, every exited child is reaped on
SIGCHLD, as tini does.

That includes the zygote itself: the executor notices its death through a pidfd and its
control socket, not its exit status, and ``subprocess.Popen`` treats a child reaped by
someone else as exited (ECHILD -> returncode 0), so nothing waits on it forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

__all__ = ["install_reaper", "reap_children"]

log = logging.getLogger("taskbox.runner")


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


def install_reaper(loop: asyncio.AbstractEventLoop,
                   pid: int | None = None) -> Callable[[], None] | None:
    """Reap children on SIGCHLD if this process is PID 1; returns the uninstaller.

    Args:
        pid: this process's pid (for tests); default ``os.getpid()``.
    """
    if (os.getpid() if pid is None else pid) != 1:
        return None
    try:
        loop.add_signal_handler(signal.SIGCHLD, reap_children)
    except (NotImplementedError, RuntimeError):  # not the main thread
        return None
    log.info("running as PID 1: reaping exited child processes",
             extra={"event": "pid1_reaper"})
    reap_children()  # anything that exited before the handler was there

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGCHLD)

    return uninstall
