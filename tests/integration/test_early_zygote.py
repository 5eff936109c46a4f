"""``taskbox connect`` starts loading the sandbox before it is connected.

What a user notices: the first task after a (re)start is served as soon as the broker
hands it over, because the zygote was importing and forking while the runner was still
importing and connecting, not after; and a runner stopped while its broker does not
answer stops at once, taking its zygote with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from taskbox.launch import runs_a_runner


def _zygote_children(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "taskbox_sandbox.zygote" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_zygote_is_up_while_the_broker_has_not_answered() -> None:
    silent = socket.socket()  # accepts the TCP connection, never answers the upgrade
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    port = silent.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "TASKBOX_"))}
    env.update({"N8N_RUNNERS_TASK_BROKER_URI": f"http://127.0.0.1:{port}",
                "N8N_RUNNERS_GRANT_TOKEN": "never-checked",
                "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warning"})
    taskbox = Path(sys.executable).parent / "taskbox"
    proc = subprocess.Popen([str(taskbox), "connect"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        silent.settimeout(20)
        conn, _ = silent.accept()  # the runner is connecting now
        # Spawned before the runner even connected (not after registration).
        zygotes = _zygote_children(proc.pid)
        assert len(zygotes) == 1
        assert proc.poll() is None
        zygote = zygotes[0]
        # A stop while the handshake hangs is not held for its 10 s timeout.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not zygote.is_running()  # taskbox stopped and reaped it
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        silent.close()


def test_only_a_serving_connect_starts_a_zygote_first() -> None:
    for argv in ([], ["connect"], ["--max-concurrency", "2"], ["connect", "--health-port", "0"]):
        assert runs_a_runner(argv), argv
    for argv in (["run", "x.py"], ["serve"], ["broker"], ["--help"], ["--version"],
                 ["connect", "--check"], ["connect", "-h"]):
        assert not runs_a_runner(argv), argv
