"""runner:rpc: logNodeOutput, the allowlist, late calls and the node helpers (protocol.md §10, §11)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from taskbox.broker import EmbeddedBroker, RequestOutcome
from taskbox.broker.helpers import call_helper, pretty_bytes
from tests.broker.conftest import FakeRunner, settings


@pytest.fixture
async def running(runner: FakeRunner, broker: EmbeddedBroker
                  ) -> AsyncIterator[tuple[str, asyncio.Task[RequestOutcome]]]:
    """A task accepted by the fake runner and waiting for it to finish."""
    await runner.offer("o1")
    binary = {"data": {"data": base64.b64encode(b"hello world").decode(), "mimeType": "text/plain",
                       "fileName": "hello.txt", "fileSize": "11 B"}}
    pending = asyncio.create_task(broker.submit(settings([{"json": {"a": 1}, "binary": binary},
                                                          {"json": {"b": 2}}])))
    task_id, _ = await runner.accept_next()
    yield task_id, pending
    if not pending.done():
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)


def wire(value: Any) -> Any:
    """A helper's answer as it reads on the wire (Buffers are pre-built JSON fragments)."""
    return orjson.loads(orjson.dumps(value))


async def call(runner: FakeRunner, task_id: str, name: str, *params: Any,
               call_id: str = "c1") -> dict[str, Any]:
    await runner.rpc(task_id, call_id, name, list(params))
    resp = await runner.expect("broker:rpcresponse", timeout=5)
    assert resp["taskId"] == task_id and resp["callId"] == call_id
    return resp


async def test_log_node_output_recorded_and_answered(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]]) -> None:
    task_id, pending = running
    resp = await call(runner, task_id, "logNodeOutput", "'hello from python'", "42")
    assert resp == {"type": "broker:rpcresponse", "taskId": task_id, "callId": "c1",
                    "status": "success"}  # no data key (observed 2.41.1)
    await call(runner, task_id, "logNodeOutput", '{"k": [1, 2]}', call_id="c2")
    await runner.done(task_id, [])
    out = await pending
    assert out.prints == [["'hello from python'", "42"], ['{"k": [1, 2]}']]


async def test_unknown_rpc_is_method_not_allowed(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]]) -> None:
    task_id, _ = running
    for name in ("helpers.evil", "require", "constructor"):
        resp = await call(runner, task_id, name)
        assert (resp["status"], resp["data"]) == ("error", "Method not allowed")


async def test_allowlisted_but_missing_is_could_not_find_method(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]]) -> None:
    task_id, _ = running
    for name in ("helpers.request", "helpers.setBinaryDataBuffer"):
        resp = await call(runner, task_id, name, {})
        assert (resp["status"], resp["data"]) == ("error", "Could not find method")


async def test_rpc_after_done_is_ignored(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]],
        broker: EmbeddedBroker) -> None:
    task_id, pending = running
    await runner.done(task_id, [])
    await pending
    await runner.rpc(task_id, "late", "logNodeOutput", ["x"])
    await runner.rpc(task_id, "late2", "helpers.evil", [])
    await runner.silent(0.15)
    assert broker.runner_ids == [runner.runner_id]


async def test_rpc_before_settings_is_ignored(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    acc = await runner.expect("broker:taskofferaccept")
    await runner.rpc(acc["taskId"], "early", "logNodeOutput", ["x"])
    await runner.silent(0.1)
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def test_late_helper_reply_is_dropped(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]],
        http_server: str) -> None:
    task_id, pending = running
    await runner.rpc(task_id, "slow", "helpers.httpRequest", [{"url": f"{http_server}/slow"}])
    await runner.done(task_id, [])
    await pending
    await runner.silent(0.5)  # the server answers after 0.3 s; the reply must not go out


# --- binary helpers -------------------------------------------------------------------


async def test_get_binary_data_buffer_and_prepare_binary_data_round_trip(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]]) -> None:
    task_id, _ = running
    resp = await call(runner, task_id, "helpers.getBinaryDataBuffer", 0, "data")
    assert resp["status"] == "success"
    buffer = resp["data"]
    assert buffer == {"type": "Buffer", "data": list(b"hello world")}

    resp = await call(runner, task_id, "helpers.prepareBinaryData", buffer, "out/result.txt",
                      call_id="c2")
    assert resp["status"] == "success"
    assert resp["data"] == {
        "mimeType": "text/plain", "fileType": "text", "directory": "out",
        "fileName": "result.txt", "fileExtension": "txt",
        "data": base64.b64encode(b"hello world").decode(), "fileSize": "11 B", "bytes": 11}

    resp = await call(runner, task_id, "helpers.binaryToString", buffer, call_id="c3")
    assert resp["data"] == "hello world"
    resp = await call(runner, task_id, "helpers.assertBinaryData", 0, "data", call_id="c4")
    assert resp["data"]["fileName"] == "hello.txt"


async def test_binary_helper_errors(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]]) -> None:
    task_id, _ = running
    cases = [((1, "data"), "No binary data exists on item!"),
             ((0, "other"), 'Item has no binary property called "other"'),
             ((7, "data"), "Item with index 7 does not exist")]
    for i, (params, message) in enumerate(cases):
        resp = await call(runner, task_id, "helpers.getBinaryDataBuffer", *params,
                          call_id=f"e{i}")
        assert resp["status"] == "error" and resp["data"]["message"] == message
    resp = await call(runner, task_id, "helpers.prepareBinaryData", {"type": "Buffer",
                                                                     "data": [256]},
                      call_id="bad")
    assert resp["status"] == "error"


async def test_prepare_binary_data_sniffs_and_defaults() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000
    status, data = await call_helper("helpers.prepareBinaryData",
                                     [{"type": "Buffer", "data": list(png)}], {})
    assert status == "success"
    assert data["mimeType"] == "image/png" and data["fileType"] == "image"
    assert data["fileExtension"] == "png" and data["fileSize"] == "2.01 kB"
    assert "fileName" not in data
    status, data = await call_helper("helpers.prepareBinaryData",
                                     [{"type": "Buffer", "data": [1, 2, 3]}, None,
                                      "application/json"], {})
    assert data["mimeType"] == "application/json" and data["fileType"] == "json"
    status, data = await call_helper("helpers.prepareBinaryData",
                                     [{"type": "Buffer", "data": [1, 2, 3]}], {})
    assert data["mimeType"] == "text/plain"


async def test_large_buffers_round_trip() -> None:
    blob = bytes(range(256)) * 5000  # 1.28 MB: conversions run in a thread
    items = [{"json": {}, "binary": {"f": {"data": base64.b64encode(blob).decode()}}}]
    status, fragment = await call_helper("helpers.getBinaryDataBuffer", [0, "f"],
                                         {"items": items})
    buffer = wire(fragment)
    assert status == "success" and bytes(buffer["data"]) == blob
    status, prepared = await call_helper("helpers.prepareBinaryData", [buffer, "a.bin"], {})
    assert base64.b64decode(prepared["data"]) == blob
    assert prepared["fileSize"] == "1.28 MB"


def test_pretty_bytes() -> None:
    assert [pretty_bytes(n) for n in (0, 12, 999, 1000, 1024, 1500, 999_500, 10**6, 2 * 10**9)] \
        == ["0 B", "12 B", "999 B", "1 kB", "1.02 kB", "1.5 kB", "1000 kB", "1 MB", "2 GB"]


# --- httpRequest ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout test)
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/json"):
            self._reply(200, json.dumps({"a": 1, "path": self.path}).encode())
        elif self.path == "/text":
            self._reply(200, b"plain words", "text/plain")
        elif self.path == "/bytes":
            self._reply(200, bytes([0, 1, 2, 255]), "application/octet-stream")
        elif self.path == "/slow":
            import time
            time.sleep(0.3)
            self._reply(200, b"{}")
        elif self.path.startswith("/redirect-"):
            target = {"/redirect-file": "file:///etc/passwd",
                      "/redirect-ftp": "ftp://127.0.0.1/x"}[self.path]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(201, json.dumps({"got": json.loads(body),
                                     "ctype": self.headers["Content-Type"]}).encode())


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_http_request_get_post_and_404(
        runner: FakeRunner, running: tuple[str, asyncio.Task[RequestOutcome]],
        http_server: str) -> None:
    task_id, _ = running
    resp = await call(runner, task_id, "helpers.httpRequest",
                      {"url": f"{http_server}/json", "qs": {"x": 1, "y": ["a", "b"]}})
    assert resp["status"] == "success"
    assert resp["data"] == {"a": 1, "path": "/json?x=1&y=a&y=b"}

    resp = await call(runner, task_id, "helpers.httpRequest",
                      {"url": f"{http_server}/post", "method": "POST", "body": {"k": [1, 2]},
                       "json": True, "returnFullResponse": True}, call_id="c2")
    assert resp["status"] == "success"
    full = resp["data"]
    assert full["statusCode"] == 201 and full["headers"]["x-test"] == "yes"
    assert full["body"] == {"got": {"k": [1, 2]}, "ctype": "application/json"}

    resp = await call(runner, task_id, "helpers.httpRequest",
                      {"url": f"{http_server}/missing"}, call_id="c3")
    assert resp["status"] == "error"
    assert resp["data"]["message"] == "Request failed with status code 404"
    assert resp["data"]["status"] == 404


async def test_http_request_options(http_server: str) -> None:
    async def req(**options: Any) -> tuple[str, Any]:
        return await call_helper("helpers.httpRequest", [options], {})

    assert await req(url=f"{http_server}/text") == ("success", "plain words")
    status, data = await req(url=f"{http_server}/bytes", encoding="arraybuffer")
    assert (status, wire(data)) == ("success", {"type": "Buffer", "data": [0, 1, 2, 255]})
    status, data = await req(url=f"{http_server}/missing", ignoreHttpStatusErrors=True,
                             returnFullResponse=True)
    assert status == "success" and data["statusCode"] == 404
    status, data = await req(url="/json", baseURL=http_server)
    assert status == "success" and data["a"] == 1
    status, data = await req(url=f"{http_server}/slow", timeout=50)
    assert status == "error"
    # Only http(s): no file: reads through the broker, directly or by redirect.
    status, data = await req(url="file:///etc/passwd")
    assert status == "error" and "Unsupported protocol" in data["message"]
    status, data = await req(url=f"{http_server}/redirect-file")
    assert status == "error" and data["message"] == "Request failed with status code 302"
    status, data = await req(url=f"{http_server}/redirect-ftp")
    assert status == "error" and "Refusing to follow a redirect" in data["message"]
    status, data = await req(url="http://127.0.0.1:1/")
    assert status == "error"
    assert await call_helper("helpers.httpRequest", ["not options"], {}) == (
        "error", {"message": "httpRequest needs an options object"})
