"""The pure parts behind `p2p status`: running totals (local state, block
store) that match a recount, the registry's last errors, what a peer lacks in
words, and the "in sync" verdict."""

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.blocks.store import BlockStore, CorruptBlock
from p2p.folder.state import Entry, LocalState
from p2p.net.peers import PeerRegistry
from p2p.verdict import describe_lack, what_is_missing
from stored import overwrite

NOTHING = dict(paused=False, scanning=False, local=0, held=0, waiting=[], not_synced=0, checking=0,
               transfers={"files": 0, "bytes": 0, "done": 0})
HAS_ALL = {"events": 0, "files": 0, "dirs": 0, "deletes": 0, "bytes": 0, "receiving": {"files": 0, "bytes": 0}}

changes = st.lists(st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.sampled_from(["file", "dir"])),
                             st.integers(0, 10 ** 6)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(changes=changes)
def test_local_state_totals_match_a_recount(tmp_path_factory, changes):
    path = tmp_path_factory.mktemp("state") / "local.db"
    state = LocalState(path)
    for name, kind, size in changes:
        if kind is None:
            state.pop(name)
        else:
            state.set(name, Entry(kind, size if kind == "file" else 0, 1, 1, 0o644, "h" * 64, "E:1"))
    entries = [state.get(p) for p in state.paths()]
    recount = {"files": sum(e.kind == "file" for e in entries), "dirs": sum(e.kind == "dir" for e in entries),
               "bytes": sum(e.size for e in entries if e.kind == "file")}
    assert state.totals() == recount
    state.close()
    again = LocalState(path)
    assert again.totals() == recount     # rebuilt from the snapshot and journal
    again.close()


def test_block_store_total_is_kept_without_walking(tmp_path):
    store = BlockStore(tmp_path / "blocks")
    blocks = [os.urandom(n) for n in (10, 200, 3000)]
    store.put(hashlib.sha256(blocks[0]).hexdigest(), blocks[0])
    assert store.total_bytes() == 10                      # counted once
    for data in blocks[1:] + blocks[:1]:                  # a block stored again counts once
        store.put(hashlib.sha256(data).hexdigest(), data)
    assert store.total_bytes() == 3210
    bad = hashlib.sha256(blocks[2]).hexdigest()
    overwrite(store, bad, b"x" * 3000)                    # a corrupt block is removed, and uncounted
    with pytest.raises(CorruptBlock):
        store.get(bad)
    assert store.total_bytes() == 210
    store.put(bad, blocks[2])
    assert store.prune(set(), max_bytes=3000) and store.total_bytes() <= 3000
    assert store.total_bytes() == sum(size for _, _, size in store._entries())


def test_the_registry_keeps_the_last_error_where_it_belongs():
    reg = PeerRegistry()
    reg.failed("cluster secret mismatch", 10.0, host="10.0.0.7")
    reg.failed("cluster secret mismatch", 11.0, host="10.0.0.7")
    reg.failed("connection refused", 12.0, dialled=("10.0.0.8", 9998))
    assert reg.failures["10.0.0.7"].count == 2 and reg.failures["10.0.0.7"].time == 11.0
    reg.reached(("10.0.0.8", 9998), "B" * 32)          # the address works now: its failure is the peer's
    assert "10.0.0.8:9998" not in reg.failures and reg.get("B" * 32).last_error.reason == "connection refused"
    reg.failed("no handshake within 10s", 13.0, dialled=("10.0.0.8", 9998))
    assert reg.get("B" * 32).last_error.reason == "no handshake within 10s" and "10.0.0.8:9998" not in reg.failures


def test_what_a_peer_lacks_in_words():
    assert describe_lack(HAS_ALL) == ""
    assert describe_lack(None) == "unknown yet"
    assert describe_lack(dict(HAS_ALL, events=4, files=2, bytes=2048, deletes=1, dirs=1)) == \
        "2 files (2.0 KiB), 1 directory, 1 deletion"
    assert describe_lack(dict(HAS_ALL, events=1, files=1, bytes=5, receiving={"files": 2, "bytes": 1 << 20})) == \
        "3 files (1.0 MiB)"
    assert describe_lack(dict(HAS_ALL, events=20000, files=None, dirs=None, deletes=None, bytes=None)) == \
        "20000 changes"


def test_in_sync_only_when_nothing_is_missing_anywhere():
    assert what_is_missing(**NOTHING, peers=[("b (BBBBBBB)", HAS_ALL)]) == []
    assert what_is_missing(**NOTHING, peers=[]) == ["no peer connected"]
    assert what_is_missing(**dict(NOTHING, waiting=["big.iso"]), peers=[("b", HAS_ALL)]) == \
        ["waiting for a peer that has big.iso"]
    assert what_is_missing(**dict(NOTHING, not_synced=2), peers=[("b", HAS_ALL)]) == \
        ["2 paths not synced: see below"]
    assert what_is_missing(**NOTHING, peers=[("b (BBBBBBB)", dict(HAS_ALL, events=1, files=1, bytes=3))]) == \
        ["b (BBBBBBB) lacks 1 file (3 B)"]
    assert what_is_missing(**NOTHING, peers=[("b", None)]) == ["waiting for b to say what it has"]
    busy = what_is_missing(**dict(NOTHING, paused=True, scanning=True, local=1, held=3, checking=2,
                                  transfers={"files": 1, "bytes": 100, "done": 40}), peers=[("b", HAS_ALL)])
    assert busy == ["syncing is paused: the folder or its .p2p-folder marker is missing", "scanning the folder",
                    "1 local change not recorded yet", "3 events waiting for the events before them",
                    "receiving 1 file (60 B left)", "2 paths to check"]
