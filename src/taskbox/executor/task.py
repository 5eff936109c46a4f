"""What the runner hands the executor, and what it gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

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
    item_count: int | None  # None: not counted (items passed through undecoded)
    query: Any = None
    workflow_id: str = "Unknown"
    workflow_name: str = "Unknown"
    node_id: str = "Unknown"
    node_name: str = "Unknown"


class TaskOutcome:
    """Exactly one of ``result`` (-> runner:taskdone) or ``error`` (-> runner:taskerror)."""

    __slots__ = ("_result", "error", "kind", "result_json")

    def __init__(self, result: Any = None, error: dict[str, Any] | None = None,
                 kind: str = "ok", result_json: bytes | None = None) -> None:
        """Args:
        result: the value, or None when ``result_json`` holds it.
        kind: ok | error | timeout | memory | cpu | signal | payload | cancelled | security.
        result_json: the result as the strict JSON the worker sent, already validated as
            one JSON value on its own; the runner splices it into runner:taskdone instead
            of decoding and serializing it again.
        """
        self._result = result
        self.error = error
        self.kind = kind
        self.result_json = result_json

    @property
    def result(self) -> Any:
        """The result value (decoded from ``result_json`` on each read: only tests and
        tools read it; the runner sends the bytes)."""
        if self._result is None and self.result_json is not None:
            return orjson.loads(self.result_json)
        return self._result

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        shown = (f"result_json={self.result_json[:80]!r}" if self.result_json is not None
                 else f"result={self._result!r}")
        return f"TaskOutcome({shown}, error={self.error!r}, kind={self.kind!r})"


def failure(spec: TaskSpec, message: str, description: str = "", kind: str = "error",
            **extra: Any) -> TaskOutcome:
    """Turn a whole-task failure into the outcome n8n needs.

    With continueOnFail n8n drops a taskerror's message and passes the input through
    (protocol.md §9.4), so the failure must become error items instead.
    """
    if spec.continue_on_fail:
        if spec.node_mode == "runOnceForEachItem":
            items = [{"json": {"error": message}, "pairedItem": {"item": i}}
                     for i in range(max(_item_count(spec), 1))]
            return TaskOutcome(result=items, kind=kind)
        return TaskOutcome(result=[{"json": {"error": message}}], kind=kind)
    error: dict[str, Any] = {"message": message, "description": description or message}
    error.update(extra)
    return TaskOutcome(error=error, kind=kind)


def _item_count(spec: TaskSpec) -> int:
    if spec.item_count is not None:
        return spec.item_count
    try:  # only failures under continueOnFail in per-item mode need the count
        items = orjson.loads(spec.items_json)
    except orjson.JSONDecodeError:
        return 0
    return len(items) if isinstance(items, list) else 0
