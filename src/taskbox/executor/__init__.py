"""Supervision of sandbox processes (the runner side of the sandbox).

The runner uses :class:`Executor`; it forks nothing itself. The zygote and its
workers live in ``taskbox_sandbox`` and are reached only through JSON frames.
"""

from __future__ import annotations

from taskbox.executor.limits import DEFAULT_BUILTINS_DENY, Limits
from taskbox.executor.supervisor import Executor
from taskbox.executor.task import (
    NodeMode,
    PrintSink,
    RpcCall,
    TaskOutcome,
    TaskSpec,
    failure,
)

__all__ = [
    "DEFAULT_BUILTINS_DENY",
    "Executor",
    "Limits",
    "NodeMode",
    "PrintSink",
    "RpcCall",
    "TaskOutcome",
    "TaskSpec",
    "failure",
]
