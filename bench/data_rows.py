"""Workflow-data rows of ``make bench`` (issue 14), and a trivial-task A/B for builds.

Two tasks read another node's data, answered by the embedded broker from a context
(as ``taskbox run --context``), so the figures include the whole path: the worker's
first use -> the runner's ``runner:taskdatarequest`` -> the broker's answer -> the
worker, once per task:

* all items: ``_('Customers').all()`` over a 1,000-item node;
* per item over 1,000 items: ``_('Customers').item`` (each item traced back through
  ``Orders`` to its customer; one request serves the 1,000 runs).

``bench.py`` calls :func:`measure` and :func:`add_rows` (sandboxed side only: the floor
runner has no worker channel). Run alone, this file compares the trivial-task p50 of
two runner commands in alternating rounds on one machine (``--help``)::

    .venv/bin/python bench/data_rows.py --other "env PYTHONPATH=/tmp/main-src .venv/bin/taskbox"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskbox.broker import EmbeddedBroker
from taskbox.broker.workflow_data import link_items, load_context

sys.path.insert(0, str(Path(__file__).resolve().parent))
#: bench/bench.py (imported by name: run as a script, this folder is on sys.path).
bench: Any = importlib.import_module("bench")

ALL_CODE = "rows = _('Customers').all()\nreturn [{'n': len(rows), 'last': rows[-1]['json']['id']}]"
ITEM_CODE = "return {'c': _('Customers').item['json']['id']}"
N = 1_000


def _context(n: int) -> dict[str, Any]:
    return load_context({"nodes": [
        {"name": "Customers", "items": [{"id": i, "name": f"c{i}", "spend": i * 1.5}
                                        for i in range(n)]},
        {"name": "Orders", "items": [{"json": {"order": i}, "pairedItem": n - 1 - i}
                                     for i in range(n)]},
    ]})


async def _timed(broker: EmbeddedBroker, task: dict[str, Any], context: dict[str, Any],
                 runs: int, expect: Any) -> float:
    times = []
    for _ in range(runs):
        out = await broker.submit(task, timeout=bench.SUBMIT_TIMEOUT, context=context)
        if out.result != expect:
            raise RuntimeError(f"unexpected result from {task['code']!r}: "
                               f"{str(out.result or out.error)[:200]}")
        times.append(bench.accept_to_done_ms(out))
    return float(statistics.median(times))


async def measure(broker: EmbeddedBroker, runs: int) -> dict[str, float]:
    """Median accept -> done (ms) of the two data tasks."""
    context = _context(N)
    items = link_items([{"json": {"i": i}} for i in range(N)], context)
    every = bench.settings(ALL_CODE, items)
    each = bench.settings(ITEM_CODE, items, each=True)
    return {
        "all": await _timed(broker, every, context, runs, [{"n": N, "last": N - 1}]),
        "item": await _timed(broker, each, context, runs,
                             [{"json": {"c": N - 1 - i}, "pairedItem": {"item": i}}
                              for i in range(N)]),
    }


def add_rows(table: Any, figures: dict[str, float], runs: int) -> None:
    """The two rows of the bench table (no floor: it has no data path)."""
    nan = float("nan")
    table.add(f"`_('Customers').all()` over a 1,000-item node, all items, accept -> done "
              f"(median of {runs})", figures.get("all", nan), nan, "ms", ".1f")
    table.add(f"`_('Customers').item` per item over 1,000 items (traced through `Orders`), "
              f"accept -> done (median of {runs})", figures.get("item", nan), nan, "ms", ".1f")


async def _trivial_p50(broker: EmbeddedBroker, command: Sequence[str], tag: str,
                       tasks: int) -> float:
    runner = bench.RunnerProcess.spawn(broker, tag, 1, command)
    try:
        await broker.wait_for_runners(1, timeout=30.0)
        await bench.throughput(broker, runner, 50, 1, True)  # warm-up
        times = []
        for _ in range(tasks):
            out = await broker.submit(bench.settings(bench.TRIVIAL), timeout=bench.SUBMIT_TIMEOUT)
            times.append(bench.accept_to_done_ms(out))
        return float(bench.percentile(times, 50))
    finally:
        runner.stop()
        runner.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while tag in broker.runner_ids:
                    await asyncio.sleep(0.02)


async def compare(other: Sequence[str], rounds: int, tasks: int) -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=bench.AUTH_TOKEN,
                            task_timeout=bench.SUBMIT_TIMEOUT, rate_limit=None)
    await broker.start()
    this: list[float] = []
    that: list[float] = []
    try:
        for r in range(rounds):
            for command, into, tag in ((bench.runner_command(), this, "this"),
                                       (other, that, "other")):
                into.append(await _trivial_p50(broker, command, f"ab-{tag}-{r}", tasks))
                bench.log(f"round {r}: {tag} p50 {into[-1]:.3f} ms")
        runner = bench.RunnerProcess.spawn(broker, "data-rows", 1, bench.runner_command())
        try:
            await broker.wait_for_runners(1, timeout=30.0)
            data = await measure(broker, 5)
        finally:
            runner.stop()
            runner.close()
    finally:
        await broker.aclose()
    if rounds:
        print(f"trivial task p50, accept -> done, {tasks} tasks per round, {rounds} rounds "
              f"alternating: this build {statistics.median(this):.3f} ms "
              f"(rounds {', '.join(f'{v:.3f}' for v in this)}), other "
              f"{statistics.median(that):.3f} ms "
              f"(rounds {', '.join(f'{v:.3f}' for v in that)})")
    print(f"_('Customers').all() 1,000 items: {data['all']:.1f} ms; "
          f".item per item over 1,000 items: {data['item']:.1f} ms (median of 5)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trivial-task p50 of this build vs another")
    parser.add_argument("--other", default="", help="the other runner's command line")
    parser.add_argument("--rounds", type=int, default=3,
                        help="A/B rounds (0: only the two data rows of this build)")
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args(argv)
    if args.rounds and not args.other:
        parser.error("--other is needed for the A/B rounds")
    asyncio.run(compare(shlex.split(args.other), args.rounds, args.tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
