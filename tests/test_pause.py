"""`p2p pause` / `p2p resume` against real `p2p run` processes on loopback:
the whole folder (nothing recorded, nothing written, until resumed; then
both ways), or one peer (its channel closed and refused until resumed), and
`p2p status` shows it.

"Nothing happens while paused" is checked over a quiet period
(``QUIET``) that is many times what the same change takes when not paused
(a few tens of milliseconds on loopback)."""

import json
import subprocess
import sys
import time

import pytest

from peers import wait_until

pytestmark = pytest.mark.slow

QUIET = 1.5   # s: a change syncs in well under 0.2 s here


def p2p(*args):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30)


def status(peer) -> dict:
    return json.loads(p2p("status", "--home", str(peer.home), "--json").stdout)


def stays(condition, seconds=QUIET) -> bool:
    """True if ``condition`` holds throughout ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True


def logged(peer) -> set:
    path = peer.home / "events.jsonl"
    return {json.loads(line)["path"] for line in path.read_text().splitlines()} if path.exists() else set()


def test_pausing_the_folder_records_and_writes_nothing_until_resumed(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: status(a)["peers"] and status(a)["peers"][0]["state"] == "connected", 20, "connected")

    out = p2p("pause", "--home", str(a.home))
    assert out.returncode == 0 and "paused: the folder" in out.stdout, out.stderr
    shown = p2p("status", "--home", str(a.home)).stdout
    assert "PAUSED" in shown and "the folder" in shown
    assert status(a)["user_paused"] == {"folder": True, "peers": []}

    a.write("local.txt", b"made on a while paused")
    b.write("remote.txt", b"made on b")
    wait_until(lambda: "remote.txt" in logged(a), 20, "b's event in a's history")   # the history goes on
    assert stays(lambda: a.lacks("remote.txt") and "local.txt" not in logged(a) and b.lacks("local.txt"))

    out = p2p("resume", "--home", str(a.home))
    assert out.returncode == 0 and "nothing is paused" in out.stdout
    wait_until(lambda: a.has("remote.txt", b"made on b"), 20, "b's file written on a")
    wait_until(lambda: b.has("local.txt", b"made on a while paused"), 20, "a's change recorded and sent")
    assert "PAUSED" not in p2p("status", "--home", str(a.home)).stdout


def test_pausing_one_peer_closes_its_channel_until_resumed(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    c = make_peer("c", peers=[a]).start()
    wait_until(lambda: len([p for p in status(a)["peers"] if p["state"] == "connected"]) == 2, 20, "b and c in")
    b_id = status(b)["device"]

    out = p2p("pause", "--home", str(a.home), "b")
    assert out.returncode == 0 and f"peer {b_id[:7]}" in out.stdout, out.stderr
    wait_until(lambda: all(p["state"] != "connected" for p in status(b)["peers"]), 20, "b's channel to a closed")
    assert status(a)["user_paused"]["peers"] == [b_id]
    assert f"peer {b_id[:7]}" in p2p("status", "--home", str(a.home)).stdout
    wait_until(lambda: "paused by the user of that peer" in b.output(), 10, "b told why")

    b.write("from-b.txt", b"b")
    c.write("from-c.txt", b"c")
    wait_until(lambda: a.has("from-c.txt", b"c"), 20, "c still syncs with a")
    assert stays(lambda: a.lacks("from-b.txt") and b.lacks("from-c.txt"))   # b redials, and is refused

    assert p2p("pause", "--home", str(a.home), "nobody").returncode == 1
    out = p2p("resume", "--home", str(a.home), b_id[:7])
    assert out.returncode == 0 and "nothing is paused" in out.stdout
    wait_until(lambda: a.has("from-b.txt", b"b") and b.has("from-c.txt", b"c"), 20, "b back in sync")


def test_a_pause_lasts_across_a_restart_until_resumed(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: status(a)["peers"] and status(a)["peers"][0]["state"] == "connected", 20, "connected")
    b_id = status(b)["device"]
    assert p2p("pause", "--home", str(a.home)).returncode == 0
    assert p2p("pause", "--home", str(a.home), b_id[:7]).returncode == 0
    a.stop()
    a.start()
    assert status(a)["user_paused"] == {"folder": True, "peers": [b_id]}
    assert "as the user left it" in a.output()
    a.write("local.txt", b"made on a after the restart")
    b.write("remote.txt", b"made on b")
    assert stays(lambda: "local.txt" not in logged(a) and b.lacks("local.txt") and a.lacks("remote.txt"))

    assert p2p("resume", "--home", str(a.home)).returncode == 0
    assert p2p("resume", "--home", str(a.home), b_id[:7]).returncode == 0
    # a does not know b's address (b dialled it): b comes back after its reconnect back-off (at most 30 s)
    wait_until(lambda: b.has("local.txt", b"made on a after the restart") and a.has("remote.txt", b"made on b"),
               45, "both ways again")
    a.stop()
    a.start()
    assert status(a)["user_paused"] == {"folder": False, "peers": []}


def test_an_unreadable_pause_file_is_said_and_pauses_nothing(make_peer):
    a = make_peer("a").start()
    a.stop()
    (a.home / ".p2p" / "paused.json").write_text("{not json")
    a.start()
    assert status(a)["user_paused"] == {"folder": False, "peers": []}
    assert "paused.json" in a.output() and "nothing is paused" in a.output()
