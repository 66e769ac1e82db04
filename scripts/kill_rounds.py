"""kill -9 at random moments during a sync, then check nothing was lost or reverted.

Two real `p2p run` processes on loopback: A edits (the only editor), B
receives. Each round A rewrites a random share of the small files (and, in
some rounds, a large one), then after a random delay one side (A or B, at
random) is killed with SIGKILL and restarted. At the end, once both have
settled: every path must hold A's latest content on both sides, there must be
no conflict copy (only one side ever edited), no temporary file visible, and
every line of both events.jsonl must be a valid event, each id naming one
event only.

Run: `.venv/bin/python scripts/kill_rounds.py [--rounds 20] [--small 1000]
[--large 3] [--seed N]`; the test suite runs a short version
(tests/test_kill_rounds.py). Prints one line per round and a summary;
exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from peers import Peer, tree, wait_until  # noqa: E402

from p2p.history.event import Event, InvalidEvent  # noqa: E402
from p2p.history.paths import is_temp_name  # noqa: E402
from p2p.sync.conflicts import CONFLICT_MARK  # noqa: E402

MiB = 1024 * 1024


def write_atomically(path: Path, data: bytes) -> None:
    """How editors save: a new file renamed over the old (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".saving")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def history_problems(peer: Peer) -> list:
    """Lines that are not valid events, and ids that name two different events."""
    problems, seen = [], {}
    for number, line in enumerate((peer.home / "events.jsonl").read_bytes().splitlines(), 1):
        try:
            event = Event.from_json(line)
        except InvalidEvent as exc:
            problems.append(f"{peer.name} events.jsonl line {number}: {exc}")
            continue
        if seen.setdefault(event.id, line) != line:
            problems.append(f"{peer.name}: event id {event.id} names two events")
    return problems


def temporaries(peer: Peer) -> list:
    return [os.path.join(d, n) for d, _, names in os.walk(peer.root) for n in names if is_temp_name(n)]


def conflict_copies(peer: Peer) -> list:
    return [p for p in tree(peer.root) if CONFLICT_MARK in p]


def run(base: Path, rounds: int, small: int, large: int, seed: int, out=print) -> dict:
    rng = random.Random(seed)
    a = Peer(base, "a")
    b = Peer(base, "b", peers=[a])
    files = {}
    for i in range(small):
        files[f"small/d{i % 20}/f{i}.bin"] = rng.randbytes(rng.randint(512, 16 * 1024))
    for i in range(large):
        files[f"large/big{i}.bin"] = rng.randbytes(rng.randint(20, 50) * MiB)
    for rel, data in files.items():
        write_atomically(a.path(rel), data)
    a.start()
    b.start()
    try:
        for number in range(1, rounds + 1):
            edited = rng.sample(sorted(p for p in files if p.startswith("small/")), max(1, small // 10))
            if large and rng.random() < 0.5:
                edited.append(rng.choice(sorted(p for p in files if p.startswith("large/"))))
            for rel in edited:
                files[rel] = rng.randbytes(len(files[rel]))
                write_atomically(a.path(rel), files[rel])
            time.sleep(rng.uniform(0.05, 1.5))     # the kill lands at a random moment of the sync
            victim = rng.choice([a, b])
            victim.stop(signal.SIGKILL)
            victim.start()
            out(f"round {number:2d}: {len(edited):4d} files edited, killed {victim.name}")

        def settled():
            return all(b.has(rel, data) for rel, data in files.items()) and not temporaries(b)
        wait_until(settled, 300, "b to hold every latest version")
        wait_until(lambda: tree(a.root) == tree(b.root), 60, "a and b to agree")
        outcome = {
            "rounds": rounds, "paths": len(files),
            "not_latest_on_a": sum(not a.has(rel, data) for rel, data in files.items()),
            "not_latest_on_b": sum(not b.has(rel, data) for rel, data in files.items()),
            "conflict_copies": len(conflict_copies(a)) + len(conflict_copies(b)),
            "temporaries": len(temporaries(a)) + len(temporaries(b)),
            "history_problems": history_problems(a) + history_problems(b),
        }
    finally:
        for peer in (a, b):
            peer.stop()
    out(json.dumps(outcome))
    return outcome


def passed(outcome: dict) -> bool:
    return (not outcome["not_latest_on_a"] and not outcome["not_latest_on_b"] and not outcome["conflict_copies"]
            and not outcome["temporaries"] and not outcome["history_problems"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="p2p-kill-") as base:
        outcome = run(Path(base), args.rounds, args.small, args.large, args.seed)
    return 0 if passed(outcome) else 1


if __name__ == "__main__":
    raise SystemExit(main())
