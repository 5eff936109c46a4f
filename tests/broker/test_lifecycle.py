"""Handshake, offers, matching, accept windows, timeouts and disconnects (protocol.md §4, §7, §12)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest

from taskbox.broker import EmbeddedBroker, RequestOutcome, serve
from tests.broker.conftest import AutoRunner, BrokerFactory, FakeRunner, settings
from tests.utils import MS


def frames(broker: EmbeddedBroker, direction: str, kind: str) -> list[dict[str, Any]]:
    return [m for _, _, d, m in broker.events if d == direction and m.get("type") == kind]


# --- handshake ------------------------------------------------------------------------


async def test_handshake_order_and_messages_before_info_ignored(broker: EmbeddedBroker) -> None:
    fake = FakeRunner(broker, "r1")
    await fake.connect(register=False)
    assert await fake.recv() == {"type": "broker:inforequest"}
    # Before runner:info everything is ignored: this offer must never be matched.
    await fake.offer("early")
    await fake.send({"type": "runner:taskaccepted", "taskId": "nope"})
    await fake.silent(0.1)
    assert broker.runner_ids == []
    await fake.send({"type": "runner:info", "name": "Fake", "types": ["python"]})
    assert await fake.recv() == {"type": "broker:runnerregistered"}
    assert await broker.wait_for_runners(1, timeout=1) == ["r1"]

    pending = asyncio.create_task(broker.submit(settings()))
    await fake.silent(0.1)  # the pre-info offer is not in the pool
    await fake.offer("o1")
    acc = await fake.expect("broker:taskofferaccept")
    assert acc["offerId"] == "o1"
    assert len(acc["taskId"]) == 8
    await fake.send({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
    got = await fake.expect("broker:tasksettings")
    assert got["settings"] == settings()
    await fake.done(acc["taskId"], [{"json": {"ok": True}}])
    out = await pending
    assert out.status == "done" and out.ok
    assert out.result == [{"json": {"ok": True}}]
    assert out.data == {"result": [{"json": {"ok": True}}]}
    assert out.task_id == acc["taskId"] and out.runner_id == "r1"
    assert out.accepted_at is not None and out.submitted_at <= out.accepted_at <= out.done_at

    kinds = [(d, m["type"]) for _, rid, d, m in broker.events if rid == "r1"]
    assert kinds[:5] == [("out", "broker:inforequest"), ("in", "runner:taskoffer"),
                         ("in", "runner:taskaccepted"), ("in", "runner:info"),
                         ("out", "broker:runnerregistered")]
    assert kinds[-5:] == [("in", "runner:taskoffer"), ("out", "broker:taskofferaccept"),
                          ("in", "runner:taskaccepted"), ("out", "broker:tasksettings"),
                          ("in", "runner:taskdone")]
    await fake.close()


async def test_second_runner_info_is_ignored(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.send({"type": "runner:info", "name": "again", "types": ["python"]})
    await runner.silent(0.1)
    assert broker.runner_ids == [runner.runner_id]


# --- offers and matching --------------------------------------------------------------


async def test_request_waits_for_an_offer(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    pending = asyncio.create_task(broker.submit(settings()))
    await runner.silent(0.1)
    await runner.offer("o1")
    task_id, _ = await runner.accept_next()
    await runner.done(task_id, [])
    assert (await pending).result == []


async def offers_arrived(broker: EmbeddedBroker, *offer_ids: str) -> None:
    for offer_id in offer_ids:
        await broker.wait_for_event(lambda e, o=offer_id: e[2] == "in"  # type: ignore[misc]
                                    and e[3].get("offerId") == o, timeout=5000 * MS)


def skewed(make_broker: BrokerFactory) -> tuple[Any, list[float]]:
    """A broker whose clock the test moves forward (``skew[0]`` seconds ahead)."""
    skew = [0.0]
    return (lambda **kw: make_broker(clock=lambda: time.monotonic() + skew[0], **kw)), skew


async def test_expired_offer_is_not_matched(make_broker: BrokerFactory) -> None:
    factory, skew = skewed(make_broker)
    broker = await factory()
    runner = FakeRunner(broker)
    await runner.connect()
    await runner.offer("short", valid_for=30)
    await runner.offer("forever", valid_for=-1)
    await offers_arrived(broker, "short", "forever")
    skew[0] = 1.0  # the 30 ms offer is long gone
    pending = asyncio.create_task(broker.submit(settings()))
    acc = await runner.expect("broker:taskofferaccept")
    assert acc["offerId"] == "forever"
    await runner.send({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
    await runner.expect("broker:tasksettings")
    await runner.done(acc["taskId"], [])
    await pending
    # The short offer expired and is gone from the pool; the forever one was used.
    assert broker.protocol.open_offers(time.monotonic() + skew[0]) == []
    await runner.close()


async def test_only_expired_offers_means_request_waits(make_broker: BrokerFactory) -> None:
    factory, skew = skewed(make_broker)
    broker = await factory()
    runner = FakeRunner(broker)
    await runner.connect()
    await runner.offer("short", valid_for=20)
    await offers_arrived(broker, "short")
    skew[0] = 1.0
    pending = asyncio.create_task(broker.submit(settings()))
    await runner.silent(0.1)
    await runner.offer("fresh")
    acc = await runner.expect("broker:taskofferaccept")
    assert acc["offerId"] == "fresh"
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    # Cancelling the submit cancels the task on the runner.
    cancel = await runner.expect("broker:taskcancel", timeout=0.3)  # before the accept window
    assert cancel == {"type": "broker:taskcancel", "taskId": acc["taskId"],
                      "reason": "Task cancelled by requester"}


async def test_matching_by_exact_task_type(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.offer("js", task_type="javascript")
    await runner.offer("py", task_type="python")
    py = asyncio.create_task(broker.submit(settings()))
    acc = await runner.expect("broker:taskofferaccept")
    assert acc["offerId"] == "py"
    js = asyncio.create_task(broker.submit(settings(), task_type="javascript"))
    acc2 = await runner.expect("broker:taskofferaccept")
    assert acc2["offerId"] == "js"
    other = asyncio.create_task(broker.submit(settings(), task_type="Python"))
    await runner.silent(0.1)  # no offer of that exact type
    for t in (py, js, other):
        t.cancel()
    await asyncio.gather(py, js, other, return_exceptions=True)


async def test_reject_rematches_with_new_task_id(runner: FakeRunner, broker: EmbeddedBroker,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskbox")
    await runner.offer("o1")
    await runner.offer("o2")
    pending = asyncio.create_task(broker.submit(settings()))
    first = await runner.expect("broker:taskofferaccept")
    await runner.send({"type": "runner:taskrejected", "taskId": first["taskId"],
                       "reason": "No open task slots - runner already at capacity"})
    second = await runner.expect("broker:taskofferaccept")
    assert second["offerId"] == "o2"
    assert second["taskId"] != first["taskId"]
    await runner.send({"type": "runner:taskaccepted", "taskId": second["taskId"]})
    await runner.expect("broker:tasksettings")
    # Late messages for the rejected task id are ignored.
    await runner.done(first["taskId"], ["stale"])
    await runner.done(second["taskId"], ["fresh"])
    out = await pending
    assert out.result == ["fresh"] and out.task_id == second["taskId"]
    assert "rejected by Runner" in caplog.text and "No open task slots" in caplog.text


async def test_reject_without_other_offers_waits_for_next_offer(runner: FakeRunner,
                                                                broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    first = await runner.expect("broker:taskofferaccept")
    await runner.send({"type": "runner:taskrejected", "taskId": first["taskId"], "reason": "x"})
    await runner.silent(0.1)
    await runner.offer("o2")
    second = await runner.expect("broker:taskofferaccept")
    assert second["taskId"] != first["taskId"]
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def test_accept_window_elapsed_cancels_requeues_and_three_strikes_drop(
        make_broker: BrokerFactory) -> None:
    broker = await make_broker(accept_timeout=0.15, request_timeout=1.0)
    fake = FakeRunner(broker, "slow")
    await fake.connect()
    for i in range(5):
        await fake.offer(f"o{i}")
    pending = asyncio.create_task(broker.submit(settings()))
    task_ids = []
    for strike in range(3):
        acc = await fake.expect("broker:taskofferaccept")
        assert acc["offerId"] == f"o{strike}"
        task_ids.append(acc["taskId"])
        cancel = await fake.expect("broker:taskcancel", timeout=1)
        assert cancel == {"type": "broker:taskcancel", "taskId": acc["taskId"],
                          "reason": "Acknowledgement window elapsed"}
    assert len(set(task_ids)) == 3
    # Third strike: the runner is dropped and its connection closed.
    assert await fake.wait_closed() == 1000
    assert broker.runner_ids == []
    # The request went back to the queue and now times out for want of a runner.
    out = await pending
    assert out.status == "error"
    assert out.error["message"] == "Task request timed out after 1 second"
    assert "N8N_RUNNERS_TASK_REQUEST_TIMEOUT" in out.error["description"]


async def test_requeued_request_goes_to_another_runner(make_broker: BrokerFactory) -> None:
    broker = await make_broker(accept_timeout=0.15)
    slow = FakeRunner(broker, "slow")
    await slow.connect()
    await slow.offer("s1")
    pending = asyncio.create_task(broker.submit(settings()))
    await slow.expect("broker:taskofferaccept")
    good = AutoRunner(broker, slots=1, runner_id="good")
    await good.start()
    await slow.expect("broker:taskcancel", timeout=1)
    out = await pending
    assert out.status == "done" and out.runner_id == "good"
    assert broker.protocol.strikes("slow") == 1
    await good.stop()
    await slow.close()


async def test_reject_resets_strikes(make_broker: BrokerFactory) -> None:
    broker = await make_broker(accept_timeout=0.1)
    fake = FakeRunner(broker, "r")
    await fake.connect()
    for i in range(6):
        await fake.offer(f"o{i}")
    pending = asyncio.create_task(broker.submit(settings()))
    for _ in range(2):
        await fake.expect("broker:taskofferaccept")
        await fake.expect("broker:taskcancel", timeout=1)
    assert broker.protocol.strikes("r") == 2
    acc = await fake.expect("broker:taskofferaccept")
    await fake.send({"type": "runner:taskrejected", "taskId": acc["taskId"], "reason": "x"})
    acc = await fake.expect("broker:taskofferaccept")
    assert broker.protocol.strikes("r") == 0
    await fake.send({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
    await fake.expect("broker:tasksettings")
    await fake.done(acc["taskId"], [])
    assert (await pending).status == "done"
    assert broker.runner_ids == ["r"]
    await fake.close()


# --- timeouts and cancel --------------------------------------------------------------


async def test_task_timeout_cancels_and_reports(make_broker: BrokerFactory) -> None:
    broker = await make_broker(task_timeout=0.2)
    fake = FakeRunner(broker)
    await fake.connect()
    await fake.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await fake.accept_next()
    cancel = await fake.expect("broker:taskcancel", timeout=1)
    assert cancel == {"type": "broker:taskcancel", "taskId": task_id,
                      "reason": "Task execution timed out"}
    out = await pending
    assert out.status == "error"
    assert out.error == {"message": "Task execution timed out after 0.2 seconds"}
    # A late result is ignored.
    await fake.done(task_id, [])
    await fake.silent(0.05)
    await fake.close()


async def test_submit_timeout_overrides_task_timeout(runner: FakeRunner,
                                                     broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings(), timeout=0.1))
    await runner.accept_next()
    await runner.expect("broker:taskcancel", timeout=1)
    assert (await pending).error["message"] == "Task execution timed out after 0.1 seconds"


async def test_request_timeout_without_runner(make_broker: BrokerFactory) -> None:
    broker = await make_broker(request_timeout=0.1)
    out = await broker.submit(settings())
    assert out.status == "error"
    assert out.error["message"] == "Task request timed out after 0.1 seconds"
    assert out.task_id == "" and out.runner_id is None and out.accepted_at is None


async def test_user_cancel(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await runner.accept_next()
    assert broker.running_task_ids == [task_id]
    assert await broker.cancel(task_id, reason="user cancelled") is True
    assert await runner.expect("broker:taskcancel") == {
        "type": "broker:taskcancel", "taskId": task_id, "reason": "user cancelled"}
    out = await pending
    assert out.error == {"message": "Task was cancelled"}
    assert await broker.cancel(task_id) is False
    assert broker.running_task_ids == []


# --- runner messages ------------------------------------------------------------------


async def test_task_error_reaches_requester(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await runner.accept_next()
    error = {"message": "ValueError: boom [line 3]", "description": "ValueError",
             "lineNumber": 3}
    await runner.send({"type": "runner:taskerror", "taskId": task_id, "error": error})
    out = await pending
    assert out.status == "error" and out.error == error and out.result is None


async def test_messages_for_unknown_tasks_and_unknown_types_ignored(
        runner: FakeRunner, broker: EmbeddedBroker) -> None:
    msgs: list[dict[str, Any]] = [
        {"type": "runner:taskdone", "taskId": "ghost", "data": {"result": []}},
        {"type": "runner:taskerror", "taskId": "ghost", "error": {"message": "x"}},
        {"type": "runner:taskaccepted", "taskId": "ghost"},
        {"type": "runner:rpc", "taskId": "ghost", "callId": "c", "name": "logNodeOutput",
         "params": []},
        {"type": "runner:somethingnew", "x": 1},
    ]
    for msg in msgs:
        await runner.send(msg)
    await runner.silent(0.1)
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await runner.accept_next()
    await runner.done(task_id, [1])
    assert (await pending).result == [1]


async def test_bad_json_is_logged_and_connection_stays_open(
        runner: FakeRunner, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    for raw in ("{not json", "[1, 2]", '"text"', '{"no": "type"}',
                '{"type": "runner:taskoffer", "offerId": 5}'):
        await runner.send(raw)
    await runner.silent(0.1)
    assert "Couldn't parse message from runner" in caplog.text
    assert broker.runner_ids == [runner.runner_id]
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await runner.accept_next()
    await runner.done(task_id, [])
    assert (await pending).status == "done"
    bad = [m for _, _, d, m in broker.events if d == "in" and m["type"] is None]
    assert bad[0] == {"type": None, "raw": "{not json"}


async def test_binary_frames_are_accepted(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    assert runner.ws is not None
    await runner.ws.send(b'{"type":"runner:taskoffer","offerId":"b1","taskType":"python",'
                         b'"validFor":5000}')
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await runner.accept_next()
    await runner.done(task_id, [])
    assert (await pending).status == "done"


# --- disconnects ----------------------------------------------------------------------


async def test_duplicate_runner_id_evicts_the_old_connection(broker: EmbeddedBroker) -> None:
    old = FakeRunner(broker, "same")
    await old.connect()
    await old.offer("o1")
    await old.offer("o2")
    pending = asyncio.create_task(broker.submit(settings()))
    await old.accept_next()
    new = FakeRunner(broker, "same")
    await new.connect()
    assert await old.wait_closed() == 1000
    out = await pending
    assert out.status == "error" and out.error["message"] == "Node execution failed"
    assert broker.runner_ids == ["same"]
    # The old connection's remaining offer is gone; the new one serves.
    pending = asyncio.create_task(broker.submit(settings()))
    await new.silent(0.1)
    await new.offer("n1")
    acc = await new.expect("broker:taskofferaccept")
    assert acc["offerId"] == "n1"
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await new.close()


async def test_disconnect_mid_task_fails_the_task(runner: FakeRunner,
                                                  broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    await runner.offer("o2")
    pending = asyncio.create_task(broker.submit(settings()))
    await runner.accept_next()
    await runner.close()
    out = await pending
    assert out.status == "error" and out.error["message"] == "Node execution failed"
    assert broker.runner_ids == []  # deregistered before the request failed
    assert broker.protocol.open_offers(0.0) == []


async def test_broker_disconnect_hook(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    await runner.accept_next()
    await broker.disconnect(runner.runner_id)  # TCP abort: the runner sees 1006
    assert await runner.wait_closed() == 1006
    assert (await pending).error["message"] == "Node execution failed"
    with pytest.raises(KeyError):
        await broker.disconnect(runner.runner_id)


async def test_broker_disconnect_with_close_code(runner: FakeRunner,
                                                 broker: EmbeddedBroker) -> None:
    await broker.disconnect(runner.runner_id, code=4000)
    assert await runner.wait_closed() == 4000
    assert broker.runner_ids == []


async def test_awaiting_accept_task_is_requeued_when_runner_leaves(
        broker: EmbeddedBroker) -> None:
    leaving = FakeRunner(broker, "leaving")
    await leaving.connect()
    await leaving.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    await leaving.expect("broker:taskofferaccept")
    await leaving.close()
    good = AutoRunner(broker, slots=1)
    await good.start()
    out = await pending
    assert out.status == "done" and out.runner_id == good.runner_id
    await good.stop()


async def test_heartbeat_failure_closes_with_1002(make_broker: BrokerFactory) -> None:
    broker = await make_broker(heartbeat_interval=0.1)
    token = broker.mint_grant_token()
    async with aiohttp.ClientSession() as session:
        # autoping=False and no reads: pings go unanswered.
        ws = await session.ws_connect(f"{broker.uri}/runners/_ws?id=deaf", autoping=False,
                                      headers={"Authorization": f"Bearer {token}"})
        assert (await ws.receive_json(timeout=1))["type"] == "broker:inforequest"
        await ws.send_json({"type": "runner:info", "name": "deaf", "types": ["python"]})
        assert (await ws.receive_json(timeout=1))["type"] == "broker:runnerregistered"
        await ws.send_json({"type": "runner:taskoffer", "offerId": "o1", "taskType": "python",
                            "validFor": -1})
        pending = asyncio.create_task(broker.submit(settings()))
        acc = await ws.receive_json(timeout=1)
        await ws.send_json({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
        out = await asyncio.wait_for(pending, 2)
        assert out.error == {"message": "Task execution aborted because runner became "
                                        "unresponsive"}
        assert broker.runner_ids == []
        codes = []
        while not ws.closed:
            msg = await ws.receive(timeout=2)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                codes.append(msg.data)
        assert 1002 in codes


async def test_answered_pings_keep_the_runner(make_broker: BrokerFactory) -> None:
    broker = await make_broker(heartbeat_interval=0.05)
    fake = FakeRunner(broker, "alive")
    await fake.connect()
    conn = broker._registered["alive"]
    for _ in range(3):  # three heartbeat rounds, each answered
        conn.ponged.clear()
        await asyncio.wait_for(conn.ponged.wait(), 5000 * MS)
    assert conn.pongs >= 3
    assert broker.runner_ids == ["alive"]
    await fake.close()


async def test_oversized_runner_frame_closes_with_1009(make_broker: BrokerFactory) -> None:
    broker = await make_broker(max_payload=1000)
    fake = FakeRunner(broker)
    await fake.connect()
    await fake.offer("o1")
    pending = asyncio.create_task(broker.submit(settings()))
    task_id, _ = await fake.accept_next()
    await fake.done(task_id, "x" * 2000)
    assert await fake.wait_closed() == 1009
    assert (await pending).error["message"] == "Node execution failed"


async def test_oversized_settings_fail_the_task(make_broker: BrokerFactory) -> None:
    broker = await make_broker(max_payload=1000)
    fake = FakeRunner(broker)
    await fake.connect()
    await fake.offer("o1")
    pending = asyncio.create_task(broker.submit(settings([{"json": {"x": "y" * 2000}}])))
    acc = await fake.expect("broker:taskofferaccept")
    await fake.send({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
    cancel = await fake.expect("broker:taskcancel")
    assert cancel["taskId"] == acc["taskId"]
    out = await pending
    assert out.status == "error" and "byte limit" in out.error["message"]
    await fake.close()


# --- drain, shutdown, load, hooks -----------------------------------------------------


async def test_drain_is_sent_and_new_requests_refused(runner: FakeRunner,
                                                      broker: EmbeddedBroker) -> None:
    await runner.offer("o1")
    await broker.drain()
    assert await runner.expect("broker:drain") == {"type": "broker:drain"}
    out = await broker.submit(settings())
    assert out.status == "error" and "draining" in out.error["message"]


async def test_aclose_closes_runners_with_1001_and_fails_open_requests(
        make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    fake = FakeRunner(broker)
    await fake.connect()
    await fake.offer("o1")
    running = asyncio.create_task(broker.submit(settings()))
    await fake.accept_next()
    queued = asyncio.create_task(broker.submit(settings()))
    await asyncio.sleep(0)  # one turn: the submit reaches the core (it awaits nothing first)
    assert len(broker.protocol.pending_request_ids()) == 1
    await broker.aclose()
    assert await fake.wait_closed() == 1001
    assert (await running).status == "error"
    assert (await queued).error["message"] == "The task broker is shutting down"
    with pytest.raises(RuntimeError):
        await broker.submit(settings())


async def test_hundreds_of_concurrent_submits(broker: EmbeddedBroker) -> None:
    runners = [AutoRunner(broker, slots=8) for _ in range(3)]
    for r in runners:
        await r.start()
    outs: list[RequestOutcome] = await asyncio.gather(
        *(broker.submit(settings([{"json": {"i": i}}])) for i in range(300)))
    assert [o.result for o in outs] == [[{"json": {"i": i}}] for i in range(300)]
    assert len({o.task_id for o in outs}) == 300
    assert {o.runner_id for o in outs} == {r.runner_id for r in runners}
    done = frames(broker, "in", "runner:taskdone")
    assert len(done) == 300 and len({m["taskId"] for m in done}) == 300
    for r in runners:
        await r.stop()


async def test_send_raw_and_wait_for_event(runner: FakeRunner, broker: EmbeddedBroker) -> None:
    await broker.send_raw(runner.runner_id, '{"type":"broker:taskcancel","taskId":"x","reason":"r"}')
    assert await runner.recv() == {"type": "broker:taskcancel", "taskId": "x", "reason": "r"}
    await broker.send_raw(runner.runner_id, b"garbage")
    assert runner.ws is not None
    assert await asyncio.wait_for(runner.ws.recv(), 1) == "garbage"
    outs = frames(broker, "out", "broker:taskcancel")
    assert outs == [{"type": "broker:taskcancel", "taskId": "x", "reason": "r"}]
    assert broker.events[-1][3] == {"type": None, "raw": "garbage"}
    await runner.offer("o9")
    event = await broker.wait_for_event(lambda e: e[3].get("offerId") == "o9", timeout=1)
    assert event[1] == runner.runner_id and event[2] == "in"
    with pytest.raises(TimeoutError):
        await broker.wait_for_event(lambda e: False, timeout=0.05)
    with pytest.raises(KeyError):
        await broker.send_raw("nobody", "x")


async def test_events_are_capped(make_broker: BrokerFactory) -> None:
    broker = await make_broker(events_limit=5)
    fake = FakeRunner(broker)
    await fake.connect()
    for i in range(10):
        await fake.offer(f"o{i}")
    await broker.wait_for_event(lambda e: e[3].get("offerId") == "o9", timeout=1)
    assert len(broker.events) == 5
    broker.clear_events()
    assert broker.events == []
    await fake.close()


async def test_wait_for_runners_times_out(broker: EmbeddedBroker) -> None:
    with pytest.raises(TimeoutError):
        await broker.wait_for_runners(1, timeout=0.05)


async def test_serve_runs_until_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskbox.broker")
    ready = asyncio.Event()

    class Ready(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Task broker ready at"):
                ready.set()

    handler = Ready()
    logging.getLogger("taskbox.broker").addHandler(handler)
    try:
        task = asyncio.create_task(serve("127.0.0.1", 0, "secret-token", rate_limit=None))
        await asyncio.wait_for(ready.wait(), 5000 * MS)
    finally:
        logging.getLogger("taskbox.broker").removeHandler(handler)
    url = caplog.text.split("Task broker ready at ")[1].split()[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        async with session.post(f"{url}/runners/auth", json={"token": "secret-token"}) as resp:
            assert resp.status == 200
    assert "secret-token" not in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
