"""The handshake: over real socket pairs (the driver) and as a pure state machine.

Tampering tests put a relay between the two sides that copies bytes, records
what each side received and can flip one bit at a chosen offset of one
direction's stream.
"""

import hashlib
import hmac
import os
import socket
import threading

import pytest
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p.security.handshake import (
    INITIATOR,
    RESPONDER,
    Handshake,
    State,
    auth_signed_data,
    perform_handshake,
)
from p2p.security.identity import Identity
from p2p.transport import ChannelClosed, TcpChannel
from p2p.transport.encrypt import seal
from p2p.wire import (
    FLAG_ENCRYPTED,
    Frame,
    FrameDecoder,
    HandshakeAuth,
    HandshakeError,
    HandshakeHello,
    MsgType,
    Ping,
    WireError,
    decode_message,
    encode_frame,
    encode_message,
)

EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "300"))
TIMEOUT = 10.0
SECRET = b"correct horse battery staple"
ALICE = Identity(bytes([0x33]) * 32)
BOB = Identity(bytes([0x66]) * 32)
CAROL = Identity(bytes([0x99]) * 32)

HELLO_WIRE_SIZE = 6 + 3 + 1 + 32 + 32         # header, magic, version, ephemeral, random
AUTH_WIRE_SIZE = 6 + 32 + 64 + 16             # header, identity, signature, GCM tag

# X25519 u-coordinates of small order (https://cr.yp.to/ecdh.html#validate)
P25519 = 2 ** 255 - 19
LOW_ORDER_POINTS = [
    0, 1, P25519 - 1, P25519, P25519 + 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
]


# --- running both sides over sockets ------------------------------------------

class Relay:
    """Copies bytes between two socket pairs, recording each direction's
    stream and optionally flipping ``mask`` into byte ``offset`` of one."""

    def __init__(self, flip_direction=None, offset=None, mask=0x01):
        self.initiator_end, self._from_initiator = socket.socketpair()
        self.responder_end, self._to_responder = socket.socketpair()
        self.received = {INITIATOR: bytearray(), RESPONDER: bytearray()}  # what each side was sent
        self._flip = (flip_direction, offset, mask)
        for sock in (self.initiator_end, self.responder_end, self._from_initiator, self._to_responder):
            sock.settimeout(TIMEOUT)
        self._threads = [
            threading.Thread(target=self._copy, args=(self._from_initiator, self._to_responder, RESPONDER),
                             daemon=True),
            threading.Thread(target=self._copy, args=(self._to_responder, self._from_initiator, INITIATOR),
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _copy(self, source, destination, receiver):
        stream = self.received[receiver]
        try:
            while True:
                data = bytearray(source.recv(65536))
                if not data:
                    break
                direction, offset, mask = self._flip
                if direction == receiver and len(stream) <= offset < len(stream) + len(data):
                    data[offset - len(stream)] ^= mask
                stream += data
                destination.sendall(data)
        except OSError:
            pass
        try:
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def join(self):
        for thread in self._threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        for sock in (self._from_initiator, self._to_responder):
            sock.close()


class Side(threading.Thread):
    """One side's ``perform_handshake`` in a thread; ``result()`` is its
    HandshakeResult or the exception it raised."""

    def __init__(self, role, sock, identity, secret=None, trusted=None):
        super().__init__(daemon=True)
        self._arguments = (TcpChannel(sock), role, identity, secret, trusted)
        self.start()

    def run(self):
        try:
            self._outcome = perform_handshake(*self._arguments)
        except Exception as error:  # the outcome under test
            self._outcome = error

    def result(self):
        self.join(TIMEOUT)
        assert not self.is_alive()
        return self._outcome


def run_handshake(initiator=None, responder=None, relay=None):
    """Run both sides; return (initiator outcome, responder outcome, relay),
    each outcome a HandshakeResult or the exception."""
    relay = relay or Relay()
    responder_side = Side(RESPONDER, relay.responder_end, **{"identity": BOB, **(responder or {})})
    initiator_side = Side(INITIATOR, relay.initiator_end, **{"identity": ALICE, **(initiator or {})})
    outcomes = [initiator_side.result(), responder_side.result()]
    succeeded = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    if len(succeeded) == 1:  # the side that failed hung up without another word
        with pytest.raises((ChannelClosed, WireError)):
            succeeded[0].channel.recv()
        succeeded[0].channel.close()
    if len(succeeded) < 2:
        relay.join()
    return outcomes[0], outcomes[1], relay


def frame_types(stream):
    return [frame.type for frame in FrameDecoder().feed(bytes(stream))]


def assert_channels_work(initiator, responder, relay):
    """A frame each way arrives intact, and its content never crossed the wire in clear."""
    marker = os.urandom(64)
    initiator.channel.send(encode_message(Ping(1)))
    assert decode_message(responder.channel.recv()) == Ping(1)
    responder.channel.send(Frame(MsgType.BLOCK_DATA, 0, marker + b"x" * 10_000))
    assert initiator.channel.recv().payload == marker + b"x" * 10_000
    assert marker not in relay.received[INITIATOR]
    initiator.channel.close()
    responder.channel.close()
    relay.join()


# --- outcomes over sockets ------------------------------------------------------

def test_open_mode_authenticates_both_sides_and_channels_work():
    initiator, responder, relay = run_handshake()
    assert (initiator.peer_id, initiator.peer_public) == (BOB.device_id, BOB.public)
    assert (responder.peer_id, responder.peer_public) == (ALICE.device_id, ALICE.public)
    assert frame_types(relay.received[RESPONDER])[:2] == [MsgType.HANDSHAKE_HELLO, MsgType.HANDSHAKE_AUTH]
    # neither identity crosses the wire in clear
    for stream in relay.received.values():
        assert ALICE.public not in stream and BOB.public not in stream
    assert_channels_work(initiator, responder, relay)


def test_same_secret_and_mutual_allow_lists_succeed():
    initiator, responder, relay = run_handshake(
        {"secret": SECRET, "trusted": {BOB.device_id}},
        {"secret": SECRET, "trusted": {ALICE.device_id, CAROL.device_id}})
    assert initiator.peer_id == BOB.device_id and responder.peer_id == ALICE.device_id
    assert_channels_work(initiator, responder, relay)


@pytest.mark.parametrize("initiator_secret, responder_secret", [
    (SECRET, b"another secret"),
    (None, SECRET),
    (SECRET, None),
])
def test_wrong_secret_fails_on_both_sides_and_reveals_no_identity(initiator_secret, responder_secret):
    initiator, responder, relay = run_handshake({"secret": initiator_secret}, {"secret": responder_secret})
    assert isinstance(responder, HandshakeError) and "cluster secret mismatch" in str(responder)
    assert isinstance(initiator, HandshakeError)
    # the initiator got the responder's hello and nothing more: no HandshakeAuth, no identity
    assert frame_types(relay.received[INITIATOR]) == [MsgType.HANDSHAKE_HELLO]
    assert len(relay.received[INITIATOR]) == HELLO_WIRE_SIZE


def test_allow_list_rejects_an_unlisted_initiator_before_revealing_the_responder():
    initiator, responder, relay = run_handshake(responder={"trusted": {CAROL.device_id}})
    assert isinstance(responder, HandshakeError) and "not on the allow-list" in str(responder)
    assert isinstance(initiator, HandshakeError)
    assert frame_types(relay.received[INITIATOR]) == [MsgType.HANDSHAKE_HELLO]


def test_allow_list_rejects_an_unlisted_responder():
    initiator, responder, _ = run_handshake(initiator={"trusted": set()})
    assert isinstance(initiator, HandshakeError) and "not on the allow-list" in str(initiator)
    assert responder.peer_id == ALICE.device_id  # its side was done; run_handshake saw the hang-up


def test_a_peer_presenting_our_own_identity_is_rejected():
    initiator, responder, relay = run_handshake(responder={"identity": ALICE})
    assert isinstance(responder, HandshakeError) and "our own identity" in str(responder)
    assert isinstance(initiator, HandshakeError)
    assert frame_types(relay.received[INITIATOR]) == [MsgType.HANDSHAKE_HELLO]


@pytest.mark.parametrize("receiver", [RESPONDER, INITIATOR])
def test_a_bit_flip_anywhere_in_a_hello_fails_the_handshake(receiver):
    for offset in range(4, HELLO_WIRE_SIZE):  # every byte after the length prefix
        initiator, responder, _ = run_handshake(relay=Relay(receiver, offset))
        assert isinstance(initiator, WireError), offset
        assert isinstance(responder, WireError), offset


def test_flipping_the_bit_x25519_ignores_still_fails():
    # RFC 7748 masks the top bit of the u-coordinate: same shared secret, but
    # the transcript hash covers the hello bytes, so the keys differ
    initiator, responder, _ = run_handshake(relay=Relay(RESPONDER, 6 + 3 + 1 + 31, mask=0x80))
    assert isinstance(responder, HandshakeError) and "cluster secret mismatch" in str(responder)
    assert isinstance(initiator, HandshakeError)


@pytest.mark.parametrize("receiver", [RESPONDER, INITIATOR])
def test_a_bit_flip_anywhere_in_an_auth_fails_the_handshake(receiver):
    for offset in range(HELLO_WIRE_SIZE + 4, HELLO_WIRE_SIZE + AUTH_WIRE_SIZE):
        initiator, responder, relay = run_handshake(relay=Relay(receiver, offset))
        failed = initiator if receiver == INITIATOR else responder
        assert isinstance(failed, HandshakeError), offset
        assert isinstance(initiator, HandshakeError), offset  # the initiator never completes
        if receiver == RESPONDER:
            assert frame_types(relay.received[INITIATOR]) == [MsgType.HANDSHAKE_HELLO]


def test_an_unencrypted_auth_is_refused():
    """A stranger cannot skip encryption: an auth sent in clear after the hello fails."""
    sock, peer_sock = socket.socketpair()
    sock.settimeout(TIMEOUT)
    responder = Side(RESPONDER, peer_sock, BOB)
    attacker = Handshake(INITIATOR, ALICE, None, None)
    sock.sendall(encode_frame(attacker.start()[0]))
    decoder = FrameDecoder()
    hello = []
    while not hello:
        hello = decoder.feed(sock.recv(HELLO_WIRE_SIZE))
    sock.sendall(encode_frame(attacker.receive(hello[0])[0]))  # a valid HandshakeAuth, unencrypted
    assert isinstance(responder.result(), HandshakeError)
    assert sock.recv(1) == b""  # closed without a word
    sock.close()


# --- the state machine ------------------------------------------------------------

def sequence_rng(*chunks):
    """An rng that returns the given chunks in order (ephemeral key, then random)."""
    stream = iter(chunks)
    return lambda size: next(stream)[:size]


def pair(initiator_secret=None, responder_secret=None, initiator_identity=ALICE, responder_identity=BOB,
         initiator_rng=os.urandom, responder_rng=os.urandom):
    return (Handshake(INITIATOR, initiator_identity, initiator_secret, None, initiator_rng),
            Handshake(RESPONDER, responder_identity, responder_secret, None, responder_rng))


def exchange(initiator, responder, alter=lambda index, frame: frame):
    """Drive both machines to the end, passing frame number ``index`` (0-3)
    through ``alter``; return the four frames in order of sending."""
    assert responder.start() == []
    hello_i = alter(0, initiator.start()[0])
    hello_r = alter(1, responder.receive(hello_i)[0])
    auth_i = alter(2, initiator.receive(hello_r)[0])
    auth_r = alter(3, responder.receive(auth_i)[0])
    assert initiator.receive(auth_r) == []
    return [hello_i, hello_r, auth_i, auth_r]


def test_state_machine_agrees_on_keys_and_peers():
    initiator, responder = pair(SECRET, SECRET)
    exchange(initiator, responder)
    assert initiator.done and responder.done
    assert initiator.keys.send_key == responder.keys.recv_key
    assert initiator.keys.recv_key == responder.keys.send_key
    assert initiator.keys.send_key != initiator.keys.recv_key
    assert initiator.transcript_hash == responder.transcript_hash
    assert initiator.peer.device_id == BOB.device_id and responder.peer.device_id == ALICE.device_id


def test_key_schedule_matches_the_documented_formula():
    """Recompute th and the HKDF from docs/PROTOCOL.md with hashlib and hmac."""
    e_i, r_i, e_r, r_r = (bytes([b]) * 32 for b in (0x11, 0x22, 0x44, 0x55))
    initiator, responder = pair(SECRET, SECRET, initiator_rng=sequence_rng(e_i, r_i),
                                responder_rng=sequence_rng(e_r, r_r))
    hello_i, hello_r, auth_i, auth_r = exchange(initiator, responder)
    assert hello_i.payload[:4] == b"P2P\x01" and hello_i.payload[36:] == r_i
    th = hashlib.sha256(b"p2p-handshake-v1" + hello_i.payload + hello_r.payload).digest()
    shared = key_agreement(eph_priv=import_x25519_private_key(e_i),
                           eph_pub=import_x25519_public_key(hello_r.payload[4:36]), kdf=bytes)
    salt = hashlib.sha256(b"p2p-cluster-secret" + SECRET).digest()
    prk = hmac.new(salt, shared, hashlib.sha256).digest()
    info = b"p2p v1 session keys" + th
    t1 = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + info + b"\x02", hashlib.sha256).digest()
    assert initiator.transcript_hash == th
    assert initiator.keys == (t1, t2) and responder.keys == (t2, t1)
    auth = decode_message(auth_i)
    assert auth.identity == ALICE.public
    assert ALICE.sign(b"p2p-auth-v1" + b"I" + th) == auth.signature
    assert decode_message(auth_r).signature == BOB.sign(b"p2p-auth-v1" + b"R" + th)
    # the test vector printed in docs/PROTOCOL.md
    assert th.hex() == TEST_VECTOR["th"]
    assert t1.hex() == TEST_VECTOR["k_i2r"] and t2.hex() == TEST_VECTOR["k_r2i"]
    flags = FLAG_ENCRYPTED
    wire = encode_frame(Frame(auth_i.type, flags, bytes(seal(t1, 0, bytes((auth_i.type, flags)), auth_i.payload))))
    assert wire.hex() == TEST_VECTOR["auth_i_wire"]


TEST_VECTOR = {  # docs/PROTOCOL.md, "Handshake test vector"
    "th": "13d1a9973ae88244f424e985bb3934b8be4cd108cc25ac1678a64d75eb764b51",
    "k_i2r": "483493198e7f1f84e203577d0eb135140dde29211ed46ed9688f991f41d3d2dc",
    "k_r2i": "5c81f0f271d677ef1d682868fd5f77435d5c7fe8153b261774859686e2ce7da0",
    "auth_i_wire": "0000007221022c6a668537b62e9eaae5d538dc908a3ba3781b8fd8ac8662463c3fb2b028b467af0e"
                   "e3edacf6e15bbfdb987b09cf40426c90b141cb4aba7acf4b1e4d68a43a792603e970f0f64f5ef93b"
                   "380c7808fcca9064931357a97ea9a0173ce7d8014270e8a371a0c7c84908a6a2c4bed3a67c1e",
}


def test_different_secrets_give_different_keys():
    initiator, responder = pair(SECRET, SECRET + b"!")
    responder.start()
    initiator.receive(responder.receive(initiator.start()[0])[0])
    assert initiator.transcript_hash == responder.transcript_hash  # same exchange...
    assert initiator.keys.send_key != responder.keys.recv_key      # ...other keys
    assert initiator.keys.recv_key != responder.keys.send_key


def test_a_replayed_auth_from_an_earlier_session_is_rejected():
    first_initiator, first_responder = pair()
    _, _, old_auth, _ = exchange(first_initiator, first_responder)
    initiator, responder = pair()
    responder.start()
    responder.receive(initiator.start()[0])
    with pytest.raises(HandshakeError, match="signature does not verify"):
        responder.receive(old_auth)
    assert responder.state is State.FAILED
    with pytest.raises(HandshakeError):
        responder.receive(old_auth)  # a failed machine accepts nothing more


def test_a_reflected_auth_is_rejected():
    initiator, responder = pair()
    responder.start()
    own_auth = initiator.receive(responder.receive(initiator.start()[0])[0])[0]
    with pytest.raises(HandshakeError):
        initiator.receive(own_auth)


def test_an_auth_signed_by_someone_else_is_rejected():
    initiator, responder = pair()
    responder.start()
    responder.receive(initiator.start()[0])
    forged = HandshakeAuth(identity=CAROL.public,
                           signature=ALICE.sign(auth_signed_data(INITIATOR, responder.transcript_hash)))
    with pytest.raises(HandshakeError, match="signature does not verify"):
        responder.receive(encode_message(forged))


def test_initiator_rejects_a_responder_presenting_our_own_identity():
    initiator, responder = pair()
    responder.start()
    initiator.receive(responder.receive(initiator.start()[0])[0])
    mirror = HandshakeAuth(identity=ALICE.public,
                           signature=ALICE.sign(auth_signed_data(RESPONDER, initiator.transcript_hash)))
    with pytest.raises(HandshakeError, match="our own identity"):
        initiator.receive(encode_message(mirror))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_ephemeral_keys_are_rejected(point):
    responder = Handshake(RESPONDER, BOB, None, None)
    responder.start()
    hello = HandshakeHello(version=1, ephemeral=point.to_bytes(32, "little"), random=bytes(32))
    with pytest.raises(HandshakeError, match="X25519"):
        responder.receive(encode_message(hello))


def test_unknown_version_and_out_of_order_messages_are_rejected():
    responder = Handshake(RESPONDER, BOB, None, None)
    responder.start()
    with pytest.raises(HandshakeError, match="version 2"):
        responder.receive(encode_message(HandshakeHello(2, ALICE.public, bytes(32))))
    initiator = Handshake(INITIATOR, ALICE, None, None)
    with pytest.raises(HandshakeError):
        initiator.receive(encode_message(Ping(0)))  # before start()
    initiator = Handshake(INITIATOR, ALICE, None, None)
    initiator.start()
    with pytest.raises(HandshakeError, match="expected HandshakeHello"):
        initiator.receive(encode_message(HandshakeAuth(ALICE.public, bytes(64))))


def test_role_must_be_known():
    with pytest.raises(ValueError):
        Handshake("observer", ALICE, None, None)


# --- fuzzing: nothing but WireError escapes ----------------------------------------

def machine_in_state(role, state):
    """A fresh machine of ``role`` driven to AWAIT_HELLO or AWAIT_AUTH."""
    initiator, responder = pair()
    machines = {INITIATOR: initiator, RESPONDER: responder}
    hello_i = initiator.start()[0]
    responder.start()
    if state is State.AWAIT_AUTH:
        initiator.receive(responder.receive(hello_i)[0])
    return machines[role]


frames = st.builds(
    Frame,
    type=st.one_of(st.sampled_from([int(t) for t in MsgType]), st.integers(0, 255)),
    flags=st.one_of(st.just(0), st.integers(0, 255)),
    payload=st.one_of(st.binary(max_size=200), st.binary(min_size=68, max_size=68),
                      st.binary(min_size=96, max_size=96)),
)
hellos = st.builds(HandshakeHello, version=st.one_of(st.just(1), st.integers(0, 255)),
                   ephemeral=st.one_of(st.binary(min_size=32, max_size=32),
                                       st.sampled_from([p.to_bytes(32, "little") for p in LOW_ORDER_POINTS])),
                   random=st.binary(min_size=32, max_size=32)).map(encode_message)
auths = st.builds(HandshakeAuth,
                  identity=st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from([ALICE.public, BOB.public])),
                  signature=st.binary(min_size=64, max_size=64)).map(encode_message)


def flip_bits(frame, positions):
    payload = bytearray(frame.payload)
    for position in positions:
        payload[position % len(payload)] ^= 1 << (position % 8)
    return Frame(frame.type, frame.flags, bytes(payload))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(role=st.sampled_from([INITIATOR, RESPONDER]),
       state=st.sampled_from([State.AWAIT_HELLO, State.AWAIT_AUTH]),
       inputs=st.lists(st.one_of(frames, hellos, auths), min_size=1, max_size=4))
def test_fuzz_handshake_raises_only_wire_errors(role, state, inputs):
    machine = machine_in_state(role, state)
    for frame in inputs:
        try:
            replies = machine.receive(frame)
        except WireError:
            assert machine.state is State.FAILED
            continue
        assert all(isinstance(reply, Frame) for reply in replies)
        assert machine.state in (State.AWAIT_AUTH, State.DONE)


@settings(max_examples=EXAMPLES, deadline=None)
@given(step=st.integers(0, 3), positions=st.lists(st.integers(0, 8 * 96 - 1), min_size=1, max_size=3))
def test_fuzz_any_altered_handshake_frame_fails_the_handshake(step, positions):
    """Even without the encryption layer, the signatures over the transcript
    catch an alteration of any of the four frames."""
    def alter(index, frame):
        return flip_bits(frame, positions) if index == step else frame

    original = exchange(*pair())[step]
    if flip_bits(original, positions) == original:  # the flips cancelled out
        return
    with pytest.raises(WireError):
        exchange(*pair(), alter=alter)
