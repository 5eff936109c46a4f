"""Data requests the embedded broker answers: n8n's DataRequestResponse from a context file.

``taskbox run snippet.py --items items.json --context ctx.json`` describes the rest of
the workflow in ``ctx.json`` (README, "Reading the workflow from Python";
``examples/context.json``)::

    {"workflow": {"id": "wf1", "name": "Orders", "active": false,
                  "settings": {"timezone": "Europe/Berlin"}, "staticData": {}},
     "execution": {"id": "7", "mode": "manual", "customData": {"k": "v"}},
     "nodes": [{"name": "Customers", "items": [{"id": 1}]},
               {"name": "Orders", "items": [{"json": {"n": 1}, "pairedItem": 0}]}],
     "vars": {"region": "eu"}, "env": {"API": "x"}}

``nodes`` run in order, each feeding the next and the last one feeding the Code node.
A node has ``items`` (its one output), or ``outputs`` (a list per branch, with
``output`` naming the branch that leads on), or neither (it did not run); also
``parameters`` and ``type``; ``"disconnected": true`` keeps a node out of the chain
(it is in the workflow, nothing connects to it). Plain objects become ``{"json": ...}``; an item without
``pairedItem`` pairs with the item of the same index upstream (the last one if there
are fewer). ``env`` present means env access is allowed (``N8N_BLOCK_ENV_ACCESS_IN_NODE=false``).

:func:`build_response` builds the answer the way n8n's ``DataRequestResponseBuilder``
and ``DataRequestResponseStripper`` do (n8n-data-access.md §3.1, §3.2), so the runner
cannot tell it from n8n's.

Must not import taskbox.runner or anything from ``sandbox/``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContextError", "build_response", "link_items", "load_context"]

_BASE_URL = "http://localhost:5678"
_MODES = {"test": "manual", "production": "webhook"}


class ContextError(ValueError):
    """The context file does not have the documented shape."""


def _wrap(items: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ContextError(f"{what} must be a list of items")
    return [it if isinstance(it, dict) and "json" in it else {"json": it} for it in items]


def load_context(raw: Any) -> dict[str, Any]:
    """Check a parsed context file and normalise its items.

    Raises:
        ContextError: a wrong shape, with what is wrong.
    """
    if not isinstance(raw, dict):
        raise ContextError("the context must be a JSON object")
    for key in ("workflow", "execution", "vars", "env", "node", "context"):
        if key in raw and not isinstance(raw[key], dict):
            raise ContextError(f"context '{key}' must be an object")
    nodes = raw.get("nodes", [])
    if not isinstance(nodes, list):
        raise ContextError("context 'nodes' must be a list")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            raise ContextError(f"context nodes[{index}] needs a 'name'")
        if node["name"] in seen:
            raise ContextError(f"context node {node['name']!r} appears twice")
        seen.add(node["name"])
        node = dict(node)
        if "items" in node:
            node["outputs"] = [_wrap(node.pop("items"), f"node {node['name']!r} items")]
        elif "outputs" in node:
            outputs = node["outputs"]
            if not isinstance(outputs, list):
                raise ContextError(f"node {node['name']!r} outputs must be a list of lists")
            node["outputs"] = [_wrap(o, f"node {node['name']!r} outputs") for o in outputs]
        out.append(node)
    previous: list[dict[str, Any]] | None = None
    for node in _chain(out):
        outputs = node.get("outputs")
        if outputs is None:
            previous = None
            continue
        for branch in outputs:
            _pair(branch, previous)
        output = node.get("output", 0)
        previous = outputs[output] if isinstance(output, int) and 0 <= output < len(outputs) \
            else []
    return {**raw, "nodes": out}


def _chain(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if not n.get("disconnected")]


def _pair(items: list[dict[str, Any]], upstream: list[dict[str, Any]] | None) -> None:
    for index, item in enumerate(items):
        if "pairedItem" not in item:
            item["pairedItem"] = {"item": min(index, len(upstream) - 1) if upstream else 0}


def link_items(items: list[dict[str, Any]], context: dict[str, Any]) -> list[dict[str, Any]]:
    """The Code node's input items, paired with the last context node's output."""
    nodes = _chain(context.get("nodes", []))
    last = nodes[-1] if nodes else None
    upstream = None
    if last is not None and last.get("outputs") is not None:
        output = last.get("output", 0)
        outputs = last["outputs"]
        upstream = outputs[output] if isinstance(output, int) and 0 <= output < len(outputs) \
            else []
    linked = [dict(it) for it in items]
    _pair(linked, upstream)
    return linked


def build_response(context: dict[str, Any] | None, settings: dict[str, Any],
                   params: dict[str, Any]) -> dict[str, Any]:
    """n8n's answer to ``runner:taskdatarequest`` for a task run with ``context``."""
    context = context or {}
    every: list[dict[str, Any]] = context.get("nodes", [])
    nodes = _chain(every)
    code_name = settings.get("nodeName") if isinstance(settings.get("nodeName"), str) \
        else "Code"
    workflow_in = context.get("workflow", {})
    execution = context.get("execution", {})
    mode = str(execution.get("mode") or settings.get("workflowMode") or "manual")
    mode = _MODES.get(mode, mode)
    code_node = {
        "id": settings.get("nodeId") or "code-node", "name": code_name,
        "type": "n8n-nodes-base.code", "typeVersion": 2, "position": [0, 0],
        "parameters": {"mode": settings.get("nodeMode", "runOnceForAllItems"),
                       "language": "pythonNative", "pythonCode": settings.get("code", ""),
                       **context.get("node", {}).get("parameters", {})},
    }
    workflow_nodes = [{
        "id": n.get("id") or f"node-{i}", "name": n["name"],
        "type": n.get("type", "n8n-nodes-base.set"), "typeVersion": n.get("typeVersion", 1),
        "position": [0, 0], "parameters": n.get("parameters", {}),
    } for i, n in enumerate(every)] + [code_node]
    connections: dict[str, Any] = {}
    run_data: dict[str, Any] = {}
    previous: dict[str, Any] | None = None
    for index, node in enumerate([*nodes, {"name": code_name}]):
        if previous is not None:
            main: list[list[Any]] = [[] for _ in range(int(previous.get("output", 0)) + 1)]
            main[int(previous.get("output", 0))] = [
                {"node": node["name"], "type": "main", "index": 0}]
            connections[previous["name"]] = {"main": main}
        if node.get("outputs") is not None:
            run_data[node["name"]] = [{
                "startTime": 0, "executionIndex": index, "hints": [], "executionTime": 0,
                "executionStatus": "success",
                "source": [_source(previous)] if previous is not None else [],
                "data": {"main": node["outputs"]},
            }]
        previous = node
    last = nodes[-1] if nodes else None
    input_source = {"main": [_source(last)]} if last is not None else None
    wanted = params.get("dataOfNodes")
    if wanted != "all":
        names = set(wanted) if isinstance(wanted, list) else set()
        if params.get("prevNode") and last is not None:
            names.add(last["name"])
        run_data = {k: v for k, v in run_data.items() if k in names}
    env_allowed = "env" in context
    execution_id = str(execution.get("id") or "1")
    return {
        "workflow": {
            "id": workflow_in.get("id", settings.get("workflowId")),
            "name": workflow_in.get("name", settings.get("workflowName")),
            "active": bool(workflow_in.get("active", False)),
            "connections": connections, "nodes": workflow_nodes,
            "settings": workflow_in.get("settings", {"executionOrder": "v1"}),
            "staticData": workflow_in.get("staticData", {}),
        },
        "inputData": {"main": [settings.get("items", [])]}
        if _dict(params.get("input")).get("include") else {},
        "connectionInputSource": input_source,
        "itemIndex": 0, "activeNodeName": code_name, "contextNodeName": code_name,
        "defaultReturnRunIndex": -1, "mode": mode,
        "envProviderState": {"isProcessAvailable": True, "isEnvAccessBlocked": not env_allowed,
                             "env": dict(context.get("env", {}))
                             if env_allowed and params.get("env") else {}},
        "node": code_node,
        "runExecutionData": {
            "version": 1, "startData": {},
            "resultData": {"runData": run_data,
                           "lastNodeExecuted": last["name"] if last else None,
                           "metadata": dict(execution.get("customData", {}))},
            "executionData": {"contextData": context.get("context", {}),
                              "nodeExecutionStack": [], "metadata": {},
                              "waitingExecution": {}, "waitingExecutionSource": {}},
            "resumeToken": execution.get("resumeToken"),
        },
        "runIndex": int(context.get("runIndex", 0)), "selfData": {}, "siblingParameters": {},
        "additionalData": {
            "executionId": execution_id, "variables": dict(context.get("vars", {})),
            "instanceBaseUrl": f"{_BASE_URL}/", "restApiUrl": f"{_BASE_URL}/rest",
            "webhookBaseUrl": f"{_BASE_URL}/webhook",
            "webhookTestBaseUrl": f"{_BASE_URL}/webhook-test",
            "webhookWaitingBaseUrl": f"{_BASE_URL}/webhook-waiting",
            "formWaitingBaseUrl": f"{_BASE_URL}/form-waiting",
        },
    }


def _source(node: dict[str, Any]) -> dict[str, Any]:
    return {"previousNode": node["name"], "previousNodeOutput": int(node.get("output", 0)),
            "previousNodeRun": 0}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
