"""What the JavaScript Code node can see, for Python: ``_input``, ``_('Node')``, ``_workflow`` ...

n8n's Python runner gives user code only ``_items``/``_item``; n8n itself answers
``runner:taskdatarequest`` for Python tasks exactly as for JavaScript
(n8n-data-access.md §1). This module builds the names of n8n's Pyodide node on
that answer (§6, §7), with n8n's error texts (``workflow-data-proxy.ts``):

* no request: ``_input.all()/first()/last()/item``, ``_json``, ``_binary``,
  ``_itemIndex`` come from the task's own items;
* one call per task, made on first use, over the worker's channel like a
  ``_helpers`` call (``DATA_CALL``): ``_('Node')``, ``_input.params``, ``_node``,
  ``_prevNode``, ``_workflow``, ``_execution``, ``_runIndex``, ``_vars``, ``_env``,
  ``_now``/``_today`` (the workflow's timezone), ``_getWorkflowStaticData``. The
  runner decides what the request asks for (the node names the code names) and
  fills in the task id; the worker cannot widen it;
* before the result, changed ``customData`` and ``staticData`` go back in one
  ``EXTRAS_CALL`` (n8n applies them from ``runner:taskdone``).

Only names the code mentions are defined (:func:`used_names`, from the compiled
code's names), so a task that uses none of them costs one walk over ``co_names``.
Values are plain ``dict``/``list`` data, copied on each read so one item's changes
never leak into another's view (JavaScript's copy-on-write proxies).

Over 600 lines on purpose: it is one concern, n8n's WorkflowDataProxy for Python (the
names, the paired-item walk, the custom-data rules, the error texts), kept in one file
that an auditor of the sandbox reads once rather than spread over several.

Stdlib and orjson only; never imports ``taskbox``; logs nothing.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import orjson

__all__ = ["DATA_CALL", "EXTRAS_CALL", "NAMES", "ExpressionError", "Session", "used_names"]

#: The channel call that fetches the task's data answer (the runner intercepts it).
DATA_CALL: Final = "$taskbox.data"
#: The channel call that hands back ``customData`` / ``staticData`` before the result.
EXTRAS_CALL: Final = "$taskbox.extras"

#: Every name this module can define in the user's namespace.
NAMES: Final = frozenset({
    "_", "_input", "_json", "_binary", "_node", "_prevNode", "_workflow", "_execution",
    "_runIndex", "_itemIndex", "_vars", "_env", "_now", "_today", "_jmespath", "_jmesPath",
    "_getWorkflowStaticData", "_get_workflow_static_data",
})

#: n8n's custom-data limits (``execution-metadata.ts``).
KV_LIMIT: Final = 10
MAX_KEY_LENGTH: Final = 50
MAX_VALUE_LENGTH: Final = 512

Call = Callable[[str, list[Any]], tuple[bool, Any]]


class ExpressionError(Exception):
    """n8n's error for a workflow-data read that cannot be answered (same class name)."""


def used_names(code: types.CodeType) -> frozenset[str]:
    """The data names ``code`` (or any function or class inside it) refers to."""
    found: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        found.update(current.co_names)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return NAMES.intersection(found)


def _copy(value: Any) -> Any:
    """A private deep copy of JSON data (orjson is ~10x faster than copy.deepcopy)."""
    if isinstance(value, (dict, list)):
        return orjson.loads(orjson.dumps(value))
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class Session:
    """One task's view of the workflow: the lazily fetched answer and what flows back."""

    def __init__(self, wanted: frozenset[str], call: Call, items: list[Any],
                 per_item: bool) -> None:
        self.wanted = wanted
        self.items = items
        self.per_item = per_item
        self._call = call
        self._data: dict[str, Any] | None = None
        self._nodes: dict[str, dict[str, Any]] | None = None
        self._parents: dict[str, list[tuple[str, int]]] | None = None
        self._ancestors: set[str] | None = None
        self._run_data: dict[str, Any] | None = None
        self._meta: dict[str, str] | None = None
        self._written: dict[str, str] = {}
        self._static: dict[str, Any] | None = None
        self._static_base: dict[str, Any] = {}
        self._execution: Record | None = None

    @classmethod
    def open(cls, code: types.CodeType, call: Call, items: list[Any],
             per_item: bool) -> Session | None:
        """A session if the code uses any data name, else None (and nothing is paid)."""
        wanted = used_names(code)
        return cls(wanted, call, items, per_item) if wanted else None

    # -- the answer --------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """The data answer, fetched on first use (one call per task)."""
        if self._data is None:
            ok, payload = self._call(DATA_CALL, [])
            if not ok or not isinstance(payload, dict):
                raise ExpressionError(f"Workflow data is not available: {payload}")
            self._data = payload
        return self._data

    def workflow(self) -> dict[str, Any]:
        return _dict(self.data().get("workflow"))

    def run_data(self) -> dict[str, Any]:
        if self._run_data is None:
            result = _dict(_dict(self.data().get("runExecutionData")).get("resultData"))
            self._run_data = _dict(result.get("runData"))
        return self._run_data

    def active_name(self) -> str:
        name = self.data().get("activeNodeName")
        return name if isinstance(name, str) else ""

    def manual(self) -> bool:
        return self.data().get("mode") == "manual"

    def nodes(self) -> dict[str, dict[str, Any]]:
        if self._nodes is None:
            self._nodes = {n["name"]: n for n in _list(self.workflow().get("nodes"))
                           if isinstance(n, dict) and isinstance(n.get("name"), str)}
        return self._nodes

    def pin_data(self, name: str) -> list[Any] | None:
        """Pinned items of ``name``: n8n serves them in manual runs only."""
        if not self.manual():
            return None
        pinned = _dict(self.workflow().get("pinData")).get(name)
        return pinned if isinstance(pinned, list) else None

    def source(self) -> list[Any]:
        return _list(_dict(self.data().get("connectionInputSource")).get("main"))

    def prev_source(self) -> dict[str, Any] | None:
        source = self.source()
        return source[0] if source and isinstance(source[0], dict) else None

    def parents(self) -> dict[str, list[tuple[str, int]]]:
        """destination -> [(source node, source output)] over main connections."""
        if self._parents is None:
            parents: dict[str, list[tuple[str, int]]] = {}
            for src, kinds in _dict(self.workflow().get("connections")).items():
                for output, targets in enumerate(_list(_dict(kinds).get("main"))):
                    for target in _list(targets):
                        if isinstance(target, dict) and isinstance(target.get("node"), str):
                            parents.setdefault(target["node"], []).append((src, output))
            self._parents = parents
        return self._parents

    def connection_output(self, name: str) -> int | None:
        """The output of ``name`` that leads to this node (n8n's getNodeConnectionIndexes)."""
        parents = self.parents()
        seen = {self.active_name()}
        queue = [self.active_name()]
        while queue:
            current = queue.pop(0)
            for src, output in parents.get(current, ()):
                if src == name:
                    return output
                if src not in seen:
                    seen.add(src)
                    queue.append(src)
        return None

    def ancestors(self) -> set[str]:
        """Every node upstream of this one (n8n's getParentNodes), computed once."""
        if self._ancestors is None:
            parents = self.parents()
            found: set[str] = set()
            queue = [self.active_name()]
            while queue:
                for src, _ in parents.get(queue.pop(), ()):
                    if src not in found:
                        found.add(src)
                        queue.append(src)
            self._ancestors = found
        return self._ancestors

    # -- the namespace -----------------------------------------------------------

    def names(self, index: int | None) -> dict[str, Any]:
        """The wanted names for one run of the code (``index``: per-item mode's item)."""
        at = index or 0
        out: dict[str, Any] = {}
        wanted = self.wanted
        item = self.items[at] if at < len(self.items) and isinstance(self.items[at], dict) \
            else None
        if "_" in wanted:
            out["_"] = lambda name=None: NodeRef(self, name, at)
        if "_input" in wanted:
            out["_input"] = Input(self, at)
        if "_json" in wanted:
            out["_json"] = item.get("json") if item is not None else None
        if "_binary" in wanted:
            out["_binary"] = _strip_binary(item)
        if "_itemIndex" in wanted:
            out["_itemIndex"] = at
        if "_node" in wanted:
            out["_node"] = Record(lambda: _copy(_dict(self.data().get("node"))), "_node")
        if "_prevNode" in wanted:
            out["_prevNode"] = Record(self._prev_node, "_prevNode")
        if "_workflow" in wanted:
            out["_workflow"] = Record(self._workflow_info, "_workflow")
        if "_execution" in wanted:
            if self._execution is None:
                self._execution = Record(self._execution_info, "_execution")
            out["_execution"] = self._execution
        if "_vars" in wanted:
            out["_vars"] = Record(
                lambda: _copy(_dict(_dict(self.data().get("additionalData")).get("variables"))),
                "_vars")
        if "_env" in wanted:
            out["_env"] = Env(self)
        if "_runIndex" in wanted:
            run_index = self.data().get("runIndex")
            out["_runIndex"] = run_index if isinstance(run_index, int) else 0
        if "_now" in wanted or "_today" in wanted:
            now = datetime.datetime.now(self._timezone())
            out["_now"] = now
            out["_today"] = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if "_jmespath" in wanted or "_jmesPath" in wanted:
            out["_jmespath"] = out["_jmesPath"] = _jmespath
        if "_getWorkflowStaticData" in wanted or "_get_workflow_static_data" in wanted:
            out["_getWorkflowStaticData"] = out["_get_workflow_static_data"] = self.static_data
        return out

    def _timezone(self) -> datetime.tzinfo:
        """The workflow's timezone as the runner resolved it (``$tz``: name, UTC offset)."""
        tz = self.data().get("$tz")
        if isinstance(tz, list) and len(tz) == 2 and isinstance(tz[0], str) \
                and isinstance(tz[1], int) and abs(tz[1]) < 86_400:
            return datetime.timezone(datetime.timedelta(seconds=tz[1]), tz[0])
        return datetime.UTC

    def _prev_node(self) -> dict[str, Any]:
        source = self.prev_source()
        if source is None:
            return {}
        return {"name": source.get("previousNode"),
                "outputIndex": source.get("previousNodeOutput") or 0,
                "runIndex": source.get("previousNodeRun") or 0}

    def _workflow_info(self) -> dict[str, Any]:
        workflow = self.workflow()
        return {key: workflow.get(key) for key in ("id", "name", "active")}

    def _execution_info(self) -> dict[str, Any]:
        data = self.data()
        extra = _dict(data.get("additionalData"))
        execution_id = extra.get("executionId") or "__UNKNOWN__"
        token = _dict(data.get("runExecutionData")).get("resumeToken")
        suffix = f"?signature={token}" if isinstance(token, str) and token else ""
        return {
            "id": execution_id,
            "mode": "test" if data.get("mode") == "manual" else "production",
            "resumeUrl": f"{extra.get('webhookWaitingBaseUrl')}/{execution_id}{suffix}",
            "resumeFormUrl": f"{extra.get('formWaitingBaseUrl')}/{execution_id}{suffix}",
            "customData": CustomData(self),
        }

    # -- what flows back ---------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        if self._meta is None:
            result = _dict(_dict(self.data().get("runExecutionData")).get("resultData"))
            self._meta = {str(k): str(v) for k, v in _dict(result.get("metadata")).items()}
        return self._meta

    def set_custom(self, key: Any, value: Any) -> None:
        """n8n's setWorkflowExecutionMetadata: same checks, same limits."""
        meta = self.metadata()
        if key in meta or len(meta) < KV_LIMIT or not isinstance(key, str):
            if not isinstance(key, str):
                raise ExpressionError(f'Custom data keys must be a string (key "{key}")')
            if any(not (c.isascii() and (c.isalnum() or c == "_")) for c in key):
                raise ExpressionError('Custom date key can only contain characters '
                                      f'"A-Za-z0-9_" (key "{key}")')
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ExpressionError(f'Custom data values must be a string (key "{key}")')
            text = value if isinstance(value, str) else _js_number(value)
            short = key[:MAX_KEY_LENGTH]
            meta[short] = self._written[short] = text[:MAX_VALUE_LENGTH]

    def static_data(self, kind: str) -> dict[str, Any]:
        """``_getWorkflowStaticData('global'|'node')``: a dict that is saved if changed."""
        if kind not in ("global", "node"):
            raise ExpressionError("The type needs to either be 'global' or 'node'!")
        if self._static is None:
            self._static = _copy(_dict(self.workflow().get("staticData")))
            self._static_base = _copy(self._static)
        assert self._static is not None
        key = "global" if kind == "global" else f"node:{self.active_name()}"
        if not isinstance(self._static.get(key), dict):
            self._static[key] = {}  # made by reading: not a change to send
            self._static_base[key] = {}
        value: dict[str, Any] = self._static[key]
        return value

    def extras(self) -> dict[str, Any]:
        """``customData`` the code set and the whole ``staticData`` if it changed."""
        out: dict[str, Any] = {}
        if self._written:
            out["customData"] = dict(self._written)
        if self._static is not None:
            try:
                after = orjson.dumps(self._static, option=orjson.OPT_NON_STR_KEYS)
            except (orjson.JSONEncodeError, TypeError) as exc:
                raise ExpressionError(f"Workflow static data is not JSON: {exc}") from None
            if after != orjson.dumps(self._static_base, option=orjson.OPT_NON_STR_KEYS):
                out["staticData"] = orjson.loads(after)
        return out

    def finish(self) -> None:
        """Send the extras (if any) before the result frame."""
        extras = self.extras()
        if extras:
            ok, answer = self._call(EXTRAS_CALL, [extras])
            if not ok:
                raise ExpressionError(str(answer))


def _js_number(value: int | float) -> str:
    """String(value) as JavaScript writes numbers (``1.0`` -> ``1``)."""
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def _strip_binary(item: Any) -> dict[str, Any]:
    """n8n's ``$binary``: each entry without its ``data`` (the base64 content)."""
    binary = item.get("binary") if isinstance(item, dict) else None
    if not isinstance(binary, dict):
        return {}
    return {key: {k: v for k, v in entry.items() if k != "data"} if isinstance(entry, dict)
            else entry for key, entry in binary.items()}


def _jmespath(data: Any, query: Any) -> Any:
    """``_jmespath(obj, expr)``: n8n's wrapper; needs the ``jmespath`` package allowlisted."""
    if not isinstance(data, (dict, list)) or not isinstance(query, str):
        raise ExpressionError("expected two arguments (Object, string) for this function")
    try:
        module = __import__("jmespath")  # through the user's guarded import
    except ImportError as exc:
        raise ExpressionError(f"_jmespath needs the 'jmespath' package: {exc}") from None
    return module.search(query, data)


class Record(Mapping[str, Any]):
    """A read-only dict built on first use; keys read as attributes too (``_workflow.id``)."""

    __slots__ = ("_build", "_label", "_value")

    def __init__(self, build: Callable[[], dict[str, Any]], label: str) -> None:
        self._build = build
        self._label = label
        self._value: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._value is None:
            self._value = self._build()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._get()[key]
        except KeyError:
            raise AttributeError(f"{self._label} has no attribute {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr({k: v for k, v in self._get().items() if k != "customData"})


class CustomData:
    """``_execution.customData``: n8n's execution metadata (saved with the execution)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def set(self, key: str, value: str | int | float) -> None:
        """Set one key. Invalid keys or values raise in manual runs and are ignored else."""
        try:
            self._session.set_custom(key, value)
        except ExpressionError:
            if self._session.manual():
                raise

    def set_all(self, values: Mapping[str, Any]) -> None:
        """Set several keys; the first invalid one raises (manual runs) after the rest."""
        if not isinstance(values, Mapping):
            raise ExpressionError("customData.setAll() takes a dict")
        first: ExpressionError | None = None
        for key, value in values.items():
            try:
                self._session.set_custom(key, value)
            except ExpressionError as exc:
                first = first or exc
        if first is not None and self._session.manual():
            raise first

    def get(self, key: str) -> str | None:
        return self._session.metadata().get(str(key)[:MAX_KEY_LENGTH])

    def get_all(self) -> dict[str, str]:
        return dict(self._session.metadata())

    setAll = set_all
    getAll = get_all

    def __repr__(self) -> str:
        return f"customData({self.get_all()!r})"


class Env(Mapping[str, str]):
    """``_env``: n8n's process environment, when n8n allows env access in nodes."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def _env(self) -> dict[str, Any]:
        state = _dict(self._session.data().get("envProviderState"))
        if state.get("isEnvAccessBlocked", True):
            raise ExpressionError("access to env vars denied: N8N_BLOCK_ENV_ACCESS_IN_NODE "
                                  "is not false on the n8n instance")
        return _dict(state.get("env"))

    def __getitem__(self, key: str) -> str:
        value = self._env()[key]
        return value if isinstance(value, str) else str(value)

    def __getattr__(self, key: str) -> str | None:
        if key.startswith("__"):
            raise AttributeError(key)
        value = self._env().get(key)
        return None if value is None else str(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._env())

    def __len__(self) -> int:
        return len(self._env())

    def __repr__(self) -> str:
        return f"<_env: {len(self)} variables>"


class Input:
    """``_input``: this node's input items (``all``, ``first``, ``last``, ``item``, ``params``)."""

    __slots__ = ("_index", "_session")

    def __init__(self, session: Session, index: int) -> None:
        self._session = session
        self._index = index

    def all(self) -> list[Any]:
        return list(self._session.items)

    def first(self) -> Any:
        items = self._session.items
        return items[0] if items else None

    def last(self) -> Any:
        items = self._session.items
        return items[-1] if items else None

    @property
    def item(self) -> Any:
        items = self._session.items
        return items[self._index] if self._index < len(items) else None

    @property
    def params(self) -> dict[str, Any]:
        """The previous node's parameters, as saved (expressions unevaluated)."""
        source = self._session.prev_source()
        if source is None:
            return {}
        node = self._session.nodes().get(str(source.get("previousNode")), {})
        params: dict[str, Any] = _copy(_dict(node.get("parameters")))
        return params

    @property
    def context(self) -> dict[str, Any]:
        source = self._session.prev_source()
        return _context(self._session, str(source.get("previousNode"))) if source else {}

    def __repr__(self) -> str:
        return f"<_input: {len(self._session.items)} items>"


def _context(session: Session, name: str) -> dict[str, Any]:
    execution = _dict(_dict(session.data().get("runExecutionData")).get("executionData"))
    context: dict[str, Any] = _copy(_dict(_dict(execution.get("contextData")).get(f"node:{name}")))
    return context


class NodeRef:
    """``_('Node')``: another node's output, parameters and the paired item."""

    __slots__ = ("_index", "_session", "name")

    def __init__(self, session: Session, name: Any, index: int) -> None:
        if name is None or name == "":
            raise ExpressionError("When calling _(), please specify a node")
        if not isinstance(name, str):
            raise TypeError(f"_() takes a node name (str), not {type(name).__name__}")
        if name not in session.nodes():
            raise ExpressionError(f"Referenced node '{name}' does not exist")
        self._session = session
        self._index = index
        self.name = name

    def __repr__(self) -> str:
        return f"<node {self.name!r}>"

    # -- execution data ----------------------------------------------------------

    def _ensure_executed(self) -> None:
        if self.name not in self._session.run_data() and self._session.pin_data(self.name) is None:
            raise ExpressionError(f"Node '{self.name}' hasn't been executed")

    def _items(self, branch_index: int | None, run_index: int | None) -> list[Any]:
        self._ensure_executed()
        name = self.name
        runs = self._session.run_data().get(name)
        if not isinstance(runs, list):
            pinned = self._session.pin_data(name)
            return pinned or []
        run = len(runs) - 1 if run_index is None or run_index == -1 else run_index
        if not isinstance(run, int) or isinstance(run, bool) or not 0 <= run < len(runs):
            raise ExpressionError(f'Run {run} of node "{name}" not found')
        main = _list(_dict(_dict(runs[run]).get("data")).get("main"))
        if not main or main[0] is None:
            raise ExpressionError("No data found from `main` input")
        if branch_index is None:
            branch = self._session.connection_output(name) or 0
        else:
            branch = branch_index
        if not isinstance(branch, int) or isinstance(branch, bool) or not 0 <= branch < len(main):
            raise ExpressionError(f'Node "{name}" has no branch with index {branch}.')
        return _list(main[branch])

    def all(self, branch_index: int | None = None, run_index: int | None = None, *,
            branchIndex: int | None = None, runIndex: int | None = None) -> list[Any]:
        """Every output item (default: the output leading here, the last run)."""
        items = self._items(_pick(branch_index, branchIndex), _pick(run_index, runIndex))
        copied: list[Any] = _copy(items)
        return copied

    def first(self, branch_index: int | None = None, run_index: int | None = None, *,
              branchIndex: int | None = None, runIndex: int | None = None) -> Any:
        items = self._items(_pick(branch_index, branchIndex), _pick(run_index, runIndex))
        return _copy(items[0]) if items else None

    def last(self, branch_index: int | None = None, run_index: int | None = None, *,
             branchIndex: int | None = None, runIndex: int | None = None) -> Any:
        items = self._items(_pick(branch_index, branchIndex), _pick(run_index, runIndex))
        return _copy(items[-1]) if items else None

    @property
    def is_executed(self) -> bool:
        return self.name in self._session.run_data()

    isExecuted = is_executed

    @property
    def params(self) -> dict[str, Any]:
        """The node's parameters, as saved (expressions unevaluated)."""
        params: dict[str, Any] = _copy(_dict(self._session.nodes()[self.name].get("parameters")))
        return params

    @property
    def context(self) -> dict[str, Any]:
        return _context(self._session, self.name)

    # -- paired items ------------------------------------------------------------

    @property
    def item(self) -> Any:
        """The item of this node that the current input item derives from."""
        return _copy(self._paired(None, "item"))

    def paired_item(self, item_index: int | None = None) -> Any:
        return _copy(self._paired(item_index, "pairedItem"))

    def item_matching(self, item_index: int) -> Any:
        if item_index is None:
            raise ExpressionError("Missing item index for .itemMatching()")
        return _copy(self._paired(item_index, "itemMatching"))

    pairedItem = paired_item
    itemMatching = item_matching

    def _paired(self, item_index: int | None, method: str) -> Any:
        session = self._session
        if self.name not in session.ancestors():
            raise ExpressionError(f"Invalid expression: no path back to node '{self.name}' "
                                  "(it is not before this node in the workflow)")
        self._ensure_executed()
        index = self._index if item_index is None else item_index
        items = session.items
        if not items:
            pinned = session.pin_data(self.name)
            if pinned is not None and isinstance(index, int) and 0 <= index < len(pinned):
                return pinned[index]
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise ExpressionError(
                "Can't get data: some intermediate nodes between "
                f"'{self.name}' and '{session.active_name()}' have not executed yet")
        paired = items[index].get("pairedItem") if isinstance(items[index], dict) else None
        if isinstance(paired, list):
            paired = paired[0] if paired else None
        if paired is None:
            raise _missing_paired(session.active_name(), method)
        start = paired if isinstance(paired, dict) else {"item": paired}
        source = session.source()
        if not source:
            raise ExpressionError("Can't get data: the node's input source is missing")
        wanted = start.get("input") or 0
        sd = source[wanted] if isinstance(wanted, int) and 0 <= wanted < len(source) \
            else source[0]
        return _Resolver(session, self.name, method).resolve(sd, start, None)


def _pick(snake: int | None, camel: int | None) -> int | None:
    return snake if snake is not None else camel


def _missing_paired(node: str, method: str) -> ExpressionError:
    return ExpressionError(f"Paired item data for {method} from node '{node}' is unavailable. "
                           f"Ensure '{node}' is providing the required output.")


class _Resolver:
    """n8n's getPairedItem: walk ``pairedItem`` / ``source`` back to the target node.

    Memoised per lookup (one target), so diamonds in the graph stay linear.
    """

    __slots__ = ("_memo", "method", "session", "target")

    def __init__(self, session: Session, target: str, method: str) -> None:
        self.session = session
        self.target = target
        self.method = method
        self._memo: dict[tuple[Any, ...], Any] = {}

    def resolve(self, source: Any, paired: Any, before: str | None) -> Any:
        if isinstance(paired, int) and not isinstance(paired, bool):
            paired = {"item": paired}
        paired = _dict(paired)
        sd = paired.get("sourceOverwrite") or source
        if not isinstance(sd, dict):
            raise ExpressionError(f"Data not found: could not trace back to node '{self.target}'")
        key = (sd.get("previousNode"), sd.get("previousNodeRun") or 0,
               sd.get("previousNodeOutput") or 0, paired.get("item"))
        if key in self._memo:
            hit = self._memo[key]
            if isinstance(hit, ExpressionError):
                raise hit
            return hit
        try:
            found = self._resolve(sd, paired)
        except ExpressionError as exc:
            self._memo[key] = exc
            raise
        self._memo[key] = found
        return found

    def _resolve(self, sd: dict[str, Any], paired: dict[str, Any]) -> Any:
        prev = str(sd.get("previousNode"))
        runs = self.session.run_data().get(prev)
        run = sd.get("previousNodeRun") or 0
        task: dict[str, Any] | None = None
        if isinstance(runs, list) and isinstance(run, int) and 0 <= run < len(runs):
            task = _dict(runs[run])
        else:
            pinned = self.session.pin_data(prev)
            if pinned is not None:
                task = {"data": {"main": [pinned]}, "source": []}
        output = sd.get("previousNodeOutput") or 0
        outputs = _list(_dict(_dict(task).get("data")).get("main"))
        if not isinstance(output, int) or not 0 <= output < len(outputs) \
                or not isinstance(outputs[output], list):
            raise ExpressionError(f"Missing output: expected output #{output} from node {prev}")
        out = outputs[output]
        item_index = paired.get("item")
        valid = isinstance(item_index, int) and 0 <= item_index < len(out)
        if prev == self.target:
            if not valid:
                raise ExpressionError(f"Can't get data: the paired item of node '{prev}' "
                                      "points to an item that does not exist")
            return out[item_index]
        if not valid or not isinstance(out[item_index], dict):
            raise _missing_paired(prev, self.method)
        nexts = out[item_index].get("pairedItem")
        nexts = nexts if isinstance(nexts, list) else [] if nexts is None else [nexts]
        nexts = [{"item": p} if isinstance(p, int) else _dict(p) for p in nexts]
        if not nexts:
            raise _missing_paired(prev, self.method)
        sources = _list(_dict(task).get("source"))
        results: list[tuple[bool, Any]] = []
        for nxt in nexts:
            k = nxt.get("input")
            k = 0 if k is None else k
            if not isinstance(k, int) or k >= len(sources):
                continue
            nsource = nxt.get("sourceOverwrite") or sources[k]
            try:
                results.append((True, self.resolve(nsource, {**nxt, "input": k}, prev)))
            except ExpressionError as exc:
                results.append((False, exc))
        if results and not any(ok for ok, _ in results):
            raise results[0][1]
        matched = [value for ok, value in results if ok]
        if not matched:
            if not sources:
                raise ExpressionError(f"Invalid expression: no path back to node '{self.target}'")
            raise ExpressionError(f"Invalid branch reference: item {item_index} in node {prev} "
                                  "references a branch that doesn't exist")
        first = matched[0]
        if any(m is not first for m in matched[1:]):
            raise ExpressionError(f"Multiple matches: multiple matching items for item "
                                  f"[{item_index}] of node '{self.target}'")
        return first
