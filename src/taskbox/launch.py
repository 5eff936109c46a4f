"""The entry point: start the sandbox zygote before anything heavy is imported.

``taskbox connect`` (the default command) needs both its own start-up (~100 ms:
asyncio, websockets, connecting) and the zygote's (~50 ms of imports, then its first
worker). Exec'd here, first, the zygote loads on the other core meanwhile and the
first task waits for neither in turn. Stdlib only and cheap: nothing from taskbox,
no asyncio. The zygote gets no secret: its environment is ``ZYGOTE_ENV``, its argv
a file descriptor number, and its limits arrive later in its init frame.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["COMMANDS", "ZYGOTE_ENV", "Zygote", "main", "runs_a_runner", "start_zygote"]

#: The subcommands; any other first argument means ``connect`` (n8n's launcher
#: passes none).
COMMANDS: Final = ("connect", "run", "serve", "broker", "-h", "--help", "--version")
ZYGOTE_ENV: Final = {"LANG": "C.UTF-8"}
#: ``connect`` arguments that never start a runner.
_NO_RUNNER: Final = frozenset({"--check", "-h", "--help"})

#: A started zygote process and the runner's end of its control socket.
Zygote = tuple["subprocess.Popen[bytes]", socket.socket]


def start_zygote() -> Zygote:
    """Exec ``python -I -B -m taskbox_sandbox.zygote <fd>`` (it waits for its init frame).

    Raises:
        OSError: the process could not be started.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-m", "taskbox_sandbox.zygote", str(theirs.fileno())],
            env=dict(ZYGOTE_ENV), pass_fds=(theirs.fileno(),), close_fds=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd="/", process_group=0,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, ours


def runs_a_runner(argv: Sequence[str]) -> bool:
    """True when ``argv`` is the ``connect`` command and it will serve tasks."""
    if argv and argv[0] in COMMANDS and argv[0] != "connect":
        return False
    return not _NO_RUNNER.intersection(argv)


def main() -> int:
    """``taskbox`` and ``python -m taskbox``."""
    argv = sys.argv[1:]
    zygote: Zygote | None = None
    if runs_a_runner(argv):
        try:
            zygote = start_zygote()
        except OSError:
            zygote = None  # Executor.start() tries again and reports why it failed
    from taskbox.cli import main as cli_main

    return cli_main(argv, zygote=zygote)
