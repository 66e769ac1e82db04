"""Private by default, through `p2p run` (issue 15, item 4).

* A home made by `p2p run` under a umask of 0 is private: `.p2p/` and every
  directory in it 0700, every file in it (identity, blocks, local state and
  its journal, partials, index database, control socket) and `events.jsonl`
  0600, while running and after the stop.
* A home an older p2p left readable by others is tightened at start.
* An empty P2P_SECRET is an error, not open mode.
* The control socket of a home whose path is too long for a Unix socket is
  still a 0600 file in a 0700 directory of ours (never an abstract socket).
* Even with its file modes loosened, the control socket answers only its own
  uid (SO_PEERCRED; root only: the test connects as nobody).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ujson

from p2p.net.control import ask, control_address
from p2p.security.identity import KEY_FILE
from p2p.security.private import IDENTITY_KEY

from peers import Peer, free_port, wait_until

pytestmark = pytest.mark.slow

WAIT = 60.0
LARGE = os.urandom(9 * 1024 * 1024)     # over RESUME_MIN: its transfer is listed in partials.json


def modes(home: Path) -> dict:
    """Every entry of .p2p (and .p2p itself, events.jsonl) -> (kind, mode);
    a temporary file renamed meanwhile is skipped."""
    out = {}
    for path in [home / ".p2p", *sorted((home / ".p2p").rglob("*")), *sorted(home.glob("events.jsonl*"))]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "file"
        out[str(path.relative_to(home))] = (kind, stat.S_IMODE(st.st_mode))
    return out


def not_private(home: Path) -> dict:
    return {p: (kind, oct(mode)) for p, (kind, mode) in modes(home).items()
            if mode != (0o700 if kind == "dir" else 0o600)}


def test_a_home_made_by_p2p_run_is_private_even_under_a_umask_of_0(make_peer):
    old = os.umask(0)
    try:
        a = make_peer("A").start()
        b = make_peer("B", peers=[a]).start()
    finally:
        os.umask(old)
    a.write("small.txt", b"small")
    a.write("large.bin", LARGE)
    wait_until(lambda: b.has("small.txt", b"small") and b.has("large.bin", LARGE), WAIT, "the files on B")
    for peer in (a, b):
        names = modes(peer.home)
        assert {".p2p/identity.key", ".p2p/control.sock", ".p2p/blocks", "events.jsonl"} <= set(names), names
        assert not_private(peer.home) == {}, peer.name
    assert ".p2p/partials.json" in modes(b.home)
    for peer in (a, b):
        assert peer.stop() == 0
        assert ".p2p/index.db" in modes(peer.home) and ".p2p/local.db" in modes(peer.home)
        assert not_private(peer.home) == {}, peer.name


def test_a_home_left_readable_by_an_older_p2p_is_tightened_at_start(make_peer):
    a = make_peer("A").start()
    a.write("f.txt", b"content")
    wait_until(lambda: b"f.txt" in (a.home / "events.jsonl").read_bytes(), WAIT, "the event")
    assert a.stop() == 0
    for path in [a.home / ".p2p", *(a.home / ".p2p").rglob("*")]:   # as the previous main made them
        if path.name != IDENTITY_KEY:                                  # (it always made the key 0600)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(a.home / "events.jsonl", 0o644)
    assert not_private(a.home)
    a.start()
    assert not_private(a.home) == {}
    assert "entries of the home" in a.output() and "private (0700/0600)" in a.output()
    assert a.stop() == 0
    os.chmod(a.home / ".p2p" / IDENTITY_KEY, 0o644)   # a key others could read is refused, not re-chmodded
    with pytest.raises(AssertionError, match="too open"):
        a.start()
    assert stat.S_IMODE(os.stat(a.home / ".p2p" / IDENTITY_KEY).st_mode) == 0o644
    assert IDENTITY_KEY == KEY_FILE.name


def run_briefly(home: Path, env: dict, timeout: float = 20.0):
    cmd = [sys.executable, "-m", "p2p", "run", "--home", str(home), "--listen", f"127.0.0.1:{free_port()}",
           "--discovery", "off"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"p2p run kept running with an empty P2P_SECRET:\n{out}{err}")
    return proc.returncode, out, err


def test_an_empty_p2p_secret_is_an_error(tmp_path):
    env = dict(os.environ, P2P_SECRET="")
    env.pop("P2P_SECRET_FILE", None)
    rc, out, err = run_briefly(tmp_path / "home", env)
    assert rc == 2
    assert "P2P_SECRET is empty" in err
    assert "open LAN mode" not in out


def long_base(tmp_path: Path) -> Path:
    base = tmp_path / ("a-rather-long-directory-name-" * 3)
    assert len(str(base / "A" / ".p2p" / "control.sock")) > 100
    return base


def test_the_control_socket_of_a_long_home_path_is_a_private_file(tmp_path):
    peer = Peer(long_base(tmp_path), "A")
    try:
        peer.start()
        address = control_address(peer.home)
        assert not address.startswith("\0"), "an abstract socket: any local user can reach it"
        st, parent = os.lstat(address), os.lstat(os.path.dirname(address))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(parent.st_mode) == 0o700 and parent.st_uid == os.getuid()
        assert ask(peer.home, {"cmd": "status"})["name"] == "A"
        status = subprocess.run([sys.executable, "-m", "p2p", "status", "--home", str(peer.home)],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0 and "device" in status.stdout, status.stderr
        assert peer.stop() == 0
        assert not os.path.exists(address)
    finally:
        peer.stop()


def ask_as(uid: int, address: str) -> bytes:
    """Connect to ``address`` as ``uid`` (a forked child) and return what it answers."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: no pytest, no exceptions escaping
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            import socket
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(address)
            try:
                sock.sendall(b'{"cmd": "status"}\n')
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    os.write(write_end, chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass   # hung up on: nothing received
        except BaseException as exc:   # noqa: BLE001 - reported to the parent
            os.write(write_end, f"CHILD ERROR {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    received = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        received += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return received


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another user needs root")
def test_the_control_socket_answers_only_its_own_uid(tmp_path):
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="p2p-peercred-"))
    nobody = 65534
    peer = Peer(base, "A")
    try:
        os.chmod(base, 0o755)
        peer.start()
        address = control_address(peer.home)
        for directory in (peer.home, peer.home / ".p2p"):   # a user loosened the modes
            os.chmod(directory, 0o755)
        os.chmod(address, 0o777)
        assert b"CHILD ERROR" not in ask_as(os.getuid(), address)   # the harness works: our uid is answered
        answer = ask_as(nobody, address)
        assert b"CHILD ERROR" not in answer, answer
        assert answer == b"", f"another uid got an answer: {answer[:200]!r}"
        wait_until(lambda: f"refused a control connection from uid {nobody}" in peer.output(), WAIT, "the warning")
        assert ujson.loads(ask_as(os.getuid(), address))["name"] == "A"
    finally:
        peer.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_the_short_control_directory_must_be_ours_alone(tmp_path, monkeypatch):
    from p2p.net import control

    monkeypatch.setattr(control, "RUNTIME_BASE", str(tmp_path))
    home = long_base(tmp_path) / "A"
    directory = tmp_path / f"p2p-{os.getuid()}"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    with pytest.raises(control.UnsafeControlDirectory, match="can be entered by other users"):
        control_address(home)                               # a client never talks through it
    assert os.path.dirname(control_address(home, create=True)) == str(directory)   # the server makes it ours
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    if os.geteuid() == 0:   # someone else's directory (or a link) is refused by both
        os.chown(directory, 65534, 65534)
        for create in (False, True):
            with pytest.raises(control.UnsafeControlDirectory, match="not a directory of this user"):
                control_address(home, create=create)
