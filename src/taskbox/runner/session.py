"""One connection to the broker: its TaskGroup, and what each core event sets off.

A ``Session`` lives from the websocket upgrade to its close. Its TaskGroup owns every
background task of the connection: the write pump, the offer loop, the stop watch and
one task per running task; when the receive pump ends, the rest are cancelled and
awaited before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from taskbox.config import Config
from taskbox.policy import SecurityPolicy
from taskbox.protocol.runner import (
    Accepted,
    CancelTask,
    DrainRequested,
    Registered,
    RpcResult,
    RunnerEvent,
    RunnerProtocol,
    StartTask,
)
from taskbox.runner.connection import Connection
from taskbox.runner.execution import Executions, Sandbox
from taskbox.runner.metrics import Metrics
from taskbox.runner.offer_loop import offer_loop
from taskbox.runner.rpc_router import RpcRouter
from taskbox.runner.shutdown import EXIT_OK, Shutdown

__all__ = ["RUNNER_NAME", "Session"]

log = logging.getLogger("taskbox.runner")

#: Sent in runner:info.
RUNNER_NAME = "taskbox"


class Session:
    """The objects of one connection and the dispatch of its core's events."""

    def __init__(self, ws: Any, config: Config, *, runner_id: str, sandbox: Sandbox,
                 policy: SecurityPolicy, metrics: Metrics, shutdown: Shutdown,
                 registered: asyncio.Event, on_activity: Callable[[], None]) -> None:
        self.config = config
        self.runner_id = runner_id
        self.metrics = metrics
        self.shutdown = shutdown
        self.registered = registered
        self._sandbox = sandbox
        self._policy = policy
        self._on_activity = on_activity
        self.proto = RunnerProtocol(RUNNER_NAME, config.max_concurrency)
        self.conn = Connection(ws, self.proto, config.max_payload, self.handle,
                               on_sent=metrics.on_sent, on_malformed=metrics.malformed_frames.inc)
        self.router = RpcRouter(self.conn)
        self.executions: Executions | None = None

    async def run(self) -> BaseException | None:
        """Serve the connection until it closes; returns why it closed (see receive_pump)."""
        async with asyncio.TaskGroup() as group:
            self.executions = Executions(group, self.conn, self.router, self._sandbox,
                                         self.config, self._policy, self.metrics,
                                         self._on_activity)
            self.shutdown.attach(self.proto, self.executions)
            background = [group.create_task(self.conn.write_pump()),
                          group.create_task(offer_loop(self.conn)),
                          group.create_task(self.shutdown.watch(self.conn, self.executions))]
            try:
                return await self.conn.receive_pump()
            finally:
                self.metrics.broker_connected = False
                self.shutdown.detach()
                self.router.connection_lost()
                self.executions.cancel_all("connection to the broker lost")
                for task in background:
                    task.cancel()

    def handle(self, events: list[RunnerEvent]) -> None:
        """Act on the core's events (called by the connection after each input)."""
        if self.executions is not None:
            self.executions.core_changed()
        for event in events:
            if isinstance(event, StartTask):
                assert self.executions is not None
                self.executions.start(event)
            elif isinstance(event, RpcResult):
                self.router.resolve(event)
            elif isinstance(event, Accepted):
                self.metrics.offers_accepted.inc()
                self._on_activity()
            elif isinstance(event, CancelTask):
                log.info("task %s cancelled by the broker: %s", event.task_id, event.reason,
                         extra={"task_id": event.task_id})
                assert self.executions is not None
                self.executions.cancel(event.task_id, event.reason)
            elif isinstance(event, Registered):
                log.info("registered with the broker as %s (runner id %s)", RUNNER_NAME,
                         self.runner_id)
                self.registered.set()
                self.metrics.broker_connected = True
                self._on_activity()
            elif isinstance(event, DrainRequested):
                log.info("broker:drain received: finishing running tasks, then closing")
                self.shutdown.request("broker:drain", exit_code=EXIT_OK)
