"""Several runner processes on one broker share the work and lose none of it.

The queue-mode shape (protocol.md §15): one broker, several taskbox processes,
each with its own grant token and id. 200 tasks submitted at once must each be
answered exactly once, with their own result, and every runner must take part.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskbox.broker import EmbeddedBroker

RUNNERS = 3
TASKS = 200
CONCURRENCY = 2  # per runner: 6 slots for 200 tasks, so every runner queues work

# Each task has its own input and a result that depends on it, so a result sent
# for the wrong task (or twice) cannot go unnoticed.
CODE = """
n = _items[0]['json']['n']
total = 0
for k in range(2000):
    total += (k * n) % 7
return [{'n': n, 'total': total, 'square': n * n}]
"""


def expected(n: int) -> list[dict[str, int]]:
    return [{"n": n, "total": sum((k * n) % 7 for k in range(2000)), "square": n * n}]


@pytest.fixture
async def one_broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker(host="127.0.0.1", port=0, auth_token="x", events_limit=200_000)
    await b.start()
    try:
        yield b
    finally:
        await b.aclose()


def start_runner(broker: EmbeddedBroker, log: Path) -> subprocess.Popen[bytes]:
    """``python -m taskbox`` with a launcher-like env, in its own process group."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("N8N_", "TASKBOX_"))}
    env.update({
        "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
        "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
        "N8N_RUNNERS_MAX_CONCURRENCY": str(CONCURRENCY),
        "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warning",
    })
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "taskbox"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the runner's process group (it leads it: start_new_session) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def test_three_runners_share_200_tasks(one_broker: EmbeddedBroker, tmp_path: Path) -> None:
    broker = one_broker
    logs = [tmp_path / f"runner-{i}.log" for i in range(RUNNERS)]
    procs = [start_runner(broker, log) for log in logs]
    try:
        try:
            runner_ids = await broker.wait_for_runners(RUNNERS, timeout=30)
        except TimeoutError:
            status = [p.poll() for p in procs]
            output = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
            pytest.fail(f"{len(broker.runner_ids)}/{RUNNERS} runners registered; "
                        f"exit codes {status}\n{output}")
        assert len(set(runner_ids)) == RUNNERS, "runner ids must be distinct"

        async def one(n: int) -> Any:
            return await broker.submit({
                "code": CODE, "nodeMode": "runOnceForAllItems", "continueOnFail": False,
                "items": [{"json": {"n": n}, "pairedItem": {"item": 0}}],
            }, timeout=60)

        outcomes = await asyncio.gather(*(one(n) for n in range(TASKS)))

        # Every task came back, with its own result.
        for n, out in enumerate(outcomes):
            assert out.ok, f"task {n}: {out.error}"
            assert out.result == expected(n), f"task {n} got {out.result}"
        task_ids = [out.task_id for out in outcomes]
        assert len(set(task_ids)) == TASKS

        # On the wire: each task accepted once and answered exactly once, by the runner
        # the broker says held it; no task errors, nothing answered that was not asked.
        events = broker.events
        answers: collections.Counter[str] = collections.Counter()
        accepts: collections.Counter[str] = collections.Counter()
        answered_by: dict[str, str] = {}
        for _, runner_id, direction, message in events:
            if direction != "in":
                continue
            kind = message.get("type")
            if kind in ("runner:taskdone", "runner:taskerror"):
                assert kind == "runner:taskdone", message
                answers[message["taskId"]] += 1
                answered_by[message["taskId"]] = runner_id
            elif kind == "runner:taskaccepted":
                accepts[message["taskId"]] += 1
        assert set(answers) == set(task_ids), "answers for tasks never submitted, or missing"
        assert all(count == 1 for count in answers.values()), \
            [t for t, c in answers.items() if c != 1]
        assert all(accepts[t] == 1 for t in task_ids)
        for out in outcomes:
            assert answered_by[out.task_id] == out.runner_id

        # Every runner took part.
        per_runner = collections.Counter(out.runner_id for out in outcomes)
        assert set(per_runner) == set(runner_ids), per_runner
        assert all(per_runner[r] > 0 for r in runner_ids), per_runner
        assert sum(per_runner.values()) == TASKS

        # And all three are still alive and registered afterwards.
        assert all(p.poll() is None for p in procs)
        assert sorted(broker.runner_ids) == sorted(runner_ids)
    finally:
        for proc in procs:
            stop(proc)
