"""The security scorecard against the real runner: no canary leaks, the runner never dies.

Runs ``security/scorecard.py`` (both configurations, about 30 s) as ``make security``
does and checks its verdict.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_MISSING = [
    name for name in ("taskbox.broker", "taskbox.runner.lifecycle", "taskbox.executor.supervisor")
    if importlib.util.find_spec(name) is None
]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(bool(_MISSING), reason=f"runner/broker not importable yet: {_MISSING}")
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
    cases = len(list((REPO / "security" / "corpus").glob("*.py")))
    assert summary.startswith(f"cases: {2 * cases},"), summary  # both configurations, every case
