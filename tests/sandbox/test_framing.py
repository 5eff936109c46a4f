"""The frame codec shared by the runner, the zygote and the workers (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox import framing
else:
    from taskbox_sandbox import framing


def test_encode_then_decode_round_trips():
    frame = framing.encode({"t": "print", "args": ["'é'", "1"]})
    assert frame[:4] == (len(frame) - 4).to_bytes(4, "big")
    [body] = framing.FrameDecoder().feed(frame)
    assert framing.decode(body) == {"t": "print", "args": ["'é'", "1"]}


def test_raw_payload_is_framed_unchanged():
    items = b'[{"json": {"a": 1}}]'
    assert framing.FrameDecoder().feed(framing.encode_raw(items)) == [items]


def test_byte_at_a_time_yields_frames_in_order():
    stream = b"".join(framing.encode({"n": i}) for i in range(5)) + framing.encode_raw(b"")
    decoder = framing.FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert [framing.decode(b) for b in out[:5]] == [{"n": i} for i in range(5)]
    assert out[5] == b""
    assert decoder.buffered == 0
    assert decoder.pending == -1


def test_oversized_frame_is_refused_from_its_header_alone():
    decoder = framing.FrameDecoder(max_size=10)
    with pytest.raises(framing.FrameTooLarge) as info:
        decoder.feed((11).to_bytes(4, "big"))
    assert info.value.size == 11
    assert info.value.limit == 10
    with pytest.raises(framing.FrameTooLarge):  # the stream stays broken
        decoder.feed(framing.encode_raw(b"x"))


def test_frame_exactly_at_the_cap_is_accepted():
    decoder = framing.FrameDecoder(max_size=3)
    assert decoder.feed(framing.encode_raw(b"abc")) == [b"abc"]


def test_push_and_next_frame_for_blocking_readers():
    decoder = framing.FrameDecoder()
    decoder.push(framing.encode_raw(b"1") + framing.encode_raw(b"2")[:3])
    assert decoder.next_frame() == b"1"
    assert decoder.next_frame() is None
    decoder.push(framing.encode_raw(b"2")[3:])
    assert decoder.next_frame() == b"2"


def test_read_frame_pulls_through_a_recv_callable():
    chunks = [framing.encode({"a": 1})[:2], framing.encode({"a": 1})[2:] + framing.encode({"b": 2}),
              b""]
    asked: list[int] = []

    def recv(n: int) -> bytes:
        asked.append(n)
        return chunks.pop(0)

    decoder = framing.FrameDecoder()
    assert framing.decode(framing.read_frame(recv, decoder) or b"") == {"a": 1}
    assert framing.decode(framing.read_frame(recv, decoder) or b"") == {"b": 2}
    assert framing.read_frame(recv, decoder) is None  # clean end of stream
    assert all(n > 0 for n in asked)


def test_read_frame_reports_a_stream_cut_inside_a_frame():
    chunks = [framing.encode({"a": 1})[:6], b""]
    with pytest.raises(framing.FrameError, match="inside a frame"):
        framing.read_frame(lambda n: chunks.pop(0), framing.FrameDecoder())


def test_invalid_json_body_is_a_frame_error():
    with pytest.raises(framing.FrameError):
        framing.decode(b"{nope")


def test_encode_with_default_hook_and_nan_as_null():
    frame = framing.encode({"s": {1}, "x": float("nan")}, default=str)
    assert framing.decode(frame[4:]) == {"s": "{1}", "x": None}


def test_payload_larger_than_32_bits_cannot_be_framed(monkeypatch):
    monkeypatch.setattr(framing, "MAX_LENGTH", 3)
    with pytest.raises(framing.FrameTooLarge):
        framing.encode_raw(b"abcd")
