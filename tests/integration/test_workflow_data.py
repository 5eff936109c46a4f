"""Workflow data end to end: user code -> worker -> runner -> embedded broker (a context) -> back.

The broker answers ``runner:taskdatarequest`` from a ``taskbox run --context`` style
context; these tests check what the user sees and what crosses the wire.
"""

from __future__ import annotations

from typing import Any

from taskbox.broker.workflow_data import link_items, load_context
from tests.integration.conftest import InProcess, settings

CONTEXT: dict[str, Any] = {
    "workflow": {"id": "wf-7", "name": "Orders", "active": True,
                 "settings": {"timezone": "Asia/Tokyo"}, "staticData": {"global": {"n": 1}}},
    "execution": {"id": "99", "mode": "manual", "customData": {"old": "x"},
                  "resumeToken": "tok"},
    "nodes": [
        {"name": "Customers", "parameters": {"mode": "raw"},
         "items": [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]},
        {"name": "Lines", "items": [
            {"json": {"sku": "1-a"}, "pairedItem": 0}, {"json": {"sku": "1-b"}, "pairedItem": 0},
            {"json": {"sku": "2-a"}, "pairedItem": {"item": 1}}]},
        {"name": "Skipped", "disconnected": True},
    ],
    "vars": {"region": "eu"},
    "env": {"API_BASE": "https://api", "N8N_ENCRYPTION_KEY": "k", "DB_PASSWORD": "p"},
}


def _task(code: str, each: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings with three input items paired to 'Lines', and the context."""
    context = load_context(CONTEXT)
    task = settings(code, each=each)
    task["items"] = link_items([{"json": {"sku": s}} for s in ("1-a", "1-b", "2-a")], context)
    return task, context


def data_frames(broker: Any, task_id: str) -> list[dict[str, Any]]:
    return [msg for _, _, _, msg in broker.events if msg.get("taskId") == task_id
            and msg.get("type") in ("runner:taskdatarequest", "broker:taskdataresponse")]


async def test_every_name_all_items(env: InProcess) -> None:
    code = """
c = _("Customers")
_execution.customData.set("count", 2.0)
stats = _getWorkflowStaticData("global")
stats["n"] += 1
return [{
    "all": [i["json"]["name"] for i in c.all()], "first": c.first()["json"]["id"],
    "last": c.last()["json"]["name"], "item": c.item["json"]["name"],
    "lines": len(_("Lines").all(0, -1)), "executed": [c.is_executed, c.isExecuted],
    "params": c.params, "input": [len(_input.all()), _input.first()["json"]["sku"],
                                  _input.last()["json"]["sku"], _input.item["json"]["sku"]],
    "json": _json, "binary": _binary, "node": [_node.name, _node["type"]],
    "prev": dict(_prevNode), "workflow": dict(_workflow),
    "execution": [_execution.id, _execution.mode, _execution.resumeUrl],
    "custom": _execution.customData.get_all(), "run": _runIndex, "index": _itemIndex,
    "vars": _vars["region"], "env": dict(_env), "tz": str(_now.tzinfo),
    "offset": _now.utcoffset().total_seconds(), "midnight": _today.hour,
}]
"""
    task, context = _task(code)
    out = await env.broker.submit(task, context=context)
    assert out.ok, out.error
    [item] = out.result
    assert item == {
        "all": ["Ann", "Bob"], "first": 1, "last": "Bob", "item": "Ann", "lines": 3,
        "executed": [True, True], "params": {"mode": "raw"},
        "input": [3, "1-a", "2-a", "1-a"], "json": {"sku": "1-a"}, "binary": {},
        "node": ["Python", "n8n-nodes-base.code"],
        "prev": {"name": "Lines", "outputIndex": 0, "runIndex": 0},
        "workflow": {"id": "wf-7", "name": "Orders", "active": True},
        "execution": ["99", "test",
                      "http://localhost:5678/webhook-waiting/99?signature=tok"],
        "custom": {"old": "x", "count": "2"}, "run": 0, "index": 0, "vars": "eu",
        "env": {"API_BASE": "https://api"}, "tz": "Asia/Tokyo", "offset": 9 * 3600,
        "midnight": 0,
    }
    # customData: only what the code set; staticData: the whole object, changed
    assert out.data is not None
    assert out.data["customData"] == {"count": "2"}
    assert out.data["staticData"] == {"global": {"n": 2}}
    # one request, runner-chosen params: every node (the reference is kept in a variable
    # and .item walks upstream), env (the code uses _env), never the input
    frames = data_frames(env.broker, out.task_id)
    assert [f["type"] for f in frames] == ["runner:taskdatarequest", "broker:taskdataresponse"]
    assert frames[0]["requestParams"] == {"dataOfNodes": "all", "prevNode": True,
                                          "input": {"include": False}, "env": True}


async def test_literal_names_ask_for_those_nodes_only(env: InProcess) -> None:
    task, context = _task("return [{'n': len(_('Lines').all()), 'c': _('Customers').first()}]")
    out = await env.broker.submit(task, context=context)
    assert out.ok, out.error
    assert out.result == [{"n": 3, "c": {"json": {"id": 1, "name": "Ann"},
                                         "pairedItem": {"item": 0}}}]
    [request, answer] = data_frames(env.broker, out.task_id)
    assert request["requestParams"] == {"dataOfNodes": ["Lines", "Customers"],
                                        "prevNode": False, "input": {"include": False},
                                        "env": False}
    run_data = answer["data"]["runExecutionData"]["resultData"]["runData"]
    assert sorted(run_data) == ["Customers", "Lines"]
    assert answer["data"]["envProviderState"]["env"] == {}  # not asked for


async def test_per_item_paired_items_and_one_request(env: InProcess) -> None:
    code = """
return {"sku": _json["sku"], "customer": _("Customers").item["json"]["name"],
        "line": _("Lines").paired_item()["json"]["sku"], "i": _itemIndex,
        "match": _("Customers").itemMatching(0)["json"]["id"]}
"""
    task, context = _task(code, each=True)
    out = await env.broker.submit(task, context=context)
    assert out.ok, out.error
    assert [i["json"] for i in out.result] == [
        {"sku": "1-a", "customer": "Ann", "line": "1-a", "i": 0, "match": 1},
        {"sku": "1-b", "customer": "Ann", "line": "1-b", "i": 1, "match": 1},
        {"sku": "2-a", "customer": "Bob", "line": "2-a", "i": 2, "match": 1}]
    frames = data_frames(env.broker, out.task_id)
    assert len(frames) == 2  # three runs of the code, one round trip
    assert frames[0]["requestParams"]["dataOfNodes"] == ["Customers", "Lines"]


async def test_paired_read_fetches_the_nodes_in_between_in_a_second_request(
        env: InProcess) -> None:
    raw = {"nodes": [{"name": "Trigger", "items": [{"big": "x" * 1000}]},
                     *CONTEXT["nodes"]]}
    context = load_context(raw)
    task = settings("return {'c': _('Customers').item['json']['name']}", each=True)
    task["items"] = link_items([{"json": {"sku": s}} for s in ("1-a", "1-b", "2-a")], context)
    out = await env.broker.submit(task, context=context)
    assert out.ok, out.error
    assert [i["json"]["c"] for i in out.result] == ["Ann", "Ann", "Bob"]
    requests = [f for f in data_frames(env.broker, out.task_id)
                if f["type"] == "runner:taskdatarequest"]
    # Customers first, then only what lies between it and the code: Lines (not Trigger)
    assert [r["requestParams"]["dataOfNodes"] for r in requests] == [["Customers"], ["Lines"]]
    assert all(r["requestParams"]["input"] == {"include": False} for r in requests)


async def test_errors_carry_n8n_wording_and_line_numbers(env: InProcess) -> None:
    task, context = _task("x = 1\nreturn _('Nope').all()")
    out = await env.broker.submit(task, context=context)
    assert out.error["message"] == \
        "ExpressionError: Referenced node 'Nope' does not exist [line 2]"
    assert out.error["lineNumber"] == 2
    task, context = _task("return _('Skipped').first()")
    out = await env.broker.submit(task, context=context)
    assert out.error["message"] == "ExpressionError: Node 'Skipped' hasn't been executed [line 1]"
    # manual mode: an invalid customData key raises, as in n8n's JS node
    task, context = _task("_execution.customData.set('bad key', 1)\nreturn []")
    out = await env.broker.submit(task, context=context)
    assert out.error["message"].startswith(
        'ExpressionError: Custom date key can only contain characters "A-Za-z0-9_"')


async def test_unpaired_item_names_the_node(env: InProcess) -> None:
    task, context = _task("return {'c': _('Customers').item}", each=True)
    task["items"] = [{"json": {"sku": "1-a"}}]  # no pairedItem: n8n names this node
    out = await env.broker.submit(task, context=context)
    assert out.error["message"] == (
        "ExpressionError: Paired item data for item from node 'Python' is unavailable. "
        "Ensure 'Python' is providing the required output. [line 1, for item 0]")


async def test_no_names_no_request_and_env_blocked(env: InProcess) -> None:
    out = await env.broker.submit(settings("return [{'n': len(_items)}]", [{"a": 1}]))
    assert out.ok and out.result == [{"n": 1}]
    assert data_frames(env.broker, out.task_id) == []
    # _input/_json need no request either
    out = await env.broker.submit(settings("return [_input.first(), {'j': _json}]",
                                           [{"a": 1}]))
    assert out.ok and out.result == [{"json": {"a": 1}, "pairedItem": {"item": 0}},
                                     {"j": {"a": 1}}]
    assert data_frames(env.broker, out.task_id) == []
    # no context: n8n's default (env blocked)
    out = await env.broker.submit(settings("return [{'e': _env['HOME']}]", [{"a": 1}]))
    assert out.error["message"].startswith("ExpressionError: access to env vars denied")
