"""Real `p2p run` processes on loopback for the end-to-end tests.

Every peer gets its own home under the test's tmp dir, listens on 127.0.0.1
with a free port, and uses either no discovery or loopback broadcast
(127.255.255.255) on a free UDP port: never the LAN. Conditions are awaited
with deadlines, never with bare sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from p2p.folder.marker import MARKER
from p2p.net.control import ask

LOOPBACK_BROADCAST = "127.255.255.255"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p2p(*args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """The real `p2p` command (its output as text)."""
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=timeout)


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition", interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def tree(root: Path) -> Dict[str, object]:
    """Every path under root but the folder marker: file -> bytes, directory -> 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            if dirpath == str(root) and f == MARKER:
                continue
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


class Peer:
    def __init__(self, base: Path, name: str, *, discovery: str = "off", peers=(), secret: Optional[str] = None,
                 host: str = "127.0.0.1", port: Optional[int] = None, extra=(), program=("-m", "p2p"),
                 netns: Optional[str] = None, split_output: bool = False, gui: str = "off"):
        """``program``: what the Python interpreter runs (a fault-injecting
        wrapper in tests/faulty_peer.py for the supervision tests); ``netns``: a
        network namespace the test made, to run the peer in (``ip netns exec``);
        ``split_output``: stdout goes to ``stdout.log`` instead of ``run.log``
        (which then holds stderr alone); ``gui``: its --gui (off unless a test
        asks: peers must not all try the default port; ``127.0.0.1:0`` for a
        free one, then ``gui_url()``)."""
        self.name = name
        self.program = list(program)
        self.netns = netns
        self.home = base / name
        self.root = self.home / "shared"
        self.host = host
        self.port = port or free_port()
        self.discovery = discovery
        self.peers = list(peers)
        self.secret = secret
        self.extra = list(extra)
        self.gui = gui
        self.proc: Optional[subprocess.Popen] = None
        self.home.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / "run.log"
        self.stdout_path = self.home / "stdout.log" if split_output else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "Peer":
        """Launch ``p2p run`` and wait (up to ``timeout`` s) until its start-up scan is done."""
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += [sys.executable, *self.program, "run", "--home", str(self.home), "--listen", self.address,
               "--discovery", self.discovery, "--name", self.name, "--log-level", "debug",
               "--gui", self.gui, *self.extra]
        for p in self.peers:
            cmd += ["--peer", p.address if isinstance(p, Peer) else p]
        env = dict(os.environ)
        env.pop("P2P_SECRET", None)
        if self.secret is not None:
            env["P2P_SECRET"] = self.secret
        self.log = open(self.log_path, "ab")
        self._log_start = self.log.tell()
        if self.stdout_path is not None:
            with open(self.stdout_path, "ab") as stdout:
                self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=self.log, env=env)
        else:
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: self._listening() or self.proc.poll() is not None, timeout, f"{self.name} to listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited at start:\n{self.output()}")
        return self

    def _listening(self) -> bool:
        """The start-up scan is done: its log line, or (when --log-level hides
        activity lines) the status over the control socket says so."""
        if b"scanned the folder" in self.log_path.read_bytes()[self._log_start:]:
            return True
        try:
            return "scanning the folder" not in ask(self.home, {"cmd": "status"}, timeout=5)["missing"]
        except (OSError, ValueError, KeyError):
            return False

    def gui_url(self) -> str:
        """The dashboard's URL with its token, as `p2p gui` prints it."""
        out = subprocess.run([sys.executable, "-m", "p2p", "gui", "--home", str(self.home)], capture_output=True,
                             text=True, timeout=20)
        if out.returncode:
            raise AssertionError(f"p2p gui failed: {out.stderr}")
        return out.stdout.strip()

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the folder ------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, data: bytes) -> None:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def tree(self) -> Dict[str, object]:
        return tree(self.root)

    def has(self, rel: str, data: bytes) -> bool:
        try:
            return self.path(rel).read_bytes() == data
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False

    def lacks(self, rel: str) -> bool:
        return not os.path.lexists(self.path(rel))

    def status(self) -> dict:
        """What `p2p status --json` says of this running peer."""
        out = p2p("status", "--home", str(self.home), "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def converged(*peers: Peer) -> bool:
    first = peers[0].tree()
    return all(p.tree() == first for p in peers[1:])
