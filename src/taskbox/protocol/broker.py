"""BrokerProtocol: the broker side of n8n's task protocol, without any I/O.

This module owns the state an n8n task broker keeps per registered runner and per task
request: the offer pool (with expiry), matching by ``taskType``, the accept window and
its strikes, the execution timeout and the task map (protocol.md §4, §7, §12). It never
reads the clock and never touches a socket: time comes in as ``now`` (monotonic
seconds) and everything it decides comes out through two queues.

The three-call contract (as in ``websockets.protocol`` and h11):

* inputs: ``add_runner``, ``remove_runner``, ``receive_message``, ``submit``,
  ``cancel_task``, ``cancel_request``, ``respond_rpc``, ``abort_task``, ``drain`` and
  ``tick(now)``;
* outputs: ``messages_to_send()`` — ``(runner_id, message)`` pairs in send order;
* results: ``events_received()`` — what the requester side must learn.

The caller must drain both outputs straight after every input, and call ``tick(now)``
no later than ``next_deadline()``.

Why one module of ~850 lines (house style asks for a reason above ~600): it is one state
machine (runners, offers, requests, tasks and their deadlines), and its parts change one
shared state under one transition table; split, every input would cross files. Wire
texts and messages live in ``messages.py``; this file holds only decisions.

Must not import: asyncio, socket, os, subprocess, time (house-style §1).
"""

from __future__ import annotations

import enum
import heapq
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from taskbox.errors import InvalidTransition
from taskbox.protocol.messages import (
    MSG_CANCELLED,
    RPC_METHOD_NOT_ALLOWED,
    BrokerMessage,
    Drain,
    RpcCall,
    RpcResponse,
    RunnerMessage,
    RunnerRegistered,
    TaskAccepted,
    TaskCancel,
    TaskDataRequest,
    TaskDataResponse,
    TaskDeferred,
    TaskDone,
    TaskErrorReport,
    TaskOffer,
    TaskOfferAccept,
    TaskRejected,
    TaskSettings,
    format_seconds,
)

__all__ = [
    "ALLOWED_RPC_METHODS",
    "CANCEL_ACCEPT_WINDOW",
    "CANCEL_TIMED_OUT",
    "MAX_STRIKES",
    "MSG_CANCELLED",
    "MSG_DISCONNECTED",
    "MSG_DRAINING",
    "MSG_UNRESPONSIVE",
    "RPC_METHOD_NOT_ALLOWED",
    "SILENCE_GAP",
    "TRANSITIONS",
    "BrokerEvent",
    "BrokerProtocol",
    "DataRequested",
    "NodeOutput",
    "RequestFinished",
    "RpcRequested",
    "RunnerDropped",
    "TaskAssigned",
    "TaskPhase",
    "TaskStarted",
    "TaskTrigger",
    "format_seconds",
    "nanoid",
]

logger = logging.getLogger("taskbox.protocol")

# --- wire texts (protocol.md §5, §11, §12) ------------------------------------------

CANCEL_ACCEPT_WINDOW = "Acknowledgement window elapsed"
CANCEL_TIMED_OUT = "Task execution timed out"
MSG_DISCONNECTED = "Node execution failed"
MSG_UNRESPONSIVE = "Task execution aborted because runner became unresponsive"
MSG_DRAINING = "Task request rejected because the task broker is draining"

# Three missed accept windows in a row and the runner is dropped (protocol.md §12).
MAX_STRIKES = 3
# Two silent request expiries at least this far apart drop a runner (protocol.md §12).
SILENCE_GAP = 2.0

# n8n checks runner:rpc names against this list before resolving them (§11).
ALLOWED_RPC_METHODS: frozenset[str] = frozenset({
    "logNodeOutput",
    "helpers.httpRequest",
    "helpers.getBinaryDataBuffer",
    "helpers.prepareBinaryData",
    "helpers.binaryToString",
    "helpers.assertBinaryData",
    "helpers.setBinaryDataBuffer",
    "helpers.request",
})

_NANOID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"


def nanoid(size: int = 8) -> str:
    """A nanoid-style random id (n8n's task ids are ``nanoid(8)``, protocol.md §4).

    Args:
        size: number of characters.

    Returns:
        ``size`` characters of ``[0-9A-Za-z_-]``.
    """
    return "".join(secrets.choice(_NANOID_ALPHABET) for _ in range(size))


# --- the task state machine ---------------------------------------------------------
#
# Rule 1: every transition of a broker-side task lives in this table.
#
#     AWAITING_ACCEPT --accepted--> RUNNING --done--> DONE
#           |                          |--error / timed out / cancelled / runner lost--> FAILED
#           |--rejected / deferred / window elapsed / runner lost--> REQUEUED
#           '--cancelled--> FAILED
#
# REQUEUED means "this task id is dead, the request goes back into matching with a new
# one" (protocol.md §12: a reject re-matches with a NEW taskId).


class TaskPhase(enum.Enum):
    AWAITING_ACCEPT = "awaiting_accept"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REQUEUED = "requeued"


class TaskTrigger(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    WINDOW_ELAPSED = "window_elapsed"
    DONE = "done"
    ERROR = "error"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    RUNNER_LOST = "runner_lost"


TRANSITIONS: dict[TaskPhase, dict[TaskTrigger, TaskPhase]] = {
    TaskPhase.AWAITING_ACCEPT: {
        TaskTrigger.ACCEPTED: TaskPhase.RUNNING,
        TaskTrigger.REJECTED: TaskPhase.REQUEUED,
        TaskTrigger.DEFERRED: TaskPhase.REQUEUED,
        TaskTrigger.WINDOW_ELAPSED: TaskPhase.REQUEUED,
        TaskTrigger.RUNNER_LOST: TaskPhase.REQUEUED,
        TaskTrigger.CANCELLED: TaskPhase.FAILED,
    },
    TaskPhase.RUNNING: {
        TaskTrigger.DONE: TaskPhase.DONE,
        TaskTrigger.ERROR: TaskPhase.FAILED,
        TaskTrigger.TIMED_OUT: TaskPhase.FAILED,
        TaskTrigger.CANCELLED: TaskPhase.FAILED,
        TaskTrigger.RUNNER_LOST: TaskPhase.FAILED,
    },
    TaskPhase.DONE: {},
    TaskPhase.FAILED: {},
    TaskPhase.REQUEUED: {},
}


# --- events for the requester side --------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskAssigned:
    """``broker:taskofferaccept`` went out: ``task_id`` now waits for the runner's answer."""

    request_id: str
    task_id: str
    runner_id: str


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The runner accepted; ``broker:tasksettings`` went out and the task timeout runs."""

    request_id: str
    task_id: str
    runner_id: str


@dataclass(frozen=True, slots=True)
class NodeOutput:
    """A ``logNodeOutput`` RPC (one ``print``); already answered with success (§10)."""

    request_id: str
    task_id: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class RpcRequested:
    """An allowlisted helper RPC; answer it with ``respond_rpc`` (§11)."""

    request_id: str
    task_id: str
    runner_id: str
    call_id: str
    name: str
    params: list[Any]
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DataRequested:
    """A runner:taskdatarequest for a running task; answer it with ``respond_data``."""

    request_id: str
    task_id: str
    runner_id: str
    data_request_id: str
    params: dict[str, Any]
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """The request is over: ``data`` from taskdone, or an ``error`` object."""

    request_id: str
    task_id: str | None
    runner_id: str | None
    status: Literal["done", "error"]
    data: dict[str, Any] | None = None
    error: Any = None


@dataclass(frozen=True, slots=True)
class RunnerDropped:
    """The core gave up on a runner (three strikes); the caller must close its socket."""

    runner_id: str
    code: int
    reason: str


BrokerEvent = (TaskAssigned | TaskStarted | NodeOutput | RpcRequested | DataRequested
               | RequestFinished | RunnerDropped)


# --- internal state -----------------------------------------------------------------


@dataclass(slots=True)
class _Offer:
    runner_id: str
    offer_id: str
    task_type: str
    expires_at: float | None  # None: validFor -1, never expires


@dataclass(slots=True)
class _Request:
    request_id: str
    task_type: str
    settings: dict[str, Any]
    task_timeout: float
    deadline: float | None  # request timeout; None once a runner accepted
    seq: int  # submission order: requeued requests keep their place
    task_id: str | None = None  # the live task for this request, if any


@dataclass(slots=True)
class _Task:
    task_id: str
    request: _Request
    runner_id: str
    offer_id: str
    phase: TaskPhase
    accept_sent_at: float
    accept_deadline: float
    run_deadline: float | None = None


@dataclass(slots=True)
class _Runner:
    runner_id: str
    name: str
    types: list[str]
    strikes: int = 0
    strike_mark: float = float("-inf")  # accepts sent before this already cost a strike
    tasks: set[str] = field(default_factory=set)
    last_seen: float = float("-inf")  # last message from the runner
    silent_since: float | None = None  # first request expiry it sat through in silence


_DeadlineKind = Literal["accept", "run", "request"]


class BrokerProtocol:
    """Sans-I/O broker state: offers, requests, tasks, strikes.

    Args:
        accept_timeout: seconds a runner has to answer ``broker:taskofferaccept``.
        task_timeout: default execution timeout, from ``tasksettings`` on.
        request_timeout: seconds a request may wait for a matching offer.
        max_strikes: missed accept windows in a row before a runner is dropped.
        id_factory: makes task ids (``nanoid(8)`` by default); tests pin it.
        reachable: asked before an offer is matched; offers of a runner it calls
            unreachable are discarded (n8n PR #35298: a transport can die while offers it
            already delivered are still in the pool).
    """

    def __init__(
        self,
        *,
        accept_timeout: float = 2.0,
        task_timeout: float = 60.0,
        request_timeout: float = 60.0,
        max_strikes: int = MAX_STRIKES,
        id_factory: Callable[[], str] = nanoid,
        reachable: Callable[[str], bool] | None = None,
    ) -> None:
        if task_timeout <= 0:
            raise ValueError("task_timeout must be greater than 0")
        self.accept_timeout = accept_timeout
        self.task_timeout = task_timeout
        self.request_timeout = request_timeout
        self.max_strikes = max_strikes
        self._id_factory = id_factory
        self._reachable = reachable
        self._runners: dict[str, _Runner] = {}
        self._offers: OrderedDict[tuple[str, str], _Offer] = OrderedDict()
        self._queue: OrderedDict[str, _Request] = OrderedDict()  # waiting for an offer
        self._requests: dict[str, _Request] = {}  # every live request
        self._tasks: dict[str, _Task] = {}
        self._deadlines: list[tuple[float, int, _DeadlineKind, str]] = []
        self._seq = 0
        self._draining = False
        self._out: list[tuple[str, BrokerMessage]] = []
        self._events: list[BrokerEvent] = []

    # --- outputs --------------------------------------------------------------------

    def messages_to_send(self) -> list[tuple[str, BrokerMessage]]:
        """Messages decided since the last call, as ``(runner_id, message)`` in send order.

        Call it straight after every input.
        """
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[BrokerEvent]:
        """Requester-side events decided since the last call, in order.

        Call it straight after every input.
        """
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has work to do, or None.

        May be early (stale entries are dropped lazily); never late.
        """
        return self._deadlines[0][0] if self._deadlines else None

    # --- read-only views --------------------------------------------------------------

    @property
    def runner_ids(self) -> list[str]:
        """Registered runners, in registration order."""
        return list(self._runners)

    @property
    def draining(self) -> bool:
        return self._draining

    def has_runner(self, runner_id: str) -> bool:
        return runner_id in self._runners

    def task_phase(self, task_id: str) -> TaskPhase | None:
        """The live task's phase, or None once it is gone from the task map."""
        task = self._tasks.get(task_id)
        return task.phase if task is not None else None

    def tasks_of(self, runner_id: str) -> list[str]:
        """Live task ids held by ``runner_id``."""
        runner = self._runners.get(runner_id)
        return sorted(runner.tasks) if runner is not None else []

    def running_task_ids(self) -> list[str]:
        """Task ids that got their settings and have not finished."""
        return [t.task_id for t in self._tasks.values() if t.phase is TaskPhase.RUNNING]

    def open_offers(self, now: float) -> list[tuple[str, str, str]]:
        """Unexpired offers as ``(runner_id, offer_id, task_type)`` in pool order."""
        return [(o.runner_id, o.offer_id, o.task_type) for o in self._offers.values()
                if o.expires_at is None or o.expires_at >= now]

    def pending_request_ids(self) -> list[str]:
        """Requests waiting for an offer, in matching order."""
        return list(self._queue)

    def strikes(self, runner_id: str) -> int:
        runner = self._runners.get(runner_id)
        return runner.strikes if runner is not None else 0

    # --- runners ------------------------------------------------------------------------

    def add_runner(self, runner_id: str, name: str, types: list[str], now: float) -> None:
        """Register a runner after its ``runner:info`` and queue ``broker:runnerregistered``.

        An older registration under the same id is removed first, failing its tasks
        (protocol.md §12, "Same runner id twice"); the caller closes the old socket.
        """
        if runner_id in self._runners:
            self.remove_runner(runner_id, now, {"message": MSG_DISCONNECTED,
                                                "description": "Replaced by a newer connection "
                                                               "with the same runner id"})
        self._runners[runner_id] = _Runner(runner_id, name, list(types), last_seen=now)
        self._out.append((runner_id, RunnerRegistered()))
        logger.info('Registered runner "%s" (%s)', name, runner_id)

    def remove_runner(self, runner_id: str, now: float, error: dict[str, Any]) -> None:
        """Deregister a runner: discard its offers and settle its tasks.

        Running tasks fail with ``error``; tasks still waiting for the runner's accept go
        back into matching (the runner never started them). Nothing is sent to the
        runner: its socket is gone or going.
        """
        runner = self._runners.pop(runner_id, None)
        if runner is None:
            return
        for key in [k for k in self._offers if k[0] == runner_id]:
            del self._offers[key]
        for task_id in sorted(runner.tasks):
            task = self._tasks[task_id]
            if task.phase is TaskPhase.AWAITING_ACCEPT:
                self._end_task(task, TaskTrigger.RUNNER_LOST)
                self._requeue(task.request, now)
            else:
                self._end_task(task, TaskTrigger.RUNNER_LOST)
                self._finish(task.request, task, "error", error=dict(error))
        logger.debug("Deregistered runner %s", runner_id)
        self._settle(now)

    # --- requests -----------------------------------------------------------------------

    def submit(
        self,
        request_id: str,
        task_type: str,
        settings: dict[str, Any],
        now: float,
        *,
        task_timeout: float | None = None,
    ) -> None:
        """A requester asks for a task (n8n's ``requester:taskrequest``).

        Args:
            request_id: caller-chosen unique id; every event about it carries it.
            task_type: matched exactly against the offers' ``taskType``.
            settings: sent unchanged as ``broker:tasksettings.settings``.
            now: monotonic seconds.
            task_timeout: overrides the default execution timeout for this request.
        """
        if request_id in self._requests:
            raise ValueError(f"duplicate request id {request_id!r}")
        self._seq += 1
        request = _Request(request_id, task_type, settings,
                           task_timeout if task_timeout is not None else self.task_timeout,
                           now + self.request_timeout, self._seq)
        if self._draining:
            # n8n answers broker:requestexpired {reason: "draining"} (protocol.md §5).
            self._events.append(RequestFinished(request_id, None, None, "error",
                                                error={"message": MSG_DRAINING}))
            return
        self._requests[request_id] = request
        self._queue[request_id] = request
        self._push_deadline(now + self.request_timeout, "request", request_id)
        self._settle(now)

    def cancel_request(self, request_id: str, now: float, reason: str) -> bool:
        """The requester gave up: drop a queued request or cancel its live task.

        Returns:
            False if the request was already finished.
        """
        request = self._requests.get(request_id)
        if request is None:
            return False
        if request.task_id is not None:
            return self.cancel_task(request.task_id, now, reason)
        del self._queue[request_id]
        self._finish(request, None, "error", error={"message": MSG_CANCELLED})
        return True

    def cancel_task(self, task_id: str, now: float, reason: str) -> bool:
        """User cancel: ``broker:taskcancel {reason}`` and the request fails.

        Returns:
            False for an unknown or finished task.
        """
        return self.abort_task(task_id, now, reason, {"message": MSG_CANCELLED})

    def abort_task(self, task_id: str, now: float, reason: str, error: dict[str, Any]) -> bool:
        """Cancel a live task on the runner and fail its request with ``error``.

        Used for user cancels and by the I/O layer when settings cannot be sent (e.g.
        over ``max_payload``).

        Returns:
            False for an unknown or finished task.
        """
        task = self._tasks.get(task_id)
        if task is None:
            return False
        self._end_task(task, TaskTrigger.CANCELLED)
        self._out.append((task.runner_id, TaskCancel(task_id, reason)))
        self._finish(task.request, task, "error", error=dict(error))
        return True

    def drain(self, now: float) -> None:
        """Queue ``broker:drain`` to every runner; new requests are refused from now on."""
        self._draining = True
        for runner_id in self._runners:
            self._out.append((runner_id, Drain()))

    # --- runner messages ----------------------------------------------------------------

    def receive_message(self, runner_id: str, msg: RunnerMessage, now: float) -> None:
        """Handle one parsed frame from a registered runner.

        Messages from unknown runners, for unknown or finished task ids, or that the
        task's state does not allow are ignored (protocol.md §12). ``runner:info`` is
        handled by ``add_runner``.
        """
        runner = self._runners.get(runner_id)
        if runner is None:
            return
        runner.last_seen = now
        runner.silent_since = None
        if isinstance(msg, TaskOffer):
            self._on_offer(runner, msg, now)
        elif isinstance(msg, RpcCall):
            self._on_rpc(runner, msg)
        elif isinstance(msg, TaskDataRequest):
            self._on_data_request(runner, msg)
        elif isinstance(msg, TaskAccepted | TaskRejected | TaskDeferred | TaskDone
                        | TaskErrorReport):
            task = self._tasks.get(msg.task_id)
            if task is None or task.runner_id != runner_id:
                logger.debug("Ignoring %s for unknown task %s from runner %s",
                             msg.TYPE, msg.task_id, runner_id)
                return
            try:
                self._on_task_message(runner, task, msg, now)
            except InvalidTransition as exc:
                logger.debug("Ignoring %s: %s", msg.TYPE, exc)

    def _on_offer(self, runner: _Runner, msg: TaskOffer, now: float) -> None:
        # validFor is in ms; -1 means the offer never expires (the launcher's offer).
        expires = None if msg.valid_for < 0 else now + msg.valid_for / 1000.0
        key = (runner.runner_id, msg.offer_id)
        self._offers.pop(key, None)
        self._offers[key] = _Offer(runner.runner_id, msg.offer_id, msg.task_type, expires)
        self._settle(now)

    def _on_task_message(
        self,
        runner: _Runner,
        task: _Task,
        msg: TaskAccepted | TaskRejected | TaskDeferred | TaskDone | TaskErrorReport,
        now: float,
    ) -> None:
        if isinstance(msg, TaskAccepted):
            self._transition(task, TaskTrigger.ACCEPTED)
            request = task.request
            request.deadline = None  # n8n clears the request timeout on accept
            task.run_deadline = now + request.task_timeout
            self._push_deadline(task.run_deadline, "run", task.task_id)
            self._out.append((runner.runner_id, TaskSettings(task.task_id, request.settings)))
            self._events.append(TaskStarted(request.request_id, task.task_id, runner.runner_id))
        elif isinstance(msg, TaskRejected):
            self._end_task(task, TaskTrigger.REJECTED)
            runner.strikes = 0
            logger.info('Task (%s) rejected by Runner with reason "%s"', task.task_id, msg.reason)
            self._requeue(task.request, now)
            self._settle(now)
        elif isinstance(msg, TaskDeferred):
            self._end_task(task, TaskTrigger.DEFERRED)
            runner.strikes = 0
            logger.debug("Task (%s) deferred until runner is ready", task.task_id)
            # A deferral restarts the request's timeout (protocol.md §6).
            task.request.deadline = now + self.request_timeout
            self._requeue(task.request, now)
            self._settle(now)
        elif isinstance(msg, TaskDone):
            self._end_task(task, TaskTrigger.DONE)
            runner.strikes = 0
            self._finish(task.request, task, "done", data=msg.data)
        else:
            self._end_task(task, TaskTrigger.ERROR)
            runner.strikes = 0
            self._finish(task.request, task, "error", error=msg.error)

    def _on_rpc(self, runner: _Runner, msg: RpcCall) -> None:
        task = self._tasks.get(msg.task_id)
        if task is None or task.runner_id != runner.runner_id or task.phase is not TaskPhase.RUNNING:
            # RPCs for unknown or finished tasks are ignored, unanswered (§10, §12).
            logger.debug("Ignoring rpc %s for unknown task %s", msg.name, msg.task_id)
            return
        request = task.request
        if msg.name not in ALLOWED_RPC_METHODS:
            self._out.append((runner.runner_id, RpcResponse(
                msg.task_id, msg.call_id, "error", RPC_METHOD_NOT_ALLOWED)))
        elif msg.name == "logNodeOutput":
            self._events.append(NodeOutput(request.request_id, task.task_id, msg.params))
            # n8n answers success with no data (§10, observed 2.41.1).
            self._out.append((runner.runner_id, RpcResponse(msg.task_id, msg.call_id, "success")))
        else:
            self._events.append(RpcRequested(request.request_id, task.task_id, runner.runner_id,
                                             msg.call_id, msg.name, msg.params, request.settings))

    def _on_data_request(self, runner: _Runner, msg: TaskDataRequest) -> None:
        task = self._tasks.get(msg.task_id)
        if task is None or task.runner_id != runner.runner_id or task.phase is not TaskPhase.RUNNING:
            logger.debug("Ignoring data request for unknown task %s", msg.task_id)
            return
        if not isinstance(msg.request_params.get("input"), dict):
            # n8n throws reading input.include and never answers (n8n-data-access.md §2).
            logger.error("Data request %s without requestParams.input: not answered",
                         msg.request_id)
            return
        self._events.append(DataRequested(task.request.request_id, task.task_id,
                                          runner.runner_id, msg.request_id, msg.request_params,
                                          task.request.settings))

    def respond_data(self, task_id: str, data_request_id: str, data: Any) -> bool:
        """Answer a ``DataRequested``; dropped if the task finished meanwhile.

        Returns:
            True if ``broker:taskdataresponse`` was queued.
        """
        task = self._tasks.get(task_id)
        if task is None or task.phase is not TaskPhase.RUNNING:
            return False
        self._out.append((task.runner_id, TaskDataResponse(task_id, data_request_id, data)))
        return True

    def respond_rpc(self, task_id: str, call_id: str, status: str, data: Any = None) -> bool:
        """Answer an ``RpcRequested``; dropped if the task finished meanwhile (§10).

        Returns:
            True if ``broker:rpcresponse`` was queued.
        """
        task = self._tasks.get(task_id)
        if task is None or task.phase is not TaskPhase.RUNNING:
            return False
        self._out.append((task.runner_id, RpcResponse(task_id, call_id, status, data)))
        return True

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Fire every deadline at or before ``now``: accept windows, task and request timeouts."""
        while self._deadlines and self._deadlines[0][0] <= now:
            when, _, kind, key = heapq.heappop(self._deadlines)
            if kind == "accept":
                task = self._tasks.get(key)
                if task is not None and task.phase is TaskPhase.AWAITING_ACCEPT \
                        and task.accept_deadline == when:
                    self._on_accept_window_elapsed(task, now)
            elif kind == "run":
                task = self._tasks.get(key)
                if task is not None and task.phase is TaskPhase.RUNNING \
                        and task.run_deadline == when:
                    self._on_task_timeout(task)
            else:
                request = self._queue.get(key)
                if request is not None and request.deadline is not None \
                        and request.deadline <= now:
                    del self._queue[key]
                    logger.info("Task request %s timed out", key)
                    self._finish(request, None, "error", error={
                        "message": f"Task request timed out after "
                                   f"{format_seconds(self.request_timeout)}",
                        "description": "No task runner picked up the task in time. Check "
                                       "that a runner for this task type is connected, or "
                                       "raise N8N_RUNNERS_TASK_REQUEST_TIMEOUT.",
                    })
                    self._check_silence(request.deadline - self.request_timeout, now)
        self._settle(now)

    def _check_silence(self, waiting_since: float, now: float) -> None:
        """Drop runners that stayed silent through two request expiries >= 2 s apart.

        protocol.md §12 "Silence" (observed 2.41.1): a registered runner that sent
        nothing at all (so it has no open offers) while a request expired, at two
        expiries at least 2 s apart, is dropped as unresponsive — unless it has tasks
        in flight.
        """
        for runner in list(self._runners.values()):
            if runner.tasks or runner.last_seen > waiting_since:
                continue
            if any(o.runner_id == runner.runner_id for o in self._offers.values()
                   if o.expires_at is None or o.expires_at >= now):
                continue
            if runner.silent_since is None:
                runner.silent_since = now
            elif now - runner.silent_since >= SILENCE_GAP:
                logger.warning("Runner (%s) sent nothing while task requests expired; "
                               "dropping it as unresponsive", runner.runner_id)
                self.remove_runner(runner.runner_id, now, {"message": MSG_UNRESPONSIVE})
                self._events.append(RunnerDropped(runner.runner_id, 1000, "unresponsive"))

    def _on_accept_window_elapsed(self, task: _Task, now: float) -> None:
        runner = self._runners[task.runner_id]
        self._end_task(task, TaskTrigger.WINDOW_ELAPSED)
        self._out.append((runner.runner_id, TaskCancel(task.task_id, CANCEL_ACCEPT_WINDOW)))
        logger.warning("Runner (%s) took too long to acknowledge acceptance of task (%s)",
                       runner.runner_id, task.task_id)
        # Windows that overlap one already counted cost no second strike (§12).
        if task.accept_sent_at >= runner.strike_mark:
            runner.strikes += 1
            runner.strike_mark = now
        self._requeue(task.request, now)
        if runner.strikes >= self.max_strikes:
            logger.warning("Runner (%s) missed %d accept windows in a row; dropping it",
                           runner.runner_id, runner.strikes)
            self.remove_runner(runner.runner_id, now, {"message": MSG_UNRESPONSIVE})
            self._events.append(RunnerDropped(runner.runner_id, 1000, "unresponsive"))

    def _on_task_timeout(self, task: _Task) -> None:
        self._end_task(task, TaskTrigger.TIMED_OUT)
        self._out.append((task.runner_id, TaskCancel(task.task_id, CANCEL_TIMED_OUT)))
        seconds = format_seconds(task.request.task_timeout)
        logger.info("Task (%s) timed out after %s", task.task_id, seconds)
        self._finish(task.request, task, "error",
                     error={"message": f"Task execution timed out after {seconds}"})

    # --- helpers ------------------------------------------------------------------------

    def _transition(self, task: _Task, trigger: TaskTrigger) -> None:
        new = TRANSITIONS[task.phase].get(trigger)
        if new is None:
            raise InvalidTransition(task.task_id, task.phase, trigger)
        task.phase = new

    def _end_task(self, task: _Task, trigger: TaskTrigger) -> None:
        self._transition(task, trigger)
        del self._tasks[task.task_id]
        runner = self._runners.get(task.runner_id)
        if runner is not None:
            runner.tasks.discard(task.task_id)
        if task.request.task_id == task.task_id:
            task.request.task_id = None

    def _requeue(self, request: _Request, now: float) -> None:
        if request.request_id not in self._requests:
            return
        # Back into matching at its original place (n8n keeps the request in its list).
        queued = sorted([*self._queue.values(), request], key=lambda r: r.seq)
        self._queue = OrderedDict((r.request_id, r) for r in queued)
        if request.deadline is not None:
            self._push_deadline(request.deadline, "request", request.request_id)

    def _finish(
        self,
        request: _Request,
        task: _Task | None,
        status: Literal["done", "error"],
        *,
        data: dict[str, Any] | None = None,
        error: Any = None,
    ) -> None:
        self._requests.pop(request.request_id, None)
        self._events.append(RequestFinished(
            request.request_id,
            task.task_id if task is not None else None,
            task.runner_id if task is not None else None,
            status, data, error))

    def _push_deadline(self, when: float, kind: _DeadlineKind, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._deadlines, (when, self._seq, kind, key))

    def _new_task_id(self) -> str:
        while True:
            task_id = self._id_factory()
            if task_id not in self._tasks:
                return task_id

    def _take_offer(self, task_type: str, now: float) -> _Offer | None:
        expired: list[tuple[str, str]] = []
        found: _Offer | None = None
        for key, offer in self._offers.items():
            if (offer.expires_at is not None and offer.expires_at < now) or (
                    self._reachable is not None and not self._reachable(offer.runner_id)):
                expired.append(key)
                continue
            if offer.task_type == task_type and offer.runner_id in self._runners:
                found = offer
                break
        for key in expired:
            del self._offers[key]
        if found is not None:
            del self._offers[(found.runner_id, found.offer_id)]
        return found

    def _settle(self, now: float) -> None:
        """Match queued requests (FIFO) to open offers (pool order), as n8n's settleTasks."""
        if not self._queue or not self._offers:
            return
        exhausted: set[str] = set()
        for request in list(self._queue.values()):
            if not self._offers:
                break
            if request.task_type in exhausted:
                continue
            offer = self._take_offer(request.task_type, now)
            if offer is None:
                exhausted.add(request.task_type)
                continue
            del self._queue[request.request_id]
            task_id = self._new_task_id()
            task = _Task(task_id, request, offer.runner_id, offer.offer_id,
                         TaskPhase.AWAITING_ACCEPT, now, now + self.accept_timeout)
            self._tasks[task_id] = task
            self._runners[offer.runner_id].tasks.add(task_id)
            request.task_id = task_id
            self._push_deadline(task.accept_deadline, "accept", task_id)
            self._out.append((offer.runner_id, TaskOfferAccept(task_id, offer.offer_id)))
            self._events.append(TaskAssigned(request.request_id, task_id, offer.runner_id))
