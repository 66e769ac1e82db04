"""The local control socket through which `p2p status` and `p2p ls` ask the
running peer: a Unix socket at ``HOME/.p2p/control.sock`` (an abstract socket
when that path is too long), one JSON request line, one JSON reply line.

Only the local user can reach it (file mode 0600); it never listens on the
network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

import ujson

log = logging.getLogger("p2p.control")

MAX_UNIX_PATH = 100


def control_address(home) -> str:
    path = str(Path(home).resolve() / ".p2p" / "control.sock")
    if len(path.encode()) <= MAX_UNIX_PATH:
        return path
    return "\0p2p-" + hashlib.sha256(path.encode()).hexdigest()[:32]


def ask(home, request: dict, timeout: float = 15.0) -> dict:
    """Send one request to the peer running with ``home``; raise OSError if none."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(control_address(home))
        sock.sendall(ujson.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return ujson.loads(data)


class ControlServer:
    def __init__(self, node):
        self.node = node
        self.address = control_address(node.home)
        self.server = None

    def start(self) -> None:
        from gevent.server import StreamServer

        if not self.address.startswith("\0"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        if not self.address.startswith("\0"):
            os.chmod(self.address, 0o600)
        listener.listen(16)
        self.server = StreamServer(listener, self._handle)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)
        if not self.address.startswith("\0"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass

    def _handle(self, sock, _address) -> None:
        try:
            line = sock.makefile("rb").readline(65536)
            request = ujson.loads(line)
            reply = self._answer(request)
        except Exception as exc:  # a bad request gets an error reply, never a crash
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            sock.sendall(ujson.dumps(reply, ensure_ascii=False).encode() + b"\n")
        finally:
            sock.close()

    def _answer(self, request: dict) -> dict:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.node.status()
        if cmd == "ls":
            peer = self.node.registry.find(str(request.get("peer", "")))
            if peer is None or peer.session is None:
                return {"error": f"no connected peer matches {request.get('peer')!r}"}
            entries = peer.session.list_remote(str(request.get("path", "")))
            return {"peer": peer.device_id, "name": peer.name, "entries": list(entries)}
        if cmd in ("pause", "resume"):
            try:
                return getattr(self.node, cmd)(str(request.get("peer", "")))
            except ValueError as exc:
                return {"error": str(exc)}
        if cmd == "gui":
            return self.node.gui_address()
        return {"error": f"unknown command {cmd!r}"}
