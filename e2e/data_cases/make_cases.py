#!/usr/bin/env python3
"""Writes the workflow-data cases (issue 14) into ``e2e/data_cases/<name>/``.

They run through the shared harness (``../shared/n8n-e2e/run.sh``) like ``e2e/cases``
(same folder format, see ``../shared/n8n-e2e/cases/README.md``), on multi-node
workflows, so ``_('Node')`` has real nodes to read and paired items to follow:

    Webhook -> Split Customers (Split Out body.customers)
            -> Customers       (Set: tier from spend, other fields kept)
            -> Order Lines     (Split Out orders: several lines per customer)
            -> Orders          (Set: line_total = qty * price, other fields kept)
           [-> Reshape         (Python, all items, returns items without pairedItem)]
            -> Python          (the case's code and mode)
           [-> Python 2        (reads what Python saved)]
            -> Respond OK      (all incoming items, HTTP 200)
    Never (a NoOp nothing connects to: it never runs)

``Order Lines`` makes the pairing non-trivial: order line k pairs with the customer
it came from, so ``_('Customers').item`` has to walk Orders -> Order Lines ->
Customers the way n8n's JavaScript node does.

Names and ids: the harness picks up ``NN_words`` folders; names are unique across
all case folders and the workflow ids are ``e2edaNN000000000`` (no clash with
``e2etbNN`` / ``e2ecaseNN``), webhook paths start with ``tbd-``.

Run ``python3 e2e/data_cases/make_cases.py`` after editing and commit the JSON;
``make e2e`` runs them (``E2E_CASES_DIR``), or alone:
``N8N_E2E_CASES_DIR=e2e/data_cases ../shared/n8n-e2e/run.sh .venv/bin/taskbox``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_NODE_NAMESPACE = uuid.UUID("0b7c6a52-2f1e-4d5b-9a3e-7ab0c5e2e014")
ALL = "runOnceForAllItems"
EACH = "runOnceForEachItem"


def _id(case: str, role: str) -> str:
    return str(uuid.uuid5(_NODE_NAMESPACE, f"{case}:{role}"))


def _node(case: str, name: str, node_type: str, version: float, x: int,
          parameters: dict[str, Any], y: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": _id(case, name), "name": name, "type": node_type, "typeVersion": version,
            "position": [x, y], "parameters": parameters, **extra}


def _set(case: str, name: str, x: int, fields: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return _node(case, name, "n8n-nodes-base.set", 3.4, x, {
        "mode": "manual",
        "assignments": {"assignments": [
            {"id": _id(case, f"{name}:{field}"), "name": field, "value": value, "type": kind}
            for field, (kind, value) in fields.items()]},
        "includeOtherFields": True, "options": {}})


def _split(case: str, name: str, x: int, field: str) -> dict[str, Any]:
    return _node(case, name, "n8n-nodes-base.splitOut", 1, x,
                 {"fieldToSplitOut": field, "include": "noOtherFields", "options": {}})


def _python(case: str, name: str, x: int, code: str, mode: str) -> dict[str, Any]:
    return _node(case, name, "n8n-nodes-base.code", 2, x,
                 {"mode": mode, "language": "pythonNative", "pythonCode": code})


def workflow(case: str, code: str, mode: str, *, reshape: bool = False,
             second: str | None = None) -> dict[str, Any]:
    path = "tbd-" + case[3:].replace("_", "-")
    chain = [
        _node(case, "Webhook", "n8n-nodes-base.webhook", 2.1, 0,
              {"httpMethod": "POST", "path": path, "responseMode": "responseNode",
               "options": {}}, webhookId=_id(case, "webhook-path")),
        _split(case, "Split Customers", 200, "body.customers"),
        _set(case, "Customers", 400,
             {"tier": ("string", "={{ $json.spend > 100 ? 'gold' : 'basic' }}")}),
        _split(case, "Order Lines", 600, "orders"),
        _set(case, "Orders", 800, {"line_total": ("number", "={{ $json.qty * $json.price }}")}),
    ]
    if reshape:
        chain.append(_python(case, "Reshape", 1000, RESHAPE, ALL))
    chain.append(_python(case, "Python", 1200, code, mode))
    if second is not None:
        chain.append(_python(case, "Python 2", 1400, second, ALL))
    chain.append(_node(case, "Respond OK", "n8n-nodes-base.respondToWebhook", 1.5, 1600,
                       {"respondWith": "allIncomingItems", "options": {"responseCode": 200}}))
    never = _node(case, "Never", "n8n-nodes-base.noOp", 1, 800, {}, y=300)
    connections = {a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
                   for a, b in itertools.pairwise(chain)}
    return {"id": f"e2eda{case[:2]}".ljust(16, "0"), "name": f"taskbox data {case}",
            "active": False, "settings": {"executionOrder": "v1"},
            "nodes": [*chain, never], "connections": connections, "pinData": {}}


#: Three customers; each order line carries its customer's id in ``sku`` so a
#: case can check that the paired customer is the right one.
BODY = {"customers": [
    {"id": 1, "name": "Ann", "spend": 150, "orders": [
        {"sku": "1-a", "qty": 2, "price": 5}, {"sku": "1-b", "qty": 1, "price": 7}]},
    {"id": 2, "name": "Bob", "spend": 20, "orders": [{"sku": "2-a", "qty": 3, "price": 2}]},
    {"id": 3, "name": "Cy", "spend": 300, "orders": [
        {"sku": "3-a", "qty": 1, "price": 1}, {"sku": "3-b", "qty": 4, "price": 3},
        {"sku": "3-c", "qty": 2, "price": 10}]},
]}


def big_body(customers: int, lines: int) -> dict[str, Any]:
    return {"customers": [
        {"id": c, "name": f"c{c}", "spend": c, "orders": [
            {"sku": f"{c}-{k}", "qty": k + 1, "price": c} for k in range(lines)]}
        for c in range(customers)]}


# One item fewer than it gets: n8n cannot pair the output by position (with equal
# counts it fills in pairedItem {item: i} itself), so the items have no pairedItem.
RESHAPE = """\
return [{"json": {"sku": it["json"]["sku"]}} for it in _items[:-1]]
"""

ALL_NAMES = """\
c = _("Customers")
o = _("Orders")
_execution.customData.set("orders", len(o.all()))
_execution.customData.set_all({"first_sku": _json["sku"], "bad key": "dropped"})
stats = _getWorkflowStaticData("global")
stats["seen"] = stats.get("seen", 0) + len(_input.all())
return [{
    "customers": [i["json"]["name"] for i in c.all()],
    "first": c.first()["json"]["name"], "last": c.last()["json"]["tier"],
    "customers_item": c.item["json"]["name"],
    "order_totals": [i["json"]["line_total"] for i in o.all(0, -1)],
    "camel": len(o.all(branchIndex=0, runIndex=0)),
    "executed": [c.is_executed, o.isExecuted, _("Never").is_executed],
    "customers_params": [a["name"] for a in c.params["assignments"]["assignments"]],
    "input": [len(_input.all()), _input.first()["json"]["sku"], _input.last()["json"]["sku"],
              _input.item["json"]["sku"], _input.item == _items[0]],
    "input_params": _input.params["assignments"]["assignments"][0]["name"],
    "json_sku": _json["sku"], "bin": _binary,
    "node": [_node["name"], _node.type, _node["parameters"]["mode"]],
    "prev": [_prevNode.name, _prevNode.outputIndex, _prevNode.runIndex],
    "workflow": [_workflow.id, _workflow.name, _workflow.active],
    "execution": [_execution.mode, _execution.id == str(_execution.id),
                  _execution.resumeUrl.split("/")[-2] if "/" in _execution.resumeUrl else None],
    "custom": _execution.customData.get_all(),
    "custom_get": _execution.customData.get("orders"),
    "run_index": _runIndex, "item_index": _itemIndex, "vars": dict(_vars),
    "now_tz": _now.utcoffset() is not None, "today_midnight": _today.hour == 0,
    "static": dict(stats),
}]
"""

EACH_NAMES = """\
customer = _("Customers").item["json"]
order = _("Orders").item["json"]
_execution.customData.set("last_sku", _json["sku"])
return {
    "sku": _json["sku"], "customer": customer["name"], "tier": customer["tier"],
    "line_total": order["line_total"], "item_index": _itemIndex,
    "input_item": _input.item["json"]["sku"], "same": _input.item == _item,
    "paired": _("Order Lines").paired_item(_itemIndex)["json"]["sku"],
    "matching": _("Customers").itemMatching(_itemIndex)["json"]["id"],
    "workflow": _workflow.name, "mode": _execution.mode, "run_index": _runIndex,
    "prev": _prevNode.name, "first_customer": _("Customers").first()["json"]["name"],
}
"""

MANY = """\
customer = _("Customers").item["json"]
return {"ok": _json["sku"].split("-")[0] == str(customer["id"]), "i": _itemIndex}
"""

STATIC_WRITE = """\
stats = _getWorkflowStaticData("global")
stats["count"] = stats.get("count", 0) + 1
mine = _getWorkflowStaticData("node")
mine["last"] = _input.last()["json"]["sku"]
_execution.customData.set("writer", "Python")
return [{"wrote": stats["count"]}]
"""

STATIC_READ = """\
return [{"global": dict(_getWorkflowStaticData("global")),
         "custom": _execution.customData.get_all()}]
"""


def _error(line: str, message: str) -> str:
    return f"err['message'] == {message + ' [line ' + line + ']'!r}"


def cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (workflow, expected)."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def add(name: str, doc: str, code: str, mode: str, expect: dict[str, Any],
            body: dict[str, Any] | None = None, **options: Any) -> None:
        wf = workflow(name, code, mode, **options)
        out[name] = (wf, {
            "description": doc, "tier": "extension", "workflow_id": wf["id"],
            "request": {"method": "POST", "path": "tbd-" + name[3:].replace("_", "-"),
                        "body": body or BODY},
            "expect": expect})

    add("60_data_all_items_every_name",
        "All items: every name at once on Webhook -> Split Out -> Set 'Customers' -> Split Out "
        "-> Set 'Orders' -> Python: other nodes' items (all/first/last, branch and run "
        "index), isExecuted of a node that never ran, params, _input, _json, _binary, _node, "
        "_prevNode, _workflow, _execution (mode, customData with n8n's key rule), _runIndex, "
        "_itemIndex, _vars, _now/_today, static data; customData lands in the execution.",
        ALL_NAMES, ALL, {"status": 200, "check": (
            "b == body[0] and b['customers'] == ['Ann', 'Bob', 'Cy'] and b['first'] == 'Ann'"
            " and b['last'] == 'gold' and b['customers_item'] == 'Ann'"
            " and b['order_totals'] == [10, 7, 6, 1, 12, 20] and b['camel'] == 6"
            " and b['executed'] == [True, True, False]"
            " and b['customers_params'] == ['tier']"
            " and b['input'] == [6, '1-a', '3-c', '1-a', True]"
            " and b['input_params'] == 'line_total' and b['json_sku'] == '1-a' and b['bin'] == {}"
            " and b['node'] == ['Python', 'n8n-nodes-base.code', 'runOnceForAllItems']"
            " and b['prev'] == ['Orders', 0, 0]"
            " and b['workflow'] == ['e2eda60000000000', 'taskbox data 60_data_all_items_every_name', True]"
            " and b['execution'][0] == 'production' and b['execution'][1]"
            " and b['execution'][2] == 'webhook-waiting'"
            " and b['custom'] == {'orders': '6', 'first_sku': '1-a'}"
            " and b['custom_get'] == '6' and b['run_index'] == 0 and b['item_index'] == 0"
            " and b['vars'] == {} and b['now_tz'] and b['today_midnight']"
            " and b['static'] == {'seen': 6}"
        ).replace("b == body[0] and ", "").replace("b[", "body[0]["),
        "execution": {"status": "success", "check": (
            "data['resultData']['metadata'] == {'orders': '6', 'first_sku': '1-a'}")}})

    add("61_data_per_item_paired_two_nodes",
        "Per item: _('Customers').item follows each order line back across two nodes "
        "(Orders -> Order Lines -> Customers, several lines per customer), _('Orders').item, "
        ".paired_item(i) and .itemMatching(i); _json, _itemIndex, _input.item per item; "
        "customData set per item keeps the last value.",
        EACH_NAMES, EACH, {"status": 200, "check": (
            "[(r['sku'], r['customer'], r['tier'], r['line_total'], r['item_index']) for r in body]"
            " == [('1-a', 'Ann', 'gold', 10, 0), ('1-b', 'Ann', 'gold', 7, 1),"
            " ('2-a', 'Bob', 'basic', 6, 2), ('3-a', 'Cy', 'gold', 1, 3),"
            " ('3-b', 'Cy', 'gold', 12, 4), ('3-c', 'Cy', 'gold', 20, 5)]"
            " and all(r['input_item'] == r['sku'] and r['same'] and r['paired'] == r['sku']"
            " and r['matching'] == int(r['sku'][0]) and r['mode'] == 'production'"
            " and r['run_index'] == 0 and r['prev'] == 'Orders' and r['first_customer'] == 'Ann'"
            " and r['workflow'] == 'taskbox data 61_data_per_item_paired_two_nodes' for r in body)"),
            "execution": {"status": "success",
                          "check": "data['resultData']['metadata'] == {'last_sku': '3-c'}"}})

    add("62_data_per_item_100_items",
        "Per item over 100 order lines (20 customers x 5): every line's _('Customers').item "
        "is its own customer; one data request serves all 100 runs.",
        MANY, EACH, {"status": 200, "check": (
            "len(body) == 100 and all(r['ok'] for r in body)"
            " and [r['i'] for r in body] == list(range(100))")},
        body=big_body(20, 5))

    add("63_data_unknown_node",
        "_('Nope') fails the execution with \"Referenced node 'Nope' does not exist\" and the "
        "line number.",
        "x = 1\nrows = _('Nope').all()\nreturn rows", ALL,
        {"status": 500, "execution": {"status": "error", "check": (
            _error("2", "ExpressionError: Referenced node 'Nope' does not exist")
            + " and err['lineNumber'] == 2")}})

    add("64_data_node_not_executed",
        "A node that did not run: n8n's \"Node 'Never' hasn't been executed\" with the line "
        "number, in per-item mode too.",
        "if _item['json']['qty'] > 0:\n    return _('Never').first()\nreturn _item", EACH,
        {"status": 500, "execution": {"status": "error", "check": (
            "err['message'] == \"ExpressionError: Node 'Never' hasn't been executed"
            " [line 2, for item 0]\" and err['lineNumber'] == 2")}})

    add("65_data_paired_item_unavailable",
        "A node between returns items without pairedItem (Python 'Reshape', all items, one "
        "item fewer than its input): "
        "_('Customers').item fails with n8n's wording naming that node.",
        "return {'c': _('Customers').item['json']['name']}", EACH,
        {"status": 500, "execution": {"status": "error", "check": (
            "err['message'].startswith(\"ExpressionError: Paired item data for item from node"
            " 'Reshape' is unavailable. Ensure 'Reshape' is providing the required output.\")"
            " and err['lineNumber'] == 1")}}, reshape=True)

    add("66_data_env_blocked",
        "_env while n8n blocks env access in nodes (N8N_BLOCK_ENV_ACCESS_IN_NODE unset): "
        "n8n's 'access to env vars denied', with the line number.",
        "home = _env.get('HOME')\nreturn [{'home': home}]", ALL,
        {"status": 500, "execution": {"status": "error", "check": (
            "err['message'].startswith('ExpressionError: access to env vars denied')"
            " and err['lineNumber'] == 1")}})

    add("67_data_static_data_and_custom_data",
        "_getWorkflowStaticData('global'/'node') written by one Python node is what the next "
        "Python node reads in the same execution (n8n applied taskdone's staticData), and its "
        "customData is visible there and stored with the execution.",
        STATIC_WRITE, ALL, {"status": 200, "check": (
            "body[0]['global']['count'] >= 1 and body[0]['custom'] == {'writer': 'Python'}"),
            "execution": {"status": "success",
                          "check": "data['resultData']['metadata'] == {'writer': 'Python'}"}},
        second=STATIC_READ)

    add("68_data_computed_name_and_now",
        "A computed node name asks n8n for every node (dataOfNodes 'all'); _now/_today are "
        "timezone-aware datetimes and dates of other nodes' data come back as ISO strings.",
        "names = ['Cust' + 'omers', 'Ord' + 'ers']\nreturn [{'n': [len(_(n).all()) for n in names],"
        " 'now': _now, 'year': _today.year}]", ALL,
        {"status": 200, "check": (
            "body[0]['n'] == [3, 6] and body[0]['year'] >= 2024"
            " and ('+' in body[0]['now'][19:] or '-' in body[0]['now'][19:])")})
    return out


#: ``make e2e-data-env``: n8n allows env access in nodes, and holds a key to hide.
ENV_PASS = {"N8N_BLOCK_ENV_ACCESS_IN_NODE": "false", "TB14_VISIBLE": "seen",
            "N8N_ENCRYPTION_KEY": "tb14-e2e-throwaway-encryption-key"}
ENV_DIR = HERE.parent / "data_env_cases"

ENV_CODE = """\
return [{"visible": _env.get("TB14_VISIBLE"), "count": len(_env),
         "hidden": [k for k in ("N8N_ENCRYPTION_KEY", "N8N_RUNNERS_AUTH_TOKEN") if k in _env],
         "leaked": [k for k, v in _env.items() if "tb14-e2e-throwaway" in v]}]
"""


def env_cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The case of the second pass (``ENV_PASS`` in n8n's environment)."""
    name = "69_data_env_allowed"
    wf = workflow(name, ENV_CODE, ALL)
    return {name: (wf, {
        "description": "With N8N_BLOCK_ENV_ACCESS_IN_NODE=false on n8n, _env holds n8n's "
                       "environment (a variable set for the run is there) minus its secrets: "
                       "no N8N_ENCRYPTION_KEY, no N8N_RUNNERS_AUTH_TOKEN, no value equal to "
                       "the key.",
        "tier": "extension", "workflow_id": wf["id"],
        "request": {"method": "POST", "path": "tbd-" + name[3:].replace("_", "-"),
                    "body": BODY},
        "expect": {"status": 200, "check": (
            "body[0]['visible'] == 'seen' and body[0]['count'] > 10"
            " and body[0]['hidden'] == [] and body[0]['leaked'] == []")}})}


def _write(folder: Path, built: dict[str, tuple[dict[str, Any], dict[str, Any]]],
           how: str) -> None:
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        if old.is_dir() and old.name[:2].isdigit():
            shutil.rmtree(old)
    for name, (wf, expected) in built.items():
        (folder / name).mkdir()
        for file, data in (("workflow.json", wf), ("expected.json", expected)):
            (folder / name / file).write_text(json.dumps(data, indent=2, ensure_ascii=False)
                                              + "\n")
    rows = "\n".join(f"| {name} | {expected['description']} |"
                     for name, (_, expected) in built.items())
    (folder / "README.md").write_text(
        "# Workflow-data cases (issue 14)\n\nGenerated by `e2e/data_cases/make_cases.py` "
        f"(its docstring shows the workflow); {how}\n\n"
        f"| case | what it shows |\n|---|---|\n{rows}\n")
    print(f"wrote {len(built)} cases into {folder}")


def main() -> None:
    _write(HERE, cases(), "`make e2e` runs them, or alone:\n"
           "`N8N_E2E_CASES_DIR=e2e/data_cases ../shared/n8n-e2e/run.sh .venv/bin/taskbox`.")
    env = " ".join(f"{k}={v}" for k, v in ENV_PASS.items())
    _write(ENV_DIR, env_cases(), "`make e2e` runs them in a pass of their own "
           f"(`make e2e-data-env`), with n8n started with `{env}`.")


if __name__ == "__main__":
    main()
