"""CompressingChannel: lz4 only when it helps, hostile sizes and corrupt blocks rejected."""

import os
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import InMemoryChannel
from p2p import limits
from p2p.transport import CompressingChannel
from p2p.transport import compress
from p2p.wire import FLAG_COMPRESSED, FLAG_ENCRYPTED, CompressionError, Frame, WireError

FUZZ_EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "200"))


def text_like(size: int) -> bytes:
    line = b'{"path": "docs/notes-%06d.txt", "size": 4096, "kind": "file"}\n'
    lines = b"".join(line % i for i in range(size // len(line) + 1))
    return lines[:size]


def through(payload, flags=0, **kwargs):
    """Send one frame through a CompressingChannel; return (wire frame, received frame)."""
    inner = InMemoryChannel()
    channel = CompressingChannel(inner, **kwargs)
    channel.send(Frame(7, flags, payload))
    wire = inner.frames[0]
    return wire, channel.recv()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(payload=st.binary(max_size=3000) | st.integers(0, 3000).map(text_like),
       flags=st.sampled_from([0, FLAG_ENCRYPTED]))
def test_fuzz_round_trip(payload, flags):
    _, received = through(payload, flags)
    assert received == Frame(7, flags, payload)


def test_text_is_compressed_with_a_big_endian_size_prefix():
    payload = text_like(10_000)
    wire, received = through(payload)
    assert wire.flags == FLAG_COMPRESSED
    assert len(wire.payload) < len(payload) // 3
    assert wire.payload[:4] == (10_000).to_bytes(4, "big")
    assert lz4.block.decompress(bytes(wire.payload[4:]), uncompressed_size=10_000) == payload
    assert received == Frame(7, 0, payload)


@pytest.mark.parametrize("size", [0, 1, 63])
def test_small_payloads_are_never_compressed(size):
    payload = b"a" * size
    wire, received = through(payload)
    assert wire == Frame(7, 0, payload) and received == wire


@pytest.mark.parametrize("size", [64, 1000, 100 * limits.KiB, 1 * limits.MiB])
def test_incompressible_data_is_sent_as_is(size):
    payload = os.urandom(size)
    wire, received = through(payload)
    assert wire.flags == 0 and wire.payload is payload
    assert received == Frame(7, 0, payload)


def test_large_random_payload_costs_only_a_sample(monkeypatch):
    compressed_sizes = []
    real_compress = lz4.block.compress

    def recording_compress(data, **kwargs):
        compressed_sizes.append(len(data))
        return real_compress(data, **kwargs)

    monkeypatch.setattr(lz4.block, "compress", recording_compress)
    assert compress.compress_payload(os.urandom(8 * limits.MiB)) is None
    assert compressed_sizes == [compress.SAMPLE_SIZE]


@pytest.mark.parametrize("payload", [text_like(limits.MAX_FRAME - 100),
                                     os.urandom(limits.MAX_FRAME - 100)], ids=["text", "random"])
def test_sixteen_mib_round_trip(payload):
    wire, received = through(payload)
    assert wire.flags == (FLAG_COMPRESSED if payload[:2] == b'{"' else 0)
    assert received.payload == payload


def compressed_wire_payload(payload: bytes) -> bytearray:
    compressed = compress.compress_payload(payload)
    assert compressed is not None
    return bytearray(compressed)


@pytest.mark.parametrize("mangle", [
    lambda p: p[:len(p) // 2],                                  # block cut short
    lambda p: p[:4] + bytes(len(p) - 4),                        # block zeroed
    lambda p: (int.from_bytes(p[:4], "big") + 1).to_bytes(4, "big") + p[4:],  # size too big
    lambda p: (int.from_bytes(p[:4], "big") - 1).to_bytes(4, "big") + p[4:],  # size too small
    lambda p: p[:3],                                            # no size prefix
    lambda p: b"\0\0\0\0",                                      # empty block
], ids=["truncated", "zeroed", "size+1", "size-1", "no-prefix", "empty"])
def test_corrupt_compressed_payload(mangle):
    inner = InMemoryChannel()
    inner.send(Frame(7, FLAG_COMPRESSED, bytes(mangle(compressed_wire_payload(text_like(5000))))))
    with pytest.raises(CompressionError):
        CompressingChannel(inner).recv()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(position=st.integers(4, 10_000), value=st.integers(0, 255), data=st.binary(max_size=300))
def test_fuzz_corrupt_or_random_blocks_raise_only_compression_errors(position, value, data):
    payload = compressed_wire_payload(text_like(5000))
    payload[position % len(payload)] = value
    for candidate in (payload, data):
        try:
            compress.decompress_payload(bytes(candidate), limits.MAX_FRAME)
        except CompressionError:
            pass


@pytest.mark.parametrize("declared", [limits.MAX_FRAME + 1, 0xFFFFFFFF])
def test_hostile_uncompressed_size_is_rejected_before_allocating(declared):
    inner = InMemoryChannel()
    inner.send(Frame(7, FLAG_COMPRESSED, declared.to_bytes(4, "big") + b"\x1f" + bytes(64)))
    channel = CompressingChannel(inner)
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError):
            channel.recv()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * limits.KiB


def test_size_limit_follows_max_frame():
    payload = compressed_wire_payload(text_like(5000))
    inner = InMemoryChannel()
    inner.send(Frame(7, FLAG_COMPRESSED, bytes(payload)))
    with pytest.raises(CompressionError):
        CompressingChannel(inner, max_frame=4999).recv()


def test_errors_are_wire_errors():
    assert issubclass(CompressionError, WireError)


def test_large_payloads_go_through_offload_small_ones_do_not():
    offloaded = []

    def offload(fn):
        offloaded.append(fn)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn).result()

    small, large = text_like(1000), text_like(2 * limits.MiB)
    for payload in (small, large):
        _, received = through(payload, offload=offload)
        assert received.payload == payload
    assert len(offloaded) == 2  # compress and decompress of the large one


def test_close_closes_the_inner_channel():
    inner = InMemoryChannel()
    CompressingChannel(inner).close()
    assert inner.closed


def test_an_incompressible_large_payload_costs_no_thread_hand_off():
    """The sample that tells an incompressible block runs in the caller: only a
    payload worth compressing is handed to the offload (a thread pool)."""
    offloaded = []

    def offload(fn):
        offloaded.append(fn)
        return fn()
    random_block, text_block = os.urandom(2 * limits.MiB), text_like(2 * limits.MiB)
    wire, received = through(random_block, offload=offload)
    assert not wire.flags & FLAG_COMPRESSED and received.payload == random_block and not offloaded
    wire, received = through(text_block, offload=offload)
    assert wire.flags & FLAG_COMPRESSED and received.payload == text_block and len(offloaded) == 2   # both ways
