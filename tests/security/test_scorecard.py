"""The security scorecard against the real runner: no canary leaks, the runner never dies.

Runs ``security/scorecard.py`` (both configurations, about 30 s) as ``make security``
does and checks its verdict.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    cases = len(list((REPO / "security" / "corpus").glob("*.py")))
    assert summary.startswith(f"cases: {2 * cases},"), summary  # both configurations, every case


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
         "--corpus", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False, cwd=REPO,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    assert "LEAK Z01 selftest expected=contained got=contained" in output, output[-4000:]
    assert "leaked: escape marker" in output
    assert output.strip().splitlines()[-1] == (
        "cases: 1, leaks: 1, runner crashes: 0, limits hit: 0"
    )
