"""The runner shell (runner/*.py) against the embedded broker, with a scripted executor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskbox.errors import SandboxUnavailable
from taskbox.executor.task import HelperCall, PrintSink, TaskOutcome, TaskSpec
from taskbox.protocol.runner import ConnectionState
from taskbox.runner import EXIT_ERROR, EXIT_OK
from tests.runner.conftest import FakeExecutor, Shell, StartShell, settings
from tests.utils import MS


def blocking(gate: asyncio.Event) -> Any:
    async def script(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
        await gate.wait()
        return TaskOutcome(result=[{"json": {"released": True}}])
    return script


async def first_run(shell: Shell) -> None:
    await asyncio.wait_for(shell.executor.run_started.wait(), 5000 * MS)


async def test_the_deadline_is_taken_at_accept_not_when_the_sandbox_is_up(
        start: StartShell) -> None:
    gate = asyncio.Event()
    shell = await start(FakeExecutor(start_gate=gate), task_timeout=30.0)
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await shell.broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:taskaccepted", 5000 * MS)
    after_accept = asyncio.get_running_loop().time()
    gate.set()  # the sandbox comes up only now
    assert (await asyncio.wait_for(outcome, 5000 * MS)).ok
    (run,) = shell.executor.runs
    assert run.deadline is not None
    assert run.deadline <= after_accept + 30.0 < run.started_at + 30.0


async def test_prints_go_out_before_the_result(start: StartShell) -> None:
    async def printing(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
        on_print(["'a'"])
        on_print(["'b'", "1"])
        return TaskOutcome(result=[])

    shell = await start(FakeExecutor(printing))
    outcome = await shell.broker.submit(settings())
    assert outcome.ok and outcome.prints == [["'a'"], ["'b'", "1"]]
    sent = [e[3]["type"] for e in shell.broker.events if e[2] == "in"
            and e[3].get("type") in ("runner:rpc", "runner:taskdone")]
    assert sent == ["runner:rpc", "runner:rpc", "runner:taskdone"]
    session = shell.runner.session
    assert session is not None and session.executions is not None
    await asyncio.wait_for(session.executions.wait_idle(), 5000 * MS)
    assert len(session.router) == 0 and len(session.proto.calls) == 0  # nothing kept


async def test_a_broker_cancel_kills_the_run_and_still_reports(start: StartShell) -> None:
    shell = await start(FakeExecutor(blocking(asyncio.Event())))
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    (task_id,) = shell.broker.running_task_ids
    assert await shell.broker.cancel(task_id, "user")
    assert not (await outcome).ok
    report = await shell.broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:taskerror", 5000 * MS)
    assert report[3]["taskId"] == task_id
    assert report[3]["error"]["message"] == "Task was cancelled"
    assert shell.executor.runs[0].cancelled
    # The runner keeps serving.
    shell.executor.script = _ok
    assert (await shell.broker.submit(settings())).ok


async def _ok(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
    return TaskOutcome(result=[{"json": {"again": True}}])


async def test_a_graceful_stop_lets_the_running_task_finish(start: StartShell) -> None:
    gate = asyncio.Event()
    shell = await start(FakeExecutor(blocking(gate)), graceful_shutdown_timeout=30.0)
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    shell.runner.request_stop()
    session = shell.runner.session
    assert session is not None and session.proto.state is ConnectionState.CLOSING
    assert not shell.serving.done()
    gate.set()
    assert (await outcome).result == [{"json": {"released": True}}]
    assert await shell.stopped() == EXIT_OK
    assert not shell.executor.runs[0].cancelled and shell.executor.closed


async def test_past_the_grace_period_stragglers_are_cancelled_and_reported(
        start: StartShell) -> None:
    shell = await start(FakeExecutor(blocking(asyncio.Event())),
                        graceful_shutdown_timeout=50 * MS)
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    shell.runner.request_stop()
    assert await shell.stopped() == EXIT_OK
    result = await asyncio.wait_for(outcome, 5000 * MS)
    assert result.error["message"] == "Task was cancelled"
    assert shell.executor.runs[0].cancelled


async def test_a_second_stop_cancels_at_once(start: StartShell) -> None:
    shell = await start(FakeExecutor(blocking(asyncio.Event())), graceful_shutdown_timeout=600.0)
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    shell.runner.request_stop()
    shell.runner.request_stop()
    assert await shell.stopped() == EXIT_OK  # long before the 600 s grace
    assert (await outcome).error["message"] == "Task was cancelled"


async def test_drain_finishes_the_task_then_exits_ok(start: StartShell) -> None:
    gate = asyncio.Event()
    shell = await start(FakeExecutor(blocking(gate)))
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    await shell.broker.drain()
    await shell.broker.wait_for_event(
        lambda e: e[2] == "out" and e[3].get("type") == "broker:drain", 5000 * MS)
    gate.set()
    assert (await outcome).ok
    assert await shell.stopped() == EXIT_OK


async def test_idle_timeout_stops_the_runner(start: StartShell) -> None:
    shell = await start(auto_shutdown_timeout=100 * MS)
    assert await shell.stopped() == EXIT_OK


async def test_a_sandbox_that_cannot_start_ends_the_runner(start: StartShell) -> None:
    shell = await start(FakeExecutor(start_error=SandboxUnavailable("no seccomp")),
                        register=False)
    assert await shell.stopped() == EXIT_ERROR
    with pytest.raises(Exception, match="failed to start"):
        await shell.runner.sandbox()


async def test_an_executor_failure_is_a_task_error_and_the_runner_goes_on(
        start: StartShell) -> None:
    async def broken(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
        raise RuntimeError("pipe exploded")

    shell = await start(FakeExecutor(broken))
    outcome = await shell.broker.submit(settings())
    assert outcome.error["message"] == "Internal error while running the task: pipe exploded"
    assert outcome.error["description"] == "RuntimeError"
    shell.executor.script = _ok
    assert (await shell.broker.submit(settings())).ok


async def test_bad_settings_never_reach_the_executor(start: StartShell) -> None:
    shell = await start()
    outcome = await shell.broker.submit({"nodeMode": "runOnceForAllItems"})
    assert outcome.error == {"message": "Task settings have no 'code' string",
                             "description": "SettingsError"}
    assert shell.executor.runs == []


async def test_helper_names_outside_helpers_are_refused_in_the_runner(
        start: StartShell) -> None:
    answers: list[tuple[bool, Any]] = []

    async def calling(spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall) -> TaskOutcome:
        answers.append(await on_rpc("logNodeOutput", ["sneaky"]))
        return TaskOutcome(result=[])

    shell = await start(FakeExecutor(calling))
    assert (await shell.broker.submit(settings())).ok
    assert answers == [(False, "Method not allowed")]
    assert shell.frames("in", "runner:rpc") == []  # never left the runner


async def test_no_background_task_outlives_run(start: StartShell) -> None:
    gate = asyncio.Event()
    shell = await start(FakeExecutor(blocking(gate)), graceful_shutdown_timeout=50 * MS)
    pending = asyncio.create_task(shell.broker.submit(settings()))
    await first_run(shell)
    shell.runner.request_stop()
    await shell.stopped()
    await pending
    leftovers = [t for t in asyncio.all_tasks()
                 if "/taskbox/runner/" in t.get_coro().cr_code.co_filename]  # type: ignore[union-attr]
    assert leftovers == []


async def test_a_stop_racing_the_settings_still_runs_and_reports_the_task(
        start: StartShell) -> None:
    # Accepted, settings not yet read, then SIGTERM: the task is owed a result.
    shell = await start(graceful_shutdown_timeout=30.0)
    outcome = asyncio.create_task(shell.broker.submit(settings()))
    await shell.broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:taskaccepted", 5000 * MS)
    shell.runner.request_stop()
    assert (await asyncio.wait_for(outcome, 5000 * MS)).ok
    assert await shell.stopped() == EXIT_OK
    assert len(shell.executor.runs) == 1
