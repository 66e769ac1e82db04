"""History benchmark: append throughput with the documented fsync policy, and
the time and peak memory to open a 100k and a 1M event log.

Append: remote events merged in batches of ``limits.MAX_EVENTS_PER_BATCH``
with ``sync()`` at most every ``limits.FSYNC_INTERVAL`` (group commit), and
local events made one by one with ``make_local`` (each fsynced before it
returns), next to a raw ``write`` + ``fdatasync`` per event as the floor.
Open: the log is generated fast by writing canonical JSON lines directly
(4 origins, one event in ten a new path, the rest updates and deletes with
causal parents; and, as the index's worst case, 1M events on 1M paths).
Each open runs in a fresh subprocess that reports its wall time and peak RSS
(``VmHWM``: unlike ``ru_maxrss`` it does not inherit the parent's peak
across fork+exec): first without an index database (full rebuild,
which writes it), then with it. Targets (reported, not
asserted): open 1M events <= 3 s and <= 200 MB.

``run(quick=False) -> list[dict]``; ``python scripts/bench_history.py [--quick]`` prints a table.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from p2p import limits
from p2p.history.event import Event
from p2p.history.history import History

ORIGINS = ["A" * 32, "B" * 32, "C" * 32, "D" * 32]
LOCAL = "L" * 32
OPEN_TARGET_S = 3.0
RSS_TARGET_MB = 200
NEW_PATH_EVERY = 10

OPEN_PROBE = """
import sys, time
from pathlib import Path
from p2p.history.history import History
started = time.perf_counter()
history = History.open(Path(sys.argv[1]), sys.argv[2])
opened = time.perf_counter() - started
events = len(history)
history.close()
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(opened, events, peak_kb)
"""


def generate_log(path: Path, count: int, seed: int = 7, new_path_every: int = NEW_PATH_EVERY) -> int:
    """Write ``count`` valid events as canonical JSON lines; returns how many paths."""
    rng = random.Random(seed)
    seqs = {o: 0 for o in ORIGINS}
    last_event = []            # per path index: last event id
    deleted = []               # per path index: is its last event a delete
    template = ('{"blocks":%s,"hash":"%s","id":"%s","kind":"file","lamport":%d,"mode":420,"mtime":%d,'
                '"origin":"%s","parents":%s,"path":"%s","seq":%d,"size":%d,"time":%s,"type":"%s"}\n')
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        for i in range(count):
            origin = ORIGINS[i % len(ORIGINS)]
            seqs[origin] += 1
            event_id = f"{origin}:{seqs[origin]}"
            if i % new_path_every == 0 or not last_event:
                index, kind, parents = len(last_event), "create", "[]"
                last_event.append(event_id)
                deleted.append(False)
            else:
                index = rng.randrange(len(last_event))
                kind = "create" if deleted[index] else ("delete" if rng.random() < 0.05 else "update")
                parents = f'["{last_event[index]}"]'
                last_event[index] = event_id
            deleted[index] = kind == "delete"
            if kind == "delete":
                blocks, digest, size = "[]", "", 0
            else:
                size = 1000 + i % 50_000
                digest = hashlib.sha256(event_id.encode()).hexdigest()
                blocks = f'[["{digest}",{size}]]'
            path_name = f"projects/p{index % 97}/dir{index % 1013}/file-{index}.txt"
            out.write(template % (blocks, digest, event_id, i + 1, 1_700_000_000_000_000_000 + i, origin, parents,
                                  path_name, seqs[origin], size, repr(1_700_000_000.0 + i / 1000), kind))
    return len(last_event)


def probe_open(home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-c", OPEN_PROBE, str(home), LOCAL], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return {"seconds": float(out[0]), "events": int(out[1]), "peak_rss_mb": int(out[2]) / 1024}


def bench_open(count: int, new_path_every: int = NEW_PATH_EVERY) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        paths = generate_log(home / "events.jsonl", count, new_path_every=new_path_every)
        generated = time.perf_counter() - started
        for label in ("open, no index (rebuild)", "open with the index"):
            result = probe_open(home)
            assert result["events"] == count, result
            rows.append({"benchmark": label, "events": count, "paths": paths,
                         "log_mb": round((home / "events.jsonl").stat().st_size / limits.MiB, 1),
                         "seconds": round(result["seconds"], 3), "peak_rss_mb": round(result["peak_rss_mb"], 1),
                         "target": f"<= {OPEN_TARGET_S:g} s, <= {RSS_TARGET_MB} MB" if count >= 1_000_000 else "",
                         "meets_target": (result["seconds"] <= OPEN_TARGET_S and result["peak_rss_mb"] <= RSS_TARGET_MB)
                         if count >= 1_000_000 and label == "open with the index" else None,
                         "generate_s": round(generated, 1)})
    return rows


def remote_events(count: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        generate_log(Path(tmp) / "events.jsonl", count, seed=11)
        with open(Path(tmp) / "events.jsonl", "rb") as f:
            return [Event.from_json(line) for line in f]


def bench_append(count: int, local_count: int) -> list:
    events = remote_events(count)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        history = History.open(Path(tmp), LOCAL)
        started = last_sync = time.perf_counter()
        syncs = 0
        for start in range(0, len(events), limits.MAX_EVENTS_PER_BATCH):
            history.merge(events[start:start + limits.MAX_EVENTS_PER_BATCH])
            now = time.perf_counter()
            if now - last_sync >= limits.FSYNC_INTERVAL:
                history.sync()
                syncs, last_sync = syncs + 1, now
        history.sync()
        elapsed = time.perf_counter() - started
        rows.append({"benchmark": f"merge remote, batches of {limits.MAX_EVENTS_PER_BATCH}, "
                                  f"fsync every {limits.FSYNC_INTERVAL:g} s",
                     "events": count, "seconds": round(elapsed, 3), "events_per_s": round(count / elapsed),
                     "fsyncs": syncs + 1})
        digest = hashlib.sha256(b"x").hexdigest()
        started = time.perf_counter()
        for i in range(local_count):
            history.make_local("update", "file", f"local/{i % 100}.txt", size=1, hash=digest, blocks=[(digest, 1)],
                               mode=0o644, mtime=i, time=1_800_000_000.0 + i)
        elapsed = time.perf_counter() - started
        rows.append({"benchmark": "make_local, durable (fsync each)", "events": local_count,
                     "seconds": round(elapsed, 3), "events_per_s": round(local_count / elapsed),
                     "fsyncs": local_count})
        history.close()
        line = (events[0].to_json() + "\n").encode()
        fd = os.open(Path(tmp) / "raw.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        started = time.perf_counter()
        for _ in range(local_count):
            os.write(fd, line)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - started
        os.close(fd)
        rows.append({"benchmark": "baseline: raw write + fdatasync per line", "events": local_count,
                     "seconds": round(elapsed, 3), "events_per_s": round(local_count / elapsed),
                     "fsyncs": local_count})
    return rows


def run(quick: bool = False) -> list:
    rows = bench_append(20_000 if quick else 100_000, 200 if quick else 1000)
    for count in ([100_000] if quick else [100_000, 1_000_000]):
        rows += bench_open(count)
    if not quick:
        rows += bench_open(1_000_000, new_path_every=1)  # worst case for the index: every event a new path
    return rows


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv[1:])
    columns = []
    for row in results:
        columns += [key for key in row if key not in columns]
    widths = {c: max(len(c), *(len("" if r.get(c) is None else str(r[c])) for r in results)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in results:
        print("  ".join(("" if row.get(c) is None else str(row[c])).ljust(widths[c]) for c in columns))
    print(json.dumps(results) if "--json" in sys.argv[1:] else "", end="")
