"""A slow or silent peer costs bounded memory and is dropped on time.

Real `p2p run` processes on loopback, started with shorter timeouts through
tests/rogue.py's ``limits_hook`` (IDLE_TIMEOUT 3 s instead of 35 s, pings
every second, HANDSHAKE_TIMEOUT 2 s) so the test waits seconds, not minutes.
T is synced with a good peer G throughout; the rogue is played from the test
process. Memory is T's VmRSS from /proc.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from p2p import limits
from p2p.blocks.chunking import hash_file
from p2p.security.identity import Identity
from p2p.transport import ChannelClosed
from p2p.wire.messages import BlockRequest

from peers import wait_until
from rogue import AuthenticatedRogue, connect, limits_hook, read_until_closed, rss_bytes

SECRET = "limits-test-cluster-secret-0123456789"
IDLE_TIMEOUT = 3.0
PING_INTERVAL = 1.0
HANDSHAKE_TIMEOUT = 2.0
SLACK = 10.0                      # scheduling slack on a loaded 2-core machine
BIG_FILE = 16 * limits.MiB        # 128 blocks of 128 KiB, incompressible
REQUESTS = 4000                   # 500 MiB of replies if T queued them all
MEMORY_BOUND = 64 * limits.MiB    # what T may grow by while the rogue floods


@pytest.fixture
def peers(make_peer, tmp_path, monkeypatch):
    for name, value in limits_hook(tmp_path / "hook", IDLE_TIMEOUT=IDLE_TIMEOUT, PING_INTERVAL=PING_INTERVAL,
                                   HANDSHAKE_TIMEOUT=HANDSHAKE_TIMEOUT).items():
        monkeypatch.setenv(name, value)
    g = make_peer("G", secret=SECRET).start()
    t = make_peer("T", secret=SECRET, peers=[g])
    t.write("big.bin", os.urandom(BIG_FILE))
    t.start()
    wait_until(lambda: g.has("big.bin", t.path("big.bin").read_bytes()), 60, "big.bin on G")
    return t, g


def dropped(t, peer_id: str) -> bool:
    out = t.output()   # "- peer NAME (SHORTID) disconnected", or without the name if it never said it
    return f"({peer_id[:7]}) disconnected" in out or f"- peer {peer_id[:7]} disconnected" in out


def assert_still_syncing(t, g, name: str) -> None:
    """T runs, never dropped G (its pings kept the session alive), and syncs."""
    assert t.alive()
    assert not dropped(t, Identity.load_or_create(g.home).device_id), "T dropped the good peer"
    g.write(f"{name}.txt", name.encode())
    wait_until(lambda: t.has(f"{name}.txt", name.encode()), 60, f"{name}.txt on T")


def test_a_connection_that_never_completes_the_handshake_is_dropped_on_time(peers):
    t, g = peers
    sock = connect((t.host, t.port))
    started = time.monotonic()
    received, closed = read_until_closed(sock, HANDSHAKE_TIMEOUT + SLACK)
    elapsed = time.monotonic() - started
    sock.close()
    assert closed and received == b""
    assert HANDSHAKE_TIMEOUT * 0.8 <= elapsed <= HANDSHAKE_TIMEOUT + SLACK
    assert_still_syncing(t, g, "after-silent-stranger")


def test_a_silent_member_is_dropped_after_the_idle_timeout(peers):
    t, g = peers
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode())
    started = time.monotonic()
    rogue.start_reader()   # reads everything, answers nothing, not even pings
    try:
        assert rogue.closed.wait(IDLE_TIMEOUT + SLACK), "T kept a silent member"
        elapsed = time.monotonic() - started
        assert elapsed >= IDLE_TIMEOUT * 0.8, f"dropped after {elapsed:.1f}s, before the idle timeout"
        wait_until(lambda: dropped(t, rogue.device_id), 10, "T to log the drop")
    finally:
        rogue.close()
    assert_still_syncing(t, g, "after-silent-member")


def test_a_member_that_floods_requests_and_stops_reading_costs_bounded_memory(peers):
    t, g = peers
    _, _, blocks = hash_file(t.path("big.bin"))
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode())   # it never reads a byte
    pid = t.proc.pid
    before = rss_bytes(pid)
    peak = [before]
    stop = threading.Event()

    def flood():
        try:
            for i in range(REQUESTS):
                block_hash, size = blocks[i % len(blocks)]
                rogue.send(BlockRequest(req_id=i, size=size, hash=bytes.fromhex(block_hash)))
                if stop.is_set():
                    return
        except (OSError, ChannelClosed):
            pass  # T hung up, or the test closed the rogue

    sender = threading.Thread(target=flood, daemon=True)
    started = time.monotonic()
    sender.start()

    def sample_until_dropped() -> bool:
        peak.append(rss_bytes(pid))
        return dropped(t, rogue.device_id) or peak[-1] - before > 2 * MEMORY_BOUND  # unbounded: stop early

    try:
        try:
            wait_until(sample_until_dropped, IDLE_TIMEOUT + SLACK, "T to drop the member")
        except AssertionError:
            pass  # judged below, memory first
        drop_seen = time.monotonic()
    finally:
        stop.set()
        rogue.close()
        sender.join(10)
    growth = max(peak) - before
    print(f"T's VmRSS {before / limits.MiB:.0f} MiB, grew by at most {growth / limits.MiB:.1f} MiB; "
          f"dropped {drop_seen - started:.1f}s after the flood began")
    assert growth <= MEMORY_BOUND, f"T grew by {growth / limits.MiB:.0f} MiB for one stalled member"
    assert dropped(t, rogue.device_id), "T kept a member that reads nothing"
    assert drop_seen - started >= IDLE_TIMEOUT * 0.8
    assert_still_syncing(t, g, "after-flood")
