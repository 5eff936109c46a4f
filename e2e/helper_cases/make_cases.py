#!/usr/bin/env python3
"""Writes the node-helper cases (issue 6) into ``e2e/helper_cases/<name>/``.

They run through the shared harness (``../shared/n8n-e2e/run.sh``) like
``e2e/cases`` (same folder format, see ``../shared/n8n-e2e/cases/README.md``),
but their workflows are not the one-Python-node skeleton of ``e2e/make_cases.py``:

* binary cases chain two Python nodes: the first makes binary data with
  ``_helpers.prepareBinaryData`` (so n8n stores it in its binary data mode, by id
  in filesystem mode), the second reads it back with ``_helpers.getBinaryDataBuffer``
  and returns new binary data; Respond OK answers with the second node's binary.
* the HTTP case has no Split Out: the Python node sees the webhook item, whose
  ``headers.host`` is n8n's own address. The run's network namespace has only
  loopback, so the only HTTP servers are n8n's: ``/healthz``, a webhook of
  another case (``99_helpers_echo_target``: Webhook -> Respond with the body) and
  a webhook path nobody registered (404). n8n makes the requests; the worker has
  no network.

Numbers 95-99 (taskbox's range is 60-99; ``e2e/cases`` uses the lower ones), so
the workflow ids ``e2etbNN000000000`` do not clash.

Run ``python3 e2e/helper_cases/make_cases.py`` after editing, commit the JSON, and
run them alone with
``N8N_E2E_CASES_DIR=e2e/helper_cases ../shared/n8n-e2e/run.sh .venv/bin/taskbox``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_NODE_NAMESPACE = uuid.UUID("0b7c6a52-2f1e-4d5b-9a3e-7ab0c5e2e006")
ECHO_PATH = "tb-helpers-echo"


def _id(name: str, role: str) -> str:
    return str(uuid.uuid5(_NODE_NAMESPACE, f"{name}:{role}"))


def _node(case: str, role: str, name: str, node_type: str, version: float, x: int,
          parameters: dict[str, Any], y: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": _id(case, role), "name": name, "type": node_type, "typeVersion": version,
            "position": [x, y], "parameters": parameters, **extra}


def _webhook(case: str, path: str) -> dict[str, Any]:
    return _node(case, "webhook", "Webhook", "n8n-nodes-base.webhook", 2.1, 0,
                 {"httpMethod": "POST", "path": path, "responseMode": "responseNode",
                  "options": {}}, webhookId=_id(case, "webhook-path"))


def _split(case: str) -> dict[str, Any]:
    return _node(case, "split", "Split Out", "n8n-nodes-base.splitOut", 1, 220,
                 {"fieldToSplitOut": "body.items", "include": "noOtherFields", "options": {}})


def _python(case: str, name: str, x: int, code: str,
            mode: str = "runOnceForAllItems") -> dict[str, Any]:
    return _node(case, name.lower(), name, "n8n-nodes-base.code", 2, x,
                 {"mode": mode, "language": "pythonNative", "pythonCode": code})


def _respond(case: str, x: int, parameters: dict[str, Any]) -> dict[str, Any]:
    return _node(case, "ok", "Respond OK", "n8n-nodes-base.respondToWebhook", 1.5, x,
                 parameters)


def _chain(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
            for a, b in itertools.pairwise(nodes)}


def _workflow(case: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"e2etb{case[:2]}000000000", "name": f"taskbox e2e {case}", "active": False,
            "settings": {"executionOrder": "v1"}, "nodes": nodes,
            "connections": _chain(nodes), "pinData": {}}


RESPOND_BINARY = {"respondWith": "binary", "responseDataSource": "set", "inputFieldName": "data",
                  "options": {"responseCode": 200}}

MAKE = """\
out = []
for item in _items:
    j = item["json"]
    entry = _helpers.prepareBinaryData(j["text"].encode(), j["name"])
    out.append({"json": {"name": j["name"]}, "binary": {"data": entry}})
return out
"""

READ = """\
out = []
for i, item in enumerate(_items):
    raw = _helpers.getBinaryDataBuffer(i, "data")
    entry = _helpers.prepare_binary_data(raw.upper(), "UP-" + item["json"]["name"], "text/plain")
    out.append({"json": {"name": item["json"]["name"], "n": len(raw),
                         "text": _helpers.binaryToString(raw),
                         "stored_by_id": "id" in item["binary"]["data"]},
                "binary": {"data": entry}})
return out
"""

MAKE_LARGE = """\
size = _item["json"]["size"]
data = bytes(range(256)) * (size // 256)
return {"json": {"size": size}, "binary": {"data": _helpers.prepareBinaryData(data, "big.bin")}}
"""

READ_LARGE = """\
raw = _helpers.getBinaryDataBuffer(_helpers.item_index, "data")
ok = raw == bytes(range(256)) * (len(raw) // 256)
entry = _helpers.prepareBinaryData(raw[::-1], "reversed.bin")
return {"json": {"n": len(raw), "ok": ok, "stored_by_id": "id" in _item["binary"]["data"]},
        "binary": {"data": entry}}
"""

HTTP = f"""\
base = "http://" + _items[0]["json"]["headers"]["host"]
health = _helpers.httpRequest({{"url": base + "/healthz", "json": True}})
echo = _helpers.http_request(url=base + "/webhook/{ECHO_PATH}", method="POST",
                             body={{"a": [1, "é"], "b": None}}, json=True)
full = _helpers.httpRequest({{"url": base + "/healthz", "returnFullResponse": True}})
try:
    _helpers.httpRequest({{"url": base + "/webhook/tb-nobody-registered-this"}})
    missing = None
except _helpers.RpcError as e:
    missing = {{"message": e.message, "status": e.status}}
try:
    _helpers.call("notAHelper")
    refused = None
except _helpers.RpcError as e:
    refused = e.message
return [{{"health": health, "echo": echo, "status": full.get("statusCode"),
          "missing": missing, "refused": refused}}]
"""


def cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (workflow, expected)."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    name = "95_helpers_binary_round_trip"
    out[name] = (_workflow(name, [
        _webhook(name, "tb-helpers-binary"), _split(name),
        _python(name, "Make", 440, MAKE), _python(name, "Read", 660, READ),
        _respond(name, 880, RESPOND_BINARY)]), {
        "description": "prepareBinaryData in one Python node, getBinaryDataBuffer + "
                       "prepareBinaryData + binaryToString in the next (n8n's binary data "
                       "mode in between); Respond OK sends the first item's new binary.",
        "tier": "extension", "workflow_id": "e2etb95000000000",
        "request": {"method": "POST", "path": "tb-helpers-binary",
                    "body": {"items": [{"name": "hello.txt", "text": "hello world"},
                                       {"name": "bye.txt", "text": "bye é"}]}},
        "expect": {"status": 200, "check": "text == 'HELLO WORLD'", "execution": {
            "status": "success",
            "check": "[{k: i['json'][k] for k in ('name', 'n', 'text')} for i in "
                     "run['Read'][0]['data']['main'][0]] == [{'name': 'hello.txt', 'n': 11, "
                     "'text': 'hello world'}, {'name': 'bye.txt', 'n': 6, 'text': 'bye é'}]"
                     " and [(i['binary']['data']['fileName'], i['binary']['data']['mimeType'])"
                     " for i in run['Read'][0]['data']['main'][0]] == [('UP-hello.txt', "
                     "'text/plain'), ('UP-bye.txt', 'text/plain')]"}}})

    name = "96_helpers_large_binary"
    size = 5 * (1 << 20)
    out[name] = (_workflow(name, [
        _webhook(name, "tb-helpers-large"), _split(name),
        _python(name, "Make", 440, MAKE_LARGE, "runOnceForEachItem"),
        _python(name, "Read", 660, READ_LARGE, "runOnceForEachItem"),
        _respond(name, 880, RESPOND_BINARY)]), {
        "description": "5 MiB each way through the helpers (Buffer JSON of ~18 MB on the "
                       "websocket, sent in fragments): per item, make, read back, reverse.",
        "tier": "extension", "workflow_id": "e2etb96000000000",
        "request": {"method": "POST", "path": "tb-helpers-large", "timeout": 60,
                    "body": {"items": [{"size": size}]}},
        "expect": {"status": 200,
                   "check": "len(text) > 5_000_000",
                   "execution": {
                       "status": "success",
                       "check": f"{{k: v for k, v in run['Read'][0]['data']['main'][0][0]"
                                f"['json'].items() if k != 'stored_by_id'}} == "
                                f"{{'n': {size}, 'ok': True}} and run['Read'][0]['data']"
                                f"['main'][0][0]['binary']['data']['fileName'] == "
                                f"'reversed.bin'"}}})

    name = "97_helpers_http_request"
    out[name] = (_workflow(name, [
        _webhook(name, "tb-helpers-http"), _python(name, "Python", 220, HTTP),
        _respond(name, 440, {"respondWith": "allIncomingItems",
                             "options": {"responseCode": 200}})]), {
        "description": "httpRequest made by n8n for the worker (which has no network): GET "
                       "JSON (/healthz), POST JSON to another case's webhook (echo), "
                       "returnFullResponse, a 404 as RpcError, and 'Method not allowed' from "
                       "n8n's allowlist.",
        "tier": "extension", "workflow_id": "e2etb97000000000",
        "request": {"method": "POST", "path": "tb-helpers-http", "body": {"x": 1}},
        "expect": {"status": 200,
                   "check": "body[0]['health'] == {'status': 'ok'} and body[0]['echo'] == "
                            "{'a': [1, 'é'], 'b': None} and body[0]['status'] == 200 and "
                            "body[0]['missing'] is not None and "
                            "body[0]['refused'] == 'Method not allowed'"}})

    name = "99_helpers_echo_target"
    out[name] = (_workflow(name, [
        _webhook(name, ECHO_PATH),
        _respond(name, 220, {"respondWith": "json", "responseBody": "={{ $json.body }}",
                             "options": {"responseCode": 200}})]), {
        "description": "No Python: answers a POST with its JSON body; case 97's target.",
        "tier": "extension", "workflow_id": "e2etb99000000000",
        "request": {"method": "POST", "path": ECHO_PATH, "body": {"ping": [1, "é"]}},
        "expect": {"status": 200, "json": {"ping": [1, "é"]}}})
    return out


def main() -> None:
    for old in HERE.iterdir():
        if old.is_dir() and old.name[:2].isdigit():
            shutil.rmtree(old)
    for name, (workflow, expected) in cases().items():
        folder = HERE / name
        folder.mkdir()
        for file, data in (("workflow.json", workflow), ("expected.json", expected)):
            (folder / file).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    rows = "\n".join(f"| {name} | {expected['description']} |"
                     for name, (_, expected) in cases().items())
    (HERE / "README.md").write_text(
        "# Node-helper cases (issue 6)\n\nGenerated by `make_cases.py` (its docstring "
        "explains the workflows); run alone with\n`N8N_E2E_CASES_DIR=e2e/helper_cases "
        "../shared/n8n-e2e/run.sh .venv/bin/taskbox`.\n\n| case | what it shows |\n"
        f"|---|---|\n{rows}\n")
    print(f"wrote {len(cases())} cases into {HERE}")


if __name__ == "__main__":
    main()
