"""Start-up and import errors when the workers' uid cannot read the interpreter.

Root's workers drop to uid 65534; a Python under a 0700 home (this machine's pyenv in
/root) is then unreadable to them. The start-up warning must give a fix that works and
a failed import must say why, instead of a bare ModuleNotFoundError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbox.executor import probe

NOBODY = 65534


@pytest.fixture
def private_tree() -> Iterator[Path]:
    """/tmp/X (0700) / lib / python / mod.py, as a pyenv under /root is laid out."""
    top = Path(tempfile.mkdtemp(prefix="tb17-"))
    try:
        leaf = top / "lib" / "python"
        leaf.mkdir(parents=True)
        (leaf / "mod.py").write_text("X = 1\n")
        for d in (top / "lib", leaf):
            d.chmod(0o755)
        (leaf / "mod.py").chmod(0o644)
        top.chmod(0o700)
        yield leaf
    finally:
        shutil.rmtree(top)


def test_fix_names_exactly_the_directories_to_open(private_tree: Path) -> None:
    top = str(private_tree.parent.parent)
    assert probe.unreadable_for(NOBODY, NOBODY, str(private_tree)) == top
    fix = probe.unreadable_fix(NOBODY, NOBODY, str(private_tree))
    assert fix.startswith(f"`chmod o+x {top}`, or run taskbox as a non-root user")
    assert "TASKBOX_WORKER_UID" not in fix  # no uid other than root's could read it
    os.chmod(top, 0o711)  # the fix, applied
    assert probe.unreadable_for(NOBODY, NOBODY, str(private_tree)) is None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv")
                    or not os.access("/usr/bin/python3", os.X_OK),
                    reason="needs root, setpriv and a world-readable /usr/bin/python3")
def test_the_fix_really_lets_the_worker_uid_read(private_tree: Path) -> None:
    top = private_tree.parent.parent

    def read_as_nobody() -> int:
        return subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "/usr/bin/python3", "-c", f"open({str(private_tree / 'mod.py')!r}).read()"],
            capture_output=True, check=False, timeout=30).returncode

    assert read_as_nobody() != 0
    os.chmod(top, 0o711)
    assert read_as_nobody() == 0


def test_not_root_setuid_is_not_listed_as_missing() -> None:
    layers = {"rlimits": True, "prctl": True, "setuid": False, "seccomp": True}
    line = probe.describe_layers(layers, root=False)
    assert "missing: none" in line
    assert "not needed: setuid (not root" in line
    assert "missing: setuid" in probe.describe_layers(layers, root=True)


@pytest.mark.skipif(os.geteuid() != 0 or probe.unreadable_for(NOBODY, NOBODY) is None,
                    reason="only where root's Python is unreadable to uid 65534")
def test_import_error_and_startup_warning_say_why() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskbox", "run", "-", "--stdlib-allow", "*"],
        input="import urllib.request\nreturn []\n", capture_output=True, text=True,
        timeout=60, check=False,
        env={**os.environ, "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warning"})
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "No module named 'urllib.request': the Python installation" in out
    assert f"is not readable by uid {NOBODY}" in out
    assert f"Fix: {probe.unreadable_fix(NOBODY, NOBODY)}" in out
