"""``_helpers`` in the worker: the API user code sees and how a call is framed (no worker)."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox import execute, framing, helpers
else:
    from taskbox_sandbox import execute, framing, helpers


class FakeCall:
    """Records calls and answers from a script of ``(ok, data)`` replies."""

    def __init__(self, *replies: tuple[bool, Any]) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.replies = list(replies) or [(True, None)]

    def __call__(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        self.calls.append((name, params))
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def test_names_follow_n8n_with_snake_case_aliases():
    h = helpers.Helpers(FakeCall())
    assert h.http_request.__func__ is helpers.Helpers.httpRequest  # type: ignore[attr-defined]
    assert h.get_binary_data_buffer.__func__ is helpers.Helpers.getBinaryDataBuffer  # type: ignore[attr-defined]
    assert h.prepare_binary_data.__func__ is helpers.Helpers.prepareBinaryData  # type: ignore[attr-defined]
    assert h.binary_to_string.__func__ is helpers.Helpers.binaryToString  # type: ignore[attr-defined]
    assert h.RpcError is helpers.RpcError
    assert "httpRequest" in repr(h)
    assert h.item_index is None and helpers.Helpers(FakeCall(), 3).item_index == 3


def test_http_request_sends_n8n_wire_name_and_merges_options():
    call = FakeCall((True, {"a": 1}))
    h = helpers.Helpers(call)
    assert h.httpRequest({"url": "http://x/", "method": "POST"}, json=True,
                         return_full_response=True, body=b"\x01") == {"a": 1}
    assert call.calls == [("helpers.httpRequest", [{
        "url": "http://x/", "method": "POST", "json": True, "returnFullResponse": True,
        "body": b"\x01"}])]
    h.http_request(url="http://y/")
    assert call.calls[-1] == ("helpers.httpRequest", [{"url": "http://y/"}])


def test_http_request_checks_its_arguments_before_calling():
    call = FakeCall()
    h = helpers.Helpers(call)
    with pytest.raises(ValueError, match="url"):
        h.httpRequest({"method": "GET"})
    with pytest.raises(TypeError):
        h.httpRequest("http://x/")  # type: ignore[arg-type]
    assert call.calls == []


def test_error_replies_raise_rpc_error_with_n8ns_message():
    h = helpers.Helpers(FakeCall((False, "Method not allowed")))
    with pytest.raises(helpers.RpcError) as info:
        h.call("nope", 1)
    assert str(info.value) == "Method not allowed"
    assert info.value.method == "nope" and info.value.data == "Method not allowed"
    assert info.value.status is None

    data = {"message": "Request failed with status code 404", "status": 404, "httpCode": "404"}
    h = helpers.Helpers(FakeCall((False, data)))
    with pytest.raises(h.RpcError) as info2:
        h.httpRequest({"url": "http://x/missing"})
    assert info2.value.message == "Request failed with status code 404"
    assert info2.value.status == 404 and info2.value.data == data

    h = helpers.Helpers(FakeCall((False, {"httpCode": "503"})))
    with pytest.raises(helpers.RpcError) as info3:
        h.call("helpers.httpRequest", {"url": "http://x/"})
    assert info3.value.status == 503
    assert str(info3.value) == "httpRequest failed (n8n sent no error message)"

    h = helpers.Helpers(FakeCall((False, {})))
    with pytest.raises(helpers.RpcError, match="no error message"):
        h.call("x")
    h = helpers.Helpers(FakeCall((False, {"message": 5, "name": "Error"})))
    with pytest.raises(helpers.RpcError, match="no error message") as info4:
        h.call("x")
    assert info4.value.status is None
    h = helpers.Helpers(FakeCall((False, None)))
    with pytest.raises(helpers.RpcError, match="x failed"):
        h.call("x")


def test_call_prefixes_helper_names_once():
    call = FakeCall()
    h = helpers.Helpers(call)
    h.call("assertBinaryData", 0, "data")
    h.call("helpers.assertBinaryData", 0)
    assert [name for name, _ in call.calls] == ["helpers.assertBinaryData"] * 2
    with pytest.raises(TypeError):
        h.call("")


def test_binary_data_buffer_and_prepare_binary_data():
    call = FakeCall((True, b"raw"), (True, {"mimeType": "text/plain", "data": "eA=="}))
    h = helpers.Helpers(call)
    assert h.getBinaryDataBuffer(2, "file") == b"raw"
    assert h.prepareBinaryData("x", "a.txt") == {"mimeType": "text/plain", "data": "eA=="}
    assert call.calls == [("helpers.getBinaryDataBuffer", [2, "file"]),
                          ("helpers.prepareBinaryData", [b"x", "a.txt"])]
    call = FakeCall((True, {}))
    helpers.Helpers(call).prepareBinaryData(bytearray(b"y"), None, "image/png")
    helpers.Helpers(call).prepare_binary_data(memoryview(b"z"))
    assert call.calls == [("helpers.prepareBinaryData", [b"y", None, "image/png"]),
                          ("helpers.prepareBinaryData", [b"z"])]


def test_binary_helpers_check_types_and_replies():
    h = helpers.Helpers(FakeCall((True, "not bytes")))
    for bad in (True, "0", 1.0):
        with pytest.raises(TypeError):
            h.getBinaryDataBuffer(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        h.getBinaryDataBuffer(0, 1)  # type: ignore[arg-type]
    with pytest.raises(helpers.RpcError, match="not a Buffer"):
        h.getBinaryDataBuffer(0)
    with pytest.raises(helpers.RpcError, match="not an object"):
        h.prepareBinaryData(b"x")
    with pytest.raises(TypeError):
        h.prepareBinaryData(42)  # type: ignore[arg-type]


def test_binary_to_string_is_local_and_node_like():
    call = FakeCall()
    h = helpers.Helpers(call)
    assert h.binaryToString("é".encode()) == "é"
    assert h.binaryToString(b"\xff ok") == "\ufffd ok"
    assert h.binaryToString(b"\xe9", "latin1") == "é"
    assert h.binaryToString(b"\xe9", "binary") == "é"
    assert h.binaryToString(b"hi", "base64") == "aGk="
    assert h.binaryToString(bytearray(b"hi"), "hex") == "6869"
    assert h.binaryToString(b"a\x00", "utf16le") == "a"
    assert h.binaryToString("str", "utf8") == "str"
    with pytest.raises(LookupError):
        h.binaryToString(b"x", "no-such-codec")
    with pytest.raises(LookupError, match="not a text encoding"):
        h.binaryToString(b"x", "rot13")
    assert call.calls == []


# ---------------------------------------------------------------- the channel's encoding


def fake_runner(sock: socket.socket, reply_data: Any, seen: list[Any]) -> None:
    """Answer one rpc frame the way the supervisor does: JSON frame, then raw buffers."""
    decoder = framing.FrameDecoder()
    first = framing.read_frame(sock.recv, decoder)
    assert first is not None
    head = framing.decode(first)
    raw = [framing.read_frame(sock.recv, decoder) for _ in range(head["bufs"])]
    seen.extend([head, raw])
    tagged, buffers = framing.pack_buffers(reply_data)
    sock.sendall(framing.encode({"t": "rpc_reply", "id": head["id"], "ok": True,
                                 "data": tagged, "bufs": len(buffers)}))
    for buffer in buffers:
        sock.sendall(framing.encode_raw(buffer))


def test_channel_sends_bytes_as_raw_frames_not_json():
    ours, theirs = socket.socketpair()
    big = bytes(range(256)) * 8192  # 2 MiB
    seen: list[Any] = []
    runner = threading.Thread(target=fake_runner,
                              args=(theirs, {"body": big, "n": 1}, seen))
    runner.start()
    try:
        channel = execute._Channel(ours, 1 << 24)
        ok, data = channel.call("helpers.prepareBinaryData", [big, "a.bin"])
    finally:
        runner.join(10)
        ours.close()
        theirs.close()
    head, raw = seen
    tag = framing.BUFFER_TAG
    assert head == {"t": "rpc", "id": 1, "name": "helpers.prepareBinaryData",
                    "params": [{tag: 0}, "a.bin"], "bufs": 1}
    assert raw == [big]
    assert ok is True and data == {"body": big, "n": 1}


def test_channel_refuses_a_reply_that_is_not_an_rpc_reply():
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(framing.encode({"t": "rpc_reply", "id": 1, "ok": True, "bufs": -1}))
        channel = execute._Channel(ours, 1 << 20)
        with pytest.raises(RuntimeError, match="unexpected reply"):
            channel.call("helpers.x", [])
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(RuntimeError, match="closed the channel"):
            channel.call("helpers.x", [])
    finally:
        ours.close()
        theirs.close()
