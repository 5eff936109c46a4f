"""Fault injection: each fault ends with a clear error for its task, and the runner serves on.

Every test injects one fault into a real runner (in-process, or a child process where the
exit code matters) talking to the embedded broker over loopback, checks the exact error
the affected task got, then checks that the next task still succeeds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil
import pytest

from taskbox.broker import EmbeddedBroker
from taskbox.broker.server import RequestOutcome
from taskbox.executor.pool import IDLE_WORKERS
from taskbox.runner import Runner
from tests.integration.conftest import AUTH, runner_env, settings, start_runner, stop_runner

pytestmark = pytest.mark.timeout(60)

BUSY = ("import time\nt = time.time()\nwhile time.time() - t < {s}:\n    pass\n"
        "return [{{'json': {{'done': True}}}}]")
OK_CODE = "return [{'json': {'ok': True}}]"
#: BUSY that prints first: its runner:rpc proves the code runs in a worker.
PRINTING_BUSY = "print('running')\n" + BUSY
REJECT_EXPIRED = "Offer expired - not accepted within validity window"


@contextlib.asynccontextmanager
async def serving(broker: EmbeddedBroker, **env: str) -> AsyncIterator[Runner]:
    """An in-process runner for the duration of the block."""
    runner, task = await start_runner(broker, **env)
    try:
        # Registration does not wait for the sandbox: wait for the (idle) pool, so a
        # fault never hits a zygote that is still starting.
        pool = min(IDLE_WORKERS, runner.config.max_concurrency + 1)
        sandbox = await asyncio.wait_for(runner.sandbox(), 20)
        await until(lambda: sandbox.ready_workers == pool, timeout=20)
        yield runner
    finally:
        if not task.done():
            await stop_runner(runner, task)


async def assert_serves(broker: EmbeddedBroker, runner: Runner | None = None) -> None:
    """The next task succeeds (the runner kept serving after the fault)."""
    out = await broker.submit(settings(OK_CODE), timeout=20)
    assert out.status == "done", out.error
    assert out.result == [{"json": {"ok": True}}]
    if runner is not None:
        assert out.runner_id == runner.runner_id


def metric(runner: Runner, name: str, **labels: str) -> float:
    """A sample from the runner's /metrics registry (0 when never set)."""
    return runner.metrics.sample(name, **labels)


def of_type(broker: EmbeddedBroker, direction: str, kind: str) -> list[dict[str, Any]]:
    return [msg for _, _, d, msg in broker.events if d == direction and msg.get("type") == kind]


async def running(broker: EmbeddedBroker, code: str,
                  **kw: Any) -> tuple[asyncio.Task[RequestOutcome], str]:
    """Submit ``code`` and wait until the runner got its settings; returns (outcome, task id)."""
    before = len(of_type(broker, "out", "broker:tasksettings"))
    pending = asyncio.create_task(broker.submit(settings(code), **kw))
    await broker.wait_for_event(
        lambda e: e[2] == "out" and e[3].get("type") == "broker:tasksettings"
        and len(of_type(broker, "out", "broker:tasksettings")) > before)
    return pending, of_type(broker, "out", "broker:tasksettings")[-1]["taskId"]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the code under test offers no event for."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def code_running(broker: EmbeddedBroker, tasks: int) -> None:
    """Wait until ``tasks`` PRINTING_BUSY tasks run user code (their prints arrived)."""
    await broker.wait_for_event(
        lambda e: len(of_type(broker, "in", "runner:rpc")) >= tasks, timeout=20.0)


async def busy_worker(runner: Runner) -> psutil.Process:
    """The zygote's child running a CPU-bound task: the one that has used real CPU time."""
    zygote_pid = (await runner.sandbox()).zygote_pid  # type: ignore[attr-defined]
    assert zygote_pid is not None
    zygote = psutil.Process(zygote_pid)

    def cpu(p: psutil.Process) -> float:
        with contextlib.suppress(psutil.NoSuchProcess):
            return sum(p.cpu_times()[:2])
        return 0.0

    await until(lambda: any(cpu(p) > 0.2 for p in zygote.children()))
    return max(zygote.children(), key=cpu)


# -- the sandbox side --------------------------------------------------------------------


async def test_worker_sigkilled_from_outside(broker: EmbeddedBroker) -> None:
    async with serving(broker) as runner:
        pending, _ = await running(broker, BUSY.format(s=20))
        worker = await busy_worker(runner)
        worker.send_signal(signal.SIGKILL)
        out = await asyncio.wait_for(pending, 10)
        assert out.status == "error"
        assert out.error["message"] == "Task process was killed by signal SIGKILL"
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_worker_kills_total", cause="signal") == 1


async def test_ready_workers_killed_while_idle(broker: EmbeddedBroker) -> None:
    async with serving(broker) as runner:
        await assert_serves(broker, runner)
        sandbox = await runner.sandbox()
        zygote = psutil.Process(sandbox.zygote_pid)  # type: ignore[attr-defined]
        await until(lambda: sandbox.ready_workers >= IDLE_WORKERS)
        # The ready workers (the pool size moves: it grew for the task and shrinks after
        # 1 s idle), perhaps with the just-used one still being reaped: kill them all.
        idle = zygote.children()
        assert len(idle) >= IDLE_WORKERS
        killed = {worker.pid for worker in idle}
        for worker in idle:
            worker.send_signal(signal.SIGKILL)
        psutil.wait_procs(idle, timeout=5)
        # The zygote reports the deaths and forks replacements (no event for that: poll).
        await until(lambda: sandbox.ready_workers >= IDLE_WORKERS
                    and not {c.pid for c in zygote.children()} & killed)
        outs = await asyncio.gather(*(broker.submit(settings(OK_CODE)) for _ in range(8)))
        assert [o.status for o in outs] == ["done"] * 8, [o.error for o in outs]


@pytest.mark.parametrize("code", [
    "import os\nos.kill(os.getpid(), 11)\nreturn []",
    "import ctypes\nctypes.string_at(0)\nreturn []",
], ids=["os.kill", "ctypes"])
async def test_worker_segfault(broker: EmbeddedBroker, code: str) -> None:
    async with serving(broker, N8N_RUNNERS_STDLIB_ALLOW="os,ctypes") as runner:
        out = await broker.submit(settings(code))
        assert out.status == "error"
        assert out.error["message"] == "Task process was killed by signal SIGSEGV"
        await assert_serves(broker, runner)


async def test_zygote_killed_mid_task(broker: EmbeddedBroker,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskbox")
    async with serving(broker) as runner:
        first, _ = await running(broker, PRINTING_BUSY.format(s=20))
        second, _ = await running(broker, PRINTING_BUSY.format(s=20))
        await code_running(broker, 2)
        old = (await runner.sandbox()).zygote_pid  # type: ignore[attr-defined]
        assert old is not None
        os.kill(old, signal.SIGKILL)
        for pending in (first, second):
            out = await asyncio.wait_for(pending, 10)
            assert out.status == "error"
            assert out.error["message"] == ("The sandbox crashed while the task was running "
                                            "(the sandbox process died); the task did not finish")
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_worker_kills_total", cause="signal") == 2
        new = (await runner.sandbox()).zygote_pid  # type: ignore[attr-defined]
        assert new is not None and new != old
        assert not psutil.pid_exists(old)  # reaped before the replacement started
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    # "died: control socket closed" or "died: exited", whichever the loop noticed first
    assert any(level == logging.ERROR and m.startswith(f"sandbox zygote (pid {old}) died: ")
               for level, m in messages), messages
    assert (logging.WARNING, f"sandbox zygote restarted: pid {new}") in messages, messages


@pytest.mark.parametrize("code", [
    "x = bytearray(2 * 1024 ** 3)\nreturn []",
    "chunks = []\nwhile True:\n    chunks.append(' ' * 1_000_000)",
    "x = [0] * (10 ** 9)\nreturn []",
], ids=["one-block", "gradual", "list"])
async def test_memory_bomb(broker: EmbeddedBroker, code: str) -> None:
    async with serving(broker, TASKBOX_MEMORY_LIMIT_MB="128") as runner:
        out = await broker.submit(settings(code))
        assert out.status == "error"
        assert out.error["message"] == "Task exceeded the memory limit of 128 MiB"
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_worker_kills_total", cause="memory") == 1


async def test_fork_bomb(broker: EmbeddedBroker) -> None:
    async with serving(broker, N8N_RUNNERS_STDLIB_ALLOW="os") as runner:
        out = await broker.submit(settings("import os\nwhile True:\n    os.fork()"))
        assert out.status == "error"
        assert out.error["message"] == ("PermissionError: [Errno 1] Operation not permitted "
                                        "[line 3]")
        await assert_serves(broker, runner)


async def test_infinite_loop_times_out(broker: EmbeddedBroker) -> None:
    async with serving(broker, N8N_RUNNERS_TASK_TIMEOUT="1") as runner:
        started = time.monotonic()
        out = await broker.submit(settings("while True:\n    pass"))
        assert out.status == "error"
        assert out.error["message"] == "Task execution timed out after 1 second"
        assert time.monotonic() - started < 5
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_worker_kills_total", cause="timeout") == 1


@pytest.mark.parametrize("code", [
    "for i in range(200_000):\n    print('x' * 100)\nreturn [{'json': {'n': i}}]",
    "print('x' * 50_000_000)\nreturn [{'json': {'n': 199_999}}]",
], ids=["many-lines", "one-huge-line"])
async def test_print_flood_is_cut(broker: EmbeddedBroker, code: str) -> None:
    async with serving(broker) as runner:
        out = await broker.submit(settings(code))
        assert out.status == "done", out.error
        assert out.result == [{"json": {"n": 199_999}}]
        assert out.prints[-1] == ["[Output truncated - print output exceeded 1048576 bytes]"]
        assert sum(len(p[0]) for p in out.prints[:-1]) <= 1 << 20
        await assert_serves(broker, runner)


@pytest.mark.parametrize(("size", "message"), [
    # The worker measures its result before sending it.
    (2_000_000, "Task result is too large: 2000019 bytes exceeds N8N_RUNNERS_MAX_PAYLOAD "
                "(1048576 bytes)"),
    # Fits in the worker's frame, but not once wrapped in runner:taskdone.
    ((1 << 20) - 40, "Task result is too large for N8N_RUNNERS_MAX_PAYLOAD (1048576 bytes)"),
], ids=["result", "taskdone-envelope"])
async def test_result_over_the_payload_limit(broker: EmbeddedBroker, size: int,
                                             message: str) -> None:
    async with serving(broker, N8N_RUNNERS_MAX_PAYLOAD=str(1 << 20)) as runner:
        out = await broker.submit(settings(f"return [{{'json': {{'s': 'x' * {size}}}}}]"))
        assert out.status == "error"
        assert out.error["message"] == message
        assert broker.runner_ids == [runner.runner_id]  # no oversized frame reached the broker
        await assert_serves(broker, runner)


async def test_print_over_the_payload_limit_is_trimmed_not_fatal(broker: EmbeddedBroker) -> None:
    # The print cap (1 MiB) is above a small payload limit: one big print must neither fail
    # the task nor make the broker drop the runner.
    async with serving(broker, N8N_RUNNERS_MAX_PAYLOAD=str(512 << 10)) as runner:
        out = await broker.submit(settings(
            "print('y' * 600_000)\nprint('small')\nreturn [{'json': {'n': 1}}]"))
        assert out.status == "done", out.error
        assert out.result == [{"json": {"n": 1}}]
        assert out.prints == [["[Output truncated - print output too large]"], ["'small'"]]
        assert broker.runner_ids == [runner.runner_id]
        await assert_serves(broker, runner)


# -- the broker side ---------------------------------------------------------------------


async def test_connection_dropped_mid_task_with_auth_token_reconnects(
        broker: EmbeddedBroker) -> None:
    async with serving(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH) as runner:
        pending, _ = await running(broker, BUSY.format(s=20))
        worker = await busy_worker(runner)
        await broker.disconnect(runner.runner_id)
        out = await asyncio.wait_for(pending, 5)
        assert out.status == "error" and out.error["message"] == "Node execution failed"
        # The broker failed the task, so the runner stops it: its worker is killed.
        await asyncio.to_thread(worker.wait, 5)
        await broker.wait_for_runners(1, timeout=10)
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_reconnects_total") == 1


async def test_connection_dropped_mid_task_without_auth_token_exits_1(
        broker: EmbeddedBroker, spawn: Any) -> None:
    child = spawn(runner_env(broker))
    (runner_id,) = await broker.wait_for_runners(1, timeout=20)
    pending, _ = await running(broker, BUSY.format(s=20))
    await broker.disconnect(runner_id)
    out = await asyncio.wait_for(pending, 5)
    assert out.status == "error" and out.error["message"] == "Node execution failed"
    assert await asyncio.to_thread(child.wait, 15) == 1
    assert "no N8N_RUNNERS_AUTH_TOKEN" in child.output()


async def test_broker_restarted_on_the_same_port() -> None:
    first = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, rate_limit=1000.0)
    await first.start()
    port = first.port
    second = EmbeddedBroker(host="127.0.0.1", port=port, auth_token=AUTH, rate_limit=1000.0)
    try:
        async with serving(first, N8N_RUNNERS_AUTH_TOKEN=AUTH) as runner:
            pending, _ = await running(first, BUSY.format(s=20))
            worker = await busy_worker(runner)
            await first.aclose()
            out = await asyncio.wait_for(pending, 5)
            assert out.status == "error"
            assert out.error == {"message": "Node execution failed",
                                 "description": "The task broker is shutting down"}
            await asyncio.to_thread(worker.wait, 5)  # the failed task's worker is killed
            await second.start()
            await second.wait_for_runners(1, timeout=15)
            await assert_serves(second, runner)
            assert metric(runner, "taskbox_reconnects_total") == 1
    finally:
        await first.aclose()
        await second.aclose()


async def test_malformed_frames_are_skipped(broker: EmbeddedBroker) -> None:
    async with serving(broker) as runner:
        frames: list[str | bytes] = [
            "", "not json", "[]", "null", "42", '"str"', "{", '{"type": 7}',
            '{"type":"broker:taskofferaccept"}', '{"type":"broker:tasksettings","taskId":1}',
            '{"type":"broker:rpcresponse","callId":"nope","status":"success"}',
            '{"type":"broker:taskcancel","taskId":null}', '{"type":"broker:future"}',
            "[" * 100_000, '{"a":' * 10_000, "\ud800".encode("utf-8", "surrogatepass"),
            b"\xff\xfe\x00garbage", '{"type":"broker:taskofferaccept","taskId":"t","offerId":{}}',
        ]
        for frame in frames:
            await broker.send_raw(runner.runner_id, frame, binary=isinstance(frame, bytes))
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_malformed_frames_total") >= 10
        assert broker.runner_ids == [runner.runner_id]


async def test_oversized_frame_with_auth_token_reconnects(broker: EmbeddedBroker) -> None:
    async with serving(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH,
                       N8N_RUNNERS_MAX_PAYLOAD=str(1 << 20)) as runner:
        pending, _ = await running(broker, BUSY.format(s=20))
        await broker.send_raw(runner.runner_id, '{"type":"x","pad":"' + "x" * (2 << 20) + '"}')
        out = await asyncio.wait_for(pending, 10)
        assert out.status == "error" and out.error["message"] == "Node execution failed"
        await broker.wait_for_runners(1, timeout=10)
        await assert_serves(broker, runner)


async def test_oversized_frame_without_auth_token_exits_1(broker: EmbeddedBroker,
                                                          spawn: Any) -> None:
    child = spawn(runner_env(broker, N8N_RUNNERS_MAX_PAYLOAD=str(1 << 20)))
    (runner_id,) = await broker.wait_for_runners(1, timeout=20)
    await broker.send_raw(runner_id, "x" * (2 << 20))
    assert await asyncio.to_thread(child.wait, 15) == 1
    output = child.output()
    assert "sent 1009 (message too big)" in output
    assert "no N8N_RUNNERS_AUTH_TOKEN" in output


async def test_200_accepts_for_expired_offers(broker: EmbeddedBroker) -> None:
    async with serving(broker) as runner:
        for i in range(200):
            await broker.send_raw(
                runner.runner_id,
                f'{{"type":"broker:taskofferaccept","taskId":"bogus-{i}","offerId":"gone-{i}"}}')
        await broker.wait_for_event(lambda e: e[3].get("taskId") == "bogus-199"
                                    and e[3].get("type") == "runner:taskrejected")
        rejected = [m for m in of_type(broker, "in", "runner:taskrejected")
                    if m["taskId"].startswith("bogus-")]
        assert len(rejected) == 200
        assert {m["reason"] for m in rejected} == {REJECT_EXPIRED}
        assert sorted(m["taskId"] for m in rejected) == sorted(f"bogus-{i}" for i in range(200))
        await assert_serves(broker, runner)
        assert metric(runner, "taskbox_offers_rejected_total", reason=REJECT_EXPIRED) == 200


async def test_1000_cancels_for_unknown_tasks(broker: EmbeddedBroker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    async with serving(broker) as runner:
        caplog.clear()
        caplog.set_level(logging.DEBUG, "taskbox")
        for i in range(1000):
            await broker.send_raw(runner.runner_id,
                                  f'{{"type":"broker:taskcancel","taskId":"nope-{i}",'
                                  '"reason":"gone"}')
        await assert_serves(broker, runner)
        about = [r for r in caplog.records if "nope-" in r.getMessage()]
        assert len(about) == 1000
        assert {r.levelno for r in about} == {logging.DEBUG}
        assert not [m for m in broker.events if m[2] == "in" and "nope-" in str(m[3])]


async def test_sigterm_under_load(spawn: Any) -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, rate_limit=1000.0,
                            events_limit=100_000)
    await broker.start()
    try:
        child = spawn(runner_env(broker, N8N_RUNNERS_MAX_CONCURRENCY="8",
                                 N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT="5"))
        (first_id,) = await broker.wait_for_runners(1, timeout=20)
        codes = [PRINTING_BUSY.format(s=1).replace("True}", f"{i}}}") for i in range(20)]
        pending = [asyncio.create_task(broker.submit(settings(c))) for c in codes]
        await code_running(broker, 8)
        in_flight = {m["taskId"] for m in of_type(broker, "out", "broker:tasksettings")}
        signalled = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(child.wait, 15) == 0
        assert time.monotonic() - signalled < 5 + 2  # within the grace period
        # Every task in flight at SIGTERM finished and was reported before the exit.
        answered = [(m["type"], m["taskId"]) for _, rid, d, m in broker.events
                    if rid == first_id and d == "in"
                    and m.get("type") in ("runner:taskdone", "runner:taskerror")]
        assert sorted(answered) == sorted(("runner:taskdone", t) for t in in_flight)
        # The queued ones were never lost: another runner picks them up.
        runner, task = await start_runner(broker)
        try:
            outs = await asyncio.wait_for(asyncio.gather(*pending), 30)
        finally:
            await stop_runner(runner, task)
        assert [o.result for o in outs] == [[{"json": {"done": i}}] for i in range(20)]
        by_runner = collections.Counter(o.runner_id for o in outs)
        assert by_runner[first_id] == len(in_flight) == 8
        assert {o.task_id for o in outs if o.runner_id == first_id} == in_flight
        answers = collections.Counter(
            m["taskId"] for _, _, d, m in broker.events
            if d == "in" and m.get("type") in ("runner:taskdone", "runner:taskerror"))
        assert set(answers.values()) == {1} and len(answers) == 20
    finally:
        await broker.aclose()


async def test_sigterm_with_a_task_outliving_the_grace_period(broker: EmbeddedBroker,
                                                               spawn: Any) -> None:
    child = spawn(runner_env(broker, N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT="1"))
    await broker.wait_for_runners(1, timeout=20)
    pending, _ = await running(broker, BUSY.format(s=30))
    signalled = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    out = await asyncio.wait_for(pending, 10)
    assert out.status == "error" and out.error["message"] == "Task was cancelled"
    assert await asyncio.to_thread(child.wait, 10) == 0
    assert time.monotonic() - signalled < 1 + 3
