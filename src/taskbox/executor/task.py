"""What the runner hands the executor, and what it gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

NodeMode = Literal["runOnceForAllItems", "runOnceForEachItem"]

#: Called with the formatted arguments of one ``print`` call, as soon as it arrives.
PrintSink = Callable[[list[str]], None]
#: Called for a node-helper RPC (issue 6) with its wire name and params; returns
#: ``(ok, data)``. Params and data hold ``bytes`` where n8n has Buffers (the worker
#: sends them as raw frames, the runner converts to and from n8n's Buffer JSON).
HelperCall = Callable[[str, list[Any]], Awaitable[tuple[bool, Any]]]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One accepted task with its settings, ready to execute."""

    task_id: str
    code: str
    node_mode: NodeMode
    continue_on_fail: bool
    items_json: bytes  # the settings' ``items`` as raw JSON; the worker decodes it
    item_count: int
    query: Any = None
    workflow_id: str = "Unknown"
    workflow_name: str = "Unknown"
    node_id: str = "Unknown"
    node_name: str = "Unknown"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """Exactly one of ``result`` (-> runner:taskdone) or ``error`` (-> runner:taskerror)."""

    result: Any = None
    error: dict[str, Any] | None = None
    kind: str = "ok"  # ok | error | timeout | memory | cpu | signal | payload | cancelled | security
    #: ``result`` as the strict JSON the worker sent, already validated by parsing it on
    #: its own; the runner splices it into runner:taskdone instead of serializing again.
    result_json: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def failure(spec: TaskSpec, message: str, description: str = "", kind: str = "error",
            **extra: Any) -> TaskOutcome:
    """Turn a whole-task failure into the outcome n8n needs.

    With continueOnFail n8n drops a taskerror's message and passes the input through
    (protocol.md §9.4), so the failure must become error items instead.
    """
    if spec.continue_on_fail:
        if spec.node_mode == "runOnceForEachItem":
            items = [{"json": {"error": message}, "pairedItem": {"item": i}}
                     for i in range(max(spec.item_count, 1))]
            return TaskOutcome(result=items, kind=kind)
        return TaskOutcome(result=[{"json": {"error": message}}], kind=kind)
    error: dict[str, Any] = {"message": message, "description": description or message}
    error.update(extra)
    return TaskOutcome(error=error, kind=kind)
