"""The runner's side of workflow data access (issue 14): one data request per task.

User code reads ``_('Node')``, ``_workflow``, ``_execution`` ... (``sandbox/workflow.py``);
on first use the worker makes one ``DATA_CALL`` over its channel, like a ``_helpers``
call. Here, in the trusted runner:

* the request is planned from the code (``policy/data_names.py``), never from what
  the worker sends: only the node names the code names (``"all"`` for computed names),
  ``env`` only for ``_env``, ``input.include: false`` always, and all four
  ``requestParams`` keys (n8n never answers fewer, n8n-data-access.md §2). A paired
  read (``_('X').item``) needs the nodes between X and this one too: the first answer's
  connections name them, and one second request fetches those missing (n8n-data-access.md
  §5.4, "a cheaper one is possible");
* the task id is ours (the broker does not check who asks, §1), every request has a
  deadline (``TASKBOX_RPC_TIMEOUT``: n8n may never answer), and the answer is cached for the task: a second
  call, or the next item in per-item mode, costs no round trip;
* ``envProviderState.env`` goes through the runner's own filter
  (``config.task_environment``: tokens, ``*_FILE``, values equal to a secret) and then
  :func:`is_secret` (n8n's ``$env`` would hand out ``N8N_ENCRYPTION_KEY``, database
  passwords and the runners' auth token, §9);
* ``$tz`` is added: the workflow's timezone and its UTC offset now, resolved here
  because the worker cannot read the zoneinfo files;
* ``EXTRAS_CALL`` brings ``customData`` / ``staticData`` back; they are checked
  against n8n's rules again (the worker is hostile; n8n validates neither) and go
  into ``runner:taskdone``.

Must not import anything from ``sandbox/``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from taskbox.config import task_environment
from taskbox.policy.data_names import DataPlan, plan

__all__ = ["DATA_CALL", "EXTRAS_CALL", "TaskData", "is_data_call", "is_secret"]

#: The worker's channel calls (equal to sandbox/workflow.py's, checked by a test).
DATA_CALL: Final = "$taskbox.data"
EXTRAS_CALL: Final = "$taskbox.extras"

#: Variables never handed to user code through ``_env``, whatever n8n allows.
SECRET_NAMES: Final = frozenset({
    "N8N_ENCRYPTION_KEY", "N8N_RUNNERS_AUTH_TOKEN", "N8N_RUNNERS_GRANT_TOKEN",
    "N8N_USER_MANAGEMENT_JWT_SECRET", "N8N_LICENSE_ACTIVATION_KEY", "N8N_LICENSE_CERT",
})
_SECRET_PARTS: Final = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|API_?KEY|ACCESS_?KEY|ENCRYPTION|CREDENTIAL|AUTH"
    r"|(^|_)KEY($|_)|_FILE$|^DB_|^QUEUE_BULL_REDIS_|^N8N_RUNNERS_", re.IGNORECASE)
_KEY: Final = re.compile(r"[A-Za-z0-9_]{1,50}")
_MAX_CUSTOM_KEYS: Final = 10
_MAX_CUSTOM_VALUE: Final = 512
_DEFAULT_TIMEZONE: Final = "America/New_York"  # n8n's GENERIC_TIMEZONE default

Request = Callable[[dict[str, Any]], Awaitable[tuple[bool, Any]]]


def is_data_call(name: str) -> bool:
    """A worker call this module answers (not a node helper)."""
    return name in (DATA_CALL, EXTRAS_CALL)


def is_secret(name: str) -> bool:
    """Whether an environment variable stays out of ``_env`` (README lists the rule)."""
    return name in SECRET_NAMES or _SECRET_PARTS.search(name) is not None


class TaskData:
    """One task's data request, its cached answer and the extras for taskdone."""

    def __init__(self, code: str, request: Request) -> None:
        """Args:
        code: the task's code (the plan comes from it, computed on first use).
        request: sends one runner:taskdatarequest with these params and awaits the
            answer, within its deadline (``TaskChannel.data_request``).
        """
        self._code = code
        self._request = request
        self._answer: tuple[bool, Any] | None = None
        self._lock = asyncio.Lock()
        #: ``customData`` / ``staticData`` for runner:taskdone, once validated.
        self.extras: dict[str, Any] = {}

    async def handle(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        """Answer one of the worker's data calls (``is_data_call(name)`` is true)."""
        if name == DATA_CALL:
            return await self._data()
        return self._take_extras(params)

    async def _data(self) -> tuple[bool, Any]:
        async with self._lock:
            if self._answer is None:
                self._answer = await self._fetch()
            return self._answer

    async def _fetch(self) -> tuple[bool, Any]:
        wanted = plan(self._code)
        if wanted is None:
            return False, "this code names no workflow data (_input, _('Node'), _workflow ...)"
        ok, data = await self._request(wanted.request_params())
        if not ok:
            return False, data
        if not isinstance(data, dict):
            return False, "n8n's data answer is not an object"
        missing = path_nodes(data, wanted.paired) - set(wanted.nodes or ())
        if missing and wanted.nodes is not None:
            # The paired walk crosses these: one more request, for exactly them.
            ok, more = await self._request({"dataOfNodes": sorted(missing), "prevNode": False,
                                            "input": {"include": False}, "env": False})
            if not ok:
                return False, more
            _merge_run_data(data, more)
        return True, prepare(data, wanted)

    def _take_extras(self, params: list[Any]) -> tuple[bool, Any]:
        extras = params[0] if len(params) == 1 and isinstance(params[0], dict) else None
        if extras is None:
            return False, "invalid extras call"
        checked: dict[str, Any] = {}
        custom = extras.get("customData")
        if custom is not None:
            problem = check_custom_data(custom)
            if problem:
                return False, problem
            checked["customData"] = custom
        static = extras.get("staticData")
        if static is not None:
            if not isinstance(static, dict) or not all(
                    (k == "global" or k.startswith("node:")) and isinstance(v, dict)
                    for k, v in static.items()):
                return False, "staticData must map 'global' / 'node:<name>' to objects"
            checked["staticData"] = static
        self.extras = checked
        return True, None


def check_custom_data(custom: Any) -> str | None:
    """Why ``custom`` breaks n8n's customData rules, or None (n8n checks none of it)."""
    if not isinstance(custom, dict) or len(custom) > _MAX_CUSTOM_KEYS:
        return f"customData must be an object of at most {_MAX_CUSTOM_KEYS} keys"
    for key, value in custom.items():
        if not _KEY.fullmatch(key) or not isinstance(value, str) \
                or len(value) > _MAX_CUSTOM_VALUE:
            return f"customData key {key!r} or its value breaks n8n's rules"
    return None


def _result_data(answer: Any) -> dict[str, Any]:
    run = answer.get("runExecutionData") if isinstance(answer, dict) else None
    result = run.get("resultData") if isinstance(run, dict) else None
    return result if isinstance(result, dict) else {}


def _merge_run_data(data: dict[str, Any], more: Any) -> None:
    """Add the second answer's runData (and pinData) to the first one's."""
    target = _result_data(data)
    for key in ("runData", "pinData"):
        extra = _result_data(more).get(key)
        if isinstance(extra, dict):
            merged = target.get(key)
            target[key] = {**(merged if isinstance(merged, dict) else {}), **extra}


def path_nodes(data: dict[str, Any], targets: tuple[str, ...]) -> set[str]:
    """Nodes on the main-connection paths from each target down to this node."""
    if not targets:
        return set()
    workflow = data.get("workflow")
    connections = workflow.get("connections") if isinstance(workflow, dict) else None
    active = data.get("activeNodeName")
    if not isinstance(connections, dict) or not isinstance(active, str):
        return set()
    children: dict[str, set[str]] = {}
    for src, kinds in connections.items():
        outputs = kinds.get("main") if isinstance(kinds, dict) else None
        for targets_of_output in outputs if isinstance(outputs, list) else ():
            for edge in targets_of_output if isinstance(targets_of_output, list) else ():
                if isinstance(edge, dict) and isinstance(edge.get("node"), str):
                    children.setdefault(str(src), set()).add(edge["node"])
    parents: dict[str, set[str]] = {}
    for src, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, set()).add(src)
    upstream = _reach(active, parents)
    found: set[str] = set()
    for target in targets:
        if target in upstream:
            found |= (_reach(target, children) & upstream) | {target}
    return found


def _reach(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    queue = [start]
    while queue:
        for nxt in edges.get(queue.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def prepare(data: dict[str, Any], wanted: DataPlan) -> dict[str, Any]:
    """The answer as the worker gets it: secrets filtered, the timezone resolved."""
    state = data.get("envProviderState")
    if isinstance(state, dict):
        env = state.get("env") if wanted.env else None
        state = dict(state)
        state["env"] = {k: v for k, v in task_environment(
            {str(k): str(v) for k, v in env.items()}).items() if not is_secret(k)} \
            if isinstance(env, dict) else {}
        data["envProviderState"] = state
    workflow = data.get("workflow")
    settings = workflow.get("settings") if isinstance(workflow, dict) else None
    zone = settings.get("timezone") if isinstance(settings, dict) else None
    data["$tz"] = timezone_offset(zone if isinstance(zone, str) else None)
    return data


def timezone_offset(zone: str | None) -> list[Any]:
    """``[name, UTC offset in seconds now]`` for a workflow timezone (n8n's fallbacks)."""
    if not zone or zone == "DEFAULT":
        zone = os.environ.get("GENERIC_TIMEZONE") or _DEFAULT_TIMEZONE
    try:
        from zoneinfo import ZoneInfo

        offset = datetime.datetime.now(ZoneInfo(zone)).utcoffset()
    except (ValueError, OSError, ImportError, KeyError):
        return ["UTC", 0]
    return [zone, int(offset.total_seconds()) if offset is not None else 0]

