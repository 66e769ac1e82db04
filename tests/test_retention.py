"""The block store's bound: a default that grows with the folder, --keep-bytes
(sizes and 'unlimited'), --keep-days keeping every version current within the
window, and a running peer pruning down to its bound without touching the
current files' content."""

import os
import signal
import sys

from p2p import limits
from p2p.history.event import Event
from p2p.history.retention import default_bound, replaced_since
from tests.peers import p2p, wait_until


def version(path, seq, blocks, parents=(), time=0.0):
    return Event(id=f"{'A' * 32}:{seq}", origin="A" * 32, seq=seq, lamport=seq, type="update", kind="file",
                 path=path, size=sum(s for _, s in blocks), mode=0o644, mtime=0, hash="0" * 64,
                 blocks=tuple(blocks), parents=tuple(parents), time=time)


def test_the_default_bound_is_the_folder_plus_as_much_again_and_at_least_the_minimum():
    assert default_bound(0) == limits.KEEP_OLD_MIN
    assert default_bound(10 * limits.MiB) == 10 * limits.MiB + limits.KEEP_OLD_MIN
    big = 5 * limits.KEEP_OLD_MIN
    assert default_bound(big) == 2 * big


def test_a_version_replaced_within_the_window_is_kept_however_old_its_blocks():
    old = version("a", 1, [("1" * 64, 10)], time=0.0)
    newer = version("a", 2, [("2" * 64, 10)], parents=[old.id], time=1000.0)
    older_change = version("b", 3, [("3" * 64, 10)], time=0.0)
    gone = version("b", 4, [("4" * 64, 10)], parents=[older_change.id], time=10.0)
    events = {e.id: e for e in (old, newer, older_change, gone)}
    assert replaced_since(events.values, since=500.0) == {"1" * 64}


def test_keep_bytes_accepts_unlimited_and_status_shows_the_bound(make_peer):
    peer = make_peer("a", extra=["--keep-bytes", "unlimited"]).start()
    assert peer.status()["folder_state"]["store_bound"] == sys.maxsize
    assert "bound" not in p2p("status", "--home", str(peer.home)).stdout
    assert peer.stop(signal.SIGTERM) == 0
    default = make_peer("b").start()
    default.write("f.bin", b"x" * 5000)
    wait_until(lambda: default.status()["folder_state"]["bytes"] == 5000, what="the file recorded")
    assert default.status()["folder_state"]["store_bound"] == default_bound(5000)
    assert "(bound 1.0 GiB)" in p2p("status", "--home", str(default.home)).stdout


def test_a_running_peer_prunes_old_versions_down_to_its_bound_and_keeps_the_current_one(make_peer):
    peer = make_peer("a", extra=["--keep-bytes", "300K"]).start()
    for n in range(8):   # 8 versions of 100 KiB of distinct content: 800 KiB stored
        data = os.urandom(100 * 1024)
        peer.write("f.bin", data)
        wait_until(lambda: peer.status()["folder_state"]["events"] == n + 1, what=f"version {n + 1} recorded")
    wait_until(lambda: peer.status()["folder_state"]["store_bytes"] <= 300 * 1024, timeout=20,
               what="the store pruned to its bound")
    restored = p2p("restore", "f.bin", "--home", str(peer.home), "--at", "now", "--to", str(peer.home / "out"))
    assert restored.returncode == 0, restored.stderr
    assert (peer.home / "out" / "f.bin").read_bytes() == data


def test_with_keep_days_a_version_replaced_within_the_window_survives_the_size_bound(make_peer):
    peer = make_peer("a", extra=["--keep-bytes", "300K", "--keep-days", "30"]).start()
    versions = []
    for n in range(6):   # 600 KiB of versions, all replaced within the window
        versions.append(os.urandom(100 * 1024))
        peer.write("f.bin", versions[-1])
        wait_until(lambda: peer.status()["folder_state"]["events"] == n + 1, what=f"version {n + 1} recorded")
    wait_until(lambda: "pruned" in peer.output() or peer.status()["folder_state"]["store_bytes"] >= 600 * 1024,
               what="the store checked against its bound")
    oldest = p2p("log", "--home", str(peer.home)).stdout.splitlines()[-1]   # newest first
    assert peer.alive() and peer.status()["folder_state"]["store_bytes"] >= 600 * 1024   # nothing recent pruned
    restored = p2p("restore", "f.bin", "--home", str(peer.home), "--at", oldest.split()[2], "--to",
                   str(peer.home / "out"))
    assert restored.returncode == 0, restored.stderr
    assert (peer.home / "out" / "f.bin").read_bytes() == versions[0]
