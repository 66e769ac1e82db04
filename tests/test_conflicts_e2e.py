"""End-to-end (issue 5 item 6): three real `p2p run` processes on loopback; one is
stopped, the same file is edited on it and on another, a directory is deleted
on one while a file is added inside it on the other; after the restart all
three converge to identical trees with the one conflict copy docs/CONFLICTS.md
predicts."""

import os
import re
import shutil
from datetime import datetime, timezone

import pytest

from p2p.security.identity import Identity
from peers import converged, wait_until

pytestmark = pytest.mark.slow

B_TIME = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
C_TIME = datetime(2024, 3, 4, 5, 6, 9, tzinfo=timezone.utc)
COPY = re.compile(r"doc\.sync-conflict-(\d{8}-\d{6})-([A-Z2-7]{7})\.txt")


def write_with_mtime(peer, rel: str, data: bytes, moment: datetime) -> None:
    """Write ``rel`` atomically with a known mtime, so the event records exactly that mtime."""
    staging = peer.home / "staging"
    staging.write_bytes(data)
    ns = int(moment.timestamp()) * 10 ** 9
    os.utime(staging, ns=(ns, ns))
    os.replace(staging, peer.path(rel))


def device_id(peer) -> str:
    return Identity.load_or_create(peer.home).device_id


def copies(peer):
    return sorted(name for name in os.listdir(peer.root) if COPY.fullmatch(name))


def test_offline_edit_and_directory_delete_converge_with_one_conflict_copy(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    c = make_peer("c", peers=[a, b]).start()            # full mesh, discovery off
    a.write("doc.txt", b"version 0\n")
    a.write("album/one.jpg", b"one")
    wait_until(lambda: converged(a, b, c) and c.has("album/one.jpg", b"one") and c.has("doc.txt", b"version 0\n"),
               30, "the first sync")

    assert c.stop() == 0
    write_with_mtime(b, "doc.txt", b"b edited online\n", B_TIME)
    shutil.rmtree(b.path("album"))                       # b deletes the directory...
    write_with_mtime(c, "doc.txt", b"c edited offline\n", C_TIME)
    c.write("album/two.jpg", b"two")                     # ...while c adds a file inside it
    wait_until(lambda: a.has("doc.txt", b"b edited online\n") and a.lacks("album"), 30, "b's changes on a")

    c.start()
    wait_until(lambda: all(copies(p) for p in (a, b, c)) and converged(a, b, c), 45, "convergence after restart")

    final = c.tree()
    # one conflict copy, the same everywhere, holding the losing edit under the loser's name
    [copy] = copies(c)
    stamp, peer = COPY.fullmatch(copy).groups()
    versions = {b"b edited online\n": (b, B_TIME), b"c edited offline\n": (c, C_TIME)}
    assert {final["doc.txt"], final[copy]} == set(versions)
    loser, loser_time = versions[final[copy]]
    assert peer == device_id(loser)[:7]
    assert stamp == loser_time.strftime("%Y%m%d-%H%M%S")
    # the directory: the new file survives in it, the deleted one stays deleted
    assert final["album"] == "dir" and final["album/two.jpg"] == b"two"
    assert "album/one.jpg" not in final
    assert sorted(final) == sorted(["doc.txt", copy, "album", "album/two.jpg"])
