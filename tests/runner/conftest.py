"""The runner shell against the embedded broker on loopback, with a scripted executor.

``FakeExecutor`` stands in for the sandbox (``ExecutorLike``): each test scripts what a
task does (print, block until released, fail), so the shell's own behaviour (deadlines,
cancels, shutdown, ordering) is tested fast and without a zygote. The real sandbox is
covered by tests/integration and tests/executor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from taskbox.broker import EmbeddedBroker
from taskbox.config import Config
from taskbox.executor.limits import Limits
from taskbox.executor.task import HelperCall, PrintSink, TaskOutcome, TaskSpec
from taskbox.runner import Runner
from tests.utils import MS, running_broker

AUTH = "runner-shell-auth"
Script = Callable[[TaskSpec, PrintSink, HelperCall], Awaitable[TaskOutcome]]


def settings(code: str = "return []", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "nodeMode": "runOnceForAllItems", "items": [],
                           "workflowName": "shell", "nodeName": "Python"}
    out.update(extra)
    return out


async def ok(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
    return TaskOutcome(result=[{"json": {"task": spec.task_id}}])


@dataclass
class Run:
    """One ``run`` call the shell made."""

    spec: TaskSpec
    deadline: float | None
    started_at: float
    cancelled: bool = False


@dataclass
class FakeExecutor:
    """An ``ExecutorLike`` whose tasks do what ``script`` says."""

    script: Script = ok
    start_error: BaseException | None = None
    layers: dict[str, bool] = field(default_factory=lambda: {"fake": True})
    runs: list[Run] = field(default_factory=list)
    closed: bool = False
    start_gate: asyncio.Event | None = None
    run_started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready_workers(self) -> int:
        return 1

    async def start(self) -> dict[str, bool]:
        if self.start_gate is not None:
            await self.start_gate.wait()
        if self.start_error is not None:
            raise self.start_error
        return self.layers

    async def run(self, spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall, *,
                  deadline: float | None = None) -> TaskOutcome:
        record = Run(spec, deadline, asyncio.get_running_loop().time())
        self.runs.append(record)
        self.run_started.set()
        try:
            return await self.script(spec, on_print, on_rpc)
        except asyncio.CancelledError:
            record.cancelled = True
            raise

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Shell:
    broker: EmbeddedBroker
    runner: Runner
    executor: FakeExecutor
    serving: asyncio.Task[int]

    async def stopped(self, bound: float = 5000 * MS) -> int:
        """The runner's exit code, once it has exited (at most ``bound`` seconds)."""
        return await asyncio.wait_for(asyncio.shield(self.serving), bound)

    def frames(self, direction: str, kind: str) -> list[dict[str, Any]]:
        return [e[3] for e in self.broker.events if e[2] == direction and e[3].get("type") == kind]


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with running_broker(AUTH) as b:
        yield b


StartShell = Callable[..., Awaitable[Shell]]


@pytest.fixture
async def start(broker: EmbeddedBroker) -> AsyncIterator[StartShell]:
    shells: list[Shell] = []

    async def _start(executor: FakeExecutor | None = None, *, register: bool = True,
                     task_timeout: float = 30.0, **overrides: Any) -> Shell:
        executor = executor or FakeExecutor()
        config = Config(broker_uri=broker.uri, grant_token=broker.mint_grant_token(),
                        auth_token=AUTH, max_concurrency=2,
                        limits=Limits(task_timeout=task_timeout)).with_overrides(**overrides)
        runner = Runner(config, executor, handle_signals=False)
        shell = Shell(broker, runner, executor, asyncio.create_task(runner.run()))
        shells.append(shell)
        if register:
            await broker.wait_for_runners(1, timeout=5000 * MS)
        return shell

    yield _start
    for shell in shells:
        if not shell.serving.done():
            shell.runner.request_stop()
            shell.runner.request_stop()
            with contextlib.suppress(Exception):
                await shell.stopped()
