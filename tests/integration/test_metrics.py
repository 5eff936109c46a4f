"""GET /metrics after tasks of every kind of outcome: the counters add up (issue 7)."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from taskbox.broker import EmbeddedBroker
from taskbox.executor.pool import IDLE_WORKERS
from tests.integration.conftest import AUTH, settings, start_runner, stop_runner

REJECT_EXPIRED = "Offer expired - not accepted within validity window"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        ctype = response.headers["Content-Type"]
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return ctype, samples


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


async def test_metrics_count_outcomes_offers_rpcs_kills_and_reconnects(
        broker: EmbeddedBroker) -> None:
    runner, serving = await start_runner(
        broker, N8N_RUNNERS_TASK_TIMEOUT="1", N8N_RUNNERS_AUTH_TOKEN=AUTH,
        N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED="true", N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT="0")
    try:
        assert runner.health is not None
        cases = {
            "ok-print": ("print('hello')\nreturn [{'json': {'a': 1}}]", "done"),
            "ok-helper": ("b = _helpers.prepareBinaryData(b'abc', 'a.txt')\n"
                          "return [{'json': {'n': len(b)}}]", "done"),
            "error": ("raise ValueError('boom')", "error"),
            "security": ("import os\nreturn []", "error"),
            "timeout": ("while True:\n    pass", "error"),
        }
        outs = await asyncio.gather(*(broker.submit(settings(code)) for code, _ in cases.values()))
        assert [o.status for o in outs] == [want for _, want in cases.values()], \
            [o.error for o in outs]
        # One accept for an offer that does not exist, one garbage frame.
        runner_id = runner.runner_id
        await broker.send_raw(runner_id, '{"type":"broker:taskofferaccept","taskId":"t1",'
                                         '"offerId":"gone"}')
        await broker.wait_for_event(lambda e: e[3].get("type") == "runner:taskrejected")
        await broker.send_raw(runner_id, "not json")
        # A dropped connection: the runner reconnects with its auth token.
        await broker.disconnect(runner_id)
        await broker.wait_for_runners(1, timeout=10)
        assert (await broker.submit(settings("return []"))).status == "done"
        async with asyncio.timeout(10):  # back to the idle pool (it shrinks after 1 s)
            while (await runner.sandbox()).ready_workers != IDLE_WORKERS:
                await asyncio.sleep(0.02)

        ctype, samples = await asyncio.to_thread(scrape, runner.health.port)
    finally:
        await stop_runner(runner, serving)

    assert ctype.startswith("text/plain; version=")
    tasks = {outcome: value(samples, "taskbox_tasks_total", outcome=outcome)
             for outcome in ("ok", "error", "security", "timeout")}
    assert tasks == {"ok": 3, "error": 1, "security": 1, "timeout": 1}
    assert sum(v for (n, _), v in samples.items() if n == "taskbox_tasks_total") == 6
    assert value(samples, "taskbox_task_duration_seconds_count") == 6
    assert value(samples, "taskbox_task_duration_seconds_bucket", le="+Inf") == 6
    # Buckets are cumulative; where the five quick tasks land depends on the machine
    # (speed belongs in the bench), but the 1 s timeout task is never among the fast.
    buckets = [value(samples, "taskbox_task_duration_seconds_bucket", le=le)
               for le in ("0.1", "0.5", "1.0", "+Inf")]
    assert buckets == sorted(buckets) and buckets[1] <= 5
    assert 1.0 <= value(samples, "taskbox_task_duration_seconds_sum") < 10
    assert value(samples, "taskbox_offers_accepted_total") == 6
    assert value(samples, "taskbox_offers_sent_total") >= 6
    assert value(samples, "taskbox_offers_rejected_total", reason=REJECT_EXPIRED) == 1
    assert value(samples, "taskbox_worker_kills_total", cause="timeout") == 1
    assert sum(v for (n, _), v in samples.items() if n == "taskbox_worker_kills_total") == 1
    assert value(samples, "taskbox_rpc_calls_total", name="logNodeOutput") == 1
    assert value(samples, "taskbox_rpc_calls_total", name="helpers.prepareBinaryData") == 1
    assert value(samples, "taskbox_malformed_frames_total") == 1
    assert value(samples, "taskbox_reconnects_total") == 1
    assert value(samples, "taskbox_ready_workers") == IDLE_WORKERS
    layers = (await runner.sandbox()).layers
    assert layers and "seccomp" in layers
    for layer, active in layers.items():
        assert value(samples, "taskbox_sandbox_layer_active", layer=layer) == float(active)
