"""End-to-end: real `p2p run` processes on loopback keep their folders identical."""

import os
import signal

import pytest

from peers import LOOPBACK_BROADCAST, converged, free_port, wait_until

pytestmark = pytest.mark.slow


def test_two_peers_find_each_other_by_loopback_broadcast(make_peer):
    disc = f"{LOOPBACK_BROADCAST}:{free_port(__import__('socket').SOCK_DGRAM)}"
    a = make_peer("a", discovery=disc).start()
    b = make_peer("b", discovery=disc).start()
    a.write("hello.txt", b"hello from a\n")
    wait_until(lambda: b.has("hello.txt", b"hello from a\n"), 20, "a's file on b")
    b.write("reply.txt", b"and back from b\n")
    wait_until(lambda: a.has("reply.txt", b"and back from b\n"), 20, "b's file on a")
    assert converged(a, b)


def test_chain_of_three_static_peers_every_kind_of_change(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    c = make_peer("c", peers=[b]).start()   # a and c never talk directly
    big = os.urandom(64 * 1024 * 1024)
    a.write("docs/nested/deep/note.txt", b"v1")
    a.write("empty.bin", b"")
    a.write("caf\u00e9/\u65e5\u672c\u8a9e \u2603.txt", "unicode \u2603".encode())
    a.write("big.bin", big)
    os.mkdir(a.path("empty-dir"))
    wait_until(lambda: converged(a, b, c) and c.has("big.bin", big), 90, "chain to converge on creates")
    assert c.tree()["empty-dir"] == "dir"
    assert c.has("empty.bin", b"")

    c.write("docs/nested/deep/note.txt", b"v2 from c")        # update travels back up the chain
    wait_until(lambda: a.has("docs/nested/deep/note.txt", b"v2 from c"), 30, "update from c on a")

    os.remove(b.path("empty.bin"))                              # delete in the middle
    import shutil
    shutil.rmtree(a.path("docs"))                               # delete of a whole tree
    wait_until(lambda: c.lacks("docs") and c.lacks("empty.bin") and a.lacks("empty.bin"), 30, "deletes")
    wait_until(lambda: converged(a, b, c), 30, "final convergence")


def test_peer_edited_offline_converges_after_restart(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("x.txt", b"one")
    a.write("gone.txt", b"to be deleted offline")
    wait_until(lambda: b.has("x.txt", b"one") and b.has("gone.txt", b"to be deleted offline"), 20, "first sync")
    assert b.stop() == 0
    b.write("x.txt", b"edited while offline")
    b.write("new/offline.txt", b"created while offline")
    os.remove(b.path("gone.txt"))
    b.start()
    wait_until(lambda: a.has("x.txt", b"edited while offline") and a.has("new/offline.txt", b"created while offline")
               and a.lacks("gone.txt"), 30, "offline changes on a")
    wait_until(lambda: converged(a, b), 30, "convergence")


def test_sigkill_mid_transfer_leaves_no_partial_file_and_resumes(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    big = os.urandom(128 * 1024 * 1024)
    a.write("huge.bin", big)

    def temporaries():
        return [b.root / n for n in os.listdir(b.root) if n.startswith(".p2p-tmp-")]

    def received_some():   # the partial file already holds a good part of the content
        return any(t.stat().st_blocks * 512 > 16 * 1024 * 1024 for t in temporaries() if t.exists())
    wait_until(received_some, 60, "b to receive part of huge.bin")
    b.stop(signal.SIGKILL)
    assert "huge.bin" not in os.listdir(b.root) or b.has("huge.bin", big), "a partial file is visible"
    b.start()
    wait_until(lambda: b.has("huge.bin", big), 90, "huge.bin on b after restart")
    wait_until(lambda: converged(a, b), 30, "convergence")
    assert not temporaries(), "a temporary file was left behind"
    assert "huge.bin: resuming" in b.output(), "the transfer started again from the beginning"


def test_a_file_written_in_a_hundred_pieces_is_one_event(make_peer):
    import subprocess
    import sys
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    pieces = [os.urandom(4096) for _ in range(100)]
    with open(a.path("pieces.bin"), "wb") as out:
        for piece in pieces:
            out.write(piece)
            out.flush()
    whole = b"".join(pieces)
    wait_until(lambda: b.has("pieces.bin", whole), 20, "the file on b")
    log = subprocess.run([sys.executable, "-m", "p2p", "log", "--home", str(a.home), "--json", "pieces.bin"],
                         capture_output=True, text=True, check=True).stdout
    assert len(log.splitlines()) == 1, log


def test_hundreds_of_small_files_at_once_arrive_intact(make_peer):
    """Small files written together are made durable together (fsynced several
    at once, then renamed, per batch on the receiver): every one still arrives
    byte for byte."""
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    files = {f"batch/d{i % 7}/f{i}.txt": os.urandom(100 + i) for i in range(300)}
    for rel, data in files.items():
        a.write(rel, data)
    wait_until(lambda: all(b.has(rel, data) for rel, data in files.items()), 60, "300 small files on b")
    assert not [n for n in os.listdir(b.path("batch/d0")) if n.startswith(".p2p-tmp-")]
