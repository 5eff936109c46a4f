"""Spawning the zygote before the event loop runs (``taskbox connect`` does it at start).

What a user notices: the sandbox loads while the runner is still importing and
connecting, so the first task is served sooner; and a runner that stops before it
ever finished the start-up leaves no zygote behind.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import psutil

from taskbox.executor import Executor, Limits, TaskSpec


def _spec() -> TaskSpec:
    return TaskSpec("early", "return [{'json': {'ok': True}}]", "runOnceForAllItems", False,
                    orjson.dumps([]), 0)


async def _rpc(name: str, params: list[Any]) -> tuple[bool, Any]:
    return True, None


def _zygotes_of(pid: int) -> list[psutil.Process]:
    return [child for child in psutil.Process(pid).children()
            if "taskbox_sandbox.zygote" in " ".join(child.cmdline())]


def test_a_zygote_spawned_before_the_loop_is_the_one_that_serves() -> None:
    executor = Executor(Limits(task_timeout=10.0), 2)
    executor.spawn()  # no event loop yet
    spawned = _zygotes_of(psutil.Process().pid)
    assert len(spawned) == 1

    async def serve() -> tuple[bool, int | None]:
        try:
            await executor.start()
            outcome = await executor.run(_spec(), lambda args: None, _rpc)
            return outcome.ok, executor.zygote_pid
        finally:
            await executor.aclose()

    ok, pid = asyncio.run(serve())
    assert ok
    assert pid == spawned[0].pid  # start() finished the handshake; no second zygote
    assert not spawned[0].is_running()


def test_a_spawned_zygote_is_reaped_when_start_never_comes() -> None:
    executor = Executor(Limits(task_timeout=10.0), 2)
    executor.spawn()
    executor.spawn()  # idempotent: still one process
    spawned = _zygotes_of(psutil.Process().pid)
    assert len(spawned) == 1
    asyncio.run(executor.aclose())
    assert not spawned[0].is_running()
