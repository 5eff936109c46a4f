"""taskbox in a container: no ``<defunct>`` children pile up.

Run in a new PID namespace (``unshare -pf --mount-proc``): once with ``taskbox connect``
as PID 1 (``docker run`` without ``--init``), once under a PID 1 that never reaps (like
n8n's launcher started without tini). Killing the zygote orphans its workers; they
must be reaped, by taskbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from taskbox.broker import EmbeddedBroker
from taskbox.executor.pool import IDLE_WORKERS
from tests.integration.conftest import runner_env, settings

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs unshare(1) and root for a PID namespace")


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):  # it exited while being listed
        pass
    return found


def state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it exited while being read
        return "gone"
    return stat.rpartition(")")[2].split()[0]


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out.append(child)
        if state(child) != "Z":
            out += descendants(child)
    return out


async def _orphans_are_reaped(broker: EmbeddedBroker, argv: list[str],
                              runner_is_pid1: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("N8N_")}
    env.update(runner_env(broker, N8N_RUNNERS_MAX_CONCURRENCY="3"))
    proc = subprocess.Popen(["unshare", "-pf", "--mount-proc", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        await broker.wait_for_runners(1, timeout=30)
        assert (await broker.submit(settings("return [{'a': 1}]"))).status == "done"
        [pid1] = children(proc.pid)  # unshare's child: PID 1 inside
        runner = pid1 if runner_is_pid1 else children(pid1)[0]
        async with asyncio.timeout(20):
            while len(descendants(runner)) < 1 + IDLE_WORKERS:  # the zygote, its idle pool
                await asyncio.sleep(0.05)
        [zygote] = children(runner)
        orphans = children(zygote)
        assert orphans
        os.kill(zygote, signal.SIGKILL)
        async with asyncio.timeout(20):  # a new zygote, and no zombie anywhere
            while True:
                kids = children(runner)
                zombies = [k for k in children(pid1) + kids if state(k) == "Z"]
                if not zombies and kids and zygote not in kids \
                        and len(descendants(runner)) >= 1 + IDLE_WORKERS:
                    break
                await asyncio.sleep(0.1)
        assert all(state(o) == "gone" for o in orphans)
        assert (await broker.submit(settings("return [{'after': 1}]"))).status == "done"
        os.kill(runner, signal.SIGTERM)
        async with asyncio.timeout(20):  # taskbox stops cleanly, whoever PID 1 is
            while state(runner) not in ("Z", "gone"):
                await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def test_as_pid1_taskbox_reaps_orphaned_workers(broker: EmbeddedBroker) -> None:
    await _orphans_are_reaped(broker, [sys.executable, "-m", "taskbox", "connect"], True)


async def test_under_a_pid1_that_never_reaps(broker: EmbeddedBroker) -> None:
    # sh starts taskbox and then becomes `sleep`, which never waits for anyone.
    await _orphans_are_reaped(broker, [
        "sh", "-c", f"{sys.executable} -m taskbox connect & exec sleep 600", "x"], False)
