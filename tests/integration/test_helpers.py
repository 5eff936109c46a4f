"""``_helpers`` end to end: user code -> worker -> runner -> embedded broker -> and back.

A loopback HTTP server stands in for the outside world. The worker itself has no
network; only the broker makes the request (issue 6).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from taskbox.broker import EmbeddedBroker
from taskbox.protocol.messages import RPC_METHOD_NOT_ALLOWED as METHOD_NOT_ALLOWED
from taskbox.runner.rpc_router import refusal
from tests.integration.conftest import InProcess, settings, start_runner, stop_runner

SLOW_LIMIT = 20.0  # seconds a /slow request waits at most for the test to release it


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/json"):
            self._reply(200, json.dumps({"hello": "world", "path": self.path}).encode())
        elif self.path == "/bytes":
            self._reply(200, bytes([0, 1, 2, 255]), "application/octet-stream")
        elif self.path == "/slow":
            self.release.wait(SLOW_LIMIT)
            self._reply(200, b'{"slow": true}')
        else:
            self._reply(404, b'{"error": "no such page"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._reply(200, json.dumps({"got": json.loads(body or b"null"),
                                     "type": self.headers.get("Content-Type")}).encode())


@pytest.fixture
def http() -> Iterator[tuple[str, int, threading.Event]]:
    """A loopback HTTP server: (base url, port, event that releases /slow)."""
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://127.0.0.1:{port}", port, release
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def rpc_frames(broker: EmbeddedBroker, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(d, msg) for _, _, d, msg in broker.events
            if msg.get("taskId") == task_id and msg.get("type") in (
                "runner:rpc", "broker:rpcresponse", "runner:taskdone", "runner:taskerror")]


async def test_http_request_get_post_full_response_bytes_and_errors(
        env: InProcess, http: tuple[str, int, threading.Event]) -> None:
    base, _, _ = http
    code = """
base = _items[0]["json"]["base"]
got = _helpers.httpRequest({"url": base + "/json?x=1", "json": True})
posted = _helpers.http_request(url=base + "/echo", method="POST", body={"a": [1, "é"]})
full = _helpers.httpRequest({"url": base + "/json", "returnFullResponse": True})
raw = _helpers.httpRequest({"url": base + "/bytes", "encoding": "arraybuffer"})
try:
    _helpers.httpRequest({"url": base + "/missing"})
    err = None
except _helpers.RpcError as e:
    err = {"message": e.message, "status": e.status, "rpc": isinstance(e, _helpers.RpcError)}
return [{"got": got, "posted": posted, "status": full["statusCode"],
         "raw": list(raw), "is_bytes": isinstance(raw, bytes), "err": err}]
"""
    out = await env.broker.submit(settings(code, [{"base": base}]))
    assert out.ok, out.error
    [item] = out.result
    assert item == {
        "got": {"hello": "world", "path": "/json?x=1"},
        "posted": {"got": {"a": [1, "é"]}, "type": "application/json"},
        "status": 200, "raw": [0, 1, 2, 255], "is_bytes": True,
        "err": {"message": "Request failed with status code 404", "status": 404,
                "rpc": True}}
    # n8n's wire names, and every answer before taskdone (protocol.md §10, §11)
    seen = rpc_frames(env.broker, out.task_id)
    assert [m["name"] for d, m in seen if d == "in" and m["type"] == "runner:rpc"] \
        == ["helpers.httpRequest"] * 5
    assert [m["type"] for _, m in seen][-1] == "runner:taskdone"
    assert sum(1 for _, m in seen if m["type"] == "broker:rpcresponse") == 5


async def test_binary_round_trip_all_items(env: InProcess) -> None:
    code = """
raw = _helpers.getBinaryDataBuffer(0, "data")
entry = _helpers.prepareBinaryData(raw.upper(), "upper.txt", "text/plain")
return [{"json": {"text": _helpers.binaryToString(raw)}, "binary": {"data": entry}}]
"""
    items = [{"json": {"n": 1}, "pairedItem": {"item": 0},
              "binary": {"data": {"data": base64.b64encode(b"hello world").decode(),
                                  "mimeType": "text/plain", "fileName": "a.txt"}}}]
    out = await env.broker.submit({**settings(code), "items": items})
    assert out.ok, out.error
    [item] = out.result
    assert item["json"] == {"text": "hello world"}
    entry = item["binary"]["data"]
    assert base64.b64decode(entry["data"]) == b"HELLO WORLD"
    assert (entry["fileName"], entry["mimeType"], entry["fileSize"]) == \
        ("upper.txt", "text/plain", "11 B")


async def test_binary_round_trip_per_item_and_large(env: InProcess) -> None:
    blobs = [os.urandom(3 * (1 << 20) + 5), b"small"]  # 3 MiB: the sliced, threaded paths
    items = [{"json": {"i": i}, "pairedItem": {"item": i},
              "binary": {"file": {"data": base64.b64encode(blob).decode(),
                                  "mimeType": "application/octet-stream"}}}
             for i, blob in enumerate(blobs)]
    code = """
raw = _helpers.get_binary_data_buffer(_helpers.item_index, "file")
entry = _helpers.prepare_binary_data(raw[::-1], f"r{_helpers.item_index}.bin")
return {"json": {"i": _item["json"]["i"], "n": len(raw)}, "binary": {"file": entry}}
"""
    out = await env.broker.submit({**settings(code, each=True), "items": items})
    assert out.ok, out.error
    assert [it["json"] for it in out.result] == [{"i": 0, "n": len(blobs[0])},
                                                 {"i": 1, "n": 5}]
    assert [it["pairedItem"] for it in out.result] == [{"item": 0}, {"item": 1}]
    for it, blob in zip(out.result, blobs, strict=True):
        assert base64.b64decode(it["binary"]["file"]["data"]) == blob[::-1]


async def test_binary_to_string_is_local(env: InProcess) -> None:
    code = """
return [{"s": _helpers.binaryToString(b"caf\\xc3\\xa9"), "b": _helpers.binary_to_string(b"hi", "base64")}]
"""
    out = await env.broker.submit(settings(code))
    assert out.ok, out.error
    assert out.result == [{"s": "café", "b": "aGk="}]
    assert not [m for d, m in rpc_frames(env.broker, out.task_id) if m["type"] == "runner:rpc"]


async def test_method_not_allowed_and_missing_helpers_raise_rpc_error(env: InProcess) -> None:
    code = """
out = {}
for name in ("notAHelper", "request"):
    try:
        _helpers.call(name, {})
    except _helpers.RpcError as e:
        out[name] = e.message
# the worker cannot smuggle a logNodeOutput (print cap) or any non-helper name out
out["raw"] = list(_helpers._call("logNodeOutput", ["'sneaky'"]))
return [out]
"""
    out = await env.broker.submit(settings(code))
    assert out.ok, out.error
    assert out.result == [{"notAHelper": "Method not allowed",
                           "request": "Could not find method",
                           "raw": [False, "Method not allowed"]}]
    assert out.prints == []
    names = [m["name"] for d, m in rpc_frames(env.broker, out.task_id) if d == "in"
             and m["type"] == "runner:rpc"]
    assert names == ["helpers.notAHelper", "helpers.request"]


def test_runner_forwards_only_helper_names() -> None:
    assert refusal("helpers.httpRequest") is None
    for name in ("logNodeOutput", "helpers.", "evil", ""):
        assert refusal(name) == METHOD_NOT_ALLOWED


async def test_worker_has_no_network_but_http_request_reaches_the_same_port(
        broker: EmbeddedBroker, http: tuple[str, int, threading.Event]) -> None:
    _, port, _ = http
    runner, serving = await start_runner(broker, N8N_RUNNERS_STDLIB_ALLOW="socket")
    try:
        code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    direct = "connected"
except OSError as e:
    direct = str(e)
via = _helpers.httpRequest({{"url": "http://127.0.0.1:{port}/json"}})
return [{{"direct": direct, "via": via["hello"]}}]
"""
        out = await broker.submit(settings(code))
        assert out.ok, out.error
        [item] = out.result
        assert item["direct"] != "connected"
        assert item["via"] == "world"
    finally:
        await stop_runner(runner, serving)


async def test_per_call_timeout_raises_and_the_task_still_answers(
        broker: EmbeddedBroker, http: tuple[str, int, threading.Event]) -> None:
    base, _, release = http
    runner, serving = await start_runner(broker, TASKBOX_RPC_TIMEOUT="1")
    try:
        code = f"""
try:
    _helpers.httpRequest({{"url": "{base}/slow"}})
    return [{{"late": False}}]
except _helpers.RpcError as e:
    return [{{"error": e.message}}]
"""
        out = await asyncio.wait_for(broker.submit(settings(code)), 10)
        assert out.ok, out.error
        assert out.result == [{"error": "Helper call helpers.httpRequest timed out after 1 s"}]
        assert out.done_at - out.submitted_at < 5
        assert runner.session is not None and len(runner.session.router) == 0
        release.set()  # the broker's request finishes now; its reply has nobody to go to
        again = await broker.submit(settings("return [{'ok': 1}]"))
        assert again.result == [{"ok": 1}]
    finally:
        await stop_runner(runner, serving)


async def test_cancel_while_a_call_is_pending(
        env: InProcess, http: tuple[str, int, threading.Event]) -> None:
    base, _, release = http
    code = f"_helpers.httpRequest({{'url': '{base}/slow'}})\nreturn [{{'late': True}}]"
    pending = asyncio.create_task(env.broker.submit(settings(code)))
    _, _, _, rpc = await env.broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:rpc", timeout=10)
    task_id, call_id = rpc["taskId"], rpc["callId"]
    assert await env.broker.cancel(task_id)
    out = await asyncio.wait_for(pending, 10)
    assert not out.ok and "cancelled" in str(out.error).lower()
    # the runner dropped the call: waiter gone, protocol forgot the id
    session = env.runner.session
    assert session is not None and session.executions is not None
    await asyncio.wait_for(session.executions.wait_idle(), 10)
    assert len(session.router) == 0 and len(session.proto.calls) == 0
    # a late reply for that call is ignored
    late = orjson.dumps({"type": "broker:rpcresponse", "taskId": task_id, "callId": call_id,
                         "status": "success", "data": {"slow": True}})
    await env.broker.send_raw(env.runner.runner_id, late)
    release.set()
    again = await env.broker.submit(settings("return [{'ok': 1}]"))
    assert again.result == [{"ok": 1}]
    assert not env.serving.done()


async def test_calls_per_task_are_capped(broker: EmbeddedBroker) -> None:
    runner, serving = await start_runner(broker, TASKBOX_RPC_MAX_CALLS="3")
    try:
        code = """
done, error = 0, None
for _ in range(5):
    try:
        _helpers.prepareBinaryData(b"x")
        done += 1
    except _helpers.RpcError as e:
        error = e.message
return [{"done": done, "error": error}]
"""
        out = await broker.submit(settings(code))
        assert out.ok, out.error
        assert out.result == [{"done": 3, "error": "Too many helper calls: the limit is 3 per "
                                                   "task (TASKBOX_RPC_MAX_CALLS)"}]
        # the cap is per task
        again = await broker.submit(settings(code))
        assert again.result[0]["done"] == 3
    finally:
        await stop_runner(runner, serving)
