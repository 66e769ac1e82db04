"""Edit benchmarks (issue 13): small edits of large files, bytes on the wire
and time for p2p, Syncthing (when installed) and rsync in one run.

Scenarios (`--scenarios edits` in scripts/bench_trees.py), sizes at ``--scale 1``:

* 10 bytes inserted at offset 1 MiB of a 100 MiB file of random bytes;
* 1 MiB deleted from the middle of the same file;
* 1,000 UPDATEs (one transaction) on a SQLite database of about 100 MB that
  Python's sqlite3 builds (400,000 rows of words and a 120-byte blob);
* a file of random bytes appended to in 20 steps from 30 to 40 MiB.

Every version is prepared once beside the tools' folders. The first version
is synced and the receiver idle before the clock starts; an edit that
replaces the file is written beside the folder and renamed in (one scan of
the whole new content); an append writes in place. Each step waits until the
receiver's file has the step's sha256, then the next starts. Bytes on the
wire: the sender's sent + received over the edits (p2p: frame bytes before
lz4, an upper bound; Syncthing: its TLS connection totals; rsync: `rsync -a
--ignore-times --no-whole-file --stats`, sent + received, one run per step
between two local directories, which is rsync's delta transfer as over ssh;
--ignore-times as the SQLite file keeps its size within the same second). Store growth: how
much p2p's receiving block store (its history) grew over the edits, once it
stopped growing (its large files are archived after their transfer).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from peers import wait_until

from bench_sync import _wire_bytes, p2p_pair
from bench_syncthing import pair, start_pair

MiB = 1 << 20
MB = 10 ** 6
FILE_BYTES = 100 * MiB          # the file of the insert and the delete
INSERT_AT, INSERT = 1 * MiB, b"0123456789"
DELETED = 1 * MiB
DB_ROWS = 400_000               # about 117 MB
UPDATES = 1000
APPEND_FROM, APPEND_TO, APPEND_STEPS = 30 * MiB, 40 * MiB, 20
STEP_TIMEOUT_S = 300
STORE_QUIET_S = 2.0             # the receiver's store is settled once it has not grown for this long
STORE_TIMEOUT_S = 60
QUIET = ("--log-level", "info")

# targets (issue 13 item 4)
SMALL_EDIT_BYTES = 512 * 1024   # insert and delete: under this on the wire ...
SYNCTHING_SPEEDUP = 4           # ... and 4x faster than Syncthing
SQLITE_FRACTION = 1 / 3         # SQLite: under Syncthing's bytes / 3


@dataclass
class Step:
    kind: str                   # "replace": rename `source` in; "append": append `source`'s bytes
    source: Path
    sha256: str


@dataclass
class Edit:
    key: str
    title: str
    name: str                   # the file's name in the folder
    first: Path                 # its first version
    steps: List[Step]
    target: str


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _replace(path: Path) -> Step:
    return Step("replace", path, _sha(path))


def random_file_edits(base: Path, size: int) -> List[Edit]:
    data = random.Random(21).randbytes(size)
    first = _write(base / "v0.bin", data)
    at = min(INSERT_AT, size // 2)
    inserted = _write(base / "inserted.bin", data[:at] + INSERT + data[at:])
    half, cut = size // 2, min(DELETED, size // 4)
    deleted = _write(base / "deleted.bin", data[:half] + data[half + cut:])
    return [Edit("insert", f"{len(INSERT)} bytes inserted at {at / MiB:g} MiB of a {size / MiB:g} MiB file",
                 "big.bin", first, [_replace(inserted)], "wire < 512 KiB and 4x faster than Syncthing"),
            Edit("delete", f"{cut / MiB:g} MiB deleted from the middle of a {size / MiB:g} MiB file",
                 "big.bin", first, [_replace(deleted)], "wire < 512 KiB and 4x faster than Syncthing")]


def sqlite_edit(base: Path, rows: int, updates: int) -> Edit:
    rng = random.Random(22)
    words = [hashlib.md5(str(i).encode()).hexdigest()[:rng.randint(3, 10)] for i in range(5000)]
    first = base / "db0.sqlite"
    db = sqlite3.connect(first)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)")
    for start in range(0, rows, 10_000):
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, " ".join(rng.choices(words, k=20)), rng.randbytes(120))
                                                          for i in range(start, min(rows, start + 10_000))])
    db.commit()
    db.close()
    updated = base / "db1.sqlite"
    shutil.copyfile(first, updated)
    db = sqlite3.connect(updated)
    db.executemany("UPDATE t SET name = ?, payload = ? WHERE id = ?",
                   [(" ".join(rng.choices(words, k=20)), rng.randbytes(120), rng.randrange(rows))
                    for _ in range(updates)])
    db.commit()
    db.close()
    size = first.stat().st_size
    return Edit("sqlite", f"{updates:,} UPDATEs on a {size / MB:.0f} MB SQLite database", "db.sqlite", first,
                [_replace(updated)], "wire < Syncthing's / 3 (goal: rsync's)")


def append_edit(base: Path, start: int, end: int, steps: int) -> Edit:
    rng = random.Random(23)
    first = _write(base / "log0.bin", rng.randbytes(start))
    whole = hashlib.sha256(first.read_bytes())
    out = []
    for i in range(steps):
        piece = _write(base / f"append{i}.bin", rng.randbytes((end - start) // steps))
        whole.update(piece.read_bytes())
        out.append(Step("append", piece, whole.hexdigest()))
    return Edit("append", f"appended in {steps} steps from {start / MiB:g} to {end / MiB:g} MiB", "log.bin", first,
                out, "wire ~ the appended bytes + a block per step")


def workloads(base: Path, scale: float) -> List[Edit]:
    base.mkdir(parents=True, exist_ok=True)
    size = max(4 * MiB, round(FILE_BYTES * scale))
    return random_file_edits(base, size) + [
        sqlite_edit(base, max(10_000, round(DB_ROWS * scale)), max(10, round(UPDATES * scale))),
        append_edit(base, max(3 * MiB, round(APPEND_FROM * scale)), max(4 * MiB, round(APPEND_TO * scale)),
                    APPEND_STEPS)]


# -- applying an edit in a folder ------------------------------------------------------
def apply(step: Step, folder: Path, name: str) -> None:
    target = folder / name
    if step.kind == "append":
        with open(target, "ab") as fh:
            fh.write(step.source.read_bytes())
        return
    staged = folder.parent / f"{name}.staged"
    shutil.copyfile(step.source, staged)
    os.replace(staged, target)


def _holds(path: Path, sha256: str, size: int) -> bool:
    try:
        return path.stat().st_size == size and _sha(path) == sha256
    except FileNotFoundError:
        return False


def _size_after(edit: Edit, upto: int) -> int:
    size = edit.first.stat().st_size
    for step in edit.steps[:upto + 1]:
        size = step.source.stat().st_size + (size if step.kind == "append" else 0)
    return size


def _arrives(receiver: Path, edit: Edit, sha256: str, size: int) -> None:
    wait_until(lambda: _holds(receiver / edit.name, sha256, size), STEP_TIMEOUT_S, f"{edit.key} on the receiver",
               interval=0.05)


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (one that vanishes meanwhile, a temporary, counts 0)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _settled_size(root: Path) -> int:
    """The size of the tree at ``root`` once it has not changed for STORE_QUIET_S."""
    deadline, last, since = time.monotonic() + STORE_TIMEOUT_S, -1, time.monotonic()
    while time.monotonic() < deadline:
        size = _tree_bytes(root)
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= STORE_QUIET_S:
            break
        time.sleep(0.2)
    return last


def _run_edits(edit: Edit, sender: Path, receiver: Path, wire: Callable[[], int],
               store: Optional[Path]) -> dict:
    apply(Step("replace", edit.first, ""), sender, edit.name)
    _arrives(receiver, edit, _sha(edit.first), edit.first.stat().st_size)
    store_before = _settled_size(store) if store else None
    wire_before = wire()
    start = time.perf_counter()
    for i, step in enumerate(edit.steps):
        apply(step, sender, edit.name)
        _arrives(receiver, edit, step.sha256, _size_after(edit, i))
    result = {"seconds": time.perf_counter() - start, "wire_mb": (wire() - wire_before) / MB}
    if store:
        result["store_mb"] = (_settled_size(store) - store_before) / MB
    return result


def on_p2p(base: Path, edit: Edit) -> dict:
    with p2p_pair(base, QUIET) as (a, b):
        return _run_edits(edit, a.root, b.root, lambda: _wire_bytes(a), b.home / ".p2p" / "blocks")


def on_syncthing(base: Path, edit: Edit) -> dict:
    a, b = pair(base)
    try:
        start_pair(a, b)
        return _run_edits(edit, a.root, b.root, a.wire_bytes, None)
    finally:
        a.stop()
        b.stop()


STATS = re.compile(r"Total bytes (?:sent|received): ([\d,]+)")


def on_rsync(base: Path, edit: Edit) -> dict:
    src, dst = base / "src", base / "dst"
    src.mkdir(parents=True)
    dst.mkdir()

    def rsync() -> int:
        out = subprocess.run(["rsync", "-a", "--ignore-times", "--no-whole-file", "--stats", f"{src}/", f"{dst}/"], check=True,
                             capture_output=True, text=True).stdout
        return sum(int(n.replace(",", "")) for n in STATS.findall(out))
    apply(Step("replace", edit.first, ""), src, edit.name)
    rsync()
    seconds, wire = 0.0, 0
    for step in edit.steps:
        apply(step, src, edit.name)
        start = time.perf_counter()
        wire += rsync()
        seconds += time.perf_counter() - start
    assert _sha(dst / edit.name) == edit.steps[-1].sha256, "rsync's copy differs"
    return {"seconds": seconds, "wire_mb": wire / MB}


def row(edit: Edit, results: dict, scale: float, errors: List[str]) -> dict:
    mine, st, rs = results.get("p2p"), results.get("syncthing"), results.get("rsync")
    get = lambda r, k: None if r is None else round(r[k], 3)   # noqa: E731
    met = None
    if scale == 1 and mine is not None:
        if edit.key in ("insert", "delete") and st is not None:
            met = mine["wire_mb"] * MB < SMALL_EDIT_BYTES and mine["seconds"] * SYNCTHING_SPEEDUP <= st["seconds"]
        elif edit.key == "sqlite" and st is not None:
            met = mine["wire_mb"] < st["wire_mb"] * SQLITE_FRACTION
    out = {"scenario": edit.title, "p2p s": get(mine, "seconds"), "syncthing s": get(st, "seconds"),
           "rsync s": get(rs, "seconds"), "p2p wire MB": get(mine, "wire_mb"),
           "syncthing wire MB": get(st, "wire_mb"), "rsync wire MB": get(rs, "wire_mb"),
           "p2p store growth MB": get(mine, "store_mb"), "target": edit.target, "met": met}
    if errors:
        out["error"] = "; ".join(errors)
    return out
