"""Start-up probes on the runner side."""

from __future__ import annotations

import os
import shutil
import tempfile

from taskbox.executor.probe import unreadable_for


def test_private_directory_on_the_stdlib_path_is_reported() -> None:
    root = tempfile.mkdtemp(dir="/tmp")  # /tmp is world-searchable, unlike pytest's tmp_path
    try:
        os.chmod(root, 0o755)
        home = os.path.join(root, "home")
        lib = os.path.join(home, "lib")
        os.makedirs(lib)
        os.chmod(home, 0o700)
        owner = os.stat(home).st_uid
        other = 65534 if owner != 65534 else 65533
        assert unreadable_for(other, other, lib) == home
        assert unreadable_for(owner, owner, lib) is None
        os.chmod(home, 0o755)
        assert unreadable_for(other, other, lib) is None
    finally:
        shutil.rmtree(root)
