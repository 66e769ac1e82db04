"""An interrupted large transfer: one line, a back-off, then it resumes with
what it had (real processes on loopback).

The only source of a large file goes away mid-transfer. The receiver says
once that it waits for a peer that has the file (no traceback, however many
retries), lists it as not synced, keeps the verified part, and when the
source is back fetches only the rest.
"""

import os
import signal

from peers import wait_until

MiB = 1024 * 1024


def partial_bytes(peer) -> int:
    return sum(os.lstat(peer.root / n).st_blocks * 512 for n in os.listdir(peer.root) if n.startswith(".p2p-tmp-"))


def test_the_only_source_goes_away_then_comes_back(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    big = os.urandom(96 * MiB)
    a.write("big.iso", big)
    wait_until(lambda: partial_bytes(b) > 16 * MiB, 60, "b to receive part of big.iso")
    a.stop(signal.SIGKILL)
    wait_until(lambda: any(p["path"] == "big.iso" and "waiting for a peer" in p["reason"]
                           for p in b.status()["not_synced"]), 30, "b to list big.iso as waiting")
    assert not b.status()["folder_state"]["in_sync"]
    wait_until(lambda: b.status()["not_synced"][0]["attempts"] >= 3,
               30, "three attempts")
    out = b.output()
    assert out.count("not syncing 'big.iso'") == 1, "one line, not one per attempt"
    assert "Traceback" not in out and "BlocksUnavailable" not in out
    kept = partial_bytes(b)
    assert kept > 16 * MiB, "the part already received was thrown away"
    a.start()
    wait_until(lambda: b.has("big.iso", big), 90, "big.iso on b once a is back")
    assert "big.iso: resuming" in b.output()
    wait_until(lambda: not b.status()["not_synced"], 30, "big.iso to leave the not-synced list")
