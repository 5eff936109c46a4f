"""n8n's Buffer JSON, sliced: byte-exact with orjson's one-piece output, both ways."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from taskbox.protocol import buffers as b
from taskbox.protocol import messages as m
from taskbox.protocol.serde import parse_broker, serialize

# Sizes around the slice boundaries, and every byte value.
SIZES = [0, 1, 255, b.ENCODE_SLICE - 1, b.ENCODE_SLICE, b.ENCODE_SLICE + 1,
         3 * b.ENCODE_SLICE + 7, 300_000]


def data(n: int) -> bytes:
    return bytes(i * 7 % 256 for i in range(n))


def n8n_json(value: Any) -> bytes:
    """What n8n's JSON.stringify writes: Buffers as {"type":"Buffer","data":[...]}."""
    def shape(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"type": "Buffer", "data": list(v)}
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()}
        if isinstance(v, list):
            return [shape(x) for x in v]
        return v
    return orjson.dumps(shape(value))


@pytest.mark.parametrize("size", SIZES)
def test_buffer_json_is_byte_exact_and_its_size_is_known(size: int) -> None:
    blob = data(size)
    assert b.buffer_json(blob) == n8n_json(blob)
    assert b.buffer_json_size(blob) == len(n8n_json(blob))


def test_is_buffer_wants_exactly_n8ns_shape() -> None:
    assert b.is_buffer({"type": "Buffer", "data": [1]})
    assert not b.is_buffer({"type": "Buffer", "data": "x"})
    assert not b.is_buffer({"type": "Buffer", "data": [1], "more": 1})
    assert not b.is_buffer({"type": "Other", "data": [1]})
    assert not b.is_buffer([1])


def test_has_bytes_looks_everywhere_but_not_forever() -> None:
    assert b.has_bytes({"a": [1, (2, bytearray(b"x"))]})
    assert b.has_bytes(memoryview(b"x"))
    assert not b.has_bytes({"a": [1, "x", None]})
    deep: Any = b"x"
    for _ in range(300):
        deep = [deep]
    assert not b.has_bytes(deep)


@pytest.mark.parametrize("size", [0, 5, 2 * b.ENCODE_SLICE + 3])
def test_streamed_rpc_frame_equals_the_one_piece_frame(size: int) -> None:
    params = [data(size), "name.bin", {"body": b"\x00\xff", "n": 1}, [bytearray(b"z")]]
    msg = m.RpcCall("c1", "t1", "helpers.prepareBinaryData", params)
    tagged, buffers = b.split_buffers(msg.params)
    assert len(buffers) == 3
    frame = serialize(m.RpcCall("c1", "t1", msg.name, tagged))
    streamed = b"".join(bytes(p) for p in b.stream_frame(frame, buffers))
    wire = orjson.loads(streamed)
    assert wire["params"] == orjson.loads(n8n_json([data(size), "name.bin",
                                                     {"body": b"\x00\xff", "n": 1},
                                                     [b"z"]]))
    assert wire["type"] == "runner:rpc" and wire["callId"] == "c1"


def test_split_without_bytes_changes_nothing() -> None:
    params = [{"url": "http://x"}]
    assert b.split_buffers(params) == (params, [])
    assert b.split_buffers(params)[0] is params


def test_split_refuses_absurd_nesting() -> None:
    deep: Any = [b"x"]
    for _ in range(300):
        deep = {"k": deep}
    with pytest.raises(ValueError, match="nested"):
        b.split_buffers([b"y", deep])


def test_a_string_imitating_a_placeholder_is_refused_before_anything_is_sent() -> None:
    params = ["\x00taskbox-buffer:0", b"x"]
    tagged, buffers = b.split_buffers(params)
    frame = serialize(m.RpcCall("c", "t", "helpers.x", tagged))
    with pytest.raises(ValueError, match="placeholder"):
        b.stream_frame(frame, buffers)
    tagged, buffers = b.split_buffers([b"x"])
    frame = serialize(m.RpcCall("c", "t", "helpers.x", tagged))
    with pytest.raises(ValueError, match="placeholder"):
        b.stream_frame(frame, [*buffers, b"y"])  # one placeholder, two buffers
    with pytest.raises(ValueError, match="placeholder"):
        b.check_rpc_params(["\x00taskbox-buffer:5", b"x"], 1 << 20)


def test_check_rpc_params_counts_the_wire_size() -> None:
    blob = bytes(1000)  # zeros: 2 bytes each on the wire, well under the 4-byte bound
    b.check_rpc_params([blob], 1 << 20)
    b.check_rpc_params([blob], 2400)  # over the bound, under the exact size
    with pytest.raises(ValueError, match="N8N_RUNNERS_MAX_PAYLOAD"):
        b.check_rpc_params([blob], 2000)
    b.check_rpc_params([{"url": "http://x"}], 1000)


# --- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, b.DECODE_SLICE // 3, b.DECODE_SLICE, 400_000])
def test_cut_buffers_decodes_every_size(size: int) -> None:
    blob = data(size)
    raw = n8n_json({"data": {"body": blob, "other": [blob[:3]]}})
    stripped, found = b.cut_buffers(raw)
    assert found == [blob, blob[:3]]
    assert b.revive(orjson.loads(stripped), found) == {"data": {"body": blob,
                                                                 "other": [blob[:3]]}}


def test_cut_buffers_leaves_what_is_not_n8ns_plain_shape() -> None:
    cases = [
        b'{"a":{"type":"Buffer","data":[1,2],"x":1}}',  # more keys
        b'{"a":{"type":"Buffer","data":[1,256]}}',  # out of range
        b'{"a":{"type":"Buffer","data":[1.5]}}',  # not an int
        b'{"a":{"type":"Buffer","data":["x]}"]}}',  # a string that ends like one
        b'{"a":{"type":"Buffer","data":[1,,2]}}',  # broken numbers
        b'{"a":{"type":"Buffer","data":[1,2',  # cut short
        b'{"a": {"type": "Buffer", "data": [1]}}',  # spaces: not what n8n writes
        b'{"a":"\\u0000taskbox-buffer:0","b":{"type":"Buffer","data":[1]}}',  # imitation
    ]
    for raw in cases:
        assert b.cut_buffers(raw) == (raw, []), raw
    assert b.cut_buffers(b'{"a":1}') == (b'{"a":1}', [])


def test_revive_turns_placeholders_and_buffers_into_bytes_and_keeps_the_rest() -> None:
    value = {"p": "\x00taskbox-buffer:0", "q": ["\x00taskbox-buffer:1", "plain"],
             "inline": {"type": "Buffer", "data": [104, 105]},
             "bad": {"type": "Buffer", "data": [300]},
             "wrong": "\x00taskbox-buffer:9", "text": "\x00taskbox-buffer:x"}
    out = b.revive(value, [b"A", b"B"])
    assert out == {"p": b"A", "q": [b"B", "plain"], "inline": b"hi",
                   "bad": {"type": "Buffer", "data": [300]},
                   "wrong": "\x00taskbox-buffer:9", "text": "\x00taskbox-buffer:x"}
    # without buffers, a placeholder-like string is only a string
    assert b.revive("\x00taskbox-buffer:0", []) == "\x00taskbox-buffer:0"
    plain = {"a": [1, {"b": "c"}]}
    assert b.revive(plain, []) is plain
    deep: Any = {"type": "Buffer", "data": [1]}
    for _ in range(300):
        deep = [deep]
    assert b.revive(deep, []) is deep


def test_parse_broker_frame_gives_bytes_in_rpc_responses_only() -> None:
    blob = data(70_000)
    raw = n8n_json({"type": "broker:rpcresponse", "callId": "c", "taskId": "t",
                    "status": "success", "data": blob})
    msg = b.parse_broker_frame(raw)
    assert msg == m.RpcResponse("t", "c", "success", blob)
    small = b'{"type":"broker:rpcresponse","callId":"c","taskId":"t","status":"success"}'
    assert b.parse_broker_frame(small) == parse_broker(small)
    # items that happen to hold a Buffer-shaped object are user data: untouched
    settings = {"code": "x", "items": [{"json": {"type": "Buffer", "data": [1, 2]}}]}
    raw = orjson.dumps({"type": "broker:tasksettings", "taskId": "t", "settings": settings})
    assert b.parse_broker_frame(raw) == m.TaskSettings("t", settings)


def test_parse_runner_frame_gives_bytes_in_rpc_calls_only() -> None:
    raw = n8n_json({"type": "runner:rpc", "callId": "c", "taskId": "t",
                    "name": "helpers.prepareBinaryData", "params": [b"abc", "a.txt"]})
    assert b.parse_runner_frame(raw) == m.RpcCall("c", "t", "helpers.prepareBinaryData",
                                                  [b"abc", "a.txt"])
    plain = b'{"type":"runner:rpc","callId":"c","taskId":"t","name":"x","params":[1]}'
    assert b.parse_runner_frame(plain) == m.RpcCall("c", "t", "x", [1])
    result = [{"json": {"type": "Buffer", "data": [1]}}]
    raw = orjson.dumps({"type": "runner:taskdone", "taskId": "t", "data": {"result": result}})
    assert b.parse_runner_frame(raw) == m.TaskDone("t", {"result": result})
