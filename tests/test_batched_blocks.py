"""Small blocks in bulk (real `p2p run` processes on loopback): the small
blocks wanted at the same time leave in BlockRequests frames and come back in
BlocksData frames; every block in a batch is checked against the hash and
size asked for, and a peer that lies in one is dropped."""

from __future__ import annotations

import hashlib

from p2p import limits
from p2p.net.control import ask
from p2p.wire.messages import BlockRequest, BlockRequests

from peers import Peer, wait_until
from rogue import AuthenticatedRogue, file_event

SECRET = "batched-blocks-test-secret-0123456789"
WAIT = 60.0      # other suites share this 2-core machine
FILES = 80


def contents(tag: str):
    return {f"small/{tag}{i:03d}.txt": f"{tag} small file {i}\n".encode() * (i + 1) for i in range(FILES)}


def offer(rogue: AuthenticatedRogue, files: dict) -> None:
    for content in files.values():
        rogue.serve(content)
    rogue.send_events([file_event(rogue.device_id, rogue.next_seq(), path, content) for path, content in files.items()])


def batches(rogue: AuthenticatedRogue) -> list:
    return rogue.received_of(BlockRequests)


def test_small_files_are_fetched_many_blocks_per_frame(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        files = contents("a")
        offer(rogue, files)
        wait_until(lambda: all(t.has(path, content) for path, content in files.items()), WAIT, "every file on T")
        asked = [r.hash for r in rogue.block_requests]
        assert sorted(asked) == sorted(hashlib.sha256(c).digest() for c in files.values()), "each block asked once"
        frames = len(batches(rogue)) + len(rogue.received_of(BlockRequest))
        assert max((len(b.requests) for b in batches(rogue)), default=0) > 1 and frames < FILES / 2, \
            f"{FILES} small blocks asked in {frames} frames"
    finally:
        rogue.close()
        t.stop()


def test_a_batch_asks_for_about_batch_bytes_at_most(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        files = {f"mid/{i:02d}.bin": bytes([i]) * (100 * 1024 + i) for i in range(30)}   # one block each
        offer(rogue, files)
        wait_until(lambda: all(t.has(path, content) for path, content in files.items()), WAIT, "every file on T")
        asked = [sum(r.size for r in b.requests) for b in batches(rogue)]
        assert asked and max(asked) <= limits.BATCH_BYTES, asked
    finally:
        rogue.close()
        t.stop()


def test_a_lie_inside_a_batch_drops_the_peer_and_nothing_forged_is_kept(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    g = Peer(tmp_path, "G", secret=SECRET, peers=[t])
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    files = contents("b")
    liar_path = sorted(files)[FILES // 2]
    real = files[liar_path]
    try:
        rogue.forge(real, b"X" * len(real))   # same size, other content
        offer(rogue, files)
        assert rogue.closed.wait(WAIT), "T kept the channel of a peer that lied inside a batch"
        wait_until(lambda: f"dropping channel with {rogue.device_id[:7]}: WireError: peer sent a block whose "
                           "content does not match the hash we asked for" in t.output(), WAIT, "T to say why")
        assert any(hashlib.sha256(real).digest() in {r.hash for r in b.requests} and len(b.requests) > 1
                   for b in batches(rogue)), "the forged block was not asked in a batch"
        assert t.lacks(liar_path)
        for path, content in files.items():
            g.write(path, content)
        g.start()
        wait_until(lambda: all(t.has(path, content) for path, content in files.items()), WAIT,
                   "every real file on T, from the honest peer")
        assert ask(t.home, {"cmd": "status"})["not_synced"] == []
    finally:
        rogue.close()
        t.stop()
        g.stop()
