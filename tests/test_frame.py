"""Frame codec: round trips under any chunking, hostile input, linear time."""

import os
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import limits
from p2p.wire import (FLAG_COMPRESSED, FLAG_ENCRYPTED, BlockData, BlocksData, Frame, FrameDecoder, FrameTooLarge,
                      MalformedMessage, TruncatedFrame, WireError, decode_message, encode_frame,
                      encode_frame_parts, encode_message)
from p2p.wire.frame import uninitialized

FUZZ_EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "300"))

frames = st.builds(Frame,
                   type=st.integers(0, 255),
                   flags=st.sampled_from([0, FLAG_COMPRESSED, FLAG_ENCRYPTED,
                                          FLAG_COMPRESSED | FLAG_ENCRYPTED]),
                   payload=st.binary(max_size=300))


def cut(data: bytes, cuts) -> list:
    """Split ``data`` at the given positions (any order, duplicates allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def decode_all(chunks, max_frame=limits.MAX_FRAME, chunk=limits.RECV_CHUNK) -> list:
    decoder = FrameDecoder(max_frame, chunk)
    decoded = [frame for chunk in chunks for frame in decoder.feed(chunk)]
    decoder.eof()
    return decoded


def test_wire_format_is_length_type_flags_payload():
    assert encode_frame(Frame(0x05, FLAG_COMPRESSED, b"abc")) == b"\x00\x00\x00\x05\x05\x01abc"
    assert encode_frame(Frame(0x06, 0, b"")) == b"\x00\x00\x00\x02\x06\x00"


def test_parts_give_header_and_payload_without_joining():
    payload = bytearray(b"xyz")
    header, body = encode_frame_parts(Frame(1, 0, payload))
    assert header == b"\x00\x00\x00\x05\x01\x00"
    assert body is payload


@pytest.mark.parametrize("frame", [Frame(256, 0, b""), Frame(-1, 0, b""),
                                   Frame(1, 0x04, b""), Frame(1, 0x80, b"")])
def test_encoding_an_invalid_frame_is_a_local_error(frame):
    with pytest.raises(ValueError):
        encode_frame(frame)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(frames, max_size=20), st.lists(st.integers(0, 10_000), max_size=40),
       st.sampled_from([16, 256, limits.RECV_CHUNK]))
def test_fuzz_any_chunking_decodes_to_the_same_frames(sent, cuts, chunk):
    stream = b"".join(encode_frame(frame) for frame in sent)
    assert decode_all(cut(stream, cuts), chunk=chunk) == sent


def test_one_byte_at_a_time():
    sent = [Frame(1, 0, b""), Frame(2, 3, b"ab" * 100), Frame(255, 0, b"z")]
    stream = b"".join(encode_frame(frame) for frame in sent)
    assert decode_all([stream[i:i + 1] for i in range(len(stream))]) == sent


def test_decoded_payloads_are_owned_by_the_caller():
    decoder = FrameDecoder(chunk=64)
    small, large = Frame(1, 0, b"abc"), Frame(2, 0, bytes(range(200)))
    [first] = decoder.feed(encode_frame(small))
    [second] = decoder.feed(encode_frame(large))
    decoder.feed(encode_frame(Frame(1, 0, b"xyz")) + encode_frame(Frame(2, 0, bytes(200))))
    assert (first, second) == (small, large)  # later frames did not overwrite them
    assert isinstance(first.payload, bytearray)


def test_reader_writes_straight_into_the_decoder():
    sent = [Frame(1, 0, b"a" * 10), Frame(2, 0, bytes(range(256)) * 4), Frame(3, 0, b"")]
    stream = memoryview(b"".join(encode_frame(frame) for frame in sent))
    decoder, received = FrameDecoder(chunk=64), []
    while stream:
        with decoder.get_buffer() as view:
            count = min(len(view), len(stream), 7)
            view[:count] = stream[:count]
        received += decoder.buffer_updated(count)
        stream = stream[count:]
    assert received == sent


def test_a_large_frame_is_filled_by_one_read_of_all_it_lacks():
    """Its own payload buffer is offered whole, not a chunk at a time: a
    1 MiB block frame costs a few socket reads, not 64 of 16 KiB."""
    big = Frame(2, 0, bytes(range(256)) * 4096)
    stream = memoryview(encode_frame(big))
    decoder, received, reads = FrameDecoder(chunk=limits.RECV_CHUNK), [], 0
    while stream:
        with decoder.get_buffer() as view:
            count = min(len(view), len(stream))
            view[:count] = stream[:count]
        reads += 1
        received += decoder.buffer_updated(count)
        stream = stream[count:]
    assert received == [big] and reads == 2   # the chunk with the header, then the rest at once


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4),
       st.lists(st.integers(0, 20_000), max_size=20))
def test_fuzz_large_frames_are_returned_whole_in_any_chunking(payloads, cuts):
    """A large frame's payload buffer is not zeroed before the reads fill it
    (``uninitialized``): it is returned only once every byte arrived, and
    holds exactly what was sent, even where the allocator hands back memory
    full of an earlier frame's bytes (made likely here: frames of one size
    one after the other, each dropped before the next)."""
    chunk = 64   # frames over 16 bytes take their own buffer
    sent = [Frame(5, 0, bytes([i % 251 + 1]) * len(p) if i % 2 else p) for i, p in enumerate(payloads)]
    decoder = FrameDecoder(limits.MAX_FRAME, chunk)
    for frame in sent:
        got, data = [], encode_frame(frame)
        for piece in cut(data, [*cuts, len(data) - 1]):   # the last byte alone, at least once
            assert got == []   # nothing before the frame's last byte
            got += decoder.feed(piece)
        assert got == [frame]
    decoder.eof()


def test_uninitialized_buffers_are_bytearrays_of_their_size():
    for size in (0, 1, 4096, 3 * limits.MiB):
        buffer = uninitialized(size)
        assert type(buffer) is bytearray and len(buffer) == size
        buffer[-1:] = b"x" if size else b""   # writable, resizable like any bytearray
        del buffer[size // 2:]
        assert len(buffer) == size // 2


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10),
       st.integers(2, 4096))
def test_fuzz_random_bytes_raise_only_wire_errors(data, cuts, max_frame):
    try:
        decode_all(cut(data, cuts), max_frame, chunk=64)
    except WireError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_fuzz_truncated_stream_raises_truncated_frame(sent, data):
    stream = b"".join(encode_frame(frame) for frame in sent)
    boundaries = set()
    position = 0
    for frame in sent:
        boundaries.add(position)
        position += len(encode_frame(frame))
    end = data.draw(st.integers(1, len(stream) - 1).filter(lambda n: n not in boundaries))
    decoder = FrameDecoder()
    decoder.feed(stream[:end])
    with pytest.raises(TruncatedFrame):
        decoder.eof()


def test_four_gib_length_raises_before_allocating():
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge):
            decoder.feed(b"\xff\xff\xff\xff")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * limits.KiB


def test_length_just_over_max_frame_raises_on_the_length_bytes_alone():
    decoder = FrameDecoder(max_frame=1000)
    decoder.feed(b"\x00\x00")
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\x03\xe9")  # 1001
    assert FrameDecoder(max_frame=1000).feed(b"\x00\x00\x03\xe8") == []  # 1000 is fine


@pytest.mark.parametrize("length", [0, 1])
def test_length_below_two_is_malformed(length):
    with pytest.raises(MalformedMessage):
        FrameDecoder().feed(length.to_bytes(4, "big") + b"\x01\x00")


@pytest.mark.parametrize("flags", [0x04, 0x08, 0x80, 0xFF])
def test_reserved_flag_bits_are_malformed(flags):
    with pytest.raises(MalformedMessage):
        FrameDecoder().feed(b"\x00\x00\x00\x02\x01" + bytes([flags]))


def test_frames_after_a_large_frame_in_the_same_chunk():
    big = Frame(5, 0, os.urandom(300 * limits.KiB))
    sent = [Frame(1, 0, b"a"), big, Frame(2, 0, b"b"), Frame(3, 0, b"")]
    stream = b"".join(encode_frame(frame) for frame in sent)
    assert decode_all([stream[:100], stream[100:200_000], stream[200_000:]]) == sent


@pytest.mark.parametrize("piece", [1 * limits.KiB, 4 * limits.KiB, 64 * limits.KiB, 256 * limits.KiB])
def test_max_frame_in_pieces_is_linear(piece):
    payload = os.urandom(limits.MAX_FRAME - 2)
    stream = encode_frame(Frame(5, 0, payload))
    started = time.perf_counter()
    frames = decode_all(stream[i:i + piece] for i in range(0, len(stream), piece))
    elapsed = time.perf_counter() - started
    assert frames == [Frame(5, 0, payload)]
    # Linear: ~16 MiB of copies plus one call per piece. A decoder that
    # re-joined its buffer per piece would copy ~128 GB for 1 KiB pieces.
    assert elapsed < 3.0


def test_one_byte_pieces_scale_linearly():
    def seconds_per_byte(size):
        stream = encode_frame(Frame(5, 0, bytes(size)))
        pieces = [stream[i:i + 1] for i in range(len(stream))]
        decoder = FrameDecoder()
        started = time.perf_counter()
        for piece in pieces:
            decoder.feed(piece)
        return (time.perf_counter() - started) / size

    small, large = seconds_per_byte(64 * limits.KiB), seconds_per_byte(512 * limits.KiB)
    assert large < 3 * small  # quadratic growth would make this ratio ~8


def test_the_fullest_batch_of_small_blocks_fits_one_frame():
    """BlocksData at its limits (MAX_BLOCKS_PER_FRAME blocks of SMALL_BLOCK
    bytes) is one frame under MAX_FRAME, decoded back whole."""
    fullest = BlocksData(tuple(BlockData(i, 0, bytes(32), bytes([i]) * limits.SMALL_BLOCK)
                               for i in range(limits.MAX_BLOCKS_PER_FRAME)))
    wire = encode_frame(encode_message(fullest))
    assert len(wire) - 4 <= limits.MAX_FRAME and limits.MAX_BLOCKS_PER_FRAME <= limits.MAX_SERVING_PER_PEER
    (frame,) = decode_all(cut(wire, [1, 7, 40_000, len(wire) // 2]))
    assert decode_message(frame) == fullest
