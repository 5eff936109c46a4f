"""Which workflow data a task's code needs: the ``requestParams`` of its data request.

Like n8n's BuiltInsParser for JavaScript (n8n-data-access.md §4), on Python's ``ast``:

* a code that names none of ``sandbox/workflow.py``'s names gets no plan, and the
  runner refuses any data call from its worker (a regex pre-filter spares the parse);
* each ``_('Literal')`` adds ``Literal`` to ``dataOfNodes``;
* a paired-item read of a literal (``_('X').item``, ``.pairedItem``, ``.itemMatching``)
  adds ``X`` and marks it ``paired``: the walk back crosses the nodes between X and
  this one, which the runner learns from the first answer's connections and fetches in
  a second request (n8n's JavaScript parser asks for ``"all"`` here);
* ``_(computed)``, ``_`` passed around and ``_('X')`` kept in a variable ask for
  ``"all"``, as n8n's parser does for ``$``;
* ``_env`` asks for ``env``, ``_prevNode`` for ``prevNode``;
* ``input.include`` is always false: Python gets its items in the task settings.

Pure: no I/O.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DataPlan", "plan"]

#: The names sandbox/workflow.py defines (kept equal by a test).
DATA_NAMES: Final = frozenset({
    "_", "_input", "_json", "_binary", "_node", "_prevNode", "_workflow", "_execution",
    "_runIndex", "_itemIndex", "_vars", "_env", "_now", "_today", "_jmespath", "_jmesPath",
    "_getWorkflowStaticData", "_get_workflow_static_data",
})
#: Reads of ``_('X')`` that need only X's own output.
_OWN_DATA: Final = frozenset({"all", "first", "last", "is_executed", "isExecuted", "params",
                              "context", "name"})
#: Paired-item reads: X's output and every node between X and this one.
_PAIRED: Final = frozenset({"item", "pairedItem", "paired_item", "itemMatching",
                            "item_matching"})
_MENTION: Final = re.compile(r"(?<![\w.])_(?:[A-Za-z]\w*)?(?!\w)")
_CACHE_SIZE: Final = 256
_cache: dict[str, DataPlan | None] = {}


@dataclass(frozen=True, slots=True)
class DataPlan:
    """What one task may ask n8n for."""

    nodes: tuple[str, ...] | None  # None: every node ("all")
    prev_node: bool
    env: bool
    #: Named nodes read through their paired item: the runner also fetches the nodes
    #: between each of them and this one (known from the first answer's connections).
    paired: tuple[str, ...] = ()

    def request_params(self) -> dict[str, Any]:
        """n8n's ``TaskDataRequestParams``, all four keys (n8n never answers fewer)."""
        return {"dataOfNodes": "all" if self.nodes is None else list(self.nodes),
                "prevNode": self.prev_node, "input": {"include": False}, "env": self.env}


def plan(code: str) -> DataPlan | None:
    """The data plan for ``code``, or None when it uses no workflow data name.

    Code that does not parse gets None: it fails as a syntax error before it runs.
    """
    if code in _cache:
        return _cache[code]
    result = _plan(code)
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[code] = result
    return result


def _plan(code: str) -> DataPlan | None:
    if not any(m.group(0) in DATA_NAMES for m in _MENTION.finditer(code)):
        return None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    parents: dict[int, ast.AST] = {}
    loads: list[ast.Name] = []
    stored: set[str] = set()
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
        if isinstance(node, ast.Name) and node.id in DATA_NAMES:
            if isinstance(node.ctx, ast.Load):
                loads.append(node)
            else:
                stored.add(node.id)
        elif isinstance(node, ast.arg) and node.arg in DATA_NAMES:
            stored.add(node.arg)
    loads.sort(key=lambda n: (n.lineno, n.col_offset))  # ast.walk is breadth-first
    used = {n.id for n in loads if n.id not in stored}
    if not used:
        return None
    nodes: list[str] = []
    paired: list[str] = []
    every = False
    for name in loads:
        if name.id != "_" or "_" in stored:
            continue
        call = parents.get(id(name))
        if not (isinstance(call, ast.Call) and call.func is name):
            every = True  # ``_`` passed around: any node may be read
            break
        arg = call.args[0] if len(call.args) == 1 and not call.keywords else None
        if not call.args and not call.keywords:
            continue  # ``_()``: an error in the worker, no data needed
        holder = parents.get(id(call))
        attr = holder.attr if isinstance(holder, ast.Attribute) else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)) \
                or (attr not in _OWN_DATA and attr not in _PAIRED):
            every = True
            break
        if arg.value not in nodes:
            nodes.append(arg.value)
        if attr in _PAIRED and arg.value not in paired:
            paired.append(arg.value)
    return DataPlan(nodes=None if every else tuple(nodes),
                    prev_node="_prevNode" in used, env="_env" in used,
                    paired=() if every else tuple(paired))
