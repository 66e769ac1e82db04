"""The handshake that opens every TCP connection, before any event or block.

``Handshake`` is the protocol as a sans-I/O state machine: fed the peer's
frames, it returns the frames to send, derives the session keys and, at the
end, names the authenticated peer. It is pure (no sockets, no clock;
randomness is passed in) and any bad input raises a ``WireError`` subclass.
``perform_handshake`` is the thin blocking driver that moves its frames over
a ``TcpChannel`` and returns the encrypted, compressed session channel.

The exchange (docs/PROTOCOL.md, "Handshake", has it byte for byte)::

    initiator                                      responder
    HandshakeHello(1, e_i, r_i)       -- clear -->
                                      <-- clear -- HandshakeHello(1, e_r, r_r)
        th   = sha256("p2p-handshake-v1" || hello_i || hello_r)
        salt = sha256("p2p-cluster-secret" || secret)
        k_i2r || k_r2i = HKDF-SHA256(X25519(e, e'), 64, salt, "p2p v1 session keys" || th)
    HandshakeAuth(id_i, sig_i("I", th)) -- encrypted -->
                                          responder checks secret (decryption),
                                          signature, allow-list, not itself
                                      <-- encrypted -- HandshakeAuth(id_r, sig_r("R", th))
    initiator checks the same

A peer without the cluster secret derives other keys, so the responder cannot
decrypt its HandshakeAuth and closes before revealing who it is.
"""

from __future__ import annotations

import hashlib
import os
from enum import Enum
from typing import Callable, List, NamedTuple, Optional, Set

from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF

from p2p.security.identity import Identity, device_id_from_public, format_device_id, verify
from p2p.transport import ChannelClosed, CompressingChannel, EncryptedChannel, Offload, TcpChannel
from p2p.wire import (
    AuthenticationError,
    Frame,
    HandshakeAuth,
    HandshakeError,
    HandshakeHello,
    decode_message,
    encode_message,
)

PROTOCOL_VERSION = 1
TRANSCRIPT_LABEL = b"p2p-handshake-v1"
SECRET_LABEL = b"p2p-cluster-secret"
KEYS_LABEL = b"p2p v1 session keys"
AUTH_LABEL = b"p2p-auth-v1"
INITIATOR, RESPONDER = "initiator", "responder"
ROLE_BYTE = {INITIATOR: b"I", RESPONDER: b"R"}
EPHEMERAL_SIZE = 32
RANDOM_SIZE = 32
SESSION_KEY_SIZE = 32


class SessionKeys(NamedTuple):
    send_key: bytes
    recv_key: bytes


class PeerIdentity(NamedTuple):
    device_id: str
    public: bytes


class HandshakeResult(NamedTuple):
    peer_id: str
    peer_public: bytes
    channel: CompressingChannel


class State(Enum):
    START = "start"               # nothing sent or received
    AWAIT_HELLO = "await hello"   # waiting for the peer's HandshakeHello (clear)
    AWAIT_AUTH = "await auth"     # keys derived; waiting for the peer's HandshakeAuth (encrypted)
    DONE = "done"                 # peer authenticated; keys and peer are final
    FAILED = "failed"             # a WireError was raised; the connection must close


def cluster_salt(secret: Optional[bytes]) -> bytes:
    """The HKDF salt that mixes the cluster secret (b"" in open mode) into the keys."""
    return hashlib.sha256(SECRET_LABEL + (secret or b"")).digest()


def auth_signed_data(role: str, transcript_hash: bytes) -> bytes:
    """What ``role``'s HandshakeAuth signs."""
    return AUTH_LABEL + ROLE_BYTE[role] + transcript_hash


class Handshake:
    """One side of the handshake, without I/O.

    ``start()`` returns the frames to send first (the initiator's hello);
    ``receive(frame)`` takes each frame the peer sends and returns the frames
    to send in reply. Each side's first frame (its HandshakeHello) travels in
    clear; every later frame in both directions is encrypted with ``keys``,
    which are set once the peer's hello has been received. When ``done``,
    ``peer`` names the authenticated peer. Any error leaves the state FAILED.
    """

    def __init__(self, role: str, identity: Identity, secret: Optional[bytes],
                 trusted: Optional[Set[str]], rng: Callable[[int], bytes] = os.urandom) -> None:
        if role not in ROLE_BYTE:
            raise ValueError(f"role must be {INITIATOR!r} or {RESPONDER!r}, not {role!r}")
        self.role = role
        self.peer_role = RESPONDER if role == INITIATOR else INITIATOR
        self._identity = identity
        self._salt = cluster_salt(secret)
        self._trusted = trusted
        self._ephemeral = import_x25519_private_key(rng(EPHEMERAL_SIZE))
        hello = HandshakeHello(version=PROTOCOL_VERSION,
                               ephemeral=self._ephemeral.public_key().export_key(format="raw"),
                               random=rng(RANDOM_SIZE))
        self._hello_frame = encode_message(hello)
        self.transcript_hash = b""  # th: public, set with the keys
        self.state = State.START
        self.keys: Optional[SessionKeys] = None
        self.peer: Optional[PeerIdentity] = None

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    def start(self) -> List[Frame]:
        if self.state is not State.START:
            raise HandshakeError(f"handshake already started (state '{self.state.value}')")
        self.state = State.AWAIT_HELLO
        return [self._hello_frame] if self.role == INITIATOR else []

    def receive(self, frame: Frame) -> List[Frame]:
        try:
            if self.state is State.AWAIT_HELLO:
                return self._receive_hello(frame)
            if self.state is State.AWAIT_AUTH:
                return self._receive_auth(frame)
            raise HandshakeError(f"unexpected frame {frame.type:#04x} in handshake state '{self.state.value}'")
        except BaseException:
            self.state = State.FAILED
            raise

    def _receive_hello(self, frame: Frame) -> List[Frame]:
        hello = decode_message(frame)
        if not isinstance(hello, HandshakeHello):
            raise HandshakeError(f"expected HandshakeHello, got {type(hello).__name__}")
        if hello.version != PROTOCOL_VERSION:
            raise HandshakeError(f"unsupported handshake version {hello.version} (we speak {PROTOCOL_VERSION})")
        shared = self._shared_secret(hello.ephemeral)
        self._ephemeral = None  # forward secrecy: the private key is not needed any more
        if self.role == INITIATOR:
            transcript = TRANSCRIPT_LABEL + self._hello_frame.payload + frame.payload
        else:
            transcript = TRANSCRIPT_LABEL + frame.payload + self._hello_frame.payload
        self.transcript_hash = hashlib.sha256(transcript).digest()
        okm = HKDF(shared, 2 * SESSION_KEY_SIZE, self._salt, SHA256,
                   context=KEYS_LABEL + self.transcript_hash)
        initiator_to_responder, responder_to_initiator = okm[:SESSION_KEY_SIZE], okm[SESSION_KEY_SIZE:]
        if self.role == INITIATOR:
            self.keys = SessionKeys(initiator_to_responder, responder_to_initiator)
        else:
            self.keys = SessionKeys(responder_to_initiator, initiator_to_responder)
        self.state = State.AWAIT_AUTH
        return [self._auth_frame()] if self.role == INITIATOR else [self._hello_frame]

    def _shared_secret(self, peer_ephemeral: bytes) -> bytes:
        try:
            peer_key = import_x25519_public_key(peer_ephemeral)
            shared = key_agreement(eph_priv=self._ephemeral, eph_pub=peer_key, kdf=bytes)
        except ValueError:  # a low-order point: the shared secret would be predictable
            raise HandshakeError("the peer's ephemeral key is not a valid X25519 public key") from None
        if not any(shared):
            raise HandshakeError("X25519 gave an all-zero shared secret")
        return shared

    def _receive_auth(self, frame: Frame) -> List[Frame]:
        auth = decode_message(frame)
        if not isinstance(auth, HandshakeAuth):
            raise HandshakeError(f"expected HandshakeAuth, got {type(auth).__name__}")
        if not verify(auth.identity, auth_signed_data(self.peer_role, self.transcript_hash), auth.signature):
            raise HandshakeError("the peer's handshake signature does not verify")
        device_id = device_id_from_public(auth.identity)
        if device_id == self._identity.device_id:
            raise HandshakeError("the peer presents our own identity (a connection to ourselves, or a reflection)")
        if self._trusted is not None and device_id not in self._trusted:
            raise HandshakeError(f"device {format_device_id(device_id)} is not on the allow-list")
        self.peer = PeerIdentity(device_id, auth.identity)
        self.state = State.DONE
        return [self._auth_frame()] if self.role == RESPONDER else []

    def _auth_frame(self) -> Frame:
        signature = self._identity.sign(auth_signed_data(self.role, self.transcript_hash))
        return encode_message(HandshakeAuth(identity=self._identity.public, signature=signature))


def perform_handshake(tcp: TcpChannel, role: str, identity: Identity, secret: Optional[bytes],
                      trusted: Optional[Set[str]], rng: Callable[[int], bytes] = os.urandom,
                      offload: Optional[Offload] = None) -> HandshakeResult:
    """Run the handshake on a fresh connection; the dialer is the initiator.

    Returns the authenticated peer and the session channel
    (``CompressingChannel(EncryptedChannel(tcp, ...))``, both layers given
    ``offload`` for large payloads). On any failure the connection is closed
    and a ``WireError`` (``HandshakeError`` for every protocol failure)
    propagates. The caller bounds the time (``limits.HANDSHAKE_TIMEOUT``).
    """
    handshake = Handshake(role, identity, secret, trusted, rng)
    try:
        for frame in handshake.start():
            tcp.send(frame)
        replies = handshake.receive(_receive(tcp))
        encrypted = EncryptedChannel(tcp, handshake.keys.send_key, handshake.keys.recv_key, offload)
        if role == RESPONDER:
            tcp.send(replies.pop(0))  # the responder's hello, in clear
        for frame in replies:
            encrypted.send(frame)
        for frame in handshake.receive(_receive(encrypted)):
            encrypted.send(frame)
    except BaseException:
        tcp.close()
        raise
    return HandshakeResult(handshake.peer.device_id, handshake.peer.public,
                           CompressingChannel(encrypted, tcp.max_frame, offload))


def _receive(channel) -> Frame:
    try:
        return channel.recv()
    except (ChannelClosed, ConnectionError):
        raise HandshakeError("the peer closed the connection during the handshake "
                             "(a different cluster secret, or we are not on its allow-list)") from None
    except AuthenticationError:
        raise HandshakeError("cannot decrypt the peer's HandshakeAuth: cluster secret mismatch "
                             "(or the handshake was tampered with)") from None
