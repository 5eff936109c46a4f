"""The warm pool's size: small while idle, full under concurrent load, small again after.

What a user notices: an idle runner holds few processes (memory), tasks in parallel
never wait for a fork once the pool has grown, and a ready worker is always there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import psutil
import pytest

from taskbox.executor import Executor, Limits, TaskSpec
from taskbox.executor.pool import IDLE_SHRINK_S, IDLE_WORKERS

pytestmark = pytest.mark.asyncio

CONCURRENCY = 4


def _spec(code: str) -> TaskSpec:
    return TaskSpec("pool", code, "runOnceForAllItems", False, orjson.dumps([]), 0)


async def _rpc(name: str, params: list[Any]) -> tuple[bool, Any]:
    return True, None


def _workers(executor: Executor) -> int:
    """Live children of the zygote (ready or running workers)."""
    assert executor.zygote_pid is not None
    return len(psutil.Process(executor.zygote_pid).children())


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_pool_grows_under_load_and_shrinks_when_idle() -> None:
    limits = Limits(task_timeout=10.0, stdlib_allow=("time",))
    async with Executor(limits, CONCURRENCY) as executor:
        # Idle from the start: only the idle pool is forked.
        await _until(lambda: executor.ready_workers == IDLE_WORKERS)
        await asyncio.sleep(0.3)
        assert _workers(executor) == IDLE_WORKERS

        # One task at a time never needs more than one spare.
        for _ in range(5):
            outcome = await executor.run(_spec("return [{'json': {'ok': True}}]"),
                                         lambda args: None, _rpc)
            assert outcome.ok, outcome.error
        await asyncio.sleep(0.3)
        assert _workers(executor) == 2

        # Tasks in parallel grow it to max_concurrency + 1 (one spare beside each slot).
        slow = _spec("import time\ntime.sleep(1.5)\nreturn [{'json': {'ok': True}}]")
        batch = asyncio.gather(*(executor.run(slow, lambda args: None, _rpc)
                                 for _ in range(CONCURRENCY)))
        await _until(lambda: _workers(executor) == CONCURRENCY + 1)
        outcomes = await batch
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]

        # Idle again: back to the idle pool, surplus workers retired (not reported as
        # failures), and the next task still finds a ready worker.
        await _until(lambda: _workers(executor) == IDLE_WORKERS, timeout=IDLE_SHRINK_S + 5)
        assert executor.ready_workers == IDLE_WORKERS
        outcome = await executor.run(_spec("return [{'json': {'after': 'idle'}}]"),
                                     lambda args: None, _rpc)
        assert outcome.ok and outcome.result == [{"json": {"after": "idle"}}]
