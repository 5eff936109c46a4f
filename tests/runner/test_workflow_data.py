"""The runner's side of workflow data (runner/workflow_data.py): plan, cache, filters, checks."""

from __future__ import annotations

from typing import Any

import pytest

from taskbox.policy.data_names import DataPlan
from taskbox.runner.workflow_data import (
    DATA_CALL,
    EXTRAS_CALL,
    TaskData,
    is_secret,
    prepare,
    timezone_offset,
)


class Requests:
    def __init__(self, answer: tuple[bool, Any]) -> None:
        self.answer = answer
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, params: dict[str, Any]) -> tuple[bool, Any]:
        self.sent.append(params)
        return self.answer


async def test_one_request_per_task_with_the_runners_params() -> None:
    requests = Requests((True, {"workflow": {"settings": {"timezone": "UTC"}}}))
    data = TaskData("return [_('A').first(), _env]", requests)
    first = await data.handle(DATA_CALL, [])
    again = await data.handle(DATA_CALL, ["anything the worker sends is ignored"])
    assert first == again and first[0] is True
    assert requests.sent == [{"dataOfNodes": ["A"], "prevNode": False,
                              "input": {"include": False}, "env": True}]
    assert first[1]["$tz"] == ["UTC", 0]


async def test_code_without_data_names_gets_no_request() -> None:
    requests = Requests((True, {}))
    ok, reason = await TaskData("return _items", requests).handle(DATA_CALL, [])
    assert not ok and "names no workflow data" in reason and requests.sent == []


async def test_a_failed_or_odd_answer_is_the_workers_error() -> None:
    ok, reason = await TaskData("return [_workflow]", Requests(
        (False, "Data request timed out after 30 s"))).handle(DATA_CALL, [])
    assert (ok, reason) == (False, "Data request timed out after 30 s")
    ok, reason = await TaskData("return [_workflow]", Requests((True, []))).handle(DATA_CALL, [])
    assert not ok and "not an object" in reason


async def test_extras_are_checked_against_n8ns_rules() -> None:
    data = TaskData("return []", Requests((True, {})))
    bad: list[dict[str, Any]] = [
        {"customData": {"bad key": "x"}},
        {"customData": {"k": 1}},
        {"customData": {"k": "x" * 513}},
        {"customData": {f"k{i}": "v" for i in range(11)}},
        {"staticData": {"other": {}}},
        {"staticData": {"global": 5}},
    ]
    for extras in bad:
        ok, _ = await data.handle(EXTRAS_CALL, [extras])
        assert not ok, extras
    assert data.extras == {}
    good = {"customData": {"k_1": "v"}, "staticData": {"global": {"n": 1}, "node:A": {}}}
    assert await data.handle(EXTRAS_CALL, [good]) == (True, None)
    assert data.extras == good


def test_env_is_filtered_and_only_when_asked_for() -> None:
    env = {"API_BASE": "x", "N8N_ENCRYPTION_KEY": "k", "N8N_RUNNERS_AUTH_TOKEN": "t" * 16,
           "COPY": "t" * 16, "DB_POSTGRESDB_PASSWORD": "p", "SECRETS_FILE": "/run/s",
           "HOME": "/home/node"}
    state = {"isEnvAccessBlocked": False, "env": env}
    out = prepare({"envProviderState": dict(state)}, DataPlan((), False, True))
    # COPY carries the auth token's value: the runner's own filter drops it too
    assert out["envProviderState"]["env"] == {"API_BASE": "x", "HOME": "/home/node"}
    out = prepare({"envProviderState": dict(state)}, DataPlan((), False, False))
    assert out["envProviderState"]["env"] == {}
    assert is_secret("MY_API_KEY") and is_secret("QUEUE_BULL_REDIS_PASSWORD")
    assert not is_secret("KEYBOARD_LAYOUT") and not is_secret("GENERIC_TIMEZONE")


def test_timezone_falls_back_as_n8n(monkeypatch: pytest.MonkeyPatch) -> None:
    assert timezone_offset("Asia/Tokyo") == ["Asia/Tokyo", 9 * 3600]
    assert timezone_offset("Not/AZone") == ["UTC", 0]
    monkeypatch.setenv("GENERIC_TIMEZONE", "Asia/Kolkata")
    assert timezone_offset("DEFAULT") == ["Asia/Kolkata", 5 * 3600 + 1800]
    monkeypatch.delenv("GENERIC_TIMEZONE")
    assert timezone_offset(None)[0] == "America/New_York"
