"""A `.p2pignore` that cannot be used never stops a peer (issue 15, item 3).

Real `p2p run` peers A and B. A starts with a `.p2pignore` that is a
directory, later gets a good one, then an invalid one, and restarts with it:
A starts every time, says each problem once, keeps the last good rules while
it runs (nothing is ignored at start), and its local loop goes on syncing.
"""

from __future__ import annotations

import pytest

from peers import wait_until

pytestmark = pytest.mark.slow

WAIT = 60.0


def synced(a, b, rel: str) -> None:
    data = f"{rel} from A".encode()
    a.write(rel, data)
    wait_until(lambda: b.has(rel, data), WAIT, f"{rel} on B")


def test_an_unusable_p2pignore_never_stops_the_local_loop_nor_a_restart(make_peer):
    a = make_peer("A")
    (a.root / ".p2pignore").mkdir()
    a.start()
    b = make_peer("B", peers=[a]).start()
    synced(a, b, "one.txt")
    assert a.output().count(".p2pignore is not used (it is a directory): nothing is ignored") == 1

    (a.root / ".p2pignore").rmdir()
    a.write(".p2pignore", b"*.tmp\n")
    wait_until(lambda: b.has(".p2pignore", b"*.tmp\n"), WAIT, "the good rules on B")
    a.write("x.tmp", b"ignored")
    synced(a, b, "two.txt")
    assert b.lacks("x.tmp")

    a.write(".p2pignore", b"*.tmp\n!\n")      # "!" alone is not a valid pattern
    wait_until(lambda: b.has(".p2pignore", b"*.tmp\n!\n"), WAIT, "the invalid rules on B")
    wait_until(lambda: "is not used (Invalid git pattern: '!'): keeping the rules read before" in a.output(),
               WAIT, "A to warn about the invalid rules")
    a.write("y.tmp", b"still ignored: the last good rules stay")
    a.write(".p2pignore", b"*.tmp\n!\n")      # the same problem again: not said again
    synced(a, b, "three.txt")
    assert b.lacks("y.tmp")
    assert a.output().count("Invalid git pattern") == 1
    assert "crashed" not in a.output() and a.alive()

    assert a.stop() == 0
    a.start()                                 # with the invalid file in place
    synced(a, b, "four.txt")
    assert a.output().count("Invalid git pattern") == 2   # once more, by the new process
    assert "crashed" not in a.output() and a.alive() and b.alive()
