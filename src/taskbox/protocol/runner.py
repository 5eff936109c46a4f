"""RunnerProtocol: the runner side of the broker protocol, without I/O.

Three-call contract (as in h11 and websockets' sans-I/O cores): feed inputs with
``receive_message(msg, now)`` and ``tick(now)``, then drain ``messages_to_send()``
and ``events_received()`` straight away, every time. The accept/reject answer is
produced inside ``receive_message`` so the caller sends it in the same event-loop
turn (the broker waits only 2 s, protocol.md §12).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from taskbox.protocol import messages as m
from taskbox.protocol.offers import OfferBook, OfferConfig
from taskbox.protocol.rpc import PendingCalls
from taskbox.protocol.tasks import TaskEvent, TaskStatus, TaskTable

__all__ = [
    "CancelTask", "DrainRequested", "Event", "Registered", "RpcResult", "RunnerProtocol",
    "StartTask",
]

log = logging.getLogger("taskbox.protocol")


@dataclass(frozen=True, slots=True)
class Registered:
    """broker:runnerregistered arrived; offers have started."""


@dataclass(frozen=True, slots=True)
class StartTask:
    """A waiting task got its settings: execute it."""

    task_id: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CancelTask:
    """The broker cancelled a running task: kill its process tree."""

    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RpcResult:
    """A broker:rpcresponse matched one of our calls."""

    task_id: str
    call_id: str
    ok: bool
    data: Any


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """broker:drain: offers stopped; finish running tasks, then close."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A task was accepted (resets the idle timer)."""

    task_id: str


Event = Registered | StartTask | CancelTask | RpcResult | DrainRequested | Accepted


class RunnerProtocol:
    """Offers, accepts, task states and RPC ids for one broker connection."""

    def __init__(self, name: str, max_concurrency: int,
                 offer_config: OfferConfig | None = None, offers: OfferBook | None = None,
                 task_type: str = "python") -> None:
        self.name = name
        self.task_type = task_type
        self.offers = offers or OfferBook(max_concurrency, offer_config)
        self.tasks = TaskTable()
        self.calls = PendingCalls()
        self.registered = False
        self.offering = False
        self.closing = False  # draining or shutting down: reject every accept
        self._out: list[m.RunnerMessage] = []
        self._events: list[Event] = []

    # -- outputs -------------------------------------------------------------------

    def messages_to_send(self) -> list[m.RunnerMessage]:
        """Messages produced by the last inputs; send them now, in order."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        """Events produced by the last inputs; act on them now."""
        events, self._events = self._events, []
        return events

    @property
    def busy(self) -> int:
        """Accepted tasks holding a slot (waiting or running)."""
        return len(self.tasks)

    # -- inputs --------------------------------------------------------------------

    def receive_message(self, msg: m.BrokerMessage, now: float) -> None:
        """Feed one parsed broker message."""
        if isinstance(msg, m.InfoRequest):
            self._out.append(m.RunnerInfo(self.name, [self.task_type]))
        elif isinstance(msg, m.RunnerRegistered):
            self.registered = True
            self.offering = not self.closing
            self._events.append(Registered())
            self.tick(now)
        elif isinstance(msg, m.TaskOfferAccept):
            self._accept(msg, now)
        elif isinstance(msg, m.TaskSettings):
            self._settings(msg)
        elif isinstance(msg, m.TaskCancel):
            self._cancel(msg, now)
        elif isinstance(msg, m.RpcResponse):
            if self.calls.resolve(msg.call_id, msg.task_id):
                self._events.append(
                    RpcResult(msg.task_id, msg.call_id, msg.status == "success", msg.data))
            else:
                log.debug("rpc response for unknown call %s ignored", msg.call_id)
        elif isinstance(msg, m.TaskDataResponse):
            # Answers share the RPC id book and event: the waiter does not care which.
            if self.calls.resolve(msg.request_id, msg.task_id):
                self._events.append(RpcResult(msg.task_id, msg.request_id, True, msg.data))
            else:
                log.debug("data response for unknown request %s ignored", msg.request_id)
        elif isinstance(msg, m.Drain):
            self.stop_offering()
            self._events.append(DrainRequested())

    def tick(self, now: float) -> None:
        """Periodic offer refresh (every OFFER_INTERVAL)."""
        if self.offering:
            self._out.extend(self.offers.top_up(now, self.busy))
        else:
            self.offers.expire(now)

    def stop_offering(self) -> None:
        """Draining or shutting down: no more offers, reject every accept."""
        self.closing = True
        self.offering = False
        self.offers.clear()

    def finish_task(self, task_id: str, now: float, *, result: Any = None,
                    error: dict[str, Any] | None = None,
                    extras: dict[str, Any] | None = None) -> bool:
        """Report a task's outcome: exactly one taskdone or taskerror.

        Returns:
            False if the task is unknown (already finished or cancelled while waiting).
        """
        if task_id not in self.tasks:
            return False
        if error is None:
            self.tasks.apply(task_id, TaskEvent.DONE)
            # extras: customData / staticData from workflow data access (issue 14).
            self._out.append(m.TaskDone(task_id, {"result": result, **(extras or {})}))
        else:
            self.tasks.apply(task_id, TaskEvent.ERROR)
            self._out.append(m.TaskErrorReport(task_id, error))
        self.calls.drop_task(task_id)
        self.tick(now)
        return True

    def send_rpc(self, task_id: str, name: str, params: list[Any]) -> str:
        """Queue a runner:rpc for a task; returns its call id."""
        call_id = self.calls.open(task_id)
        self._out.append(m.RpcCall(call_id, task_id, name, params))
        return call_id

    def send_data_request(self, task_id: str, params: dict[str, Any]) -> str:
        """Queue a runner:taskdatarequest for a task; returns its request id.

        The answer arrives as an ``RpcResult`` with that id (ok, data).
        """
        request_id = self.calls.open(task_id)
        self._out.append(m.TaskDataRequest(task_id, request_id, params))
        return request_id

    def connection_lost(self) -> list[str]:
        """The socket is gone: the broker has failed our tasks. Returns their ids."""
        ids = self.tasks.ids()
        self.tasks = TaskTable()
        self.calls = PendingCalls()
        self.offers.clear()
        self.registered = False
        self.offering = False
        return ids

    # -- internals -----------------------------------------------------------------

    def _reject(self, task_id: str, reason: str) -> None:
        log.info("rejecting task %s: %s", task_id, reason, extra={"task_id": task_id})
        self._out.append(m.TaskRejected(task_id, reason))

    def _accept(self, msg: m.TaskOfferAccept, now: float) -> None:
        # Order of checks as in n8n's runners (protocol.md §7), then ours.
        if not self.offers.take(msg.offer_id, now):
            self._reject(msg.task_id, m.REJECT_OFFER_EXPIRED)
        elif self.busy >= self.offers.max_concurrency:
            self._reject(msg.task_id, m.REJECT_AT_CAPACITY)
        elif msg.task_id in self.tasks:
            self._reject(msg.task_id, m.REJECT_DUPLICATE)
        elif self.closing:
            self._reject(msg.task_id, m.REJECT_SHUTTING_DOWN)
        else:
            self.tasks.add(msg.task_id, now)
            self._out.append(m.TaskAccepted(msg.task_id))
            self._events.append(Accepted(msg.task_id))

    def _settings(self, msg: m.TaskSettings) -> None:
        state = self.tasks.get(msg.task_id)
        if state is None or state.status is not TaskStatus.WAITING_FOR_SETTINGS:
            log.warning("settings for unknown or non-waiting task %s ignored", msg.task_id,
                        extra={"task_id": msg.task_id})
            return
        self.tasks.apply(msg.task_id, TaskEvent.SETTINGS)
        state.settings = msg.settings
        self._events.append(StartTask(msg.task_id, msg.settings))

    def _cancel(self, msg: m.TaskCancel, now: float) -> None:
        state = self.tasks.get(msg.task_id)
        if state is None:
            log.debug("cancel for unknown task %s ignored", msg.task_id,
                      extra={"task_id": msg.task_id})
            return
        if state.status is TaskStatus.WAITING_FOR_SETTINGS:
            self.tasks.apply(msg.task_id, TaskEvent.CANCEL)
            self.calls.drop_task(msg.task_id)
            self.tick(now)  # the slot is free again: re-offer at once
        elif state.status is TaskStatus.RUNNING:
            self.tasks.apply(msg.task_id, TaskEvent.CANCEL)
            self._events.append(CancelTask(msg.task_id, msg.reason))
