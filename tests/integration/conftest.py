"""Fixtures: the embedded broker on loopback and a real runner (in-process or a child)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from taskbox.broker import EmbeddedBroker
from taskbox.config import Config
from taskbox.runner import Runner
from tests.utils import running_broker

AUTH = "integration-auth-token"


def settings(code: str, items: list[Any] | None = None, *, each: bool = False,
             cof: bool = False) -> dict[str, Any]:
    """Python Code-node settings as n8n sends them."""
    return {
        "code": code,
        "nodeMode": "runOnceForEachItem" if each else "runOnceForAllItems",
        "continueOnFail": cof,
        "items": [{"json": it, "pairedItem": {"item": i}} for i, it in enumerate(items or [])],
        "workflowMode": "manual", "nodeName": "Python", "workflowName": "test",
    }


@dataclass
class InProcess:
    broker: EmbeddedBroker
    runner: Runner
    serving: asyncio.Task[int]
    env: dict[str, str] = field(default_factory=dict)


def runner_env(broker: EmbeddedBroker, **extra: str) -> dict[str, str]:
    env = {
        "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
        "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
        "N8N_RUNNERS_MAX_CONCURRENCY": "4",
        "N8N_RUNNERS_TASK_TIMEOUT": "10",
        "N8N_RUNNERS_STDLIB_ALLOW": "json,math,time,datetime",
        "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "info",
    }
    env.update(extra)
    return env


async def start_runner(broker: EmbeddedBroker, **extra: str) -> tuple[Runner, asyncio.Task[int]]:
    config = Config.from_env(runner_env(broker, **extra))
    runner = Runner(config, handle_signals=False)
    serving = asyncio.create_task(runner.run())
    await broker.wait_for_runners(1, timeout=20)
    return runner, serving


async def stop_runner(runner: Runner, serving: asyncio.Task[int]) -> int:
    runner.request_stop()
    return await asyncio.wait_for(serving, 20)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with running_broker(AUTH) as b:
        yield b


@pytest.fixture
async def env(broker: EmbeddedBroker) -> AsyncIterator[InProcess]:
    runner, serving = await start_runner(broker)
    try:
        yield InProcess(broker, runner, serving)
    finally:
        if not serving.done():
            with contextlib.suppress(Exception):
                await stop_runner(runner, serving)


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    _out: str | None = None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def output(self) -> str:
        if self._out is None:
            out, _ = self.proc.communicate(timeout=10)
            self._out = out.decode(errors="replace")
        return self._out


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start `python -m taskbox` as a child in its own process group; killed at the end."""
    children: list[Child] = []

    def _spawn(env: dict[str, str], *args: str) -> Child:
        full = {k: v for k, v in os.environ.items() if not k.startswith("N8N_")}
        full.update(env)
        proc = subprocess.Popen([sys.executable, "-m", "taskbox", *args], env=full,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        child = Child(proc)
        children.append(child)
        return child

    yield _spawn
    for child in children:
        if child.proc.poll() is None:
            child.kill()
        if child.proc.stdout is not None:
            child.proc.stdout.close()
