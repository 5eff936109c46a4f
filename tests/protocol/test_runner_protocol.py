"""RunnerProtocol without sockets: offers, accepts, states, cancels, RPC ids."""

from __future__ import annotations

import random

import pytest

from taskbox.errors import InvalidTransition
from taskbox.protocol import messages as m
from taskbox.protocol.offers import OfferBook, OfferConfig
from taskbox.protocol.runner import (
    Accepted,
    CancelTask,
    ConnectionState,
    DrainRequested,
    Registered,
    RpcResult,
    RunnerProtocol,
    StartTask,
)
from taskbox.protocol.tasks import TRANSITIONS, TaskEvent, TaskStatus, TaskTable


def registered(max_concurrency: int = 2,
               now: float = 0.0) -> tuple[RunnerProtocol, list[m.TaskOffer]]:
    proto = RunnerProtocol("taskbox", max_concurrency,
                           offers=OfferBook(max_concurrency, rng=random.Random(1)))
    proto.receive_message(m.InfoRequest(), now)
    assert proto.messages_to_send() == [m.RunnerInfo("taskbox", ["python"])]
    proto.receive_message(m.RunnerRegistered(), now)
    assert proto.events_received() == [Registered()]
    offers = [o for o in proto.messages_to_send() if isinstance(o, m.TaskOffer)]
    return proto, offers


def test_handshake_answers_info_and_offers_only_after_registration() -> None:
    proto = RunnerProtocol("taskbox", 3)
    proto.tick(0.0)
    assert proto.messages_to_send() == []  # not registered: no offers
    proto.receive_message(m.InfoRequest(), 0.0)
    assert [type(x) for x in proto.messages_to_send()] == [m.RunnerInfo]
    proto.receive_message(m.RunnerRegistered(), 0.0)
    offers = [o for o in proto.messages_to_send() if isinstance(o, m.TaskOffer)]
    assert len(offers) == 3
    assert all(5000 <= o.valid_for <= 5500 and o.task_type == "python" for o in offers)


def test_offer_count_tracks_capacity_and_tops_up_after_task_end() -> None:
    proto, offers = registered(2)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.1)
    assert proto.messages_to_send() == [m.TaskAccepted("t1")]
    proto.tick(0.2)
    assert proto.messages_to_send() == []  # 1 open offer + 1 task == 2
    proto.receive_message(m.TaskSettings("t1", {"code": "x"}), 0.2)
    assert proto.events_received()[-1] == StartTask("t1", {"code": "x"}, accepted_at=0.1)
    assert proto.finish_task("t1", 0.3, result=[1])
    out = proto.messages_to_send()
    assert out[0] == m.TaskDone("t1", {"result": [1]})
    assert [type(x) for x in out[1:]] == [m.TaskOffer]  # topped up at once


@pytest.mark.parametrize(("elapsed", "accepted"), [
    (5.0, True),     # at validFor: still honoured locally
    (5.09, True),    # inside the 100 ms local grace
    (5.11, False),   # past validFor + grace
])
def test_offer_expiry_edges(elapsed: float, accepted: bool) -> None:
    book = OfferBook(1, OfferConfig(validity_ms=5000, jitter_ms=0))
    (offer,) = book.top_up(0.0, 0)
    assert offer.valid_for == 5000
    assert book.take(offer.offer_id, elapsed) is accepted


def test_expired_offer_is_rejected_with_exact_reason() -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 10.0)
    assert proto.messages_to_send()[0] == m.TaskRejected("t1", m.REJECT_OFFER_EXPIRED)
    assert "t1" not in proto.tasks


def test_unknown_offer_is_rejected() -> None:
    proto, _ = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", "nope"), 0.0)
    assert proto.messages_to_send() == [m.TaskRejected("t1", m.REJECT_OFFER_EXPIRED)]


def test_capacity_race_one_offer_two_accepts() -> None:
    proto, offers = registered(1)
    (offer,) = offers
    proto.receive_message(m.TaskOfferAccept("t1", offer.offer_id), 0.1)
    proto.receive_message(m.TaskOfferAccept("t2", offer.offer_id), 0.1)
    # The first accept consumed the offer: the second finds no offer (checked before
    # capacity, as n8n's runners do), so the reason is always "expired".
    assert proto.messages_to_send() == [m.TaskAccepted("t1"),
                                        m.TaskRejected("t2", m.REJECT_OFFER_EXPIRED)]
    assert proto.busy == 1


def test_at_capacity_rejects_even_a_valid_offer() -> None:
    book = OfferBook(1, rng=random.Random(2))
    proto = RunnerProtocol("taskbox", 1, offers=book)
    proto.receive_message(m.RunnerRegistered(), 0.0)
    (offer,) = proto.messages_to_send()
    assert isinstance(offer, m.TaskOffer)
    proto.receive_message(m.TaskOfferAccept("t1", offer.offer_id), 0.0)
    extra = book.top_up(0.0, 0)  # a stale offer the broker still holds
    proto.messages_to_send()
    proto.receive_message(m.TaskOfferAccept("t2", extra[0].offer_id), 0.0)
    assert proto.messages_to_send() == [m.TaskRejected("t2", m.REJECT_AT_CAPACITY)]


def test_duplicate_task_id_is_rejected() -> None:
    proto, offers = registered(2)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.receive_message(m.TaskOfferAccept("t1", offers[1].offer_id), 0.0)
    out = proto.messages_to_send()
    assert out == [m.TaskAccepted("t1"), m.TaskRejected("t1", m.REJECT_DUPLICATE)]


def test_draining_rejects_accepts_and_stops_offers() -> None:
    proto, offers = registered(2)
    proto.receive_message(m.Drain(), 0.0)
    assert proto.events_received() == [DrainRequested()]
    assert proto.state is ConnectionState.CLOSING
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    # The drain dropped the open offers, so the accept finds none.
    assert proto.messages_to_send() == [m.TaskRejected("t1", m.REJECT_OFFER_EXPIRED)]
    proto.tick(1.0)
    assert proto.messages_to_send() == []


def test_shutdown_rejects_accepts_for_still_valid_offers() -> None:
    book = OfferBook(2, rng=random.Random(3))
    proto = RunnerProtocol("taskbox", 2, offers=book)
    proto.receive_message(m.RunnerRegistered(), 0.0)
    proto.messages_to_send()
    proto.stop_offering()
    (late,) = book.top_up(0.0, 1)  # an offer created just before shutdown began
    proto.receive_message(m.TaskOfferAccept("t9", late.offer_id), 0.0)
    assert proto.messages_to_send() == [m.TaskRejected("t9", m.REJECT_SHUTTING_DOWN)]


def test_cancel_while_waiting_drops_task_and_reoffers() -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.messages_to_send()
    proto.receive_message(m.TaskCancel("t1", "Acknowledgement window elapsed"), 0.1)
    out = proto.messages_to_send()
    assert "t1" not in proto.tasks
    assert [type(x) for x in out] == [m.TaskOffer]
    assert not [e for e in proto.events_received() if isinstance(e, CancelTask)]


def test_cancel_while_running_emits_cancel_and_still_owes_a_result() -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.receive_message(m.TaskSettings("t1", {}), 0.0)
    proto.receive_message(m.TaskCancel("t1", "user"), 0.1)
    assert CancelTask("t1", "user") in proto.events_received()
    assert proto.tasks.get("t1").status is TaskStatus.ABORTING_CANCELLED  # type: ignore[union-attr]
    proto.messages_to_send()
    assert proto.finish_task("t1", 0.2, error={"message": "Task was cancelled"})
    assert proto.messages_to_send()[0] == m.TaskErrorReport("t1", {"message": "Task was cancelled"})
    assert not proto.finish_task("t1", 0.3, result=[])  # exactly one result


def test_settings_for_unknown_or_running_task_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskSettings("ghost", {}), 0.0)
    assert proto.events_received() == []
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.receive_message(m.TaskSettings("t1", {"a": 1}), 0.0)
    proto.events_received()
    proto.receive_message(m.TaskSettings("t1", {"a": 2}), 0.0)
    assert proto.events_received() == []
    assert "ignored" in caplog.text


def test_accepted_event_and_rpc_matching() -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    assert proto.events_received() == [Accepted("t1")]
    proto.receive_message(m.TaskSettings("t1", {}), 0.0)
    proto.messages_to_send()
    call_id = proto.send_rpc("t1", "logNodeOutput", ["'hi'"])
    assert proto.messages_to_send() == [m.RpcCall(call_id, "t1", "logNodeOutput", ["'hi'"])]
    proto.receive_message(m.RpcResponse("t1", "other", "success"), 0.0)
    proto.receive_message(m.RpcResponse("t1", call_id, "success"), 0.0)
    proto.receive_message(m.RpcResponse("t1", call_id, "success"), 0.0)  # duplicate
    results = [e for e in proto.events_received() if isinstance(e, RpcResult)]
    assert results == [RpcResult("t1", call_id, True, None)]


def test_connection_lost_forgets_tasks_offers_and_calls() -> None:
    proto, offers = registered(2)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.receive_message(m.TaskSettings("t1", {}), 0.0)
    proto.send_rpc("t1", "logNodeOutput", [])
    assert proto.connection_lost() == ["t1"]
    assert proto.busy == 0 and proto.offers.open_count == 0 and len(proto.calls) == 0


def _reach(table: TaskTable, status: TaskStatus) -> None:
    """Drive task "t" to ``status`` by legal events only."""
    paths = {
        TaskStatus.WAITING_FOR_SETTINGS: [],
        TaskStatus.RUNNING: [TaskEvent.SETTINGS],
        TaskStatus.ABORTING_CANCELLED: [TaskEvent.SETTINGS, TaskEvent.CANCEL],
    }
    for event in paths[status]:
        table.apply("t", event)
    assert table.get("t").status is status  # type: ignore[union-attr]


ILLEGAL = [(status, event) for status in TaskStatus for event in TaskEvent
           if status in TRANSITIONS and event not in TRANSITIONS[status]
           and status not in (TaskStatus.DONE, TaskStatus.ERROR, TaskStatus.CANCELLED)]


def test_the_table_has_no_dead_states() -> None:
    # Every status is reachable from WAITING_FOR_SETTINGS and every finished one is final.
    seen, frontier = {TaskStatus.WAITING_FOR_SETTINGS}, [TaskStatus.WAITING_FOR_SETTINGS]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(TaskStatus)
    assert all(TRANSITIONS[s] == {} for s in (TaskStatus.DONE, TaskStatus.ERROR,
                                              TaskStatus.CANCELLED))
    assert len(ILLEGAL) == 5  # 3 live statuses x 4 events, minus the 7 legal moves


@pytest.mark.parametrize(("status", "event"), ILLEGAL)
def test_every_illegal_transition_raises_and_changes_nothing(status: TaskStatus,
                                                             event: TaskEvent) -> None:
    table = TaskTable()
    state = table.add("t", 0.0)
    _reach(table, status)
    with pytest.raises(InvalidTransition) as info:
        table.apply("t", event)
    assert (info.value.task_id, info.value.status, info.value.event) == ("t", status, event)
    assert table.get("t") is state and state.status is status


def test_finished_tasks_leave_the_table() -> None:
    for path, final in [([TaskEvent.SETTINGS, TaskEvent.DONE], TaskStatus.DONE),
                        ([TaskEvent.SETTINGS, TaskEvent.CANCEL, TaskEvent.ERROR],
                         TaskStatus.ERROR),
                        ([TaskEvent.CANCEL], TaskStatus.CANCELLED)]:
        table = TaskTable()
        table.add("t", 0.0)
        assert [table.apply("t", e) for e in path][-1] is final
        assert "t" not in table and len(table) == 0


def test_illegal_messages_are_ignored_through_the_table(caplog: pytest.LogCaptureFixture) -> None:
    proto, offers = registered(1)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.receive_message(m.TaskSettings("t1", {}), 0.0)
    proto.receive_message(m.TaskCancel("t1", "user"), 0.1)
    proto.events_received()
    proto.messages_to_send()
    # A second cancel and late settings are not allowed in ABORTING_CANCELLED.
    proto.receive_message(m.TaskCancel("t1", "again"), 0.2)
    proto.receive_message(m.TaskSettings("t1", {}), 0.2)
    assert proto.events_received() == [] and proto.messages_to_send() == []
    assert proto.tasks.get("t1").status is TaskStatus.ABORTING_CANCELLED  # type: ignore[union-attr]
    assert "not allowed in state" in caplog.text


def test_send_failed_closes_the_core() -> None:
    proto, offers = registered(2)
    proto.receive_message(m.TaskOfferAccept("t1", offers[0].offer_id), 0.0)
    proto.send_failed()
    assert proto.closed and proto.busy == 0 and proto.messages_to_send() == []
    proto.receive_message(m.TaskOfferAccept("t2", offers[1].offer_id), 0.1)
    proto.tick(1.0)
    assert proto.messages_to_send() == [] and proto.events_received() == []
    assert not proto.finish_task("t1", 1.0, result=[])


def test_stop_before_registration_never_offers() -> None:
    proto = RunnerProtocol("taskbox", 2)
    proto.stop_offering()
    proto.receive_message(m.RunnerRegistered(), 0.0)
    assert proto.events_received() == [Registered()]
    assert proto.state is ConnectionState.CLOSING and proto.messages_to_send() == []
