"""BrokerProtocol, the sans-I/O broker core: no sockets, no clock, exact messages."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from taskbox.errors import InvalidTransition
from taskbox.protocol.broker import (
    ALLOWED_RPC_METHODS,
    TRANSITIONS,
    BrokerProtocol,
    NodeOutput,
    RequestFinished,
    RpcRequested,
    RunnerDropped,
    TaskAssigned,
    TaskPhase,
    TaskStarted,
    TaskTrigger,
    format_seconds,
    nanoid,
)
from taskbox.protocol.messages import (
    Drain,
    RpcCall,
    RpcResponse,
    RunnerRegistered,
    TaskAccepted,
    TaskCancel,
    TaskDeferred,
    TaskDone,
    TaskErrorReport,
    TaskOffer,
    TaskOfferAccept,
    TaskRejected,
    TaskSettings,
)

SETTINGS: dict[str, Any] = {"code": "return []", "items": []}


def make(**kwargs: Any) -> BrokerProtocol:
    ids = (f"t{i}" for i in itertools.count(1))
    options: dict[str, Any] = {"accept_timeout": 2.0, "task_timeout": 60.0,
                               "request_timeout": 60.0, "id_factory": lambda: next(ids)}
    options.update(kwargs)
    return BrokerProtocol(**options)


def registered(core: BrokerProtocol, *runner_ids: str) -> BrokerProtocol:
    for rid in runner_ids:
        core.add_runner(rid, f"runner {rid}", ["python"], 0.0)
    assert core.messages_to_send() == [(rid, RunnerRegistered()) for rid in runner_ids]
    return core


def test_nanoid_and_format_seconds() -> None:
    assert len(nanoid()) == 8 and nanoid() != nanoid()
    assert format_seconds(60) == "60 seconds"
    assert format_seconds(1.0) == "1 second"
    assert format_seconds(0.25) == "0.25 seconds"


def test_full_lifecycle_messages_and_events() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("o1", "python", 5000), 1.0)
    assert core.messages_to_send() == []
    core.submit("q1", "python", SETTINGS, 1.0)
    assert core.messages_to_send() == [("r1", TaskOfferAccept("t1", "o1"))]
    assert core.events_received() == [TaskAssigned("q1", "t1", "r1")]
    core.receive_message("r1", TaskAccepted("t1"), 1.1)
    assert core.messages_to_send() == [("r1", TaskSettings("t1", SETTINGS))]
    assert core.events_received() == [TaskStarted("q1", "t1", "r1")]
    assert core.next_deadline() == pytest.approx(3.0)  # accept window entry, stale now
    core.receive_message("r1", RpcCall("c1", "t1", "logNodeOutput", ["'hi'"]), 1.2)
    assert core.messages_to_send() == [("r1", RpcResponse("t1", "c1", "success"))]
    assert core.events_received() == [NodeOutput("q1", "t1", ["'hi'"])]
    core.receive_message("r1", TaskDone("t1", {"result": [1]}), 1.3)
    assert core.events_received() == [
        RequestFinished("q1", "t1", "r1", "done", {"result": [1]}, None)]
    assert core.task_phase("t1") is None and core.tasks_of("r1") == []
    core.tick(100.0)  # stale deadlines fire nothing
    assert core.messages_to_send() == [] and core.events_received() == []
    assert core.next_deadline() is None


def test_illegal_transition_raises_and_changes_nothing() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.messages_to_send()
    # taskdone before taskaccepted is not a legal move: ignored, state unchanged.
    core.receive_message("r1", TaskDone("t1", {"result": []}), 0.1)
    assert core.task_phase("t1") is TaskPhase.AWAITING_ACCEPT
    assert core.events_received() == [TaskAssigned("q1", "t1", "r1")]
    assert core.messages_to_send() == []
    for phase in (TaskPhase.DONE, TaskPhase.FAILED, TaskPhase.REQUEUED):
        assert TRANSITIONS[phase] == {}
    assert TaskTrigger.DONE not in TRANSITIONS[TaskPhase.AWAITING_ACCEPT]
    with pytest.raises(InvalidTransition):
        core._transition(core._tasks["t1"], TaskTrigger.DONE)
    assert core.task_phase("t1") is TaskPhase.AWAITING_ACCEPT


def test_messages_from_other_runner_or_unregistered_ignored() -> None:
    core = registered(make(), "r1", "r2")
    core.receive_message("r1", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.messages_to_send()
    core.events_received()
    core.receive_message("r2", TaskAccepted("t1"), 0.1)
    core.receive_message("ghost", TaskAccepted("t1"), 0.1)
    assert core.task_phase("t1") is TaskPhase.AWAITING_ACCEPT
    assert core.messages_to_send() == [] and core.events_received() == []


def test_offer_expiry_uses_now() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("short", "python", 100), 0.0)
    core.receive_message("r1", TaskOffer("long", "python", 1000), 0.0)
    assert core.open_offers(0.5) == [("r1", "long", "python")]
    core.submit("q1", "python", SETTINGS, 0.5)
    assert core.messages_to_send() == [("r1", TaskOfferAccept("t1", "long"))]


def test_fifo_requests_and_pool_order() -> None:
    core = registered(make(), "r1", "r2")
    core.submit("q1", "python", SETTINGS, 0.0)
    core.submit("q2", "python", SETTINGS, 0.0)
    assert core.pending_request_ids() == ["q1", "q2"]
    core.receive_message("r2", TaskOffer("a", "python", -1), 0.1)
    core.receive_message("r1", TaskOffer("b", "python", -1), 0.2)
    assert core.messages_to_send() == [("r2", TaskOfferAccept("t1", "a")),
                                       ("r1", TaskOfferAccept("t2", "b"))]
    assert [e.request_id for e in core.events_received()
            if isinstance(e, TaskAssigned)] == ["q1", "q2"]


def test_reject_requeues_at_head_with_new_id() -> None:
    core = registered(make(), "r1")
    for o in ("o1", "o2"):
        core.receive_message("r1", TaskOffer(o, "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.messages_to_send()
    core.receive_message("r1", TaskRejected("t1", "busy"), 0.1)
    assert core.messages_to_send() == [("r1", TaskOfferAccept("t2", "o2"))]


def test_deferred_restarts_request_timeout() -> None:
    core = registered(make(request_timeout=10.0), "launcher")
    core.receive_message("launcher", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.messages_to_send()
    core.receive_message("launcher", TaskDeferred("t1"), 8.0)
    core.tick(12.0)  # the original 10 s would have expired
    assert [e for e in core.events_received() if isinstance(e, RequestFinished)] == []
    core.tick(18.0)
    finished = [e for e in core.events_received() if isinstance(e, RequestFinished)]
    assert finished[0].error["message"] == "Task request timed out after 10 seconds"


def test_strikes_inside_one_window_count_once() -> None:
    core = registered(make(), "r1")
    for i in range(3):
        core.receive_message("r1", TaskOffer(f"o{i}", "python", -1), 0.0)
    for q in ("q1", "q2", "q3"):
        core.submit(q, "python", SETTINGS, 0.0)
    assert len(core.messages_to_send()) == 3
    core.tick(2.0)  # all three windows elapse together: one strike
    cancels = core.messages_to_send()
    assert cancels == [("r1", TaskCancel(t, "Acknowledgement window elapsed"))
                       for t in ("t1", "t2", "t3")]
    assert core.strikes("r1") == 1
    assert core.pending_request_ids() == ["q1", "q2", "q3"]  # original order kept


def test_three_strikes_drop_runner_and_fail_its_running_tasks() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("run", "python", -1), 0.0)
    core.submit("running", "python", SETTINGS, 0.0)
    core.receive_message("r1", TaskAccepted("t1"), 0.0)
    core.messages_to_send()
    core.events_received()
    core.submit("q", "python", SETTINGS, 0.0)
    now = 0.0
    for strike in range(1, 4):
        core.receive_message("r1", TaskOffer(f"o{strike}", "python", -1), now)
        (_, accept), = core.messages_to_send()
        assert isinstance(accept, TaskOfferAccept)
        now += 2.0
        core.tick(now)
        assert core.messages_to_send()[0] == ("r1", TaskCancel(accept.task_id,
                                                               "Acknowledgement window elapsed"))
        assert core.strikes("r1") == (strike if strike < 3 else 0)
    events = core.events_received()
    assert RunnerDropped("r1", 1000, "unresponsive") in events
    failed = [e for e in events if isinstance(e, RequestFinished)]
    assert failed == [RequestFinished("running", "t1", "r1", "error", None, {
        "message": "Task execution aborted because runner became unresponsive"})]
    assert not core.has_runner("r1") and core.pending_request_ids() == ["q"]


def test_task_timeout_and_request_timeout_texts() -> None:
    core = registered(make(task_timeout=5.0, request_timeout=3.0), "r1")
    core.receive_message("r1", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.receive_message("r1", TaskAccepted("t1"), 0.5)
    core.messages_to_send()
    core.events_received()
    core.submit("q2", "javascript", SETTINGS, 1.0)
    core.tick(4.0)
    assert core.events_received() == [RequestFinished("q2", None, None, "error", None, {
        "message": "Task request timed out after 3 seconds",
        "description": "No task runner picked up the task in time. Check that a runner for "
                       "this task type is connected, or raise "
                       "N8N_RUNNERS_TASK_REQUEST_TIMEOUT."})]
    core.tick(5.5)
    assert core.messages_to_send() == [("r1", TaskCancel("t1", "Task execution timed out"))]
    assert core.events_received() == [RequestFinished("q1", "t1", "r1", "error", None, {
        "message": "Task execution timed out after 5 seconds"})]


def test_rpc_allowlist_and_helper_events() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.receive_message("r1", TaskAccepted("t1"), 0.0)
    core.messages_to_send()
    core.events_received()
    core.receive_message("r1", RpcCall("c1", "t1", "nope", []), 0.1)
    assert core.messages_to_send() == [("r1", RpcResponse("t1", "c1", "error",
                                                          "Method not allowed"))]
    core.receive_message("r1", RpcCall("c2", "t1", "helpers.httpRequest", [{"url": "x"}]), 0.1)
    assert core.events_received() == [RpcRequested("q1", "t1", "r1", "c2", "helpers.httpRequest",
                                                   [{"url": "x"}], SETTINGS)]
    assert core.respond_rpc("t1", "c2", "success", {"ok": 1}) is True
    assert core.messages_to_send() == [("r1", RpcResponse("t1", "c2", "success", {"ok": 1}))]
    core.receive_message("r1", TaskErrorReport("t1", {"message": "x"}), 0.2)
    assert core.respond_rpc("t1", "c3", "success") is False  # late replies are dropped
    assert "logNodeOutput" in ALLOWED_RPC_METHODS and len(ALLOWED_RPC_METHODS) == 8


def test_remove_runner_requeues_unaccepted_and_fails_running() -> None:
    core = registered(make(), "r1")
    for o in ("o1", "o2"):
        core.receive_message("r1", TaskOffer(o, "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.submit("q2", "python", SETTINGS, 0.0)
    core.receive_message("r1", TaskAccepted("t1"), 0.0)
    core.messages_to_send()
    core.events_received()
    core.remove_runner("r1", 1.0, {"message": "Node execution failed"})
    assert core.events_received() == [RequestFinished("q1", "t1", "r1", "error", None,
                                                      {"message": "Node execution failed"})]
    assert core.pending_request_ids() == ["q2"]
    assert core.messages_to_send() == []
    core.remove_runner("r1", 1.0, {"message": "again"})  # idempotent


def test_same_runner_id_twice_fails_old_tasks() -> None:
    core = registered(make(), "r1")
    core.receive_message("r1", TaskOffer("o1", "python", -1), 0.0)
    core.submit("q1", "python", SETTINGS, 0.0)
    core.receive_message("r1", TaskAccepted("t1"), 0.0)
    core.messages_to_send()
    core.events_received()
    core.add_runner("r1", "new", ["python"], 1.0)
    assert core.messages_to_send() == [("r1", RunnerRegistered())]
    (finished,) = core.events_received()
    assert isinstance(finished, RequestFinished) and finished.error["message"] == \
        "Node execution failed"


def test_cancel_queued_request_and_drain() -> None:
    core = registered(make(), "r1")
    core.submit("q1", "python", SETTINGS, 0.0)
    assert core.cancel_request("q1", 0.1, "bye") is True
    assert core.events_received() == [RequestFinished("q1", None, None, "error", None,
                                                      {"message": "Task was cancelled"})]
    assert core.cancel_request("q1", 0.1, "bye") is False
    assert core.cancel_task("nope", 0.1, "bye") is False
    core.drain(0.2)
    assert core.draining and core.messages_to_send() == [("r1", Drain())]
    core.submit("q2", "python", SETTINGS, 0.3)
    (refused,) = core.events_received()
    assert isinstance(refused, RequestFinished) and "draining" in refused.error["message"]
    with pytest.raises(ValueError):
        make(task_timeout=0)


def test_unreachable_runners_offers_are_discarded() -> None:
    down: set[str] = set()
    core = registered(make(reachable=lambda rid: rid not in down), "r1", "r2")
    core.receive_message("r1", TaskOffer("a", "python", -1), 0.0)
    core.receive_message("r2", TaskOffer("b", "python", -1), 0.0)
    down.add("r1")
    core.submit("q1", "python", SETTINGS, 0.1)
    assert core.messages_to_send() == [("r2", TaskOfferAccept("t1", "b"))]
    assert core.open_offers(0.2) == []


def test_silent_runner_dropped_after_two_expiries_two_seconds_apart() -> None:
    core = registered(make(request_timeout=1.0), "quiet", "chatty", "busy")
    core.receive_message("busy", TaskOffer("b", "javascript", -1), 0.0)
    core.submit("js", "javascript", SETTINGS, 0.0)
    core.receive_message("busy", TaskAccepted("t1"), 0.0)
    core.messages_to_send()
    core.events_received()
    core.submit("q1", "python", SETTINGS, 0.5)
    core.receive_message("chatty", TaskOffer("c", "javascript", 100), 1.0)
    core.tick(1.5)  # q1 expires: quiet is silent (mark 1), chatty spoke, busy has a task
    assert core.runner_ids == ["quiet", "chatty", "busy"]
    core.submit("q2", "python", SETTINGS, 2.0)
    core.receive_message("chatty", TaskOffer("c2", "javascript", 100), 2.5)
    core.tick(3.0)  # only 1.5 s after the first silent expiry: kept
    assert core.has_runner("quiet")
    core.submit("q3", "python", SETTINGS, 3.0)
    core.receive_message("chatty", TaskOffer("c3", "javascript", 100), 3.5)
    core.tick(4.0)
    assert core.runner_ids == ["chatty", "busy"]
    assert RunnerDropped("quiet", 1000, "unresponsive") in core.events_received()


def test_a_message_clears_the_silence_mark() -> None:
    core = registered(make(request_timeout=1.0), "r")
    core.submit("q1", "python", SETTINGS, 0.0)
    core.tick(1.0)
    core.receive_message("r", TaskOffer("x", "javascript", 10), 1.5)
    core.submit("q2", "python", SETTINGS, 2.0)
    core.tick(3.0)  # r spoke at 1.5, before q2 started waiting: silent again, first mark
    core.submit("q3", "python", SETTINGS, 3.5)
    core.tick(4.5)  # 1.5 s after the new first mark: kept
    assert core.has_runner("r")
