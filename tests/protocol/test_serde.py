"""Wire parsing and serialization."""

from __future__ import annotations

import math

import orjson
import pytest

from taskbox.errors import LocalProtocolError, RemoteProtocolError, SettingsError
from taskbox.executor.task import failure
from taskbox.protocol import messages as m
from taskbox.protocol.serde import (
    LAZY_THRESHOLD,
    RawJSON,
    is_json_value,
    parse_broker,
    parse_runner,
    serialize,
)
from taskbox.runner.dispatch import build_spec


@pytest.mark.parametrize("raw", [
    b"not json", b"[1,2]", b'{"no":"type"}', b'{"type": 5}',
    b'{"type":"broker:taskofferaccept","taskId":"a"}',
    b'{"type":"broker:taskofferaccept","taskId":1,"offerId":"b"}',
    b'{"type":"broker:tasksettings","taskId":"a","settings":[]}',
    "\udcff".encode("utf-8", "surrogatepass"),
])
def test_malformed_frames_raise_remote_protocol_error(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_broker(raw)


def test_unknown_type_is_ignored() -> None:
    assert parse_broker(b'{"type":"broker:somethingnew","x":1}') is None


def test_camel_case_fields_map_to_dataclasses() -> None:
    msg = parse_broker(b'{"type":"broker:rpcresponse","taskId":"t","callId":"c",'
                       b'"status":"error","data":"Method not allowed"}')
    assert msg == m.RpcResponse("t", "c", "error", "Method not allowed")
    assert parse_runner(b'{"type":"runner:taskoffer","offerId":"o","taskType":"python",'
                        b'"validFor":-1}') == m.TaskOffer("o", "python", -1)


def test_serialize_is_strict_json_even_with_nan() -> None:
    frame = serialize(m.TaskDone("t", {"result": [{"json": {"x": math.nan, "y": math.inf}}]}))
    assert frame == (b'{"type":"runner:taskdone","taskId":"t",'
                     b'"data":{"result":[{"json":{"x":null,"y":null}}]}}')


def test_serialize_refuses_oversize_frames() -> None:
    with pytest.raises(LocalProtocolError, match="over the 100 byte limit"):
        serialize(m.TaskDone("t", {"result": ["x" * 200]}), max_size=100)


def test_round_trip_every_runner_message() -> None:
    samples: list[m.RunnerMessage] = [
        m.RunnerInfo("taskbox", ["python"]), m.TaskOffer("o", "python", 5000),
        m.TaskAccepted("t"), m.TaskRejected("t", m.REJECT_AT_CAPACITY), m.TaskDeferred("t"),
        m.TaskDone("t", {"result": []}), m.TaskErrorReport("t", {"message": "boom"}),
        m.RpcCall("c", "t", "logNodeOutput", ["1"]),
    ]
    for msg in samples:
        assert parse_runner(serialize(msg)) == msg


def test_non_str_keys_are_strings_on_the_wire() -> None:
    frame = serialize(m.TaskDone("t", {"result": [{"json": {1: "a", None: "b"}}]}))
    assert frame.endswith(b'"data":{"result":[{"json":{"1":"a","null":"b"}}]}}')


def _settings_frame(items: object, mode: str = "runOnceForEachItem", **extra: object) -> bytes:
    settings = {"code": "return _item", "nodeMode": mode, "continueOnFail": True,
                "items": items, "query": {"q": [1, 2]}, **extra}
    return orjson.dumps({"type": "broker:tasksettings", "taskId": "t1", "settings": settings})


_BIG_ITEMS = [{"json": {"id": i, "name": f"item {i}", "v": i * 1.5}} for i in range(2_000)]


def test_large_task_settings_keep_their_items_as_the_brokers_bytes() -> None:
    raw = _settings_frame(_BIG_ITEMS)
    assert len(raw) > LAZY_THRESHOLD
    msg = parse_broker(raw)
    assert isinstance(msg, m.TaskSettings) and msg.task_id == "t1"
    items = msg.settings["items"]
    assert isinstance(items, RawJSON) and items.data == orjson.dumps(_BIG_ITEMS)
    assert msg.settings["query"] == {"q": [1, 2]} and msg.settings["continueOnFail"] is True
    spec = build_spec("t1", msg.settings)
    assert spec.items_json == items.data and spec.item_count is None
    # Counted only where it is needed: a per-item continueOnFail failure, one per item.
    out = failure(spec, "boom")
    assert isinstance(out.result, list) and len(out.result) == 2_000
    assert out.result[1999] == {"json": {"error": "boom"}, "pairedItem": {"item": 1999}}


def test_small_task_settings_are_parsed_as_before() -> None:
    msg = parse_broker(_settings_frame([{"json": {"a": 1}}]))
    assert isinstance(msg, m.TaskSettings)
    assert msg.settings["items"] == [{"json": {"a": 1}}]
    assert build_spec("t1", msg.settings).item_count == 1


def test_large_task_settings_whose_items_are_not_a_list_are_refused() -> None:
    msg = parse_broker(_settings_frame({"json": {"x": "y" * LAZY_THRESHOLD}}))
    assert isinstance(msg, m.TaskSettings)
    with pytest.raises(SettingsError, match="must be a list"):
        build_spec("t1", msg.settings)


@pytest.mark.parametrize("raw", [
    _settings_frame(_BIG_ITEMS)[:-1],  # truncated
    _settings_frame(_BIG_ITEMS).replace(b'"query":{"q":[1,2]}', b'"query":NaN'),
    _settings_frame(_BIG_ITEMS).replace(b'"taskId":"t1"', b'"taskId":1'),
    _settings_frame(_BIG_ITEMS).replace(b'"item 5"', b'"item \\x"'),
])
def test_malformed_large_task_settings_are_still_refused(raw: bytes) -> None:
    assert len(raw) > LAZY_THRESHOLD
    with pytest.raises(RemoteProtocolError):
        parse_broker(raw)


def test_large_frames_of_other_types_are_parsed_in_full() -> None:
    data = {"text": "broker:tasksettings", "items": _BIG_ITEMS}
    raw = orjson.dumps({"type": "broker:rpcresponse", "taskId": "t", "callId": "c",
                        "status": "success", "data": data})
    assert parse_broker(raw) == m.RpcResponse("t", "c", "success", data)


_BIG_VALUE = orjson.dumps(_BIG_ITEMS)


@pytest.mark.parametrize(("body", "ok"), [
    (b'[{"json":{"a":1}}]', True),
    (_BIG_VALUE, True),
    (b" " + _BIG_VALUE + b"\n", True),
    (_BIG_VALUE + b',"staticData":{"x":1}', False),  # would add a key once spliced
    (_BIG_VALUE[:-1] + b'],"taskId":"other"', False),
    (_BIG_VALUE[:-1], False),
    (_BIG_VALUE.replace(b"1.5", b"NaN", 1), False),
    (_BIG_VALUE.replace(b"item 7", b"item \xff", 1), False),  # not UTF-8
    (_BIG_VALUE.replace(b"item 7", b"item \xed\xa0\x80", 1), False),  # a surrogate
    (_BIG_VALUE.replace(b"item 7", b'item \\ud800', 1), False),  # a lone escape
    (b"[1]]", False),
])
def test_is_json_value_passes_exactly_one_strict_value(body: bytes, ok: bool) -> None:
    assert is_json_value(body) is ok
