"""Start-up probes on the runner side."""

from __future__ import annotations

import os
from pathlib import Path

from taskbox.executor.probe import unreadable_for


def test_private_directory_on_the_stdlib_path_is_reported(tmp_path: Path) -> None:
    lib = tmp_path / "home" / "lib"
    lib.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "home", 0o700)
    owner = os.stat(tmp_path / "home").st_uid
    other = 65534 if owner != 65534 else 65533
    assert unreadable_for(other, other, str(lib)) == str(tmp_path / "home")
    assert unreadable_for(owner, owner, str(lib)) is None
    os.chmod(tmp_path / "home", 0o755)
    assert unreadable_for(other, other, str(lib)) is None
