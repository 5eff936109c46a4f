"""The pieces of ``make e2e-queue`` that can be checked without n8n (e2e/queue/).

The queue-mode run itself needs Redis, Postgres and n8n and is not part of
``make test``; these keep its own checks honest: the workflow's Python code, run by
taskbox, gives exactly the answers the load client demands, and the metric names the
harness reads are the ones taskbox's /metrics serves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.queue import workflow as wf
from e2e.queue.load import percentile
from e2e.queue.stack import in_flight, parse_metrics, tasks_all, tasks_ok
from taskbox.runner.metrics import Metrics


@pytest.mark.parametrize(("index", "hold"), [(0, 0.0), (41, 0.0), (100_007, 0.05)])
def test_the_workflow_code_gives_the_expected_answer(tmp_path: Path, index: int,
                                                     hold: float) -> None:
    code = tmp_path / "code.py"
    code.write_text(wf.PYTHON_CODE)
    items = tmp_path / "items.json"
    # what the Webhook node hands on: the request under "body"
    items.write_text(json.dumps([{"body": wf.request_body(index, hold)}]))
    done = subprocess.run([sys.executable, "-m", "taskbox", "run", str(code), "--items",
                           str(items), "--stdlib-allow", "time"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [item["json"] for item in json.loads(done.stdout)] == wf.expected(index)


def test_answers_differ_per_request() -> None:
    assert len({json.dumps(wf.expected(i)) for i in range(200)}) == 200
    assert wf.expected(3) != wf.expected(4)


def test_the_workflow_is_webhook_python_respond() -> None:
    flow = wf.workflow()
    types = {n["name"]: n["type"] for n in flow["nodes"]}
    assert types == {"Webhook": "n8n-nodes-base.webhook", "Python": "n8n-nodes-base.code",
                     "Respond": "n8n-nodes-base.respondToWebhook"}
    webhook = next(n for n in flow["nodes"] if n["name"] == "Webhook")
    assert webhook["parameters"]["path"] == wf.WEBHOOK_PATH
    assert webhook["parameters"]["responseMode"] == "responseNode"
    python = next(n for n in flow["nodes"] if n["name"] == "Python")
    assert python["parameters"]["language"] == "pythonNative"
    links = {src: [c["node"] for c in out["main"][0]] for src, out in flow["connections"].items()}
    assert links == {"Webhook": ["Python"], "Python": ["Respond"]}
    assert len(flow["id"]) == 16  # n8n's workflow ids


def test_harness_reads_what_taskbox_metrics_serve() -> None:
    m = Metrics(slots=5, busy_slots=lambda: 3)
    for kind in ("ok", "ok", "error"):
        m.observe_task(kind, 0.01)
    sample = parse_metrics(m.render()[1].decode())
    assert tasks_ok(sample) == 2
    assert tasks_all(sample) == 3
    assert in_flight(sample) == 3


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == \
        (50.0, 95.0, 99.0)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) == 0.0
