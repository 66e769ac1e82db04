"""`p2p status` and `p2p ls` against real running peers."""

import json
import subprocess
import sys

import pytest

from peers import wait_until

pytestmark = pytest.mark.slow


def p2p(*args):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30)


def test_status_shows_peers_and_folder_and_ls_lists_the_remote_folder(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("docs/readme.txt", b"x" * 1234)
    a.write("top.txt", b"t")
    wait_until(lambda: b.has("docs/readme.txt", b"x" * 1234), 20, "sync")

    out = p2p("status", "--home", str(b.home))
    assert out.returncode == 0, out.stderr
    assert "PEERS (1 of 1 connected)" in out.stdout
    assert "127.0.0.1:" in out.stdout and "connected" in out.stdout
    assert "2 files, 1 directory, 1.2 KiB on disk" in out.stdout

    raw = json.loads(p2p("status", "--home", str(b.home), "--json").stdout)
    assert raw["peers"][0]["state"] == "connected"

    a_id = json.loads(p2p("status", "--home", str(a.home), "--json").stdout)["device"]
    listing = p2p("ls", "--home", str(b.home), a_id[:6])
    assert listing.returncode == 0, listing.stderr
    assert "docs/" in listing.stdout and "top.txt" in listing.stdout
    sub = p2p("ls", "--home", str(b.home), "a", "docs")
    assert "1234" in sub.stdout and "readme.txt" in sub.stdout


def test_status_without_a_running_peer_says_so(tmp_path):
    out = p2p("status", "--home", str(tmp_path))
    assert out.returncode == 1
    assert "no peer is running" in out.stderr
