"""DESIGN.md's pitfall, proven absent: a storm of 10,000 file-system events on
the receiving peer while a large transfer runs does not freeze its hub — the
transfer completes and the peer keeps answering — because watchdog's observer
runs in a native thread and hands events to the hub through a loop watcher."""

import os
import time

import pytest

from p2p.net.control import ask
from peers import wait_until

pytestmark = pytest.mark.slow


def test_ten_thousand_fs_events_during_a_transfer_do_not_stall_it(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a])
    b.write(".p2pignore", b"storm/\n")   # the storm's files are watched but never synced
    b.start()
    wait_until(lambda: a.has(".p2pignore", b"storm/\n"), 20, "the ignore file to sync")
    big = os.urandom(48 * 1024 * 1024)
    a.write("big.bin", big)
    storm = b.path("storm")
    storm.mkdir()
    slowest = 0.0
    for i in range(10_000):               # create + modify: well over 10,000 inotify events
        (storm / f"f{i % 500}").write_bytes(b"x" * (i % 7))
        if i % 1000 == 0:
            start = time.monotonic()
            ask(b.home, {"cmd": "status"}, timeout=10)
            slowest = max(slowest, time.monotonic() - start)
    wait_until(lambda: b.has("big.bin", big), 60, "the transfer to finish during and after the storm")
    assert slowest < 2.0, f"the peer's hub stalled for {slowest:.2f}s during the storm"
    assert b.alive() and a.lacks("storm")
