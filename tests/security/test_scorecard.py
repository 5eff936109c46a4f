"""The security scorecard against the real runner: no canary leaks, the runner never dies.

Runs ``security/scorecard.py`` (both configurations, about 30 s) as ``make security``
does and checks its verdict.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scorecard_finds_no_leak_and_no_crash() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "security" / "scorecard.py")],
        capture_output=True, text=True, timeout=840, check=False, cwd=REPO,
    )
    output = done.stdout + done.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    assert done.returncode == 0, output[-6000:]
    assert "leaks: 0" in summary, output[-6000:]
    assert "runner crashes: 0" in summary, output[-6000:]
    assert "lingering workers: 0" in summary, output[-6000:]
    assert "mode skipped" not in output, output[-6000:]
    cases = len(list((REPO / "security" / "corpus").glob("*.py")))
    # both modes (root, non-root) x both configurations, every case
    assert summary.startswith(f"cases: {4 * cases},"), summary
    for mode in ("root", "non-root"):
        assert f"== mode {mode}: cases: {2 * cases}, leaks: 0, runner crashes: 0, " \
               "lingering workers: 0," in output, output[-6000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scorecard_reports_a_leak(tmp_path: Path) -> None:
    """Positive control: a case that returns the escape marker must fail the run."""
    (tmp_path / "Z01_selftest.py").write_text(
        "# id: Z01\n# category: selftest\n# title: returns the escape marker\n"
        "# expect: contained\n# expect-open: contained\n"
        "return [{'json': {'x': '-'.join(['TASKBOX', 'ESCAPED', 'selftest'])}}]\n"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "security" / "scorecard.py"), "--config", "production",
         "--mode", "non-root", "--corpus", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False, cwd=REPO,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    assert "LEAK Z01 selftest expected=contained got=contained" in output, output[-4000:]
    assert "leaked: escape marker" in output
    assert output.strip().splitlines()[-1] == (
        "cases: 1, leaks: 1, runner crashes: 0, lingering workers: 0, limits hit: 0"
    )


def test_lingering_detector_sees_a_worker_that_read_its_task() -> None:
    """Control for the lingering check: a fake runner -> zygote -> worker tree in which
    the worker has read bytes and keeps running is reported; an idle one is not."""
    scorecard = _load_scorecard()
    script = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "idle = os.fork()\n"
        "if idle == 0:\n    time.sleep(30); os._exit(0)\n"
        "used = os.fork()\n"
        "if used == 0:\n    os.read(r, 1); time.sleep(30); os._exit(0)\n"
        "os.write(w, b'x')\n"
        "print(idle, used, flush=True)\n"
        "time.sleep(30)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        idle, used = map(int, runner.stdout.readline().split())
        found: list[int] = []
        for _ in range(50):  # the used one reads its byte right after the fork
            found = scorecard.used_workers(os.getpid())  # we are the "runner"
            if used in found:
                break
            time.sleep(0.05)
        assert used in found and idle not in found, (found, idle, used)
    finally:
        for pid in (idle, used, runner.pid):
            with contextlib.suppress(ProcessLookupError, UnboundLocalError):
                os.kill(pid, signal.SIGKILL)
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()


def _load_scorecard() -> Any:
    spec = importlib.util.spec_from_file_location("scorecard_mod",
                                                  REPO / "security" / "scorecard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scorecard_mod"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
