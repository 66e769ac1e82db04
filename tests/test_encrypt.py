"""EncryptedChannel: AES-256-GCM with implicit counters; any tampering closes the channel."""

import os

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import InMemoryChannel
from p2p.transport import ChannelClosed, EncryptedChannel, gcm
from p2p.transport.encrypt import COUNTER_LIMIT
from p2p.wire import FLAG_COMPRESSED, FLAG_ENCRYPTED, AuthenticationError, Frame

FUZZ_EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "200"))
KEY_AB, KEY_BA = bytes(range(32)), bytes(range(32, 64))


def pair():
    """(wire, sender A, receiver B): A sends with KEY_AB, B receives with it."""
    wire = InMemoryChannel()
    return wire, EncryptedChannel(wire, KEY_AB, KEY_BA), EncryptedChannel(wire, KEY_BA, KEY_AB)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(frames=st.lists(st.builds(Frame, type=st.integers(0, 255),
                                 flags=st.sampled_from([0, FLAG_COMPRESSED]),
                                 payload=st.binary(max_size=500)), max_size=10))
def test_fuzz_round_trip_both_directions(frames):
    wire, a, b = pair()
    for frame in frames:
        a.send(frame)
        assert wire.frames[-1].flags == frame.flags | FLAG_ENCRYPTED
        assert len(wire.frames[-1].payload) == len(frame.payload) + 16
        assert b.recv() == frame
        b.send(frame)
        assert a.recv() == frame


def test_wire_format_matches_the_protocol():
    wire, a, _ = pair()
    for counter, payload in enumerate([b"first", b"second"]):
        a.send(Frame(0x03, FLAG_COMPRESSED, payload))
        sent = wire.frames.popleft()
        cipher = AES.new(KEY_AB, AES.MODE_GCM, nonce=bytes(4) + counter.to_bytes(8, "big"), mac_len=16)
        cipher.update(bytes([0x03, FLAG_COMPRESSED | FLAG_ENCRYPTED]))
        ciphertext, tag = cipher.encrypt_and_digest(payload)
        assert sent == Frame(0x03, FLAG_COMPRESSED | FLAG_ENCRYPTED, ciphertext + tag)


def assert_rejected_and_closed(receiver, wire):
    with pytest.raises(AuthenticationError):
        receiver.recv()
    assert wire.closed
    with pytest.raises(ChannelClosed):
        receiver.recv()
    with pytest.raises(ChannelClosed):
        receiver.send(Frame(1, 0, b"after"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(payload=st.binary(max_size=64), position=st.integers(0, 1000), mask=st.integers(1, 255))
def test_fuzz_flipping_any_byte_is_rejected(payload, position, mask):
    wire, a, b = pair()
    a.send(Frame(0x05, 0, payload))
    sent = wire.frames.pop()
    header_and_payload = bytearray([sent.type, sent.flags]) + sent.payload
    header_and_payload[position % len(header_and_payload)] ^= mask
    wire.frames.append(Frame(header_and_payload[0], header_and_payload[1], bytes(header_and_payload[2:])))
    assert_rejected_and_closed(b, wire)


def test_wrong_key_is_rejected():
    wire, a, _ = pair()
    stranger = EncryptedChannel(wire, KEY_BA, os.urandom(32))
    a.send(Frame(1, 0, b"hello"))
    assert_rejected_and_closed(stranger, wire)


def test_replayed_frame_is_rejected():
    wire, a, b = pair()
    a.send(Frame(1, 0, b"pay me once"))
    wire.frames.append(wire.frames[0])
    assert b.recv() == Frame(1, 0, b"pay me once")
    assert_rejected_and_closed(b, wire)


def test_swapped_frames_are_rejected():
    wire, a, b = pair()
    a.send(Frame(1, 0, b"one"))
    a.send(Frame(1, 0, b"two"))
    wire.frames.rotate(1)
    assert_rejected_and_closed(b, wire)


def test_dropped_frame_is_rejected():
    wire, a, b = pair()
    a.send(Frame(1, 0, b"one"))
    a.send(Frame(1, 0, b"two"))
    wire.frames.popleft()
    assert_rejected_and_closed(b, wire)


def test_plaintext_frame_is_rejected():
    wire, _, b = pair()
    wire.send(Frame(1, 0, b"x" * 40))
    assert_rejected_and_closed(b, wire)


@pytest.mark.parametrize("size", [0, 15])
def test_payload_shorter_than_a_tag_is_rejected(size):
    wire, _, b = pair()
    wire.send(Frame(1, FLAG_ENCRYPTED, bytes(size)))
    assert_rejected_and_closed(b, wire)


def test_counter_exhaustion_closes_the_channel():
    wire, a, b = pair()
    a._send_counter = b._recv_counter = COUNTER_LIMIT - 1  # last usable nonce
    a.send(Frame(1, 0, b"last"))
    assert b.recv() == Frame(1, 0, b"last")
    with pytest.raises(ChannelClosed):
        a.send(Frame(1, 0, b"one too many"))
    assert wire.closed


def test_keys_must_be_32_bytes():
    with pytest.raises(ValueError):
        EncryptedChannel(InMemoryChannel(), bytes(16), bytes(32))


def test_close_is_final_and_reaches_the_inner_channel():
    wire, a, _ = pair()
    a.close()
    assert wire.closed
    with pytest.raises(ChannelClosed):
        a.send(Frame(1, 0, b""))


@pytest.mark.parametrize("openssl", [True, False])
def test_large_frames_are_offloaded_only_when_composed(monkeypatch, openssl):
    if openssl and gcm.OPENSSL is None:
        pytest.skip("libcrypto not loadable")
    if not openssl:
        monkeypatch.setattr(gcm, "OPENSSL", None)   # what a machine without libcrypto has
    offloaded = []

    def offload(fn):
        offloaded.append(fn)
        return fn()
    wire = InMemoryChannel()
    a, b = (EncryptedChannel(wire, KEY_AB, KEY_BA, offload=offload),
            EncryptedChannel(wire, KEY_BA, KEY_AB, offload=offload))
    frame = Frame(5, 0, os.urandom(1 << 20))
    a.send(frame)
    assert b.recv() == frame
    assert len(offloaded) == (0 if openssl else 2)   # sealed and opened in the caller, or both in the pool
