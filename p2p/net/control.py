"""The local control socket through which `p2p status` and `p2p ls` ask the
running peer: a Unix socket, one JSON request line, one JSON reply line.

Only the local user can reach it, twice over: the socket is a file of mode
0600 in a directory of mode 0700 (``HOME/.p2p/control.sock``; when that path
is too long for a Unix socket, ``/tmp/p2p-UID/<hash of it>.sock`` in a
directory that must be ours and 0700, else nothing is bound or asked there),
never an abstract socket, which any local user could reach; and the server
answers only a connection whose peer credentials (``SO_PEERCRED``) are of
its own uid. It never listens on the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat as statmod
import struct
from pathlib import Path

import ujson

from p2p.security.private import PRIVATE_DIR, PRIVATE_FILE

log = logging.getLogger("p2p.control")

MAX_UNIX_PATH = 100
RUNTIME_BASE = "/tmp"      # short, and the same for every process of the machine


class UnsafeControlDirectory(OSError):
    """The short directory for the control socket is not this user's alone."""


def control_address(home, create: bool = False) -> str:
    """The control socket's path for ``home``; ``create`` (the server) makes
    the short directory for a long home path if it is missing."""
    path = str(Path(home).resolve() / ".p2p" / "control.sock")
    if len(path.encode()) <= MAX_UNIX_PATH:
        return path
    return os.path.join(_runtime_dir(create), hashlib.sha256(path.encode()).hexdigest()[:32] + ".sock")


def _runtime_dir(create: bool) -> str:
    """``/tmp/p2p-UID``: a directory of ours, mode 0700, not a link; refused
    (``UnsafeControlDirectory``) if another user made it or can enter it."""
    directory = os.path.join(RUNTIME_BASE, f"p2p-{os.getuid()}")
    if create:
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            pass
    st = os.lstat(directory)
    if not statmod.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise UnsafeControlDirectory(f"{directory} is not a directory of this user: not using it for the "
                                     "control socket (remove it)")
    if statmod.S_IMODE(st.st_mode) != PRIVATE_DIR:
        if not create:
            raise UnsafeControlDirectory(f"{directory} can be entered by other users: not using it")
        os.chmod(directory, PRIVATE_DIR)
    return directory


def peer_uid(sock) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


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
        self.address = None
        self.server = None
        self._refused: set = set()   # uids refused (warned once each)

    def start(self) -> None:
        from gevent.server import StreamServer

        self.address = control_address(self.node.home, create=True)
        try:
            os.unlink(self.address)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)   # in a 0700 directory: nobody else reaches it before the chmod
        os.chmod(self.address, PRIVATE_FILE)
        listener.listen(16)
        self.server = StreamServer(listener, self._handle)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)
        if self.address is not None:
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass

    def _handle(self, sock, _address) -> None:
        uid = peer_uid(sock)
        if uid != os.getuid():   # the file modes should have kept it out: say so, once per uid
            if uid not in self._refused:
                self._refused.add(uid)
                log.warning("refused a control connection from uid %d: only uid %d may ask this peer",
                            uid, os.getuid())
            sock.close()
            return
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
