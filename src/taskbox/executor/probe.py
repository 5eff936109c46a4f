"""Start-up checks on the runner side: self-hardening and the layer report.

The layer probe itself runs in the zygote (``taskbox_sandbox.confine.probe``),
where the layers are applied; this module hardens the runner process and turns
the probe result into one log line and a go / no-go decision.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sysconfig
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import framing
else:  # the one sandbox module taskbox may import (house-style.md §1)
    from taskbox_sandbox import framing

__all__ = ["LAYER_NAMES", "describe_layers", "missing_layers", "set_dumpable",
           "unreadable_fix", "unreadable_for"]

#: The layers ``confine.probe()`` reports, in the order they are applied.
LAYER_NAMES: tuple[str, ...] = framing.LAYERS

_PR_SET_DUMPABLE = 4


def set_dumpable(dumpable: bool) -> bool:
    """Set this process's dumpable flag with prctl(PR_SET_DUMPABLE) (prctl(2)).

    Not dumpable, the runner's ``/proc/<pid>/environ``, ``mem`` and ``maps``
    become unreadable to same-uid processes, so a worker cannot read the grant
    token from its ancestor (sandbox-security.md §1.2). The flag is reset by
    execve, which is why the zygote (exec'd) does not inherit it.

    Returns:
        True if the call succeeded.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process: libc is in it
        return int(libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def missing_layers(required: Iterable[str], layers: Mapping[str, bool]) -> list[str]:
    """The required layers the probe did not find (in the order required)."""
    return [name for name in required if not layers.get(name)]


def describe_layers(layers: Mapping[str, bool], root: bool | None = None) -> str:
    """``active: a, b; missing: c`` for the start-up log line.

    Not root, ``setuid`` (the drop to TASKBOX_WORKER_UID) has nothing to do: workers
    already run unprivileged, so it is listed as not needed rather than missing.
    """
    root = os.geteuid() == 0 if root is None else root
    known = [n for n in LAYER_NAMES if n in layers] + sorted(set(layers) - set(LAYER_NAMES))
    active = [n for n in known if layers[n]]
    missing = [n for n in known if not layers[n]]
    unneeded = ""
    if not root and "setuid" in missing:
        missing.remove("setuid")
        unneeded = f"; not needed: setuid (not root: workers keep uid {os.geteuid()})"
    return (f"active: {', '.join(active) or 'none'}; missing: {', '.join(missing) or 'none'}"
            + unneeded)


def unreadable_for(uid: int, gid: int, path: str | None = None) -> str | None:
    """The first directory on the way to the stdlib that ``uid`` cannot enter.

    Workers drop to ``uid`` when the runner is root; if the interpreter lives in a
    private home (pyenv under /root, mode 0700) they can only use modules the zygote
    preloaded, and every lazy import fails with ModuleNotFoundError.
    """
    target = os.path.realpath(path or sysconfig.get_paths()["stdlib"])
    current = "/"
    for part in [p for p in target.split("/") if p]:
        current = os.path.join(current, part)
        try:
            st = os.stat(current)
        except OSError:
            return current
        if st.st_uid == uid:
            bits = stat.S_IXUSR
        elif st.st_gid == gid:
            bits = stat.S_IXGRP
        else:
            bits = stat.S_IXOTH
        if not st.st_mode & bits:
            return current
    return None


def unreadable_fix(uid: int, gid: int, path: str | None = None) -> str:
    """A fix that works when ``uid`` cannot reach the stdlib, for the start-up message.

    When only search (x) permission for others is missing on some directories, naming
    them is exact: ``chmod o+x`` lets ``uid`` pass through without listing them.
    """
    target = os.path.realpath(path or sysconfig.get_paths()["stdlib"])
    blocked: list[str] = []
    current = "/"
    for part in [p for p in target.split("/") if p]:
        current = os.path.join(current, part)
        try:
            st = os.stat(current)
        except OSError:
            blocked = []
            break
        if st.st_uid != uid and st.st_gid != gid and not st.st_mode & stat.S_IXOTH:
            blocked.append(current)
    generic = (f"run taskbox as a non-root user (workers then keep its uid), or use a Python "
               f"that uid {uid} can read (e.g. a venv made from /usr/bin/python3)")
    if blocked:
        return f"`chmod o+x {' '.join(blocked)}`, or {generic}"
    return generic
