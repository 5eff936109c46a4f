"""RunnerProtocol: the runner side of the broker protocol, without I/O.

Three-call contract (as in h11 and websockets' sans-I/O cores): feed inputs with
``receive_message(msg, now)``, ``tick(now)``, ``finish_task``, ``send_rpc``,
``stop_offering`` and ``send_failed``, then drain ``messages_to_send()`` and
``events_received()`` straight away, every time. The accept/reject answer is produced
inside ``receive_message`` so the caller sends it in the same event-loop turn (the
broker waits only 2 s, protocol.md §12).

A task's legality is decided only by ``tasks.TRANSITIONS``: a message the task's state
does not allow raises ``InvalidTransition`` inside the table and is logged and ignored
here, as ``protocol/broker.py`` does on the other side.

Must not import: asyncio, socket, os, subprocess, time (house-style §1).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskbox.errors import InvalidTransition
from taskbox.protocol import messages as m
from taskbox.protocol.offers import OfferBook, new_id
from taskbox.protocol.rpc import PendingCalls
from taskbox.protocol.tasks import TaskEvent, TaskStatus, TaskTable

__all__ = [
    "Accepted", "CancelTask", "ConnectionState", "DrainRequested", "Registered", "RpcResult",
    "RunnerEvent", "RunnerProtocol", "StartTask",
]

log = logging.getLogger("taskbox.protocol")


class ConnectionState(enum.Enum):
    """Where one broker connection stands.

    ::

        CONNECTING ──runnerregistered──▶ OFFERING ──drain / stop──▶ CLOSING
             └────────────stop────────────────────────────────────────▲
        any ──connection_lost / send_failed──▶ CLOSED

    Only OFFERING sends offers; CLOSING and CLOSED reject every accept.
    """

    CONNECTING = "connecting"
    OFFERING = "offering"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Registered:
    """broker:runnerregistered arrived; offers have started."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A task was accepted (resets the idle timer)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class StartTask:
    """A waiting task got its settings: execute it; its time limit runs from ``accepted_at``."""

    task_id: str
    settings: dict[str, Any]
    accepted_at: float


@dataclass(frozen=True, slots=True)
class CancelTask:
    """The broker cancelled a running task: kill its process tree, still send a result."""

    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RpcResult:
    """A broker answer matched one of our open requests (``runner:rpc`` today)."""

    task_id: str
    call_id: str
    ok: bool
    data: Any


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """broker:drain: offers stopped; finish running tasks, then close."""


RunnerEvent = Registered | Accepted | StartTask | CancelTask | RpcResult | DrainRequested


class RunnerProtocol:
    """Offers, accepts, task states and request ids for one broker connection.

    Args:
        name: sent in ``runner:info``.
        max_concurrency: task slots; open offers + accepted tasks never exceed it.
        offers: the offer book (tests pin its rng and ids); its ``config.task_type`` is
            the one type this runner offers and announces.
        id_factory: makes request ids (``new_id``); tests pin it.
    """

    def __init__(self, name: str, max_concurrency: int, *, offers: OfferBook | None = None,
                 id_factory: Callable[[int], str] = new_id) -> None:
        self.name = name
        self.offers = offers or OfferBook(max_concurrency)
        self.tasks = TaskTable()
        self.calls = PendingCalls(id_factory)
        self.state = ConnectionState.CONNECTING
        self._id_factory = id_factory
        self._out: list[m.RunnerMessage] = []
        self._events: list[RunnerEvent] = []

    # -- outputs -------------------------------------------------------------------

    def messages_to_send(self) -> list[m.RunnerMessage]:
        """Messages produced by the last inputs; send them now, in order."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[RunnerEvent]:
        """Events produced by the last inputs; act on them now."""
        events, self._events = self._events, []
        return events

    # -- read-only views -------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Accepted tasks holding a slot (waiting or running)."""
        return len(self.tasks)

    @property
    def offering(self) -> bool:
        return self.state is ConnectionState.OFFERING

    @property
    def closed(self) -> bool:
        """The connection is gone: nothing more will be sent."""
        return self.state is ConnectionState.CLOSED

    # -- inputs --------------------------------------------------------------------

    def receive_message(self, msg: m.BrokerMessage, now: float) -> None:
        """Feed one parsed broker message."""
        if self.closed:
            return
        if isinstance(msg, m.InfoRequest):
            self._out.append(m.RunnerInfo(self.name, [self.offers.config.task_type]))
        elif isinstance(msg, m.RunnerRegistered):
            if self.state is ConnectionState.CONNECTING:
                self.state = ConnectionState.OFFERING
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
        """Periodic offer refresh (every OFFER_INTERVAL): top up while offering."""
        if self.offering:
            self._out.extend(self.offers.top_up(now, self.busy))
        else:
            self.offers.expire(now)

    def stop_offering(self) -> None:
        """Draining or shutting down: no more offers, reject every accept from now on."""
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.CLOSING
        self.offers.clear()

    def finish_task(self, task_id: str, now: float, *, result: Any = None,
                    error: dict[str, Any] | None = None,
                    extras: dict[str, Any] | None = None) -> bool:
        """Report a task's outcome: exactly one taskdone or taskerror.

        Returns:
            False if nothing was queued: the task is unknown (cancelled while waiting,
            already finished) or the connection it was accepted on is gone.
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
        """Queue a runner:rpc for a task; returns its call id (answered by ``RpcResult``)."""
        call_id = self.calls.open(task_id)
        self._out.append(m.RpcCall(call_id, task_id, name, params))
        return call_id

    def forget_call(self, call_id: str, task_id: str) -> None:
        """The caller stopped waiting (timeout, task gone): a late answer is ignored."""
        self.calls.resolve(call_id, task_id)

    def send_failed(self) -> None:
        """The transport broke while sending: nothing queued will ever arrive (h11's name)."""
        self.connection_lost()

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
        self.calls = PendingCalls(self._id_factory)
        self.offers.clear()
        self.state = ConnectionState.CLOSED
        self._out.clear()
        self._events.clear()
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
        elif self.state is not ConnectionState.OFFERING:
            self._reject(msg.task_id, m.REJECT_SHUTTING_DOWN)
        else:
            self.tasks.add(msg.task_id, now)
            self._out.append(m.TaskAccepted(msg.task_id))
            self._events.append(Accepted(msg.task_id))

    def _apply(self, msg: m.TaskSettings | m.TaskCancel, event: TaskEvent,
               unknown_level: int) -> TaskStatus | None:
        """Move the message's task along TRANSITIONS; None (logged) if unknown or illegal."""
        if msg.task_id not in self.tasks:
            log.log(unknown_level, "%s for unknown task %s ignored", msg.TYPE, msg.task_id,
                    extra={"task_id": msg.task_id})
            return None
        try:
            return self.tasks.apply(msg.task_id, event)
        except InvalidTransition as exc:
            log.log(unknown_level, "%s ignored: %s", msg.TYPE, exc,
                    extra={"task_id": msg.task_id})
            return None

    def _settings(self, msg: m.TaskSettings) -> None:
        state = self.tasks.get(msg.task_id)
        if self._apply(msg, TaskEvent.SETTINGS, logging.WARNING) is TaskStatus.RUNNING:
            assert state is not None
            self._events.append(StartTask(msg.task_id, msg.settings, state.accepted_at))

    def _cancel(self, msg: m.TaskCancel, now: float) -> None:
        # The broker cancels tasks it already forgot on our side (accept window races):
        # routine, so quiet (tests/faults: 1000 cancels for unknown tasks).
        status = self._apply(msg, TaskEvent.CANCEL, logging.DEBUG)
        if status is TaskStatus.CANCELLED:  # still waiting: no result is owed
            self.calls.drop_task(msg.task_id)
            self.tick(now)  # the slot is free again: re-offer at once
        elif status is TaskStatus.ABORTING_CANCELLED:
            self._events.append(CancelTask(msg.task_id, msg.reason))
