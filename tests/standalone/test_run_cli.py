"""``taskbox run`` as a user runs it: a real process, the embedded broker, a sandbox worker.

Each test is a behaviour a stand-alone user sees: n8n's result checks and messages, exit
codes, live prints, stdin, Ctrl-C, and error texts that name the flag or file to fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

EXIT_TASK_ERROR, EXIT_BAD_INPUT, EXIT_TIMEOUT, EXIT_MEMORY, EXIT_INTERRUPTED = 1, 2, 4, 5, 130


def taskbox(*args: str, code: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "taskbox", *args], input=code, text=True,
                          capture_output=True, env=full_env, timeout=timeout, check=False)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_scalar_result_fails_with_n8ns_message() -> None:
    done = taskbox("run", "-", code="return 42\n")
    assert done.returncode == EXIT_TASK_ERROR
    assert done.stdout == ""
    assert "Error: Code doesn't return items properly" in done.stderr
    assert "Please return an array of dictionaries" in done.stderr


def test_per_item_scalar_fails_with_item_index() -> None:
    done = taskbox("run", "-", "--mode", "each", code="return 42\n")
    assert done.returncode == EXIT_TASK_ERROR
    assert "Error: A 'json' property isn't a dictionary [item 0]" in done.stderr


def test_bare_dict_is_one_item_and_stdin_code(tmp_path: Path) -> None:
    items = write(tmp_path, "in.json", json.dumps([{"n": 2}]))
    done = taskbox("run", "-", "--items", items, code="return {'double': _items[0]['json']['n'] * 2}\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"json": {"double": 4}}]


def test_continue_on_fail_passes_input_on_as_n8n_does(tmp_path: Path) -> None:
    items = write(tmp_path, "in.json", json.dumps([{"n": 1}]))
    done = taskbox("run", "-", "--items", items, "--continue-on-fail", code="return [1]\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"json": {"n": 1}}]
    assert "warning: n8n would ignore this failure" in done.stderr
    assert "Code doesn't return items properly" in done.stderr


@pytest.mark.parametrize(("content", "expected"), [
    ("[1, 2]", "n8n would refuse these items: Item 0 is not a JSON object"),
    ('[{"json": [1]}]', "A 'json' property isn't a dictionary [item 0]"),
    ('"text"', "Items must be a JSON list of objects"),
    ("{", "not valid JSON"),
])
def test_bad_items_file_is_named(tmp_path: Path, content: str, expected: str) -> None:
    items = write(tmp_path, "bad-items.json", content)
    done = taskbox("run", "-", "--items", items, code="return _items\n")
    assert done.returncode == EXIT_BAD_INPUT
    assert f"taskbox run: --items {items}: " in done.stderr
    assert expected in done.stderr


def test_missing_code_file_is_named(tmp_path: Path) -> None:
    done = taskbox("run", str(tmp_path / "nope.py"))
    assert done.returncode == EXIT_BAD_INPUT
    assert f"taskbox run: {tmp_path / 'nope.py'}: No such file or directory" in done.stderr


def test_flag_errors_name_the_flag() -> None:
    done = taskbox("run", "-", "--memory-limit-mb", "10", code="return []\n")
    assert done.returncode == EXIT_BAD_INPUT
    assert "--memory-limit-mb: must be at least 64, got '10'" in done.stderr
    assert "None" not in done.stderr


def test_config_errors_are_json_with_json_logs() -> None:
    done = taskbox("run", "-", code="return []\n",
                   env={"TASKBOX_LOG_FORMAT": "json", "TASKBOX_MEMORY_LIMIT_MB": "1"})
    assert done.returncode == EXIT_BAD_INPUT
    [line] = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert line["event"] == "config_invalid"
    assert line["level"] == "error"
    assert "TASKBOX_MEMORY_LIMIT_MB: must be at least 64" in line["message"]


def test_refused_import_hints_at_the_flag() -> None:
    done = taskbox("run", "-", code="import csv\nreturn []\n")
    assert done.returncode == EXIT_TASK_ERROR
    assert "Set N8N_RUNNERS_STDLIB_ALLOW to allow it" in done.stderr  # n8n's own words
    assert "hint: allow it with --stdlib-allow csv" in done.stderr


@pytest.mark.parametrize(("allow", "code"), [
    ("socket", "import socket\nsocket.socket()\nreturn []\n"),
    ("urllib.request", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')\n"
                       "return []\n"),
])
def test_refused_socket_points_to_http_request_helper(allow: str, code: str) -> None:
    done = taskbox("run", "-", "--stdlib-allow", allow, code=code)
    assert done.returncode == EXIT_TASK_ERROR
    assert "[line 2]" in done.stderr
    assert "no network access: make HTTP requests with _helpers.httpRequest(" in done.stderr


def test_time_prints_accept_to_done() -> None:
    done = taskbox("run", "-", "--time", code="return []\n")
    assert done.returncode == 0, done.stderr
    assert "time: accept -> done " in done.stderr


def test_timeout_and_memory_have_their_own_exit_codes() -> None:
    done = taskbox("run", "-", "--task-timeout", "1", code="while True:\n    pass\n")
    assert done.returncode == EXIT_TIMEOUT, done.stderr
    assert "timed out" in done.stderr
    done = taskbox("run", "-", "--memory-limit-mb", "64",
                   code="x = bytearray(512 * 1024 * 1024)\nreturn []\n")
    assert done.returncode == EXIT_MEMORY, done.stderr
    assert "memory limit" in done.stderr


# A shell starts background jobs with SIGINT ignored and children inherit that, so a
# suite run in the background would send Ctrl-C to a process that cannot hear it: the
# child gets the default disposition back before it execs taskbox, as at a terminal.
_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def _start(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _WITH_DEFAULT_SIGINT,
                             "-m", "taskbox", "run", "-"], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(code)
    proc.stdin.close()
    return proc


class _Stderr:
    """A thread reads the child's stderr lines; ``until`` waits for one (bounded)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        stream = proc.stderr
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self.lines.put(line)

    def until(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.seen and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.seen += self.lines.get(timeout=0.1)
        return needle in self.seen


def test_prints_stream_live_and_ctrl_c_exits_130() -> None:
    proc = _start("print('started', 1)\nwhile True:\n    pass\n")
    try:
        stderr = _Stderr(proc)
        assert stderr.until("started 1\n", 30)  # plain text, while the task still runs
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        assert stderr.until("interrupted", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert rc == EXIT_INTERRUPTED
    assert "Traceback" not in stderr.seen


def test_connect_check_says_why() -> None:
    done = taskbox("connect", "--check", "--health-port", "1")
    assert done.returncode == 1
    assert "http://127.0.0.1:1/healthz is not healthy: [Errno 111] Connection refused" \
        in done.stderr
