"""The set-up of n8n's own Python-runner integration tests, rebuilt for taskbox.

n8n's tests (``packages/@n8n/task-runner-python/tests/integration``) start the runner
as a child process, wait for ``Health check server listening on <host>, port <N>`` on
its stdout, and drive it through a bare broker that accepts any token, sends
``broker:inforequest`` on connect, registers on ``runner:info``, accepts the first
offer it has seen, sends the settings on ``runner:taskaccepted`` and records what
comes back. It **never answers** ``runner:rpc``: a runner that waits for its print
answers hangs there. ``SilentBroker`` and ``RunnerProcess`` do the same (written
for taskbox from that description; no code is shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["HEALTH_LINE", "RunnerProcess", "SilentBroker", "node_settings"]

HEALTH_LINE = re.compile(r"^Health check server listening on (\S+), port (\d+)$", re.M)
TASK_TIMEOUT = 2  # n8n's fixture sets N8N_RUNNERS_TASK_TIMEOUT=2


def node_settings(code: str, mode: str = "all_items", items: list[Any] | None = None,
                  continue_on_fail: bool = False) -> dict[str, Any]:
    """Task settings as n8n's fixture builds them (``create_task_settings``)."""
    return {"code": code,
            "nodeMode": {"all_items": "runOnceForAllItems",
                         "per_item": "runOnceForEachItem"}[mode],
            "items": items or [], "continueOnFail": continue_on_fail}


class SilentBroker:
    """Broker on 127.0.0.1:0 that never answers an RPC (as n8n's ``LocalTaskBroker``)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._settings: dict[str, dict[str, Any]] = {}
        self._used: set[str] = set()  # offers accepted once (a runner rejects a reuse)
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.port = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/runners/_ws", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(json.dumps({"type": "broker:inforequest"}))
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            message = json.loads(msg.data)
            self.messages.append(message)
            kind = message.get("type")
            if kind == "runner:info":
                await ws.send_str(json.dumps({"type": "broker:runnerregistered"}))
            elif kind == "runner:taskaccepted":
                task_id = message["taskId"]
                await ws.send_str(json.dumps({"type": "broker:tasksettings", "taskId": task_id,
                                              "settings": self._settings[task_id]}))
            self._changed.set()
        return ws

    async def send_task(self, task_id: str, settings: dict[str, Any]) -> None:
        """Accept an offer the runner made (waiting up to 2 s for one) for this task."""
        self._settings[task_id] = settings
        offer = await self.wait_for(lambda m: m.get("type") == "runner:taskoffer"
                                    and m["offerId"] not in self._used, 2.0, newest=True)
        self._used.add(offer["offerId"])
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"type": "broker:taskofferaccept",
                                            "taskId": task_id, "offerId": offer["offerId"]}))

    async def cancel_task(self, task_id: str, reason: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"type": "broker:taskcancel", "taskId": task_id,
                                            "reason": reason}))

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                       timeout: float, newest: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in (reversed(self.messages) if newest else self.messages):
                if predicate(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def wait_for_result(self, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The task's ``runner:taskdone`` or ``runner:taskerror``."""
        return await self.wait_for(
            lambda m: m.get("taskId") == task_id
            and m.get("type") in ("runner:taskdone", "runner:taskerror"), timeout)

    def results(self, task_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("taskId") == task_id
                and m.get("type") in ("runner:taskdone", "runner:taskerror")]

    def console(self, task_id: str) -> list[list[str]]:
        """The ``logNodeOutput`` params sent for the task (n8n's browser-console args)."""
        return [m["params"] for m in self.messages if m.get("type") == "runner:rpc"
                and m.get("taskId") == task_id and m.get("name") == "logNodeOutput"]

    def new_task_id(self) -> str:
        return secrets.token_urlsafe(6)


class RunnerProcess:
    """``python -m taskbox connect`` started the way n8n's fixture starts its runner."""

    def __init__(self, broker: SilentBroker, **extra_env: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("N8N_")}
        self.env.update({
            "N8N_RUNNERS_GRANT_TOKEN": "test_token",
            "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
            "N8N_RUNNERS_TASK_TIMEOUT": str(TASK_TIMEOUT),
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED": "true",
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT": "0",
            "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "INFO",
        })
        self.env.update(extra_env)
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout = ""
        self.stderr = ""
        self.health_host = ""
        self.health_port = 0
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> None:
        """Start and wait for the health-check line on stdout (n8n waits 5 s)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskbox", "connect", env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self._readers = [asyncio.create_task(self._read(self.proc.stdout, "stdout")),
                         asyncio.create_task(self._read(self.proc.stderr, "stderr"))]
        deadline = time.monotonic() + timeout
        while (match := HEALTH_LINE.search(self.stdout)) is None:
            if time.monotonic() > deadline or self.proc.returncode is not None:
                raise RuntimeError(f"no health-check line on stdout:\n{self.stdout}\n"
                                   f"stderr:\n{self.stderr}")
            await asyncio.sleep(0.05)
        self.health_host, self.health_port = match.group(1), int(match.group(2))

    async def _read(self, stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while line := await stream.readline():
            setattr(self, name, getattr(self, name) + line.decode(errors="replace"))

    @property
    def health_url(self) -> str:
        return f"http://{self.health_host}:{self.health_port}/healthz"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period (the runner's process group)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        for reader in self._readers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, 5)
        return self.proc.returncode
