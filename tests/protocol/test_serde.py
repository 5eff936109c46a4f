"""Wire parsing and serialization."""

from __future__ import annotations

import math

import pytest

from taskbox.errors import LocalProtocolError, RemoteProtocolError
from taskbox.protocol import messages as m
from taskbox.protocol.serde import parse_broker, parse_runner, serialize


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
