"""A moved file moves no content over the network and is recorded as a rename."""

import json
import os
import subprocess
import sys

import pytest

from p2p.blocks.chunking import hash_file
from p2p.net.control import ask
from peers import wait_until

pytestmark = pytest.mark.slow


def wire_bytes(peer) -> int:
    return sum(p["sent"] + p["received"] for p in ask(peer.home, {"cmd": "status"})["peers"])


def test_a_moved_large_file_crosses_no_content_and_is_logged_as_a_rename(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    big = os.urandom(32 * 1024 * 1024)
    a.write("incoming/video.bin", big)
    wait_until(lambda: b.has("incoming/video.bin", big), 60, "the file on b")
    before = wire_bytes(a)
    os.makedirs(a.path("archive"))
    os.rename(a.path("incoming/video.bin"), a.path("archive/video.bin"))
    wait_until(lambda: b.has("archive/video.bin", big) and b.lacks("incoming/video.bin"), 30, "the move on b")
    moved = wire_bytes(a) - before
    metadata = 64 * 1024 + 100 * len(hash_file(a.path("archive/video.bin"))[2])   # the event lists every block
    assert moved < metadata, f"a move sent {moved} bytes: content crossed the network"

    log = subprocess.run([sys.executable, "-m", "p2p", "log", "--home", str(b.home), "--json", "--limit", "3"],
                         capture_output=True, text=True, check=True).stdout
    events = [json.loads(line) for line in log.splitlines()]
    created = next(e for e in events if e["path"] == "archive/video.bin")
    assert created["moved_from"] == "incoming/video.bin"
    deleted = next(e for e in events if e["path"] == "incoming/video.bin")
    assert deleted["type"] == "delete" and deleted["moved_to"] == "archive/video.bin"
