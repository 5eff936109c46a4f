"""The workflow-data names in the worker (sandbox/workflow.py), on answers n8n would send.

The answers are built by the embedded broker's builder (the same shape n8n's
DataRequestResponseBuilder gives); no worker, no runner.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import pytest

from taskbox.broker.workflow_data import build_response, link_items, load_context

if TYPE_CHECKING:
    from sandbox import execute, workflow
else:
    from taskbox_sandbox import execute, workflow

ALL = {"dataOfNodes": "all", "prevNode": False, "input": {"include": False}, "env": False}


class Calls:
    """The worker's channel: answers DATA_CALL from a context, records EXTRAS_CALL."""

    def __init__(self, context: dict[str, Any], items: list[Any], mode: str = "manual",
                 node: str = "Python") -> None:
        self.context = context
        self.settings = {"items": items, "nodeName": node, "workflowMode": mode,
                         "code": "", "nodeMode": "runOnceForAllItems"}
        self.calls: list[tuple[str, list[Any]]] = []

    def __call__(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        self.calls.append((name, params))
        if name == workflow.DATA_CALL:
            return True, build_response(self.context, self.settings, ALL)
        return True, None


def session(raw: dict[str, Any], inputs: list[Any], *, per_item: bool = False,
            mode: str = "manual") -> tuple[workflow.Session, Calls]:
    context = load_context(raw)
    items = link_items([{"json": it} for it in inputs], context)
    calls = Calls(context, items, mode)
    return workflow.Session(workflow.NAMES, calls, items, per_item), calls


TWO_STEP = {"nodes": [
    {"name": "A", "items": [{"a": 0}, {"a": 1}]},
    {"name": "B", "items": [{"json": {"b": 0}, "pairedItem": 1},
                            {"json": {"b": 1}, "pairedItem": 0}]},
]}


def test_used_names_sees_nested_code_and_skips_locals() -> None:
    code = execute.compile_user_code(
        "def f():\n    return _json\nclass K:\n    x = [_now for _ in range(1)]\n"
        "_item = 1\nreturn f()")
    assert workflow.used_names(code) == {"_json", "_now"}
    assert workflow.Session.open(execute.compile_user_code("return _items"), Calls({}, []),
                                 [], False) is None


def test_paired_item_follows_the_chain_and_the_data_is_a_copy() -> None:
    s, calls = session(TWO_STEP, [{"i": 0}, {"i": 1}], per_item=True)
    ref = s.names(0)["_"]("A")
    assert ref.item["json"] == {"a": 1}  # input 0 -> B item 0 -> A item 1
    assert s.names(1)["_"]("A").item["json"] == {"a": 0}
    ref.item["json"]["a"] = 99  # the caller's copy only
    assert ref.all()[1]["json"] == {"a": 1}
    assert [c[0] for c in calls.calls] == [workflow.DATA_CALL]  # fetched once


def test_paired_item_multiple_matches_and_missing_pairing() -> None:
    raw = {"nodes": [
        {"name": "A", "items": [{"a": 0}, {"a": 1}]},
        {"name": "M", "items": [{"json": {"m": 0}, "pairedItem": [0, 1]}]},
    ]}
    s, _ = session(raw, [{"i": 0}])
    with pytest.raises(workflow.ExpressionError, match=r"^Multiple matches"):
        _ = s.names(0)["_"]("A").item
    raw["nodes"][1]["items"] = [{"json": {"m": 0}, "pairedItem": []}]
    s, _ = session(raw, [{"i": 0}])
    with pytest.raises(workflow.ExpressionError, match="from node 'M' is unavailable"):
        _ = s.names(0)["_"]("A").item


def test_branch_and_run_errors_use_n8n_wording() -> None:
    s, _ = session(TWO_STEP, [{"i": 0}])
    node = s.names(0)["_"]("A")
    with pytest.raises(workflow.ExpressionError, match=r'^Node "A" has no branch with index 2\.$'):
        node.all(2)
    with pytest.raises(workflow.ExpressionError, match=r'^Run 3 of node "A" not found$'):
        node.first(run_index=3)
    with pytest.raises(workflow.ExpressionError, match="please specify a node"):
        s.names(0)["_"]()
    with pytest.raises(workflow.ExpressionError,
                       match=r"^Missing item index for \.itemMatching\(\)$"):
        node.itemMatching(None)


def test_custom_data_follows_n8n_rules() -> None:
    raw = {"execution": {"customData": {f"k{i}": "v" for i in range(9)}}}
    s, calls = session(raw, [{"i": 0}], mode="webhook")
    custom = s.names(None)["_execution"].customData
    custom.set("num", 1.0)          # the tenth key; JS String(1.0) == "1"
    custom.set("eleventh", "x")     # over n8n's 10 keys: dropped silently
    custom.set("bad key", "x")      # invalid: ignored outside manual runs
    custom.set("k0", "y" * 600)     # an existing key: replaced, cut to 512
    custom.set("z" * 60, 1)         # not stored: over the limit (the key would be new)
    assert custom.get("num") == "1" and custom.get("eleventh") is None
    assert custom.get_all()["k0"] == "y" * 512
    s.finish()
    assert calls.calls[-1] == (workflow.EXTRAS_CALL,
                               [{"customData": {"num": "1", "k0": "y" * 512}}])
    manual, _ = session({}, [{"i": 0}], mode="manual")
    with pytest.raises(workflow.ExpressionError, match="must be a string"):
        manual.names(None)["_execution"].customData.set("ok", True)


def test_static_data_is_sent_whole_and_only_when_changed() -> None:
    raw = {"workflow": {"staticData": {"global": {"n": 1}, "node:Other": {"x": 1}}}}
    s, calls = session(raw, [{"i": 0}])
    s.names(None)["_getWorkflowStaticData"]("node")  # read, not changed
    s.finish()
    assert calls.calls == [(workflow.DATA_CALL, [])]
    s, calls = session(raw, [{"i": 0}])
    s.names(None)["_getWorkflowStaticData"]("global")["n"] += 1
    s.names(None)["_getWorkflowStaticData"]("node")  # a new, empty key after a change
    s.finish()
    assert calls.calls[-1] == (workflow.EXTRAS_CALL, [{"staticData": {
        "global": {"n": 2}, "node:Other": {"x": 1}, "node:Python": {}}}])
    with pytest.raises(workflow.ExpressionError, match="either be 'global' or 'node'"):
        s.names(None)["_getWorkflowStaticData"]("other")


def test_binary_drops_the_data_field_and_records_read_like_attributes() -> None:
    item = {"json": {}, "binary": {"data": {"data": "aGk=", "mimeType": "text/plain"}}}
    s = workflow.Session(workflow.NAMES, Calls({}, [item]), [item], False)
    names = s.names(None)
    assert names["_binary"] == {"data": {"mimeType": "text/plain"}}
    assert names["_workflow"].name == names["_workflow"]["name"]
    with pytest.raises(AttributeError, match="_workflow has no attribute 'nope'"):
        _ = names["_workflow"].nope


def test_jmespath_checks_arguments_as_n8n_and_needs_the_package() -> None:
    s = workflow.Session(workflow.NAMES, Calls({}, []), [], False)
    search = s.names(None)["_jmespath"]
    with pytest.raises(workflow.ExpressionError, match=r"^expected two arguments \(Object"):
        search("not an object", "a")
    if importlib.util.find_spec("jmespath") is None:
        with pytest.raises(workflow.ExpressionError, match="needs the 'jmespath' package"):
            search({"a": 1}, "a")
    else:
        assert search({"a": [1, 2]}, "a[1]") == 2


def test_contexts_of_the_previous_and_a_named_node() -> None:
    raw = {"nodes": [{"name": "Loop", "items": [{"x": 1}]}],
           "context": {"node:Loop": {"done": False, "items": [1]}}}
    s, _ = session(raw, [{"i": 0}])
    names = s.names(None)
    assert names["_input"].context == {"done": False, "items": [1]}
    assert names["_"]("Loop").context == {"done": False, "items": [1]}
    assert names["_input"].params == {}
