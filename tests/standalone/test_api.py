"""``taskbox serve``'s HTTP API through a real HTTP client (aiohttp), a real embedded broker,
runner and sandbox workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from taskbox.api import ApiServer
from taskbox.config import Config
from taskbox.standalone import LocalRunner

TOKEN = "api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _server(slots: int, queue: int | None = None,
                  max_body: int = 1 << 20) -> tuple[LocalRunner, ApiServer]:
    config = Config.from_env({"N8N_RUNNERS_STDLIB_ALLOW": "time",
                              "N8N_RUNNERS_TASK_TIMEOUT": "10",
                              "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warning"})
    local = LocalRunner(config, slots)
    await local.start()
    api = ApiServer(local, TOKEN, "127.0.0.1", 0, max_body=max_body, queue=queue)
    await api.start()
    return local, api


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    local, server = await _server(slots=2)
    try:
        yield server
    finally:
        await server.aclose()
        await local.aclose()


async def post(api: ApiServer, body: Any, headers: dict[str, str] | None = None,
               data: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{api.port}/run", json=None if data is not None else body,
            data=data, headers=AUTH if headers is None else headers) as response:
        return response.status, await response.json()


async def test_run_returns_items_and_prints(api: ApiServer) -> None:
    status, body = await post(api, {"code": "print('n is', _items[0]['json']['n'])\n"
                                            "return [{'double': _items[0]['json']['n'] * 2}]",
                                    "items": [{"n": 21}]})
    assert status == 200, body
    assert body == {"result": [{"json": {"double": 42}}], "prints": ["n is 21"]}


async def test_each_mode_and_defaults(api: ApiServer) -> None:
    status, body = await post(api, {"code": "return {'i': _item['json']['i'] + 1}",
                                    "items": [{"i": 1}, {"i": 2}], "mode": "each"})
    assert status == 200, body
    assert [item["json"] for item in body["result"]] == [{"i": 2}, {"i": 3}]
    status, body = await post(api, {"code": "return _items"})
    assert (status, body["result"]) == (200, [{"json": {}}])


async def test_task_errors_are_422_with_n8ns_error(api: ApiServer) -> None:
    status, body = await post(api, {"code": "x = 1\nraise ValueError('bad value')"})
    assert status == 422
    assert body["kind"] == "error"
    assert body["error"]["message"] == "ValueError: bad value [line 2]"
    assert body["error"]["lineNumber"] == 2
    status, body = await post(api, {"code": "return 42"})
    assert status == 422
    assert body["error"]["message"] == "Code doesn't return items properly"


async def test_continue_on_fail_turns_errors_into_items(api: ApiServer) -> None:
    status, body = await post(api, {"code": "raise ValueError('nope')",
                                    "continue_on_fail": True})
    assert status == 200
    assert body["result"] == [{"json": {"error": "ValueError: nope [line 1]"}}]


async def test_bearer_token_is_required(api: ApiServer) -> None:
    assert (await post(api, {"code": "return []"}, headers={}))[0] == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await post(api, {"code": "return []"}, headers=wrong))[0] == 401
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{api.port}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(("body", "message"), [
    ({"items": []}, "'code' must be a string"),
    ({"code": "return []", "mode": "both"}, "'mode' must be"),
    ({"code": "return []", "items": [1]}, "'items': n8n would refuse these items: Item 0"),
    ({"code": "return []", "continue_on_fail": "yes"}, "'continue_on_fail' must be"),
    ({"code": "return []", "timeout": 3}, "unknown field(s): timeout"),
    ([1], "the body must be a JSON object"),
])
async def test_bad_bodies_are_400(api: ApiServer, body: Any, message: str) -> None:
    status, answer = await post(api, body)
    assert status == 400
    assert message in answer["error"]["message"]


async def test_not_json_is_400(api: ApiServer) -> None:
    status, answer = await post(api, None, data=b"{not json")
    assert status == 400
    assert "unexpected character" in answer["error"]["message"]


async def test_body_size_limit() -> None:
    local, api = await _server(slots=1, max_body=4096)
    try:
        status, body = await post(api, {"code": "return []", "items": [{"s": "x" * 8192}]})
        assert status == 413
        assert "4096" in body["error"]["message"]
    finally:
        await api.aclose()
        await local.aclose()


async def test_concurrency_is_bounded_by_the_slots() -> None:
    local, api = await _server(slots=1, queue=1)
    try:
        slow = {"code": "import time\ntime.sleep(1.0)\nreturn [{'slow': True}]"}
        first = asyncio.create_task(post(api, slow))
        async with asyncio.timeout(10):
            while not local.broker.running_task_ids:
                await asyncio.sleep(0.01)
        second = asyncio.create_task(post(api, {"code": "return [{'second': True}]"}))
        await asyncio.sleep(0.2)  # queued behind the first, not yet at the runner
        assert len(local.broker.running_task_ids) == 1
        status, body = await post(api, {"code": "return []"})
        assert status == 503
        assert "busy" in body["error"]["message"]
        assert (await first)[1]["result"] == [{"json": {"slow": True}}]
        assert (await second)[1]["result"] == [{"json": {"second": True}}]
    finally:
        await api.aclose()
        await local.aclose()


def test_serve_command_prints_a_token_and_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBOX_API_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "taskbox", "serve", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for _ in range(50):  # logs and the token line, whichever stream the logs use
            lines.append(proc.stdout.readline())
            if "HTTP API listening" in lines[-1] or not lines[-1]:
                break
        tokens = [x for x in lines if x.startswith("TASKBOX_API_TOKEN=")]
        assert len(tokens) == 1 and re.fullmatch(r"TASKBOX_API_TOKEN=\S{20,}\n", tokens[0])
        assert "HTTP API listening on http://127.0.0.1:" in lines[-1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
