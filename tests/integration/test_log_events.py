"""JSON log lines name what happened: a stable ``event`` on every line, ids always there.

Two parts: a real runner's JSON output (start, a task, a dropped connection, SIGTERM),
and a static check over every log call in ``src/`` that each template gets a name and
that the names in ``taskbox.logs.EVENTS`` are still logged somewhere.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import signal
from pathlib import Path
from typing import Any

from taskbox.broker import EmbeddedBroker
from taskbox.logs import EVENTS, event_name
from tests.integration.conftest import AUTH, runner_env, settings

SRC = Path(__file__).resolve().parents[2] / "src" / "taskbox"
NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


async def test_every_json_line_has_a_stable_event_and_its_ids(
        broker: EmbeddedBroker, spawn: Any) -> None:
    env = runner_env(broker, N8N_RUNNERS_AUTH_TOKEN=AUTH, N8N_RUNNERS_LAUNCHER_LOG_LEVEL="debug")
    child = spawn(env, "connect", "--log-format", "json")
    (runner_id,) = await broker.wait_for_runners(1, timeout=20)
    first = await broker.submit(settings("return [{'json': {'a': 1}}]"))
    await broker.disconnect(runner_id)
    await broker.wait_for_runners(1, timeout=20)
    second = await broker.submit(settings("raise ValueError('x')"))
    child.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(child.wait, 20) == 0
    lines = [json.loads(x) for x in child.output().splitlines()]

    for line in lines:
        assert NAME.match(line["event"]), line
        assert line["event"] != line["message"]
        for key in ("runner_id", "task_id", "workflow_id", "node_id"):
            assert key in line, (key, line)  # null when not about a task
        # Known from Runner.run on; asyncio's first debug line comes before it.
        assert line["runner_id"] == runner_id or not line["logger"].startswith("taskbox"), line
    events = [line["event"] for line in lines]
    for wanted in ("runner_registered", "sandbox_ready", "task_end", "broker_connection_lost",
                   "signal_received", "broker_connection_closed"):
        assert wanted in events, (wanted, events)
    assert events.count("runner_registered") == 2  # and again after the reconnect
    ends = {line["task_id"]: line for line in lines if line["event"] == "task_end"}
    assert ends[first.task_id]["outcome"] == "ok"
    assert ends[second.task_id]["outcome"] == "error"
    registered = next(line for line in lines if line["event"] == "runner_registered")
    assert registered["task_id"] is None and registered["workflow_id"] is None


def _is_logger(node: ast.expr) -> bool:
    """``log``, ``logger`` or ``self.logger``."""
    if isinstance(node, ast.Name):
        return node.id in {"log", "logger"}
    return isinstance(node, ast.Attribute) and node.attr == "logger"


def _log_templates() -> list[tuple[str, str, ast.expr]]:
    """(file, logger-ish name, first argument) of every log call in src/taskbox."""
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS and _is_logger(node.func.value)
                    and node.args):
                calls.append((str(path.relative_to(SRC)), path.stem, node.args[0]))
    return calls


def test_every_log_call_has_a_constant_template_and_a_name() -> None:
    calls = _log_templates()
    assert len(calls) > 30
    names: dict[str, set[str]] = {}
    for where, area, first in calls:
        # A constant template keeps the derived name stable (no values in it).
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), where
        record = logging.LogRecord(f"taskbox.{area}", logging.INFO, where, 0, first.value,
                                   None, None)
        assert NAME.match(event_name(record)), (where, first.value, event_name(record))
        names.setdefault(event_name(record), set()).add(first.value)
    shared = {n: t for n, t in names.items() if len(t) > 1 and n != "config_invalid"}
    assert not shared, f"different lines with one event name: {shared}"


def test_named_templates_are_still_logged() -> None:
    logged = {first.value for _, _, first in _log_templates() if isinstance(first, ast.Constant)}
    stale = set(EVENTS) - logged
    assert not stale, f"EVENTS names templates nobody logs any more: {sorted(stale)}"
    assert len(set(EVENTS.values()) - {"config_invalid"}) == len(EVENTS) - 2  # unique names
