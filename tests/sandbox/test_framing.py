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


# ---------------------------------------------------------------- buffers (issue 6)


def test_pack_buffers_tags_every_bytes_like_value_in_order():
    params = [b"ab", {"k": bytearray(b"c"), "n": 1, "t": (memoryview(b"d"), "s")}, None]
    tagged, buffers = framing.pack_buffers(params)
    tag = framing.BUFFER_TAG
    assert tagged == [{tag: 0}, {"k": {tag: 1}, "n": 1, "t": [{tag: 2}, "s"]}, None]
    assert buffers == [b"ab", b"c", b"d"]
    assert all(type(b) is bytes for b in buffers)
    assert framing.unpack_buffers(tagged, buffers) == [b"ab", {"k": b"c", "n": 1,
                                                               "t": [b"d", "s"]}, None]


def test_pack_buffers_without_bytes_and_unpack_without_buffers():
    value = {"a": [1, "x"]}
    tagged, buffers = framing.pack_buffers(value)
    assert (tagged, buffers) == (value, [])
    assert framing.unpack_buffers(value, []) is value


def test_tagged_frames_round_trip_through_the_codec():
    tagged, buffers = framing.pack_buffers({"body": b"\x00\xff" * 3})
    stream = framing.encode({"t": "rpc", "params": tagged, "bufs": len(buffers)}) + b"".join(
        framing.encode_raw(b) for b in buffers)
    head, *raw = framing.FrameDecoder().feed(stream)
    message = framing.decode(head)
    assert framing.unpack_buffers(message["params"], raw) == {"body": b"\x00\xff" * 3}


def test_unpack_refuses_tags_that_name_no_buffer():
    tag = framing.BUFFER_TAG
    for bad in ({tag: 1}, {tag: -1}, {tag: True}, {tag: "0"}):
        with pytest.raises(framing.FrameError):
            framing.unpack_buffers([bad], [b"x"])
    # a tag with company is an ordinary object
    assert framing.unpack_buffers([{tag: 0, "k": 1}], [b"x"]) == [{tag: 0, "k": 1}]


def test_buffer_count_and_depth_are_capped():
    with pytest.raises(framing.FrameError, match="more than"):
        framing.pack_buffers([b"x"] * (framing.MAX_BUFFERS + 1))
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(framing.FrameError, match="nested"):
        framing.pack_buffers(deep)
    with pytest.raises(framing.FrameError, match="nested"):
        framing.unpack_buffers(deep, [b"x"])


def test_large_frame_split_across_reads_is_copied_once_and_intact():
    body = bytes(range(256)) * 4096  # 1 MiB
    stream = framing.encode_raw(body) + framing.encode({"t": "x"})
    decoder = framing.FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), 65_536):
        out += decoder.feed(stream[i:i + 65_536])
    assert out[0] == body and framing.decode(out[1]) == {"t": "x"}
    assert decoder.buffered == 0


class _Stream:
    """A byte stream read through recv / recv_into in pieces of at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def recv(self, n: int) -> bytes:
        piece = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(piece)
        return piece

    def recv_into(self, view: memoryview) -> int:
        piece = self.recv(len(view))
        view[:len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize("step", [1_000, 65_536, 212_992, 1 << 22])
def test_read_frame_into_receives_a_large_body_in_place(step: int) -> None:
    big = b"[" + b",".join(b'{"n":%d}' % i for i in range(60_000)) + b"]"
    assert len(big) >= framing.DIRECT_SIZE
    head = framing.encode({"t": "task"})
    stream = _Stream(head + framing.encode_raw(big) + framing.encode({"t": "after"}), step)
    decoder = framing.FrameDecoder()
    assert framing.read_frame(stream.recv, decoder) == head[framing.HEADER_SIZE:]
    body = framing.read_frame_into(stream.recv, stream.recv_into, decoder)
    assert body == big
    # The stream goes on framing correctly after the body taken over.
    assert framing.decode(framing.read_frame(stream.recv, decoder) or b"") == {"t": "after"}
    assert framing.read_frame(stream.recv, decoder) is None


def test_read_frame_into_reports_a_stream_cut_inside_a_large_body() -> None:
    big = b"x" * (framing.DIRECT_SIZE + 10)
    stream = _Stream(framing.encode_raw(big)[:-5], 65_536)
    with pytest.raises(framing.FrameError, match="ended inside a frame"):
        framing.read_frame_into(stream.recv, stream.recv_into, framing.FrameDecoder())


def test_small_bodies_come_back_as_bytes_from_read_frame_into() -> None:
    stream = _Stream(framing.encode_raw(b"[1]"), 2)
    assert framing.read_frame_into(stream.recv, stream.recv_into, framing.FrameDecoder()) == b"[1]"
