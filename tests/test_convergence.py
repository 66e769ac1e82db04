"""Convergence property (issue 5 item 5): 3-5 simulated peers (tests/simnet.py)
apply random user operations and restart at random while an in-memory network
delays, reorders, duplicates and partitions their messages; once it heals and goes quiet, every
peer's folder is identical and nothing anyone wrote is lost.

A schedule is a list of steps ``(kind, a, b, c)``; the integers pick the peer,
the path, the message, the partition, taken modulo what exists, so every
shrunk failing schedule is a plain literal to keep as an ``@example``.
"""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, example, given, settings, strategies as st

from p2p.history.precedence import winner
from p2p.sync.conflicts import conflict_name
from simnet import CONTENT, SECOND, SimNet, digest

DEVICES = [letter * 32 for letter in "ABCDE"]
FILES = ["a.txt", "b.txt", "d/a.txt", "d/b.txt", "e/f/c.txt"]
DIRS = ["d", "e", "e/f"]               # never a file: files and directories never race for one path
OPS = ["write", "write", "edit", "delete", "rename", "mkdir"]
STEPS = (["op"] * 6 + ["deliver"] * 5 + ["scan"] * 3 + ["reconcile"] * 2 + ["fetch"] * 2
         + ["duplicate", "partition", "partition", "heal", "restart"])
EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "500"))
TIME_ORIGIN = 1_700_000_000 * SECOND

steps = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 63), st.integers(0, 63), st.integers(0, 63)),
                 min_size=30, max_size=120)


def user_op(peer, a: int, b: int, now: int, serial: int):
    """One user operation at ``peer``; returns the content written, if it wrote one."""
    op = OPS[a % len(OPS)]
    mtime = TIME_ORIGIN + now * SECOND // 2          # two operations a second: same-second mtimes happen
    content = b"same content\n" if b % 5 == 0 else f"{peer.id[0]} wrote #{serial}\n".encode()
    files_here = sorted(p for p, item in peer.disk.items() if item.kind == "file")
    if op == "write" or op == "edit" and files_here:
        path = FILES[b % len(FILES)] if op == "write" else files_here[b % len(files_here)]
        return content if peer.write(path, content, mtime) else None
    if op == "delete" and peer.disk:
        peer.delete(sorted(peer.disk)[b % len(peer.disk)])
    elif op == "rename" and files_here:
        peer.rename(files_here[b % len(files_here)], FILES[(a + b) % len(FILES)])
    elif op == "mkdir":
        peer.mkdir(DIRS[b % len(DIRS)], mtime)
    return None


def run_schedule(net: SimNet, schedule) -> list:
    """Play the schedule; return every content a user wrote."""
    written = []
    for now, (kind, a, b, c) in enumerate(schedule, start=1):
        peer = net.peers[a % len(net.peers)]
        if kind == "op":
            content = user_op(peer, b, c, now, len(written))
            if content is not None:
                written.append(content)
        elif kind == "deliver" and net.in_flight:
            net.deliver(b * 64 + c)
        elif kind == "duplicate" and net.in_flight:
            net.duplicate(b * 64 + c)
        elif kind == "scan":
            peer.scan(now)
        elif kind == "reconcile":
            peer.reconcile(now)
        elif kind == "fetch" and peer.fetches:
            peer.finish_fetch(sorted(peer.fetches)[b % len(peer.fetches)], now)
        elif kind == "partition":
            net.partition(b)
        elif kind == "heal":
            net.heal()
        elif kind == "restart":
            net.restart(peer)
    net.settle(len(schedule) + 1)
    return written


def check_converged(net: SimNet, written: list) -> None:
    first = net.peers[0]
    for peer in net.peers[1:]:
        assert peer.history.vv == first.history.vv
        assert peer.folder() == first.folder(), f"{peer.id[0]} and {first.id[0]} differ"
    for peer in net.peers:              # each disk holds its history's winners
        tree = peer.history.tree()
        files = {p: item.hash for p, item in peer.disk.items() if item.kind == "file"}
        assert files == {p: e.hash for p, e in tree.items() if e.kind == "file"}
        assert all(peer.disk[p].kind == "dir" for p, e in tree.items() if e.kind == "dir")
    history = first.history
    recorded = {e.hash for e in history.events() if e.kind == "file" and not e.is_delete}
    replaced = set().union(*(p.user_replaced for p in net.peers))
    for content in written:   # every content a user wrote became an event, unless that user replaced it unseen
        assert digest(content) in recorded or content in replaced, content
    for path in list(history.paths()):   # every version no change has seen is at its path or in its copy
        heads = history.heads(path)
        best = winner(heads)
        for head in heads:
            if head.is_delete or head.kind != "file" or head is best or head.hash == best.hash:
                continue
            copy = conflict_name(path, head)
            kept = first.disk.get(copy)
            assert (kept is not None and kept.hash == head.hash or CONTENT[head.hash] in replaced
                    or any(e.hash == head.hash for e in _events_at(history, copy))), f"{head.id} at {path} lost"


def _events_at(history, path):
    return (e for e in history.events() if e.path == path)


def simulate(peer_count: int, schedule) -> None:
    home = tempfile.mkdtemp(prefix="p2p-sim-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    net = SimNet()
    try:
        for device_id in DEVICES[:peer_count]:
            net.add(os.path.join(home, device_id[0]), device_id)
        written = run_schedule(net, schedule)
        check_converged(net, written)
    finally:
        net.close()
        shutil.rmtree(home, ignore_errors=True)


FILLER = [("op", 0, 0, 0)]    # A writes "same content" to a.txt (the shrinker's favourite step)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(peer_count=st.integers(3, 5), schedule=steps)
# a directory a write re-created for a remote file (its own history: deleted) stayed after the file went
@example(peer_count=3, schedule=[("op", 0, 5, 1), ("op", 0, 0, 0), ("op", 2, 0, 0), ("op", 2, 5, 2), ("op", 2, 0, 1),
                                 ("op", 2, 3, 0), ("op", 2, 3, 0), ("scan", 0, 0, 0), ("scan", 2, 0, 0),
                                 ("op", 0, 3, 5), ("op", 2, 3, 1)])
# the same, when the user deletes the file inside the re-created directory
@example(peer_count=3, schedule=FILLER * 20 + [("op", 62, 0, 22), ("op", 1, 0, 33), ("scan", 1, 0, 0),
                                               ("scan", 2, 0, 0), ("op", 1, 51, 0), ("deliver", 0, 0, 3),
                                               ("scan", 1, 0, 0), ("reconcile", 1, 0, 0), ("fetch", 1, 0, 0),
                                               ("op", 1, 51, 1)])
# a remote write met an unscanned local file, the user then deleted it: the winner was never fetched
@example(peer_count=5, schedule=[("op", 3, 0, 4), ("op", 2, 0, 4), ("scan", 2, 0, 0), ("deliver", 0, 0, 0),
                                 ("deliver", 0, 0, 0), ("deliver", 0, 0, 0), ("reconcile", 3, 0, 0),
                                 ("fetch", 3, 0, 0), ("op", 3, 3, 0)])
# a conflict copy edited by the user before it was scanned (its content was seen and replaced)
@example(peer_count=3, schedule=[("op", 40, 0, 0), ("op", 2, 0, 1), ("op", 0, 0, 0), ("op", 11, 58, 62)] + FILLER * 8
         + [("heal", 0, 0, 0), ("deliver", 0, 58, 29), ("partition", 0, 6, 0), ("scan", 50, 0, 0),
            ("deliver", 0, 0, 13), ("scan", 4, 0, 0), ("deliver", 0, 0, 45), ("reconcile", 5, 0, 0),
            ("op", 2, 26, 0)])
def test_fuzz_peers_converge_and_nothing_is_lost(peer_count, schedule):
    simulate(peer_count, schedule)
