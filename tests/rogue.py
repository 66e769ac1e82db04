"""A hostile or broken peer played from the test process, against a real `p2p run`.

Two kinds of rogue:
- raw sockets (``connect``, ``exchange``): bytes of our choosing before any
  handshake, and whatever the target sends back, decoded into frames;
- ``AuthenticatedRogue``: runs ``perform_handshake`` itself, as a member would,
  then sends chosen messages, raw or tampered encrypted frames, and events with
  any path; it can serve blocks (or forged ones) and remembers every message
  it received.

Also ``limits_hook``: a ``sitecustomize`` directory that lets a test start real
peers with shorter limits (say IDLE_TIMEOUT) without any change to p2p.
Plain blocking sockets and threads: the test process is not gevent-patched.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from p2p import limits
from p2p.security.handshake import INITIATOR, Handshake, perform_handshake
from p2p.security.identity import Identity
from p2p.transport import ChannelClosed, TcpChannel
from p2p.transport.encrypt import seal
from p2p.wire.errors import WireError
from p2p.wire.frame import FLAG_ENCRYPTED, Frame, FrameDecoder, encode_frame
from p2p.wire.messages import (BlockData, BlockRequest, BlockRequests, BlocksData, Events, MsgType, decode_message,
                               encode_message)

REPLY_WAIT = 5.0          # how long a raw rogue waits for the target to answer or hang up
LIMITS_ENV = "P2P_TEST_LIMITS"

# Types a peer must never send to someone that has not authenticated.
MEMBER_ONLY_TYPES = frozenset({MsgType.EVENTS, MsgType.BLOCK_DATA, MsgType.SUMMARY, MsgType.LIST_REPLY})


# --- raw sockets --------------------------------------------------------------

def connect(address: Tuple[str, int], source: Optional[str] = None, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = REPLY_WAIT) -> Tuple[bytes, bool]:
    """Everything the other side sends until it closes: (bytes, closed?)."""
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(received), True
            received += chunk
    except socket.timeout:
        return bytes(received), False
    except ConnectionResetError:
        return bytes(received), True


def exchange(address, data: bytes, *, close_after_send: bool = False, timeout: float = REPLY_WAIT):
    """Connect, send ``data``, collect the reply until the target hangs up.

    Returns (the local port, the bytes received, whether the target closed).
    With ``close_after_send`` we hang up first (half-close) and still read.
    """
    sock = connect(address)
    try:
        port = sock.getsockname()[1]
        sock.sendall(data)
        if close_after_send:
            sock.shutdown(socket.SHUT_WR)
        received, closed = read_until_closed(sock, timeout)
        return port, received, closed
    finally:
        sock.close()


def frame_types(data: bytes) -> List[int]:
    """The type of every whole frame in ``data`` (whatever their size)."""
    decoder = FrameDecoder(max_frame=0xFFFFFFFF)
    try:
        return [f.type for f in decoder.feed(data)]
    except WireError:
        return [-1]


def raw_frame(frame_type: int, payload: bytes, flags: int = 0) -> bytes:
    return encode_frame(Frame(frame_type, flags, payload))


def wrong_secret_attempt(address, secret: bytes):
    """Run the initiator's side of the handshake with ``secret`` by hand, over a
    raw socket, so every byte the target sends back is seen.

    Returns (the local port, the types of the frames received, whether the
    target closed within REPLY_WAIT).
    """
    handshake = Handshake(INITIATOR, Identity.generate(), secret, None)
    sock = connect(address)
    try:
        port = sock.getsockname()[1]
        sock.sendall(encode_frame(handshake.start()[0]))
        decoder = FrameDecoder(limits.HANDSHAKE_MAX_FRAME)
        frames: List[Frame] = []
        while not frames:
            chunk = sock.recv(65536)
            if not chunk:
                return port, [], True
            frames += decoder.feed(chunk)
        auth = handshake.receive(frames[0])[0]
        flags = auth.flags | FLAG_ENCRYPTED
        sealed = seal(handshake.keys.send_key, 0, bytes((auth.type, flags)), auth.payload)
        sock.sendall(encode_frame(Frame(auth.type, flags, sealed)))
        rest, closed = read_until_closed(sock)
        return port, [f.type for f in frames] + frame_types(rest), closed
    finally:
        sock.close()


# --- probes of the target process -------------------------------------------------

def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return count


# --- events ---------------------------------------------------------------------

def dir_event(origin: str, seq: int, path: str) -> dict:
    """A raw 'create dir' event: needs no blocks, so it is applied at once."""
    return {"id": f"{origin}:{seq}", "origin": origin, "seq": seq, "lamport": seq, "type": "create",
            "kind": "dir", "path": path, "size": 0, "mode": 0o755, "mtime": 0, "hash": "", "blocks": [],
            "parents": [], "time": time.time()}


def file_event(origin: str, seq: int, path: str, content: bytes) -> dict:
    """A raw 'create file' event of one block (content up to limits.MAX_BLOCK)."""
    digest = hashlib.sha256(content).hexdigest()
    return {"id": f"{origin}:{seq}", "origin": origin, "seq": seq, "lamport": seq, "type": "create",
            "kind": "file", "path": path, "size": len(content), "mode": 0o644, "mtime": 0, "hash": digest,
            "blocks": [[digest, len(content)]], "parents": [], "time": time.time()}


# --- an authenticated rogue ------------------------------------------------------------

class RecordingTcpChannel(TcpChannel):
    """A TcpChannel that remembers the (encrypted) frames it sent and can
    corrupt the next one: the rogue's access to the bytes under encryption."""

    def __init__(self, sock, max_frame):
        super().__init__(sock, max_frame)
        self.sent: List[Frame] = []
        self.flip_next: Optional[int] = None   # bit index to flip in the next payload

    def send(self, frame: Frame) -> None:
        if self.flip_next is not None:
            payload = bytearray(frame.payload)
            payload[self.flip_next // 8] ^= 1 << (self.flip_next % 8)
            frame, self.flip_next = Frame(frame.type, frame.flags, payload), None
        self.sent.append(frame)
        super().send(frame)


class AuthenticatedRogue:
    """A member (it knows the secret) that misbehaves after the handshake."""

    def __init__(self, address, secret: Optional[bytes], identity: Optional[Identity] = None):
        self.identity = identity or Identity.generate()
        self.device_id = self.identity.device_id
        self.sock = connect(address)
        self.tcp = RecordingTcpChannel(self.sock, limits.HANDSHAKE_MAX_FRAME)
        result = perform_handshake(self.tcp, INITIATOR, self.identity, secret, None)
        self.tcp.max_frame = result.channel.max_frame = limits.MAX_FRAME
        self.channel = result.channel
        self.peer_id = result.peer_id
        self.received: List[object] = []
        self.blocks: Dict[bytes, bytes] = {}      # served on request: sha256 digest -> content
        self.forged: Dict[bytes, bytes] = {}      # requested digest -> other content, sent with its own digest
        self.block_requests: List[BlockRequest] = []
        self.closed = threading.Event()           # the target hung up (seen by the reader)
        self._send_lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self._next_seq = 1

    # -- sending -------------------------------------------------------------
    def send(self, msg) -> Frame:
        return self.send_frame(encode_message(msg))

    def send_frame(self, frame: Frame) -> Frame:
        """Encrypt and send any frame, even one of a type no peer knows;
        return the encrypted frame as it went on the wire."""
        with self._send_lock:
            self.channel.send(frame)
            return self.tcp.sent[-1]

    def send_tampered(self, msg, bit: int) -> None:
        """Send ``msg`` with one bit of its encrypted payload flipped."""
        with self._send_lock:
            self.tcp.flip_next = bit
            self.channel.send(encode_message(msg))

    def replay(self, sent: Frame) -> None:
        """Send an encrypted frame again, byte for byte."""
        with self._send_lock:
            TcpChannel.send(self.tcp, sent)

    def send_events(self, events: List[dict]) -> None:
        self.send(Events(events=tuple(events)))

    def next_seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def serve(self, content: bytes) -> None:
        self.blocks[hashlib.sha256(content).digest()] = content

    def forge(self, asked: bytes, sent: bytes) -> None:
        """Answer a request for ``asked``'s block with ``sent``, under ``sent``'s own hash."""
        self.forged[hashlib.sha256(asked).digest()] = sent

    # -- receiving -----------------------------------------------------------
    def start_reader(self) -> "AuthenticatedRogue":
        """Read in a thread: remember every message, answer block requests."""
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return self

    def _read_loop(self) -> None:
        try:
            while True:
                msg = decode_message(self.channel.recv())
                self.received.append(msg)
                if isinstance(msg, BlockRequest):
                    self.send(self._answer(msg))
                elif isinstance(msg, BlockRequests):   # answered together, as p2p does
                    self.send(BlocksData(blocks=tuple(self._answer(request) for request in msg.requests)))
        except (ChannelClosed, WireError, OSError):
            pass
        finally:
            self.closed.set()

    def _answer(self, request: BlockRequest) -> BlockData:
        self.block_requests.append(request)
        fake = self.forged.get(request.hash)
        if fake is not None:
            return BlockData(req_id=request.req_id, status=0, hash=hashlib.sha256(fake).digest(), data=fake)
        data = self.blocks.get(request.hash)
        return BlockData(req_id=request.req_id, status=0 if data else 1, hash=request.hash, data=data or b"")

    def received_of(self, cls) -> list:
        return [m for m in list(self.received) if isinstance(m, cls)]

    def close(self) -> None:
        self.channel.close()
        if self._reader is not None:
            self._reader.join(5)


# --- shorter limits for real peers ------------------------------------------------

SITECUSTOMIZE = f'''"""Test hook: apply {LIMITS_ENV}="NAME=VALUE,..." to p2p.limits at start-up."""
import os
_spec = os.environ.get("{LIMITS_ENV}")
if _spec:
    import p2p.limits as _limits
    for _item in _spec.split(","):
        _name, _value = _item.split("=")
        setattr(_limits, _name, type(getattr(_limits, _name))(float(_value)))
'''


def limits_hook(directory: Path, **overrides) -> Dict[str, str]:
    """Environment for peers started with shorter limits (p2p.limits names).

    Writes a ``sitecustomize.py`` into ``directory``; it runs before
    ``python -m p2p`` imports anything (p2p.limits is pure constants, so
    importing it before the entry point's monkey-patching is harmless) and
    only where the returned variables are set.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    python_path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": python_path,
            LIMITS_ENV: ",".join(f"{name}={value}" for name, value in overrides.items())}
