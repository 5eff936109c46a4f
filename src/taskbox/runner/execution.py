"""Task execution: from ``StartTask`` to exactly one taskdone or taskerror.

One asyncio task per accepted task, created in the session's TaskGroup, and one deadline
for it, taken at accept (``StartTask.accepted_at`` + the task timeout) and enforced by
the executor's single ``timeout_at`` scope. No shields: a cancel from the broker or from
shutdown is ``Execution.cancel(reason)``, which cancels the sandbox step only; the task
then still reports ``Task was cancelled``. A cancel without a reason (the session's
TaskGroup going down) propagates.

``Sandbox`` is the executor as tasks see it: it starts after registration (cold start),
and a task accepted meanwhile waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from taskbox.config import Config
from taskbox.errors import ConnectionClosed, SandboxCrashed, SettingsError
from taskbox.executor.task import HelperCall, PrintSink, TaskOutcome, TaskSpec, failure
from taskbox.policy import SecurityPolicy
from taskbox.protocol.messages import MSG_CANCELLED
from taskbox.protocol.runner import StartTask
from taskbox.runner.connection import Connection
from taskbox.runner.dispatch import build_spec, precheck
from taskbox.runner.metrics import Metrics
from taskbox.runner.rpc_router import RpcRouter, TaskChannel

__all__ = ["Execution", "Executions", "ExecutorLike", "Sandbox"]

log = logging.getLogger("taskbox.runner")



class ExecutorLike(Protocol):
    layers: dict[str, bool]

    @property
    def ready_workers(self) -> int: ...

    async def start(self) -> dict[str, bool]: ...
    async def run(self, spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall, *,
                  deadline: float | None = None) -> TaskOutcome: ...
    async def aclose(self) -> None: ...


class Sandbox:
    """The executor once started; tasks accepted before that wait for it."""

    def __init__(self, executor: ExecutorLike | None = None) -> None:
        self.executor = executor
        self.error: BaseException | None = None
        self._up = asyncio.Event()

    def started(self, executor: ExecutorLike) -> None:
        self.executor = executor
        self._up.set()

    def failed(self, exc: BaseException) -> None:
        self.error = exc
        self._up.set()

    async def get(self) -> ExecutorLike:
        """The running executor.

        Raises:
            SandboxCrashed: it failed to start.
        """
        await self._up.wait()
        if self.error is not None:
            raise SandboxCrashed(f"the sandbox failed to start: {self.error}") from self.error
        assert self.executor is not None
        return self.executor


class Execution:
    """One running task: its asyncio task and why it is being cancelled, if it is."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.cancel_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.in_sandbox = False

    def cancel(self, reason: str) -> None:
        """Stop the sandbox step; the task still reports a result."""
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        if self.in_sandbox and self.task is not None:
            self.task.cancel()


class Executions:
    """Every running task of one connection, each in the session's TaskGroup."""

    def __init__(self, group: asyncio.TaskGroup, conn: Connection, router: RpcRouter,
                 sandbox: Sandbox, config: Config, policy: SecurityPolicy, metrics: Metrics,
                 on_task_end: Callable[[], None]) -> None:
        self._group = group
        self._conn = conn
        self._router = router
        self._sandbox = sandbox
        self._config = config
        self._policy = policy
        self._metrics = metrics
        self._on_task_end = on_task_end
        self._running: dict[str, Execution] = {}
        self._changed = asyncio.Event()  # a task started or ended, or the core moved

    def __len__(self) -> int:
        return len(self._running)

    def start(self, event: StartTask) -> None:
        execution = Execution(event.task_id)
        self._running[event.task_id] = execution
        self._changed.set()
        execution.task = self._group.create_task(self._execute(execution, event))

    def cancel(self, task_id: str, reason: str) -> None:
        execution = self._running.get(task_id)
        if execution is not None:
            execution.cancel(reason)

    def cancel_all(self, reason: str) -> None:
        for execution in list(self._running.values()):
            execution.cancel(reason)

    def __bool__(self) -> bool:
        """Anything accepted and not finished: running here, or waiting for its settings."""
        return bool(self._running) or self._conn.proto.busy > 0

    def core_changed(self) -> None:
        """The core took an input (a task may have arrived, or been cancelled while waiting)."""
        self._changed.set()

    async def wait_idle(self) -> None:
        """Return once nothing is accepted and unfinished.

        An accepted task still waiting for its settings counts: a stop that raced
        broker:tasksettings must not close the connection under it.
        """
        while self:
            self._changed.clear()
            await self._changed.wait()

    # -- one task ------------------------------------------------------------------------

    async def _execute(self, execution: Execution, event: StartTask) -> None:
        task_id = event.task_id
        started = self._conn.now()
        channel = TaskChannel(self._router, task_id, timeout=self._config.rpc_timeout,
                              max_calls=self._config.rpc_max_calls,
                              max_payload=self._config.max_payload
                              ).with_data(str(event.settings.get("code", "")))
        extra: dict[str, Any] = {"task_id": task_id}
        try:
            try:
                outcome = await self._outcome(execution, event, channel, extra)
            except Exception as exc:  # a bug of ours: still answer the task, keep the session
                log.exception("task %s failed in the runner", task_id, extra=extra)
                outcome = TaskOutcome(error={"message": f"Internal error in the runner: {exc}",
                                             "description": type(exc).__name__}, kind="error")
            await channel.prints_answered()
            duration = self._conn.now() - started
            self._metrics.observe_task(outcome.kind, duration)
            sent = await self._report(task_id, outcome,
                                      channel.data.extras if channel.data else None)
            log.info("task %s finished: %s in %.1f ms%s", task_id, outcome.kind,
                     duration * 1000,
                     "" if sent else " (not reported: the broker already dropped it)",
                     extra={**extra, "duration_ms": round(duration * 1000, 3),
                            "event": "task_end", "outcome": outcome.kind})
        finally:
            channel.close()
            del self._running[task_id]
            self._changed.set()
            self._on_task_end()

    async def _outcome(self, execution: Execution, event: StartTask, channel: TaskChannel,
                       extra: dict[str, Any]) -> TaskOutcome:
        """Settings -> spec -> static checks -> sandbox; every failure is an outcome."""
        try:
            spec = build_spec(event.task_id, event.settings)
        except SettingsError as exc:
            log.debug("task %s started", event.task_id, extra={**extra, "event": "task_start"})
            return TaskOutcome(error={"message": str(exc), "description": "SettingsError"},
                               kind="error")
        extra.update(workflow_id=spec.workflow_id, workflow_name=spec.workflow_name,
                     node_id=spec.node_id, node_name=spec.node_name)
        log.debug("task %s started", event.task_id, extra={**extra, "event": "task_start"})
        outcome = precheck(spec, self._policy)
        if outcome is not None:
            return outcome
        deadline = event.accepted_at + self._config.limits.task_timeout
        return await self._run_sandboxed(execution, spec, channel, deadline)

    async def _run_sandboxed(self, execution: Execution, spec: TaskSpec, channel: TaskChannel,
                             deadline: float) -> TaskOutcome:
        execution.in_sandbox = True
        try:
            if execution.cancel_reason is not None:
                raise asyncio.CancelledError  # cancelled before it could start
            executor = await self._sandbox.get()
            return await executor.run(spec, channel.on_print, channel.on_rpc, deadline=deadline)
        except asyncio.CancelledError:
            if execution.cancel_reason is None:  # the session is going down: propagate
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
            return failure(spec, MSG_CANCELLED, "TaskCancelled", kind="cancelled")
        except Exception as exc:  # the executor itself broke: still answer the task
            log.exception("executor failed on task %s", spec.task_id,
                          extra={"task_id": spec.task_id})
            return failure(spec, f"Internal error while running the task: {exc}",
                           type(exc).__name__, kind="error")
        finally:
            execution.in_sandbox = False

    async def _report(self, task_id: str, outcome: TaskOutcome,
                      extras: dict[str, Any] | None = None) -> bool:
        """Send the one taskdone or taskerror; False if the broker can no longer get it.

        ``extras``: customData / staticData for taskdone (runner/workflow_data.py).
        """
        with contextlib.suppress(ConnectionClosed):
            async with self._conn.send_context() as proto:
                if outcome.ok:
                    result = (orjson.Fragment(outcome.result_json)
                              if outcome.result_json is not None else outcome.result)
                    return proto.finish_task(task_id, self._conn.now(), result=result,
                                             extras=extras)
                return proto.finish_task(task_id, self._conn.now(), error=outcome.error)
        return False
