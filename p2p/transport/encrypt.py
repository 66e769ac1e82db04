"""EncryptedChannel: AES-256-GCM on every frame payload.

Nonce = 4 zero bytes + the direction's frame counter (u64 big-endian),
starting at 0 and never transmitted, so a replayed, dropped or reordered
frame fails authentication. AAD = the frame's TYPE and FLAGS bytes (with
FLAG_ENCRYPTED set). Payload = ciphertext + 16-byte tag. Any failure raises
AuthenticationError and closes the channel. A large frame is sealed and
opened through ``offload`` only when the cipher composes it from
pycryptodome's parts; through OpenSSL (3 GB/s or more, the GIL released)
even the largest frame takes a few milliseconds in the caller, less than a
thread hop costs in wake-ups and GIL hand-backs (the 500 MB file: about
0.35 s less CPU over both peers, docs/BENCHMARKS.md). ``seal``/``open_sealed`` are
pure (no sockets, no clock); the cipher itself is ``p2p.transport.gcm``.
"""

import struct
from typing import Optional

from p2p.transport.channel import Channel, ChannelClosed, Offload, run_cpu
from p2p.transport.gcm import TAG_SIZE, Gcm
from p2p.wire.errors import AuthenticationError
from p2p.wire.frame import FLAG_ENCRYPTED, BytesLike, Frame

KEY_SIZE = 32                  # AES-256
NONCE_PREFIX = bytes(4)        # the 4 zero bytes before the counter
COUNTER = struct.Struct(">Q")
COUNTER_LIMIT = 1 << 64        # a direction that has used every counter value must close


def frame_nonce(counter: int) -> bytes:
    return NONCE_PREFIX + COUNTER.pack(counter)


def seal(key, counter: int, aad: bytes, plaintext: BytesLike) -> bytearray:
    """Return ciphertext + tag, written into one buffer (no join). ``key``: the
    32-byte key or its ``Gcm`` (a channel keeps one per direction)."""
    cipher = key if isinstance(key, Gcm) else Gcm(key)
    return cipher.seal(frame_nonce(counter), aad, plaintext)


def open_sealed(key, counter: int, aad: bytes, sealed: BytesLike) -> bytes:
    """Return the plaintext; AuthenticationError if anything was altered. A
    large bytearray (a received frame's buffer) is decrypted in place
    (``Gcm.open``)."""
    if len(sealed) < TAG_SIZE:
        raise AuthenticationError(f"encrypted payload of {len(sealed)} bytes is shorter than its tag")
    cipher = key if isinstance(key, Gcm) else Gcm(key)
    try:
        return cipher.open(frame_nonce(counter), aad, sealed)
    except ValueError:
        raise AuthenticationError("frame failed authentication") from None


class EncryptedChannel(Channel):
    def __init__(self, inner: Channel, send_key: bytes, recv_key: bytes,
                 offload: Optional[Offload] = None):
        if len(send_key) != KEY_SIZE or len(recv_key) != KEY_SIZE:
            raise ValueError("AES-256-GCM keys are 32 bytes")
        self._inner = inner
        self._send_key = Gcm(send_key)   # the key schedule, once per direction
        self._recv_key = Gcm(recv_key)
        self._offload = None if self._send_key.large_in_openssl else offload
        self._send_counter = 0
        self._recv_counter = 0
        self._closed = False

    def send(self, frame: Frame) -> None:
        self._check_usable(self._send_counter)
        counter = self._send_counter
        self._send_counter += 1
        flags = frame.flags | FLAG_ENCRYPTED
        sealed = run_cpu(self._offload, len(frame.payload), seal,
                         self._send_key, counter, bytes((frame.type, flags)), frame.payload)
        self._inner.send(Frame(frame.type, flags, sealed))

    def recv(self) -> Frame:
        if self._closed:
            raise ChannelClosed("channel is closed")
        frame = self._inner.recv()
        self._check_usable(self._recv_counter)
        counter = self._recv_counter
        self._recv_counter += 1
        try:
            if not frame.flags & FLAG_ENCRYPTED:
                raise AuthenticationError(f"unencrypted frame (type {frame.type:#04x}) on an encrypted channel")
            plaintext = run_cpu(self._offload, len(frame.payload), open_sealed,
                                self._recv_key, counter, bytes((frame.type, frame.flags)), frame.payload)
        except AuthenticationError:
            self.close()
            raise
        return Frame(frame.type, frame.flags & ~FLAG_ENCRYPTED, plaintext)

    def close(self) -> None:
        self._closed = True
        self._inner.close()

    def _check_usable(self, counter: int) -> None:
        """Raise ChannelClosed if the channel is closed; close it once a
        direction has used all 2**64 counter values (a nonce never repeats)."""
        if self._closed:
            raise ChannelClosed("channel is closed")
        if counter >= COUNTER_LIMIT:
            self.close()
            raise ChannelClosed("nonce counter exhausted")
