"""--log-format json: one JSON object per line, task fields on task lines, no secrets or user data.

A child-process runner at debug level runs tasks whose code, items, prints, error
messages and import names carry canary strings; the broker also sends frames with
canaries, drops the connection (the runner mints a new grant token with its auth
token) and the runner is stopped with SIGTERM. Every line of its output must parse as
JSON, and neither a token nor a canary may appear anywhere in it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any

from taskbox.broker import EmbeddedBroker
from tests.integration.conftest import AUTH, runner_env, settings

CANARY = "CANARY-7f3a9c"
TASK_FIELDS = ("task_id", "workflow_id", "workflow_name", "node_id", "node_name")
HEX_TOKEN = re.compile(r"[0-9a-f]{64}")  # the shape of a grant token


def node(code: str, items: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    s = settings(code, items, **kw)
    s.update(workflowId="wf-42", workflowName="Orders", nodeId="node-7", nodeName="Clean up")
    return s


async def test_json_logs_carry_task_fields_and_never_tokens_or_user_data(
        broker: EmbeddedBroker, spawn: Any) -> None:
    env = runner_env(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH, N8N_RUNNERS_LAUNCHER_LOG_LEVEL="debug",
                     N8N_RUNNERS_STDLIB_ALLOW="json,os")
    grant = env["N8N_RUNNERS_GRANT_TOKEN"]
    child = spawn(env, "connect", "--log-format", "json")
    (runner_id,) = await broker.wait_for_runners(1, timeout=20)

    tasks = [
        node(f"print('{CANARY}-print')\nx = '{CANARY}-code'\nreturn _items",
             [{"v": f"{CANARY}-item"}]),
        node(f"raise ValueError('{CANARY}-error')"),
        node(f"raise ValueError('{CANARY}-cof')", cof=True),
        node(f"import {CANARY.replace('-', '_')}_module\nreturn []"),
        node(f"def f(:\n    '{CANARY}-syntax'"),
        node(f"import os\nos.write(2, b'{CANARY}-fd2\\n')\nos.write(1, b'{CANARY}-fd1\\n')\n"
             "return []"),
        node(f"return [{{'json': {{'s': '{CANARY}' * 10}}}}]", each=True,
             items=[{"a": 1}, {"a": 2}]),
    ]
    outs = [await broker.submit(s) for s in tasks]
    assert [o.status for o in outs] == ["done", "error", "done", "error", "error", "done", "done"]
    assert outs[0].prints == [[f"'{CANARY}-print'"]]  # the canary did reach the node...
    task_ids = {o.task_id for o in outs}
    # ... and frames from the broker carry canaries too.
    for raw in (f"not json {CANARY}", f'{{"type":"broker:tasksettings","taskId":"nope",'
                f'"settings":{{"code":"{CANARY}"}}}}', f'{{"type":"{CANARY}"}}',
                f'{{"type":"broker:taskcancel","taskId":"x","reason":7,"r":"{CANARY}"}}'):
        await broker.send_raw(runner_id, raw)
    await broker.disconnect(runner_id)  # the runner mints a fresh grant token
    await broker.wait_for_runners(1, timeout=20)
    assert (await broker.submit(node("return []"))).status == "done"
    child.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(child.wait, 20) == 0
    output = child.output()

    lines = [json.loads(line) for line in output.splitlines()]
    assert lines and all(isinstance(line, dict) for line in lines)
    for line in lines:
        assert {"time", "level", "logger", "event", "message"} <= line.keys(), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), line
    assert {line["level"] for line in lines} >= {"debug", "info"}

    # Every line that names a task carries its id; start and end lines carry the rest.
    for line in lines:
        named = [t for t in task_ids if t in line["message"]]
        if named:
            assert line.get("task_id") == named[0], line
    ends = {line["task_id"]: line for line in lines if line["event"] == "task_end"}
    starts = {line["task_id"]: line for line in lines if line["event"] == "task_start"}
    assert task_ids <= ends.keys() and task_ids <= starts.keys()
    for task_id in task_ids:
        for line in (starts[task_id], ends[task_id]):
            assert {k: line[k] for k in TASK_FIELDS} == {
                "task_id": task_id, "workflow_id": "wf-42", "workflow_name": "Orders",
                "node_id": "node-7", "node_name": "Clean up"}, line
        assert isinstance(ends[task_id]["duration_ms"], float | int)
        assert ends[task_id]["duration_ms"] >= 0
    assert [ends[o.task_id]["outcome"] for o in outs] == [
        "ok", "error", "error", "security", "syntax", "ok", "ok"]

    # No token, no user data.
    assert CANARY not in output and CANARY.replace("-", "_") not in output
    assert AUTH not in output and grant not in output
    assert not HEX_TOKEN.search(output), HEX_TOKEN.search(output)
