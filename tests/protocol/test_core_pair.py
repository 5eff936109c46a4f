"""The runner core against the broker core, in memory, with a fake clock.

No sockets and no asyncio: ``tests.fakes.CorePair`` serializes every message, parses it
on the other side and records it, so each test asserts the exact exchange both cores
agree on (protocol.md §5-§12).
"""

from __future__ import annotations

from typing import Any

from taskbox.protocol import messages as m
from taskbox.protocol.broker import (
    CANCEL_ACCEPT_WINDOW,
    CANCEL_TIMED_OUT,
    MSG_CANCELLED,
    MSG_DRAINING,
    RPC_METHOD_NOT_ALLOWED,
    DataRequested,
    NodeOutput,
    RequestFinished,
    RpcRequested,
    TaskAssigned,
    TaskStarted,
)
from taskbox.protocol.runner import (
    Accepted,
    CancelTask,
    ConnectionState,
    DrainRequested,
    Registered,
    RpcResult,
    StartTask,
)
from taskbox.protocol.tasks import TaskStatus
from tests.fakes import CorePair, Hop

SETTINGS: dict[str, Any] = {"code": "return []", "nodeMode": "runOnceForAllItems", "items": []}


def to_broker(*messages: m.RunnerMessage) -> list[Hop]:
    return [Hop("to_broker", msg) for msg in messages]


def to_runner(*messages: m.BrokerMessage) -> list[Hop]:
    return [Hop("to_runner", msg) for msg in messages]


def connected(slots: int = 2, **broker_options: Any) -> CorePair:
    pair = CorePair(slots=slots, broker_options=broker_options)
    pair.connect()
    pair.take_wire()
    pair.take_runner_events()
    return pair


def running(pair: CorePair, request_id: str = "q1") -> str:
    """Submit one request and let it reach RUNNING; returns its task id."""
    pair.submit(request_id, SETTINGS)
    (started,) = [e for e in pair.take_broker_events() if isinstance(e, TaskStarted)]
    pair.take_wire()
    pair.take_runner_events()
    return started.task_id


def test_registration_then_one_offer_per_slot() -> None:
    pair = CorePair(slots=2)
    pair.connect()
    assert pair.take_wire() == [
        *to_runner(m.InfoRequest()),
        *to_broker(m.RunnerInfo("taskbox", ["python"])),
        *to_runner(m.RunnerRegistered()),
        *to_broker(m.TaskOffer("o1", "python", 5000), m.TaskOffer("o2", "python", 5000)),
    ]
    assert pair.take_runner_events() == [Registered()]
    assert pair.runner.state is ConnectionState.OFFERING
    assert pair.broker.open_offers(0.0) == [("r1", "o1", "python"), ("r1", "o2", "python")]
    pair.tick(0.25)  # full: open offers + tasks == slots, nothing to top up
    assert pair.take_wire() == []


def test_one_task_from_submit_to_done_with_a_print() -> None:
    pair = connected()
    pair.submit("q1", SETTINGS)
    assert pair.take_wire() == [
        *to_runner(m.TaskOfferAccept("t1", "o1")),
        *to_broker(m.TaskAccepted("t1")),
        *to_runner(m.TaskSettings("t1", SETTINGS)),
    ]
    assert pair.take_runner_events() == [Accepted("t1"), StartTask("t1", SETTINGS, 0.0)]
    assert pair.take_broker_events() == [TaskAssigned("q1", "t1", "r1"),
                                         TaskStarted("q1", "t1", "r1")]
    assert pair.runner.tasks.get("t1").status is TaskStatus.RUNNING  # type: ignore[union-attr]

    pair.clock.advance(0.1)
    pair.runner.send_rpc("t1", "logNodeOutput", ["'hi'"])
    pair.pump()
    assert pair.take_wire() == [
        *to_broker(m.RpcCall("c1", "t1", "logNodeOutput", ["'hi'"])),
        *to_runner(m.RpcResponse("t1", "c1", "success")),
    ]
    assert pair.take_runner_events() == [RpcResult("t1", "c1", True, None)]
    assert pair.take_broker_events() == [NodeOutput("q1", "t1", ["'hi'"])]

    assert pair.finish("t1", result=[{"json": {"ok": True}}])
    assert pair.take_wire() == to_broker(
        m.TaskDone("t1", {"result": [{"json": {"ok": True}}]}),
        m.TaskOffer("o3", "python", 5000))  # the slot is offered again at once
    assert pair.take_broker_events() == [RequestFinished(
        "q1", "t1", "r1", "done", {"result": [{"json": {"ok": True}}]}, None)]
    assert pair.runner.busy == 0 and pair.broker.task_phase("t1") is None
    assert not pair.finish("t1", result=[])  # exactly one result per task
    assert pair.take_wire() == []


def test_a_helper_call_is_answered_by_the_requester() -> None:
    pair = connected()
    task_id = running(pair)
    pair.runner.send_rpc(task_id, "helpers.httpRequest", [{"url": "http://x"}])
    pair.pump()
    assert pair.take_wire() == to_broker(
        m.RpcCall("c1", task_id, "helpers.httpRequest", [{"url": "http://x"}]))
    (asked,) = pair.take_broker_events()
    assert asked == RpcRequested("q1", task_id, "r1", "c1", "helpers.httpRequest",
                                 [{"url": "http://x"}], SETTINGS)
    assert pair.broker.respond_rpc(task_id, "c1", "success", {"body": "ok"})
    pair.pump()
    assert pair.take_wire() == to_runner(m.RpcResponse(task_id, "c1", "success", {"body": "ok"}))
    assert pair.take_runner_events() == [RpcResult(task_id, "c1", True, {"body": "ok"})]
    assert len(pair.runner.calls) == 0


DATA_PARAMS = {"dataOfNodes": ["A"], "prevNode": False, "input": {"include": False},
               "env": False}


def test_a_data_request_is_answered_by_the_requester() -> None:
    pair = connected()
    task_id = running(pair)
    request_id = pair.runner.send_data_request(task_id, DATA_PARAMS)
    pair.pump()
    assert pair.take_wire() == to_broker(m.TaskDataRequest(task_id, request_id, DATA_PARAMS))
    (asked,) = pair.take_broker_events()
    assert asked == DataRequested("q1", task_id, "r1", request_id, DATA_PARAMS, SETTINGS)
    assert pair.broker.respond_data(task_id, request_id, {"workflow": {}})
    pair.pump()
    assert pair.take_wire() == to_runner(m.TaskDataResponse(task_id, request_id,
                                                           {"workflow": {}}))
    assert pair.take_runner_events() == [RpcResult(task_id, request_id, True, {"workflow": {}})]
    assert len(pair.runner.calls) == 0


def test_a_data_request_without_input_is_never_answered_as_by_n8n() -> None:
    pair = connected()
    task_id = running(pair)
    pair.runner.send_data_request(task_id, {"dataOfNodes": "all"})
    pair.pump()
    pair.take_wire()
    assert pair.take_broker_events() == []  # n8n throws on input.include and stays silent


PARAMS: dict[str, Any] = {"dataOfNodes": ["Orders"], "prevNode": True,
                          "input": {"include": False}, "env": False}


def test_a_data_request_shares_the_request_book_with_rpc() -> None:
    pair = connected()
    task_id = running(pair)
    request_id = pair.runner.send_data_request(task_id, PARAMS)
    pair.pump()
    assert pair.take_wire() == to_broker(m.TaskDataRequest(task_id, request_id, PARAMS))
    assert pair.take_broker_events() == [
        DataRequested("q1", task_id, "r1", request_id, PARAMS, SETTINGS)]
    assert pair.broker.respond_data(task_id, request_id, {"workflow": {"id": "w1"}})
    pair.pump()
    assert pair.take_wire() == to_runner(
        m.TaskDataResponse(task_id, request_id, {"workflow": {"id": "w1"}}))
    assert pair.take_runner_events() == [
        RpcResult(task_id, request_id, True, {"workflow": {"id": "w1"}})]
    assert len(pair.runner.calls) == 0
    # A second answer for the same id is ignored, as for RPCs.
    assert pair.broker.respond_data(task_id, request_id, {})
    pair.pump()
    assert pair.take_runner_events() == []


def test_a_name_outside_the_allowlist_is_refused_by_the_broker() -> None:
    pair = connected()
    task_id = running(pair)
    pair.runner.send_rpc(task_id, "process.exit", [])
    pair.pump()
    assert pair.take_wire()[-1] == Hop(
        "to_runner", m.RpcResponse(task_id, "c1", "error", RPC_METHOD_NOT_ALLOWED))
    assert pair.take_runner_events() == [RpcResult(task_id, "c1", False, RPC_METHOD_NOT_ALLOWED)]


def test_a_late_answer_after_the_runner_gave_up_is_ignored() -> None:
    pair = connected()
    task_id = running(pair)
    call_id = pair.runner.send_rpc(task_id, "helpers.httpRequest", [])
    pair.pump()
    pair.take_broker_events()
    pair.runner.forget_call(call_id, task_id)  # the shell's timeout
    assert pair.broker.respond_rpc(task_id, call_id, "success", 1)
    pair.pump()
    assert pair.take_runner_events() == []


def test_broker_timeout_cancels_and_the_late_result_is_dropped() -> None:
    pair = connected(task_timeout=1.0)
    task_id = running(pair)
    pair.tick(1.0)
    assert pair.take_wire() == to_runner(m.TaskCancel(task_id, CANCEL_TIMED_OUT))
    assert pair.take_runner_events() == [CancelTask(task_id, CANCEL_TIMED_OUT)]
    assert pair.take_broker_events() == [RequestFinished(
        "q1", task_id, "r1", "error", None,
        {"message": "Task execution timed out after 1 second"})]
    state = pair.runner.tasks.get(task_id)
    assert state is not None and state.status is TaskStatus.ABORTING_CANCELLED
    # The runner still owes (and sends) exactly one result; the broker ignores it.
    assert pair.finish(task_id, error={"message": MSG_CANCELLED})
    assert pair.take_wire() == to_broker(m.TaskErrorReport(task_id, {"message": MSG_CANCELLED}),
                                         m.TaskOffer("o3", "python", 5000))
    assert pair.take_broker_events() == []


def test_user_cancel_of_a_running_task() -> None:
    pair = connected()
    task_id = running(pair)
    assert pair.broker.cancel_request("q1", 0.0, "user stopped the workflow")
    pair.pump()
    assert pair.take_wire() == to_runner(m.TaskCancel(task_id, "user stopped the workflow"))
    assert pair.take_runner_events() == [CancelTask(task_id, "user stopped the workflow")]
    assert pair.take_broker_events() == [RequestFinished(
        "q1", task_id, "r1", "error", None, {"message": MSG_CANCELLED})]


def test_lost_accept_window_cancels_the_waiting_task_and_requeues_with_a_new_id() -> None:
    pair = connected(slots=1)
    pair.broker.submit("q1", "python", SETTINGS, 0.0)
    ((_, accept),) = pair.broker.messages_to_send()
    pair._to_runner(accept)  # the runner accepts, but its answer is lost on the way
    assert pair.runner.messages_to_send() == [m.TaskAccepted("t1")]
    pair.take_wire()

    pair.tick(2.0)
    assert pair.take_wire() == [
        *to_runner(m.TaskCancel("t1", CANCEL_ACCEPT_WINDOW)),
        *to_broker(m.TaskOffer("o2", "python", 5000)),  # the slot is free again
        *to_runner(m.TaskOfferAccept("t2", "o2")),      # same request, new task id
        *to_broker(m.TaskAccepted("t2")),
        *to_runner(m.TaskSettings("t2", SETTINGS)),
    ]
    assert "t1" not in pair.runner.tasks
    assert pair.take_runner_events() == [Accepted("t1"), Accepted("t2"),
                                         StartTask("t2", SETTINGS, 2.0)]
    assert pair.broker.strikes("r1") == 1


def test_an_accept_for_a_withdrawn_offer_is_rejected_and_the_request_waits() -> None:
    pair = connected(slots=1)
    pair.runner.stop_offering()  # e.g. SIGTERM: the broker still holds offer o1
    pair.submit("q1", SETTINGS)
    assert pair.take_wire() == [
        *to_runner(m.TaskOfferAccept("t1", "o1")),
        *to_broker(m.TaskRejected("t1", m.REJECT_OFFER_EXPIRED)),
    ]
    assert pair.broker.pending_request_ids() == ["q1"]
    pair.tick(0.25)
    assert pair.take_wire() == []  # closing: no new offers


def test_drain_stops_offers_lets_the_task_finish_and_refuses_new_requests() -> None:
    pair = connected()
    task_id = running(pair)
    pair.broker.drain(0.0)
    pair.pump()
    assert pair.take_wire() == to_runner(m.Drain())
    assert pair.take_runner_events() == [DrainRequested()]
    assert pair.runner.state is ConnectionState.CLOSING
    assert pair.finish(task_id, result=[])
    assert pair.take_wire() == to_broker(m.TaskDone(task_id, {"result": []}))  # no re-offer
    pair.take_broker_events()
    pair.submit("q2", SETTINGS)
    assert pair.take_broker_events() == [RequestFinished(
        "q2", None, None, "error", None, {"message": MSG_DRAINING})]


def test_connection_lost_on_both_sides() -> None:
    pair = connected()
    task_id = running(pair)
    pair.broker.remove_runner("r1", 0.0, {"message": "Node execution failed"})
    assert pair.runner.connection_lost() == [task_id]
    pair.pump()
    assert pair.take_wire() == []
    assert pair.take_broker_events() == [RequestFinished(
        "q1", task_id, "r1", "error", None, {"message": "Node execution failed"})]
    assert pair.runner.closed and not pair.finish(task_id, result=[])
    assert pair.broker.task_phase(task_id) is None


def test_every_message_crosses_the_link_both_ways() -> None:
    """One tour through every message the two cores exchange."""
    pair = CorePair(slots=1, broker_options={"task_timeout": 1.0})
    pair.connect()
    pair.submit("q1", SETTINGS)
    pair.runner.send_rpc("t1", "logNodeOutput", ["'x'"])
    data_request = pair.runner.send_data_request("t1", DATA_PARAMS)
    pair.pump()
    assert pair.broker.respond_data("t1", data_request, {})
    pair.pump()
    assert pair.finish("t1", result=[])
    pair.submit("q2", SETTINGS)
    pair.tick(1.0)  # timed out: taskcancel, and the runner still answers
    assert pair.finish("t2", error={"message": MSG_CANCELLED})
    pair.runner.stop_offering()
    pair.submit("q3", SETTINGS)  # the broker still holds offer o3: rejected
    pair.broker.drain(pair.clock.now)
    pair.pump()
    seen = {type(hop.message) for hop in pair.wire}
    every = set(m.BROKER_MESSAGE_TYPES) | set(m.RUNNER_MESSAGE_TYPES)
    # runner:taskdeferred is the launcher's (it holds a request while a runner starts);
    # a runner never sends it.
    assert every - seen == {m.TaskDeferred}
    assert pair.runner.busy == 0 and pair.broker.running_task_ids() == []
    assert [e.status for e in pair.broker_events if isinstance(e, RequestFinished)] == [
        "done", "error"]
