"""Supervision of sandbox processes (the runner side of the sandbox).

The runner uses :class:`Executor`; it forks nothing itself. The zygote and its
workers live in ``taskbox_sandbox`` and are reached only through JSON frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskbox.executor.limits import DEFAULT_BUILTINS_DENY, Limits
from taskbox.executor.task import (
    HelperCall,
    NodeMode,
    PrintSink,
    TaskOutcome,
    TaskSpec,
    failure,
)

__all__ = [
    "DEFAULT_BUILTINS_DENY",
    "Executor",
    "HelperCall",
    "Limits",
    "NodeMode",
    "PrintSink",
    "TaskOutcome",
    "TaskSpec",
    "failure",
]

if TYPE_CHECKING:
    from taskbox.executor.supervisor import Executor


def __getattr__(name: str) -> Any:
    # Lazy: the supervisor pulls in ctypes and the pool (~15 ms), which the
    # runner needs only after its first offers are out (cold start, protocol.md §14.4).
    if name == "Executor":
        from taskbox.executor.supervisor import Executor

        return Executor
    raise AttributeError(name)
