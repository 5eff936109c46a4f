"""Runner -> broker requests: futures, timeouts, and what a task may ask for.

The core (``protocol/rpc.py``) allocates request ids and matches answers; this module
keeps one future per open request, resolves it from the core's ``RpcResult`` events and
forgets it on timeout, so a late answer is ignored. One table and one timeout rule serve
every kind of request.

``TaskChannel`` is one task's side of it, handed to the executor:

* ``on_print``: one ``print`` call -> ``runner:rpc logNodeOutput``; cannot await, so it
  is queued in the core (ahead of the task's result, so the broker sees every print
  first) and sent by the connection's write pump. How long the result then waits for
  their answers is ``runner/prints.py``'s decision (``prints_answered``);
* ``on_rpc``: a node helper (``_helpers.httpRequest(...)``, ``sandbox/helpers.py``).
  Only ``helpers.*`` leaves the runner; anything else (``logNodeOutput``, which would
  dodge the print cap, or junk) is refused here with n8n's own ``"Method not allowed"``;
  n8n checks its allowlist on top. Inside the runner, params and answers hold plain
  ``bytes``; on the wire they are n8n's ``{"type":"Buffer","data":[...]}``, written and
  read slice by slice (``Connection``, protocol/buffers.py).

To add a new kind of runner -> broker request (say a data request): give the core a
``send_<kind>(task_id, ...) -> request_id`` that opens the id in ``self.calls`` and
queues the message, and an answer that ends in an ``RpcResult`` (or an event whose
handler calls ``RpcRouter.resolve``); then add a ``TaskChannel`` method that calls
``self._router.request(self.task_id, lambda proto: proto.send_<kind>(...), timeout, what)``.

Must not import anything from ``sandbox/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from taskbox.errors import ConnectionClosed
from taskbox.protocol.buffers import OFFLOAD_THRESHOLD, check_rpc_params, has_bytes
from taskbox.protocol.messages import RPC_METHOD_NOT_ALLOWED
from taskbox.protocol.runner import RpcResult, RunnerProtocol
from taskbox.runner.connection import CLOSED_TEXT, Connection
from taskbox.runner.prints import settle_prints
from taskbox.runner.workflow_data import TaskData, is_data_call

__all__ = ["HELPER_PREFIX", "RpcRouter", "TaskChannel", "check_params", "refusal"]

log = logging.getLogger("taskbox.runner")

#: n8n resolves RPC names on the node's execute functions: ``helpers.<method>``.
HELPER_PREFIX: Final = "helpers."
#: The RPC that carries one ``print`` call (protocol.md §10).
LOG_NODE_OUTPUT: Final = "logNodeOutput"

Answer = tuple[bool, Any]
Opener = Callable[[RunnerProtocol], str]


class RpcRouter:
    """One future per open runner -> broker request of one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._waiters: dict[str, tuple[str, asyncio.Future[Answer]]] = {}

    def __len__(self) -> int:
        return len(self._waiters)

    def resolve(self, event: RpcResult) -> None:
        """An answer arrived (the core matched it to an open request)."""
        entry = self._waiters.pop(event.call_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result((event.ok, event.data))

    def open(self, task_id: str, opener: Opener) -> asyncio.Future[Answer]:
        """Queue a request without awaiting; the write pump sends it.

        Returns:
            The future of its answer; ``(False, reason)`` at once if the connection is gone.
        """
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        if self._conn.closed:
            waiter.set_result((False, CLOSED_TEXT))
            return waiter
        self._waiters[opener(self._conn.proto)] = (task_id, waiter)
        self._conn.send_soon()
        return waiter

    async def request(self, task_id: str, opener: Opener, timeout: float,
                      what: str) -> Answer:
        """Send a request now and wait for its answer, at most ``timeout`` seconds.

        Returns:
            ``(ok, data)``; ``(False, reason)`` on timeout or a lost connection.
        """
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        call_id = ""
        try:
            async with self._conn.send_context() as proto:
                call_id = opener(proto)
                self._waiters[call_id] = (task_id, waiter)
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return False, f"{what} timed out after {timeout:g} s"
        except ConnectionClosed:
            return False, CLOSED_TEXT
        finally:
            self._forget(call_id)

    def drop_task(self, task_id: str) -> None:
        """The task is over: stop waiting for any of its answers."""
        for call_id in [c for c, (t, _) in self._waiters.items() if t == task_id]:
            self._forget(call_id)

    def connection_lost(self) -> None:
        """Every open request ends now with ``(False, reason)``."""
        waiters, self._waiters = self._waiters, {}
        for _, waiter in waiters.values():
            if not waiter.done():
                waiter.set_result((False, CLOSED_TEXT))

    def _forget(self, call_id: str) -> None:
        entry = self._waiters.pop(call_id, None)
        if entry is None:
            return
        task_id, waiter = entry
        waiter.cancel()
        if not self._conn.closed:
            self._conn.proto.forget_call(call_id, task_id)


class TaskChannel:
    """One task's requests to the broker: prints and node helpers.

    Args:
        router: the connection's router.
        task_id: the task.
        timeout: seconds to wait for one answer (TASKBOX_RPC_TIMEOUT).
        max_calls: helper calls allowed per task (TASKBOX_RPC_MAX_CALLS).
        max_payload: N8N_RUNNERS_MAX_PAYLOAD, for params holding bytes.
    """

    def __init__(self, router: RpcRouter, task_id: str, *, timeout: float, max_calls: int,
                 max_payload: int) -> None:
        self.task_id = task_id
        self._router = router
        self._timeout = timeout
        self._max_calls = max_calls
        self._max_payload = max_payload
        self._calls = 0
        self._prints: list[asyncio.Future[Answer]] = []
        #: ``_('Node')``, ``_workflow`` ... (runner/workflow_data.py); set per task.
        self.data: TaskData | None = None

    def with_data(self, code: str) -> TaskChannel:
        """Answer the worker's workflow-data calls for ``code`` (one data request at most)."""
        self.data = TaskData(code, self.data_request)
        return self

    async def data_request(self, params: dict[str, Any]) -> Answer:
        """One runner:taskdatarequest for this task; the task id is ours, never the worker's."""
        return await self._router.request(
            self.task_id, lambda proto: proto.send_data_request(self.task_id, params),
            self._timeout, "Data request")

    def on_print(self, args: list[str]) -> None:
        """One ``print`` call's formatted arguments (the executor's ``PrintSink``)."""
        self._prints.append(self._router.open(
            self.task_id, lambda proto: proto.send_rpc(self.task_id, LOG_NODE_OUTPUT, args)))

    async def on_rpc(self, name: str, params: list[Any]) -> Answer:
        """A node helper call from user code (the executor's ``HelperCall``)."""
        if is_data_call(name):
            if self.data is None:
                return False, "workflow data is not available here"
            return await self.data.handle(name, params)
        self._calls += 1
        if self._calls > self._max_calls:
            return False, (f"Too many helper calls: the limit is {self._max_calls}"
                           " per task (TASKBOX_RPC_MAX_CALLS)")
        problem = refusal(name) or await check_params(params, self._max_payload)
        if problem is not None:
            return False, problem
        return await self._router.request(
            self.task_id, lambda proto: proto.send_rpc(self.task_id, name, params),
            self._timeout, f"Helper call {name}")

    async def prints_answered(self) -> None:
        """Give the task's unanswered prints their wait (``prints.settle_prints``)."""
        if self._prints:
            await settle_prints(self._prints)

    def close(self) -> None:
        """The task is over: late answers are ignored."""
        self._router.drop_task(self.task_id)


def refusal(name: str) -> str | None:
    """Why the runner will not forward an RPC named ``name``, or None to forward it."""
    if name.startswith(HELPER_PREFIX) and len(name) > len(HELPER_PREFIX):
        return None
    return RPC_METHOD_NOT_ALLOWED  # n8n's own answer (protocol.md §11)


async def check_params(params: list[Any], max_payload: int) -> str | None:
    """Why a helper call with ``params`` cannot be sent, or None if it can.

    Params holding bytes are checked off the event loop when large.
    """
    if not has_bytes(params):
        return None  # Connection sends (or trims) them like any other frame
    total = _byte_count(params)
    try:
        if total > OFFLOAD_THRESHOLD:
            await asyncio.to_thread(check_rpc_params, params, max_payload)
        else:
            check_rpc_params(params, max_payload)
    except ValueError as exc:
        return f"Helper call cannot be sent: {exc}"
    return None


def _byte_count(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, dict):
        return sum(_byte_count(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_byte_count(v) for v in value)
    return 0
