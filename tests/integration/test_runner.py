"""The real runner against the embedded broker over loopback (issue 2's list)."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import urllib.request
from typing import Any

from taskbox.broker import EmbeddedBroker
from tests.integration.conftest import (
    AUTH,
    InProcess,
    runner_env,
    settings,
    start_runner,
    stop_runner,
)
from tests.utils import MS

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {s}:\n    pass\nreturn [{{'json': {{'done': True}}}}]"
#: BUSY that first prints: its runner:rpc proves the code is running (no sleep needed).
RUNNING = "print('running')\n" + BUSY


async def code_running(broker: EmbeddedBroker) -> None:
    """Wait until user code has started: its first print reached the broker."""
    await broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:rpc", timeout=20000 * MS)


def frames(broker: EmbeddedBroker, direction: str, kind: str) -> list[dict[str, Any]]:
    return [msg for _, _, d, msg in broker.events if d == direction and msg.get("type") == kind]


async def test_handshake_order_info_before_anything_and_offers_after_registration(
        env: InProcess) -> None:
    await env.broker.wait_for_event(lambda e: e[3].get("type") == "runner:taskoffer")
    events = [(d, msg["type"]) for _, _, d, msg in env.broker.events]
    assert events[0] == ("out", "broker:inforequest")
    assert events[1] == ("in", "runner:info")
    registered = events.index(("out", "broker:runnerregistered"))
    first_offer = events.index(("in", "runner:taskoffer"))
    assert registered < first_offer
    info = frames(env.broker, "in", "runner:info")[0]
    assert info["name"] == "taskbox" and info["types"] == ["python"]


async def test_simple_task_returns_items(env: InProcess) -> None:
    out = await env.broker.submit(settings("return [{'json': {'a': it['json']['a'] * 2}} for it in _items]",
                                           [{"a": 1}, {"a": 2}]))
    assert out.status == "done", out.error
    assert out.result == [{"json": {"a": 2}}, {"json": {"a": 4}}]


async def test_50_tasks_at_concurrency_4_each_answered_exactly_once(env: InProcess) -> None:
    codes = [f"return [{{'json': {{'n': {i}}}}}]" for i in range(50)]
    outs = await asyncio.gather(*(env.broker.submit(settings(c)) for c in codes))
    assert [o.result for o in outs] == [[{"json": {"n": i}}] for i in range(50)]
    answers = collections.Counter(
        msg["taskId"] for _, _, d, msg in env.broker.events
        if d == "in" and msg.get("type") in ("runner:taskdone", "runner:taskerror"))
    assert len(answers) == 50 and set(answers.values()) == {1}
    assert len(frames(env.broker, "in", "runner:taskaccepted")) == 50


async def test_accept_for_an_unknown_offer_is_rejected(env: InProcess) -> None:
    runner_id = env.broker.runner_ids[0]
    await env.broker.send_raw(runner_id, '{"type":"broker:taskofferaccept","taskId":"zz1","offerId":"gone"}')
    _, _, _, rejected = await env.broker.wait_for_event(
        lambda e: e[3].get("type") == "runner:taskrejected" and e[3].get("taskId") == "zz1")
    assert rejected["reason"] == "Offer expired - not accepted within validity window"
    assert (await env.broker.submit(settings("return []"))).status == "done"


async def test_malformed_frames_are_skipped_and_the_runner_keeps_serving(env: InProcess) -> None:
    runner_id = env.broker.runner_ids[0]
    for raw in ("not json", "[]", '{"type":"broker:taskcancel"}', '{"type":"broker:future"}'):
        await env.broker.send_raw(runner_id, raw)
    out = await env.broker.submit(settings("return [{'json': {'ok': True}}]"))
    assert out.result == [{"json": {"ok": True}}]


async def test_cancel_running_task_kills_it_and_runner_serves_next(env: InProcess) -> None:
    pending = asyncio.create_task(env.broker.submit(settings(RUNNING.format(s=30))))
    await code_running(env.broker)
    task_id = frames(env.broker, "out", "broker:tasksettings")[-1]["taskId"]
    started = time.monotonic()
    await env.broker.cancel(task_id, reason="user cancelled")
    out = await asyncio.wait_for(pending, 10)
    assert out.status == "error"
    assert time.monotonic() - started < 5000 * MS  # a hang detector, far above the ~10 ms
    report = await env.broker.wait_for_event(
        lambda e: e[2] == "in" and e[3].get("type") == "runner:taskerror", timeout=5000 * MS)
    assert report[3]["error"]["message"] == "Task was cancelled"
    nxt = await env.broker.submit(settings("return [{'json': {'after': 1}}]"))
    assert nxt.result == [{"json": {"after": 1}}]


async def test_task_timeout_gives_clear_error(broker: EmbeddedBroker) -> None:
    runner, serving = await start_runner(broker, N8N_RUNNERS_TASK_TIMEOUT="1")
    try:
        out = await broker.submit(settings("while True:\n    pass"))
        assert out.status == "error"
        assert out.error["message"] == "Task execution timed out after 1 second"
        assert (await broker.submit(settings("return []"))).status == "done"
    finally:
        await stop_runner(runner, serving)


async def test_drain_finishes_running_task_then_closes(broker: EmbeddedBroker) -> None:
    _, serving = await start_runner(broker)
    pending = asyncio.create_task(broker.submit(settings(BUSY.format(s=1))))
    await broker.wait_for_event(lambda e: e[3].get("type") == "broker:tasksettings")
    await broker.drain()
    out = await asyncio.wait_for(pending, 15)
    assert out.status == "done" and out.result == [{"json": {"done": True}}]
    assert await asyncio.wait_for(serving, 15) == 0
    offers_after_drain = [t for t, _, d, msg in broker.events
                          if d == "in" and msg.get("type") == "runner:taskoffer"
                          and t > next(t2 for t2, _, d2, m2 in broker.events
                                       if d2 == "out" and m2.get("type") == "broker:drain")]
    assert offers_after_drain == []


async def test_health_endpoint_answers_during_a_busy_task(broker: EmbeddedBroker) -> None:
    runner, serving = await start_runner(
        broker, N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED="true",
        N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT="0")
    try:
        assert runner.health is not None
        pending = asyncio.create_task(broker.submit(settings(RUNNING.format(s=2))))
        await code_running(broker)
        url = f"http://127.0.0.1:{runner.health.port}/healthz"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
        assert body == b"OK"
        assert not pending.done()
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url.replace("healthz", "metrics"), timeout=2).read())
        assert b"taskbox_offers_sent_total" in metrics
        assert (await pending).status == "done"
    finally:
        await stop_runner(runner, serving)


async def test_pings_answered_during_a_busy_task() -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, heartbeat_interval=0.3,
                            rate_limit=1000.0)
    await broker.start()
    try:
        runner, serving = await start_runner(broker)
        out = await broker.submit(settings(BUSY.format(s=2)))
        assert out.status == "done"  # a missed pong would have dropped the runner mid-task
        assert broker.runner_ids == [runner.runner_id]
        await stop_runner(runner, serving)
    finally:
        await broker.aclose()


async def test_bad_grant_token_exits_3(broker: EmbeddedBroker, spawn: Any) -> None:
    env = runner_env(broker)
    env["N8N_RUNNERS_GRANT_TOKEN"] = "not-a-valid-token"
    child = spawn(env)
    code = await asyncio.to_thread(child.wait, 30)
    assert code == 3
    assert "Authentication failed" in child.output()


async def test_sigterm_with_task_in_flight_completes_task_and_exits_0(
        broker: EmbeddedBroker, spawn: Any) -> None:
    child = spawn(runner_env(broker))
    await broker.wait_for_runners(1, timeout=20)
    pending = asyncio.create_task(broker.submit(settings(RUNNING.format(s=1.5))))
    await code_running(broker)
    child.proc.send_signal(signal.SIGTERM)
    out = await asyncio.wait_for(pending, 15)
    assert out.status == "done" and out.result == [{"json": {"done": True}}]
    assert await asyncio.to_thread(child.wait, 20) == 0


async def test_reconnects_with_auth_token_after_broker_restart(spawn: Any) -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, rate_limit=1000.0)
    await broker.start()
    port = broker.port
    env = runner_env(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH, TASKBOX_CONNECT_TIMEOUT="3")
    child = spawn(env)
    await broker.wait_for_runners(1, timeout=20)
    assert (await broker.submit(settings("return [{'json': {'v': 1}}]"))).status == "done"
    await broker.aclose()
    broker2 = EmbeddedBroker(host="127.0.0.1", port=port, auth_token=AUTH, rate_limit=1000.0)
    await broker2.start()
    try:
        await broker2.wait_for_runners(1, timeout=30)
        out = await broker2.submit(settings("return [{'json': {'v': 2}}]"))
        assert out.result == [{"json": {"v": 2}}]
        assert child.proc.poll() is None
    finally:
        await broker2.aclose()
    # The broker is gone for good now: retries stop after TASKBOX_CONNECT_TIMEOUT.
    assert await asyncio.to_thread(child.wait, 30) == 1
    assert "unreachable" in child.output()


async def test_without_auth_token_an_unexpected_close_exits_non_zero(spawn: Any) -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, rate_limit=1000.0)
    await broker.start()
    child = spawn(runner_env(broker))
    await broker.wait_for_runners(1, timeout=20)
    await broker.disconnect(broker.runner_ids[0])
    code = await asyncio.to_thread(child.wait, 30)
    await broker.aclose()
    assert code == 1


async def test_a_proxy_in_the_environment_is_not_used_for_a_loopback_broker(spawn: Any) -> None:
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH, rate_limit=1000.0)
    await broker.start()
    try:
        # Port 9 on loopback is closed: a runner that went through this proxy never connects.
        proxy = "http://127.0.0.1:9"
        env = runner_env(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH, HTTP_PROXY=proxy,
                         HTTPS_PROXY=proxy, ALL_PROXY=proxy, http_proxy=proxy,
                         https_proxy=proxy)
        del env["N8N_RUNNERS_GRANT_TOKEN"]  # minted over HTTP, past the same proxy
        spawn(env)
        await broker.wait_for_runners(1, timeout=20)
        out = await broker.submit(settings("return [{'json': {'v': 1}}]"))
        assert out.result == [{"json": {"v": 1}}]
    finally:
        await broker.aclose()
