"""From broker:tasksettings to one outcome: validate settings, check policy, execute.

The static policy runs here, in the trusted runner (cached by code hash); the code
itself only ever runs in a sandbox worker.
"""

from __future__ import annotations

from typing import Any

from taskbox.errors import SecurityViolation, SettingsError
from taskbox.executor.task import NodeMode, TaskOutcome, TaskSpec, failure
from taskbox.policy import SecurityPolicy, validate
from taskbox.protocol.serde import RawJSON, dumps_json

__all__ = ["build_spec", "precheck"]

_MODES: tuple[NodeMode, ...] = ("runOnceForAllItems", "runOnceForEachItem")


def _name(settings: dict[str, Any], key: str) -> str:
    value = settings.get(key)
    return value if isinstance(value, str) and value else "Unknown"


def build_spec(task_id: str, settings: dict[str, Any]) -> TaskSpec:
    """Turn the Code node's settings (protocol.md §8) into a TaskSpec.

    Raises:
        SettingsError: wrong or missing ``code``, ``nodeMode`` or ``items``.
    """
    code = settings.get("code")
    mode = settings.get("nodeMode")
    items = settings.get("items", [])
    if not isinstance(code, str):
        raise SettingsError("Task settings have no 'code' string")
    if mode not in _MODES:
        raise SettingsError(f"Unsupported nodeMode {mode!r}: expected runOnceForAllItems "
                            "or runOnceForEachItem")
    if isinstance(items, RawJSON):  # a large task's items, as the broker sent them
        if not items.data.startswith(b"["):
            raise SettingsError("Task settings 'items' must be a list")
        items_json, count = items.data, None
    elif isinstance(items, list):
        items_json, count = dumps_json(items), len(items)
    else:
        raise SettingsError("Task settings 'items' must be a list")
    return TaskSpec(
        task_id=task_id,
        code=code,
        node_mode=mode,
        continue_on_fail=settings.get("continueOnFail") is True,
        items_json=items_json,
        item_count=count,
        query=settings.get("query"),
        workflow_id=_name(settings, "workflowId"),
        workflow_name=_name(settings, "workflowName"),
        node_id=_name(settings, "nodeId"),
        node_name=_name(settings, "nodeName"),
    )


def precheck(spec: TaskSpec, policy: SecurityPolicy) -> TaskOutcome | None:
    """Static checks before dispatch; an outcome means the code must not run.

    n8n's runner sends syntax and security refusals as taskerror even under
    continueOnFail, which loses the message (protocol.md §9.4); failure() fixes that.
    """
    try:
        validate(spec.code, policy)
    except SyntaxError as exc:
        line = exc.lineno or 1
        message = f"SyntaxError: {exc.msg} [line {line}]"
        return failure(spec, message, "SyntaxError", kind="syntax", lineNumber=line)
    except SecurityViolation as exc:
        description = "\n".join(exc.violations)
        if spec.continue_on_fail:
            return failure(spec, f"Security violations detected: {'; '.join(exc.violations)}",
                           kind="security")
        return failure(spec, "Security violations detected", description, kind="security")
    return None
