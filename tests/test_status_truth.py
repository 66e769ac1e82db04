"""`p2p status` tells the truth, through real `p2p run` peers: "in sync" only
when nothing is pending, failed or not synced here and every connected peer
has what we have; otherwise it says what is missing. Per peer: connected or
not, what it lacks of ours, the last error; the folder as the disk holds it;
80 columns; --json has all of it."""

import json
import os
import signal
import subprocess
import sys

import pytest

from p2p.history.paths import TEMP_PREFIX
from p2p.net.control import ask
from p2p.net.node import handshake_failure
from p2p.security.identity import Identity, format_device_id
from p2p.wire.errors import HandshakeError
from peers import wait_until

pytestmark = pytest.mark.slow

WIDTH = 80
BIG = 128 * 1024 * 1024


def status(peer) -> dict:
    return ask(peer.home, {"cmd": "status"}, timeout=20)


def text(peer) -> str:
    out = subprocess.run([sys.executable, "-m", "p2p", "status", "--home", str(peer.home)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    too_wide = [line for line in out.stdout.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide
    return out.stdout


def raw(peer) -> dict:
    out = subprocess.run([sys.executable, "-m", "p2p", "status", "--home", str(peer.home), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def device(peer) -> str:
    return Identity.load_or_create(peer.home).device_id


def files_on_disk(peer) -> int:
    return sum(1 for p, v in peer.tree().items() if v != "dir" and not os.path.basename(p).startswith(TEMP_PREFIX))


def test_in_sync_is_false_while_the_only_source_of_a_file_is_offline(make_peer):
    a = make_peer("a")
    a.write("small.txt", b"small")
    a.start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: b.has("small.txt", b"small"), 20, "small.txt on b")
    a.write("big.iso", os.urandom(BIG))
    wait_until(lambda: any(t["path"] == "big.iso" for t in status(b)["transfers"]), 60, "b to start big.iso",
               interval=0.01)
    a.proc.send_signal(signal.SIGSTOP)     # the only source stops in the middle of the transfer ...
    done = status(b)["transfers"]
    a.kill()                               # ... and is gone
    assert done and done[0]["done"] < BIG, "the transfer ended before the sender stopped"
    st = wait_until(lambda: (lambda s: s if "waiting for a peer that has big.iso" in s["missing"]
                             and not s["transfer_total"]["files"] else None)(status(b)), 60,
                    "b to wait for a peer with big.iso")
    assert st["in_sync"] is False and "no peer connected" in st["missing"]
    assert st["folder_state"]["in_sync"] is False
    shown = text(b)
    assert "NOT IN SYNC" in shown and "waiting for a peer that has big.iso" in shown and "IN SYNC with" not in shown
    assert "no peer connected" in shown
    # FOLDER counts the disk, not the history: big.iso is in the history, not on disk
    assert b.lacks("big.iso") and st["folder_state"]["events"] == 2
    assert st["folder_state"]["files"] == files_on_disk(b) == 1
    assert "1 file, 0 directories, 5 B on disk" in shown
    assert [p["path"] for p in st["not_synced"]] == ["big.iso"]


def test_in_sync_is_false_with_no_peer_connected_and_true_once_all_have_everything(make_peer):
    a = make_peer("a").start()
    a.write("notes.txt", b"notes")
    wait_until(lambda: status(a)["folder_state"]["files"] == 1, 20, "a to record notes.txt")
    st = status(a)
    assert st["in_sync"] is False and st["missing"] == ["no peer connected"]
    assert "NOT IN SYNC" in text(a)
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: b.has("notes.txt", b"notes"), 20, "notes.txt on b")
    for peer in (a, b):
        wait_until(lambda: status(peer)["in_sync"], 20, f"{peer.name} to be in sync")
        assert "IN SYNC with 1 connected peer" in text(peer)
    [seen] = status(a)["peers"]
    assert seen["connected"] and seen["lacks"]["files"] == 0 and seen["lacks"]["events"] == 0


def test_a_not_synced_path_means_not_in_sync(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("fine.txt", b"fine")
    wait_until(lambda: b.has("fine.txt", b"fine"), 20, "fine.txt on b")
    wait_until(lambda: status(a)["in_sync"], 20, "a in sync")
    a.write("tab\there.txt", b"a name other systems cannot hold")
    st = wait_until(lambda: (lambda s: s if s["not_synced"] else None)(status(a)), 20, "the bad name listed")
    assert st["in_sync"] is False and "1 path not synced: see below" in st["missing"]
    shown = text(a)
    assert "NOT IN SYNC" in shown and "1 path not synced: see below" in shown and "NOT SYNCED (1)" in shown


def test_what_a_peer_lacks_of_ours_connected_or_not(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("first.txt", b"first")
    wait_until(lambda: b.has("first.txt", b"first"), 20, "first.txt on b")
    os.mkfifo(b.path("blocked.txt"))        # b cannot write this one: it lacks it, and says so
    a.write("blocked.txt", b"x" * 1000)
    b_id = device(b)
    label = f"b ({b_id[:7]})"
    st = wait_until(lambda: (lambda s: s if f"{label} lacks 1 file (1000 B)" in s["missing"] else None)(
        status(a)), 30, "a to say what b lacks")
    assert st["in_sync"] is False
    [peer] = st["peers"]
    assert peer["connected"] and peer["lacks"]["receiving"] == {"files": 1, "bytes": 1000}
    shown = text(a)
    assert f"{format_device_id(b_id)}  connected" in shown and "lacks 1 file (1000 B)" in shown

    assert b.stop() == 0
    wait_until(lambda: not status(a)["peers"][0]["connected"], 20, "a to see b leave")
    for i in range(3):
        a.write(f"new{i}.txt", b"n" * 100)
    wait_until(lambda: status(a)["folder_state"]["files"] == 5, 20, "a to record the new files")
    st = status(a)
    [peer] = st["peers"]
    assert not peer["connected"]
    assert (peer["lacks"]["files"], peer["lacks"]["bytes"], peer["lacks"]["events"]) == (3, 300, 3)
    shown = text(a)
    assert "disconnected" in shown and "lacks 4 files (1.3 KiB) when last seen" in shown
    assert st["in_sync"] is False and st["missing"] == ["no peer connected"]
    assert raw(a)["peers"][0]["lacks"]["files"] == 3      # --json has it too


def test_the_last_error_after_a_wrong_secret_peer_tries(make_peer):
    a = make_peer("a", secret="the-right-cluster-secret-000").start()
    b = make_peer("b", peers=[a], secret="a-wrong-cluster-secret-11111").start()
    st_a = wait_until(lambda: (lambda s: s if s["unreached"] else None)(status(a)), 30, "a to note the failure")
    assert st_a["unreached"][0]["address"] == "127.0.0.1"
    assert st_a["unreached"][0]["last_error"]["reason"] == "cluster secret mismatch"
    st_b = wait_until(lambda: (lambda s: s if s["unreached"] and s["unreached"][0]["last_error"] else None)(
        status(b)), 30, "b to note the failure")
    assert st_b["unreached"][0]["address"] == a.address
    assert "a different cluster secret" in st_b["unreached"][0]["last_error"]["reason"]
    assert "cluster secret mismatch" in text(a)
    shown = text(b)
    assert f"{a.address}  not connected" in shown and "last error" in shown
    assert not status(a)["in_sync"] and not status(b)["in_sync"]


def test_status_fits_80_columns_with_long_names_and_paths(make_peer):
    long = "a-very-long-peer-name-that-goes-on-and-on"
    a = make_peer(long).start()
    b = make_peer("b", peers=[a]).start()
    deep = "/".join(["a-rather-long-directory-name"] * 4) + "/" + "x" * 60 + ".txt"
    a.write(deep, b"deep")
    wait_until(lambda: b.has(deep, b"deep"), 20, "the deep file on b")
    for peer in (a, b):
        text(peer)   # asserts every line fits


def test_handshake_failures_in_plain_words():
    assert handshake_failure(HandshakeError("cannot decrypt the peer's HandshakeAuth: cluster secret mismatch "
                                            "(or the handshake was tampered with)")) == "cluster secret mismatch"
    assert handshake_failure(HandshakeError("device AAAA-BBBB is not on the allow-list")) == "not on the allow-list"
