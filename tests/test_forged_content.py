"""A member cannot make a peer write or store forged content (issue 15, item 1).

A real `p2p run` T is attacked by rogue members (tests/rogue.py) that send
honest-looking events and answer T's block requests with other content under
that content's own hash, or with a block of another size. T checks every
block against the hash and size it asked for, so it drops the rogue, writes
nothing of it and stores nothing of it, and gets the real block from an
honest peer G once G connects. A rogue event whose single block does not make
up the event's hash is caught by the whole-file check before the rename: the
file is never placed, listed as not synced (one warning) and refetched.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from p2p.blocks.store import BlockStore
from p2p.net.control import ask

from peers import Peer, wait_until
from rogue import AuthenticatedRogue, file_event
from stored import raw

pytestmark = pytest.mark.slow

SECRET = "forged-content-test-secret-0123456789"
WAIT = 60.0      # other suites share this 2-core machine

REAL = b"the real content, as its author wrote it\n" * 64
FORGED = b"FORGED content of the very same length..\n" * 64
LONGER = FORGED + b"and a tail"
assert len(REAL) == len(FORGED)


def stored_block(peer: Peer, content: bytes):
    """The bytes T's block store holds under ``content``'s hash, or None."""
    return raw(BlockStore(peer.home / ".p2p" / "blocks", create=False), hashlib.sha256(content).hexdigest())


def not_synced(peer: Peer) -> dict:
    return {p["path"]: p for p in ask(peer.home, {"cmd": "status"})["not_synced"]}


def test_a_forged_block_is_never_written_nor_stored_and_the_real_one_comes_from_an_honest_peer(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    g = Peer(tmp_path, "G", secret=SECRET, peers=[t])
    g.write("real.txt", REAL)
    rogues = []
    try:
        # same size, other content, sent under its own hash
        liar = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
        rogues.append(liar)
        liar.forge(REAL, FORGED)
        liar.send_events([file_event(liar.device_id, 1, "forged.txt", REAL)])
        assert liar.closed.wait(WAIT), "T kept the channel of a peer that sent a forged block"
        wait_until(lambda: f"dropping channel with {liar.device_id[:7]}: WireError: peer sent a block whose "
                           "content does not match the hash we asked for" in t.output(), WAIT, "T to say why")
        # another size (and its own hash)
        longer = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
        rogues.append(longer)
        longer.forge(REAL, LONGER)
        longer.send_events([file_event(longer.device_id, 1, "longer.txt", REAL)])
        assert longer.closed.wait(WAIT), "T kept the channel of a peer that sent a block of another size"
        wait_until(lambda: f"dropping channel with {longer.device_id[:7]}: WireError: peer sent "
                           f"{len(LONGER)} bytes for the block" in t.output(), WAIT, "T to say why")
        wait_until(lambda: {"forged.txt", "longer.txt"} <= set(not_synced(t)), WAIT,
                   "T to list both files as waiting for a peer that has their content")
        assert liar.block_requests and longer.block_requests, "T never asked the rogues"
        assert t.lacks("forged.txt") and t.lacks("longer.txt")
        assert stored_block(t, REAL) is None
        # an honest peer with the real content connects: T gets it from G
        g.start()
        wait_until(lambda: t.has("forged.txt", REAL) and t.has("longer.txt", REAL), WAIT, "the real content on T")
        wait_until(lambda: stored_block(t, REAL) == REAL, WAIT, "the real block in T's store (committed in a moment)")
        assert stored_block(t, FORGED) is None and stored_block(t, LONGER) is None
        assert b"FORGED" not in b"".join(v for v in t.tree().values() if isinstance(v, bytes))
        wait_until(lambda: g.has("forged.txt", REAL), WAIT, "G to get the real content too")
    finally:
        for rogue in rogues:
            rogue.close()
        t.stop()
        g.stop()


def test_a_file_whose_blocks_do_not_make_up_its_hash_is_never_placed(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        event = file_event(rogue.device_id, 1, "mismatch.txt", REAL)
        event["hash"] = hashlib.sha256(FORGED).hexdigest()   # the block is REAL, the event says FORGED
        rogue.serve(REAL)
        rogue.send_events([event])
        wait_until(lambda: not_synced(t).get("mismatch.txt", {}).get("attempts", 0) >= 2, WAIT,
                   "T to refuse the file, then refetch and refuse it again")
        assert "does not match its event's hash" in not_synced(t)["mismatch.txt"]["reason"]
        assert t.lacks("mismatch.txt")
        assert not [name for name in t.tree() if name.startswith(".p2p-tmp-")]
        assert t.output().count("not syncing 'mismatch.txt'") == 1, "the refusal is said once"
        assert not rogue.closed.is_set(), "the block itself was honest: the channel stays"
    finally:
        rogue.close()
        t.stop()


def large_file_event(origin: str, seq: int, path: str, content: bytes, block: int) -> dict:
    """A 'create file' event for a large file (over limits.ARCHIVE_LATER_MIN) of
    large blocks (over limits.SMALL_BLOCK): the path whose blocks are checked
    with their write, off the hub, and whose whole hash runs as they land."""
    event = file_event(origin, seq, path, content)
    event["blocks"] = [[hashlib.sha256(content[at:at + block]).hexdigest(), len(content[at:at + block])]
                       for at in range(0, len(content), block)]
    return event


def test_a_forged_large_block_is_never_written_nor_stored(tmp_path):
    from p2p import limits
    block = 3 * limits.MiB
    real = os.urandom(3 * block)
    assert len(real) > limits.ARCHIVE_LATER_MIN and block > limits.SMALL_BLOCK
    forged_middle = b"F" * block
    t = Peer(tmp_path, "T", secret=SECRET).start()
    liar = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    honest = None
    try:
        for at in (0, 2 * block):
            liar.serve(real[at:at + block])
        liar.forge(real[block:2 * block], forged_middle)
        liar.send_events([large_file_event(liar.device_id, 1, "big.bin", real, block)])
        assert liar.closed.wait(WAIT), "T kept the channel of a peer that sent a forged large block"
        wait_until(lambda: f"dropping channel with {liar.device_id[:7]}: WireError: peer sent a block whose "
                           "content does not match the hash we asked for" in t.output(), WAIT, "T to say why")
        assert t.lacks("big.bin")
        assert stored_block(t, forged_middle) is None
        assert not any(b"FFFFFFFF" in path.read_bytes() for path in t.root.iterdir() if path.is_file()), \
            "the forged block reached a file in the folder"
        # another member, with every block, connects: T gets the real content from it
        honest = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
        for at in range(0, len(real), block):
            honest.serve(real[at:at + block])
        wait_until(lambda: t.has("big.bin", real), WAIT, "the real content on T, from an honest peer")
        assert stored_block(t, forged_middle) is None
    finally:
        liar.close()
        if honest is not None:
            honest.close()
        t.stop()


def test_a_large_file_whose_blocks_do_not_make_up_its_hash_is_never_placed(tmp_path):
    from p2p import limits
    block = 3 * limits.MiB
    real = os.urandom(3 * block)
    t = Peer(tmp_path, "T", secret=SECRET).start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        event = large_file_event(rogue.device_id, 1, "mismatch.bin", real, block)
        event["hash"] = hashlib.sha256(real[::-1]).hexdigest()   # honest blocks, another whole
        for at in range(0, len(real), block):
            rogue.serve(real[at:at + block])
        rogue.send_events([event])
        wait_until(lambda: not_synced(t).get("mismatch.bin", {}).get("attempts", 0) >= 1, WAIT,
                   "T to refuse the file")
        assert "does not match its event's hash" in not_synced(t)["mismatch.bin"]["reason"]
        assert t.lacks("mismatch.bin")
        assert not rogue.closed.is_set(), "the blocks themselves were honest: the channel stays"
    finally:
        rogue.close()
        t.stop()
