"""taskbox's sandbox side: everything that shares a process with user code.

Small, stdlib + orjson only, and never imports ``taskbox``. ``taskbox`` may import
exactly one module from here: :mod:`taskbox_sandbox.framing`, the pure codec both
ends of every pipe share.

* ``framing``  length-prefixed JSON frames with size caps; pure
* ``zygote``   exec'd with an empty environment; preloads, forks confined workers
* ``confine``  OS layers: rlimits, prctl, uid drop, Landlock, seccomp
* ``restrict`` in-process layers: filtered builtins, import guard
* ``execute``  code wrapping, all-items / per-item, print, results, errors
"""

from __future__ import annotations

__all__: list[str] = []
