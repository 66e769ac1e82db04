"""Hostile input hurts nothing: a target peer T, synced with a good peer G,
attacked by a rogue played from the test process (tests/rogue.py).

T and G are real `p2p run` processes on loopback sharing a cluster secret; T
dials G. Every case runs its attack, then `assert_unharmed`: T still runs,
nothing appeared outside T's folder (a sentinel directory beside it, which a
symlink in T's folder points to), and T still syncs with G both ways. Each
case also checks that the guard that should have stopped it did (its log
line, a prompt hang-up), so removing the guard fails the test. The end of the
file unit-tests the case-folding guard of p2p/folder/apply.py.
"""

from __future__ import annotations

import os
import random
import resource
import socket
import struct
import time
from pathlib import Path

import pytest

from p2p import limits
from p2p.folder.marker import MARKER
from p2p.folder.apply import FolderWriter, UnsafeTarget, folds_case
from p2p.folder.state import LocalState
from p2p.history.event import Event
from p2p.wire.frame import Frame
from p2p.wire.messages import MsgType, Ping, Pong

from peers import Peer, wait_until
from rogue import (MEMBER_ONLY_TYPES, AuthenticatedRogue, dir_event, exchange, file_event, open_sockets,
                   raw_frame, rss_bytes, wrong_secret_attempt)

SECRET = "hostile-test-cluster-secret-0123456789"
SYNC_WAIT = 60.0     # generous: other test suites share this 2-core machine
LOG_WAIT = 30.0
UNKNOWN_TYPE = 0x7F
FLOOD = 1000
FLOOD_BATCH = 100


class Target:
    """T, G and the sentinel directory outside T's folder."""

    def __init__(self, base: Path):
        self.sentinel = base / "outside"
        self.sentinel.mkdir()
        self.g = Peer(base, "G", secret=SECRET)
        self.t = Peer(base, "T", secret=SECRET, peers=[self.g])
        (self.t.root / "escape").symlink_to(self.sentinel, target_is_directory=True)
        self.rounds = 0

    @property
    def address(self):
        return (self.t.host, self.t.port)

    def log_has(self, text: str, what: str = "") -> None:
        wait_until(lambda: text in self.t.output(), LOG_WAIT, what or f"T to log {text!r}")

    def sync_round(self, case: str) -> None:
        """A file written on G reaches T, and one written on T reaches G."""
        self.rounds += 1
        from_g, from_t = f"sync/{case}-{self.rounds}-from-g.txt", f"sync/{case}-{self.rounds}-from-t.txt"
        self.g.write(from_g, f"G {case}".encode())
        wait_until(lambda: self.t.has(from_g, f"G {case}".encode()), SYNC_WAIT, f"{from_g} on T")
        self.t.write(from_t, f"T {case}".encode())
        wait_until(lambda: self.g.has(from_t, f"T {case}".encode()), SYNC_WAIT, f"{from_t} on G")


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    env = Target(tmp_path_factory.mktemp("hostile"))
    try:
        env.g.start()
        env.t.start()
        env.sync_round("start")
        yield env
    finally:
        for peer in (env.t, env.g):
            if peer.alive():
                peer.stop()
        if os.environ.get("P2P_SHOW_LOGS"):
            print(f"===== T\n{env.t.output()}\n===== G\n{env.g.output()}")


def assert_unharmed(target: Target, case: str) -> None:
    assert target.t.alive(), f"T died:\n{target.t.output()[-3000:]}"
    assert os.listdir(target.sentinel) == [], "something was written outside T's folder"
    assert set(os.listdir(target.t.root)) <= {"escape", "sync", "rogue-ok", MARKER}, os.listdir(target.t.root)
    target.sync_round(case)
    assert target.t.alive()


def assert_refused_before_auth(target, port, types, closed, error: str) -> None:
    """T hung up well before the handshake timeout, for the typed reason,
    and sent nothing but (at most) its clear handshake hello."""
    assert closed, "T kept the connection open"
    assert not MEMBER_ONLY_TYPES & set(types) and set(types) <= {MsgType.HANDSHAKE_HELLO}, types
    target.log_has(f"handshake with 127.0.0.1:{port} failed: {error}")


# --- before the handshake: raw bytes -------------------------------------------------

GARBAGE = {
    "random": random.Random(6).randbytes(64 * limits.KiB),
    "http": b"GET / HTTP/1.1\r\nHost: p2p\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_bytes(target, kind):
    port, received, closed = exchange(target.address, GARBAGE[kind])
    assert received == b""
    assert_refused_before_auth(target, port, [], closed, "FrameTooLarge")
    assert_unharmed(target, f"garbage-{kind}")


def test_a_4_gib_length_prefix(target):
    rss_before = rss_bytes(target.t.proc.pid)
    port, received, closed = exchange(target.address, struct.pack(">IBB", 0xFFFFFFFF, 0x20, 0) + b"\0" * 1000)
    assert received == b""
    assert_refused_before_auth(target, port, [], closed, "FrameTooLarge")
    assert rss_bytes(target.t.proc.pid) - rss_before < 32 * limits.MiB
    assert_unharmed(target, "4gib")


def test_a_frame_cut_midway_then_closed(target):
    cut = struct.pack(">IBB", 100, MsgType.HANDSHAKE_HELLO, 0) + b"P2P" + b"\x01" * 37
    port, received, closed = exchange(target.address, cut, close_after_send=True)
    assert received == b""
    assert_refused_before_auth(target, port, [], closed, "TruncatedFrame")
    assert_unharmed(target, "cut")


def test_a_valid_frame_of_an_unknown_type(target):
    port, received, closed = exchange(target.address, raw_frame(UNKNOWN_TYPE, b"who are you?"))
    assert received == b""
    assert_refused_before_auth(target, port, [], closed, "UnknownMessageType")
    assert_unharmed(target, "unknown-type")


def test_a_handshake_with_the_wrong_secret(target):
    port, types, closed = wrong_secret_attempt(target.address, b"not-the-cluster-secret-at-all!!")
    assert types == [MsgType.HANDSHAKE_HELLO], "T sent more than its clear hello"
    assert_refused_before_auth(target, port, types, closed, "HandshakeError: cannot decrypt")
    assert_unharmed(target, "wrong-secret")


def test_a_peer_with_the_wrong_secret_gets_no_file_and_no_event(target, tmp_path):
    target.g.write("sync/secret-plans.txt", b"for members only")
    wait_until(lambda: target.t.has("sync/secret-plans.txt", b"for members only"), SYNC_WAIT, "the file on T")
    failures_before = target.t.output().count("failed: HandshakeError: cannot decrypt")
    stranger = Peer(tmp_path, "W", secret="a-different-secret-0123456789", peers=[target.t]).start()
    try:
        wait_until(lambda: target.t.output().count("failed: HandshakeError: cannot decrypt") >= failures_before + 2,
                   LOG_WAIT, "two refused handshakes from W")
        assert stranger.alive()
        assert stranger.tree() == {}
        events = stranger.home / "events.jsonl"
        assert not events.exists() or events.read_bytes().strip() == b""
        assert "+ peer" not in stranger.output()
    finally:
        stranger.stop()
    assert_unharmed(target, "wrong-secret-peer")


# --- after the handshake: an authenticated rogue ----------------------------------------

@pytest.fixture
def rogue(target):
    member = AuthenticatedRogue(target.address, SECRET.encode()).start_reader()
    yield member
    member.close()


def pongs(rogue) -> list:
    return [m.nonce for m in rogue.received_of(Pong)]


def test_a_replayed_encrypted_frame(target, rogue):
    sent = rogue.send(Ping(nonce=1))
    wait_until(lambda: 1 in pongs(rogue), LOG_WAIT, "T to answer the ping")
    rogue.replay(sent)
    assert rogue.closed.wait(LOG_WAIT), "T kept the channel after a replayed frame"
    target.log_has(f"dropping channel with {rogue.device_id[:7]}: AuthenticationError")
    assert pongs(rogue) == [1], "T answered the replayed ping"
    assert_unharmed(target, "replay")


def test_a_bit_flipped_encrypted_frame(target, rogue):
    rogue.send(Ping(nonce=1))
    wait_until(lambda: 1 in pongs(rogue), LOG_WAIT, "T to answer the ping")
    rogue.send_tampered(Ping(nonce=2), bit=7)  # in CTR mode: nonce 2 + 2**56 if not authenticated
    assert rogue.closed.wait(LOG_WAIT), "T kept the channel after a tampered frame"
    target.log_has(f"dropping channel with {rogue.device_id[:7]}: AuthenticationError")
    assert pongs(rogue) == [1], "T answered the tampered ping"
    assert_unharmed(target, "bitflip")


def test_an_encrypted_frame_of_an_unknown_type(target, rogue):
    rogue.send_frame(Frame(UNKNOWN_TYPE, 0, b"who are you?"))
    assert rogue.closed.wait(LOG_WAIT), "T kept the channel after an unknown frame type"
    target.log_has(f"dropping channel with {rogue.device_id[:7]}: UnknownMessageType")
    assert_unharmed(target, "unknown-type-encrypted")


# Each bad path of issue 6 item 3 (case folding: see the unit tests below).
# The escaping ones aim at the sentinel, so without the guard they would land there.
BAD_PATHS = {
    "absolute": "{sentinel}/absolute",
    "dotdot": "../../outside/dotdot",
    "empty-segment": "empty//segment",
    "dot-segment": "dot/./segment",
    "nul": "nul\x00byte",
    "control": "bell\x07char",
    "backslash": "..\\..\\outside\\backslash",
    "drive-letter": "C:/drive",
    "reserved-name": "CON",
}


@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_events_with_a_bad_path(target, rogue, case):
    path = BAD_PATHS[case].format(sentinel=target.sentinel)
    rogue.send_events([dir_event(rogue.device_id, 1, path)])
    target.log_has(f"rejected an event from {rogue.device_id[:7]} for {path!r}")
    # The channel stays and the next good event from the same member is applied.
    rogue.send_events([dir_event(rogue.device_id, 1, f"rogue-ok/ok-{case}")])
    wait_until(lambda: (target.t.root / "rogue-ok" / f"ok-{case}").is_dir(), SYNC_WAIT, "the good event applied")
    assert not rogue.closed.is_set()
    assert_unharmed(target, f"path-{case}")


def test_events_through_a_symlink_pointing_outside(target, rogue):
    content = b"written through the symlink" * 100
    rogue.serve(content)
    rogue.send_events([file_event(rogue.device_id, 1, "escape/evil.txt", content),
                       dir_event(rogue.device_id, 2, "escape/evil-dir")])
    target.log_has("not syncing 'escape/evil-dir': parent escape is a symbolic link")
    target.log_has("not syncing 'escape/evil.txt': parent escape is a symbolic link")
    assert os.path.islink(target.t.root / "escape")
    assert_unharmed(target, "symlink")


# --- 1,000 connections that never speak ------------------------------------------------

def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def open_silent(address, sources) -> list:
    socks = []
    for source in sources:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.setblocking(False)
        sock.connect_ex(address)
        socks.append(sock)
    return socks


def hung_up(sock) -> bool:
    """True once the target closed this connection; fails if it sent a byte."""
    try:
        data = sock.recv(1)
    except BlockingIOError:
        return False
    except OSError:
        return True
    assert data == b"", "T spoke to a connection that never authenticated"
    return True


def flood(target, sources, case: str, check_held) -> None:
    """Open silent connections from ``sources`` in batches of FLOOD_BATCH (a
    burst beyond the kernel's accept queue turns into SYN cookies the target
    never sees); after each batch ``check_held`` judges what T holds. The
    members keep syncing meanwhile; then we hang up."""
    raise_open_file_limit(4 * FLOOD)
    pid = target.t.proc.pid
    baseline = open_sockets(pid)
    socks = []
    try:
        for start in range(0, len(sources), FLOOD_BATCH):
            socks += open_silent(target.address, sources[start:start + FLOOD_BATCH])
            check_held(socks, lambda: open_sockets(pid) - baseline)
        target.sync_round(f"{case}-during")
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: open_sockets(pid) <= baseline + 2, LOG_WAIT, "T to drop the closed connections")
    assert_unharmed(target, case)


def test_a_thousand_silent_connections_from_one_address(target):
    cap = limits.MAX_CONNECTIONS_PER_ADDRESS

    def check_held(socks, held_by_t):
        # Well before the handshake timeout, T has hung up on all but `cap`.
        wait_until(lambda: sum(not hung_up(s) for s in socks) <= cap, limits.HANDSHAKE_TIMEOUT / 2,
                   f"T to keep at most {cap} connections from one address")
        assert held_by_t() <= cap + 2

    flood(target, ["127.0.0.1"] * FLOOD, "flood-one", check_held)


def test_a_thousand_silent_connections_from_many_addresses(target):
    per_address = limits.MAX_CONNECTIONS_PER_ADDRESS
    sources = [f"127.0.1.{1 + i // per_address}" for i in range(FLOOD)]  # each address at its cap
    peak = []

    def check_held(socks, held_by_t):
        wanted = min(len(socks), limits.MAX_CONNECTIONS)
        wait_until(lambda: held_by_t() >= wanted, limits.HANDSHAKE_TIMEOUT / 2, f"T to accept {wanted}")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            peak.append(held_by_t())
            assert peak[-1] <= limits.MAX_CONNECTIONS + 2, f"T holds {peak[-1]} connections"

    flood(target, sources, "flood-many", check_held)
    assert max(peak) >= limits.MAX_CONNECTIONS


# --- case-folding file systems: the guard in p2p/folder/apply.py ------------------------

def event_for(path: str) -> Event:
    return Event.from_dict(dir_event("A" * 32, 1, path))


def writer(root: Path, home: Path, fold: bool) -> FolderWriter:
    return FolderWriter(root, LocalState(home / "local.db"), store=None, case_folding=fold)


@pytest.mark.parametrize("existing, incoming", [
    ("Readme", "README"),            # the name itself
    ("Docs", "docs/notes"),          # a parent
    ("Straße", "STRASSE"),           # full Unicode case folding, not just ASCII
])
def test_names_differing_only_by_case_are_refused_where_the_fs_folds(tmp_path, existing, incoming):
    root = tmp_path / "shared"
    root.mkdir()
    (root / existing).mkdir()
    guarded = writer(root, tmp_path, fold=True)
    with pytest.raises(UnsafeTarget, match="differs only by case"):
        guarded.make_dir(incoming, event_for(incoming))
    with pytest.raises(UnsafeTarget, match="differs only by case"):
        guarded.begin_file(incoming, Event.from_dict(file_event("A" * 32, 1, incoming, b"content")))
    assert sorted(os.listdir(root)) == [existing]
    # The same name exactly, and a different one, are fine.
    guarded.make_dir(existing, event_for(existing))
    guarded.make_dir("other", event_for("other"))
    # Where the file system does not fold case, both names may exist.
    writer(root, tmp_path, fold=False).make_dir(incoming, event_for(incoming))


def test_case_folding_is_detected_once_with_a_probe_that_leaves_nothing(tmp_path):
    assert folds_case(tmp_path) is False   # ext4 and tmpfs keep case apart
    assert os.listdir(tmp_path) == []
