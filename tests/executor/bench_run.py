"""Micro-benchmark: ``await executor.run(trivial spec)`` at concurrency 1.

Not a test (no timing asserts anywhere). Run from the repo root::

    .venv/bin/python -m tests.executor.bench_run [gap_ms ...]

``gap_ms`` is an idle pause before each run (0 = back to back). Prints the
median, p90 and minimum of 200 runs per gap.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import orjson

from taskbox.executor import Executor, Limits, TaskSpec

RUNS = 200


async def _rpc(name: str, params: list[Any]) -> tuple[bool, Any]:
    return True, None


async def main(gaps_ms: list[float]) -> None:
    spec = TaskSpec("bench", "return [{'a': it['json']['a'] + 1} for it in _items]",
                    "runOnceForAllItems", False, orjson.dumps([{"json": {"a": 1}}]), 1)
    async with Executor(Limits(task_timeout=10, stdlib_allow=("json",)), 1) as executor:
        await asyncio.sleep(0.3)
        for _ in range(10):
            await executor.run(spec, lambda args: None, _rpc)
        for gap in gaps_ms:
            times: list[float] = []
            for _ in range(RUNS):
                if gap:
                    await asyncio.sleep(gap / 1000)
                start = time.perf_counter()
                outcome = await executor.run(spec, lambda args: None, _rpc)
                times.append((time.perf_counter() - start) * 1000)
                assert outcome.ok, outcome
            times.sort()
            print(f"gap {gap:g} ms: n={RUNS} median {statistics.median(times):.2f} ms, "
                  f"p90 {times[int(RUNS * 0.9)]:.2f} ms, min {times[0]:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main([float(a) for a in sys.argv[1:]] or [0.0, 5.0, 20.0]))
