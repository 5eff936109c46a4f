"""What an operator runs taskbox by: the readiness endpoint and the gauges people alert on.

A real runner with its health server, a real embedded broker and sandbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.error
import urllib.request

from taskbox import __version__
from taskbox.broker import EmbeddedBroker
from taskbox.config import Config
from taskbox.runner import Runner
from tests.integration.conftest import runner_env, settings, start_runner, stop_runner
from tests.integration.test_metrics import scrape, value

HEALTH = {"N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED": "true",
          "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT": "0"}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_readiness_false_until_registered_and_while_draining(
        broker: EmbeddedBroker) -> None:
    # First a broker that is not there: alive (n8n's /healthz) but not ready.
    env = runner_env(broker, **HEALTH, TASKBOX_CONNECT_TIMEOUT="30")
    env["N8N_RUNNERS_TASK_BROKER_URI"] = "http://127.0.0.1:1"
    lonely = Runner(Config.from_env(env), handle_signals=False)
    serving = asyncio.create_task(lonely.run())
    try:
        async with asyncio.timeout(10):
            while lonely.health is None or not lonely.health.port:
                await asyncio.sleep(0.01)
        port = lonely.health.port
        assert await asyncio.to_thread(get, port, "/healthz") == (200, "OK")
        assert await asyncio.to_thread(get, port, "/healthz/readiness") == (503, "not ready")
        _, samples = await asyncio.to_thread(scrape, port)
        assert value(samples, "taskbox_broker_connected") == 0
    finally:
        lonely.request_stop()
        await asyncio.wait_for(serving, 20)

    runner, serving = await start_runner(broker, **HEALTH)
    try:
        assert runner.health is not None
        port = runner.health.port
        assert await asyncio.to_thread(get, port, "/healthz/readiness") == (200, "ready")
        # Draining with a task still running: alive, not ready, the task still finishes.
        slow = asyncio.create_task(broker.submit(settings(
            "import time\ntime.sleep(1.5)\nreturn []")))
        async with asyncio.timeout(10):
            while not broker.running_task_ids:
                await asyncio.sleep(0.01)
        await broker.drain()
        async with asyncio.timeout(10):
            while (await asyncio.to_thread(get, port, "/healthz/readiness"))[0] != 503:
                await asyncio.sleep(0.05)
        assert await asyncio.to_thread(get, port, "/healthz") == (200, "OK")
        assert not slow.done()
        assert (await slow).status == "done"
    finally:
        await asyncio.wait_for(serving, 20)


async def test_gauges_slots_connection_restarts_and_build_info(broker: EmbeddedBroker) -> None:
    runner, serving = await start_runner(broker, **HEALTH, N8N_RUNNERS_MAX_CONCURRENCY="3")
    try:
        assert runner.health is not None
        port = runner.health.port
        _, samples = await asyncio.to_thread(scrape, port)
        # Labelled counters exist at 0 before anything happened.
        assert ("taskbox_tasks_total", frozenset({("outcome", "timeout")})) in samples
        assert value(samples, "taskbox_worker_kills_total", cause="memory") == 0
        assert ("taskbox_worker_kills_total", frozenset({("cause", "memory")})) in samples
        assert value(samples, "taskbox_slots") == 3
        assert value(samples, "taskbox_busy_slots") == 0
        assert value(samples, "taskbox_broker_connected") == 1
        assert value(samples, "taskbox_build_info", version=__version__,
                     python=".".join(map(str, sys.version_info[:3]))) == 1
        assert value(samples, "process_resident_memory_bytes") > 0
        assert value(samples, "process_cpu_seconds_total") > 0

        slow = asyncio.create_task(broker.submit(settings(
            "import time\ntime.sleep(1.5)\nreturn []")))
        async with asyncio.timeout(10):
            while value((await asyncio.to_thread(scrape, port))[1], "taskbox_busy_slots") != 1:
                await asyncio.sleep(0.05)
        assert (await slow).status == "done"

        sandbox = await runner.sandbox()
        zygote = getattr(sandbox, "zygote_pid", None)
        assert isinstance(zygote, int)
        os.kill(zygote, signal.SIGKILL)
        async with asyncio.timeout(20):
            while value((await asyncio.to_thread(scrape, port))[1],
                        "taskbox_zygote_restarts_total") != 1:
                await asyncio.sleep(0.1)
        assert (await broker.submit(settings("return [{'after': 1}]"))).status == "done"
    finally:
        await stop_runner(runner, serving)
