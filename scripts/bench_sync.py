"""Two-peer sync benchmarks: real `p2p run` processes on loopback, beside
`cp -r` and `rsync -a` (when installed) of the same data, measured in the
same run.

Scenarios: 1 KiB write-to-peer latency (median of 5); 1000 x 4 KiB files in
10 directories; one 256 MiB file; 1 MiB changed inside it (time and bytes on
the wire); 100 deletes. Run: `make bench` or `.venv/bin/python scripts/bench_sync.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from peers import Peer, wait_until  # noqa: E402

from p2p.net.control import ask  # noqa: E402

MiB = 1024 * 1024


def many_small_files(src: Path, n: int) -> dict:
    """n random 4 KiB files in 10 directories under src/many: {relative path: bytes}."""
    files = {}
    for i in range(n):
        rel = f"many/dir{i % 10}/f{i}.bin"
        files[rel] = os.urandom(4096)
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(files[rel])
    return files


def _wire_bytes(peer: Peer) -> int:
    st = ask(peer.home, {"cmd": "status"})
    return sum(p["sent"] + p["received"] for p in st["peers"])


@contextlib.contextmanager
def p2p_pair(base: Path, extra=()):
    """Two running p2p peers under ``base`` with a fresh cluster secret, b
    dialling a, both connected; stopped on the way out."""
    secret = os.urandom(24).hex()
    a = Peer(base, "a", secret=secret, extra=extra)
    b = Peer(base, "b", secret=secret, peers=[a], extra=extra)
    try:
        a.start()
        b.start()
        wait_until(lambda: all(any(p["state"] == "connected" for p in ask(x.home, {"cmd": "status"})["peers"])
                               for x in (a, b)), 30, "p2p peers to connect")
        yield a, b
    finally:
        a.stop()
        b.stop()


def _timed_copy(cmd, src: Path, dst: Path) -> float:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(cmd + [str(src) + ("/" if cmd[0] == "rsync" else ""), str(dst)], check=True)
    return time.perf_counter() - start


def _references(data_dir: Path, scratch: Path) -> dict:
    refs = {"cp -r": _timed_copy(["cp", "-r"], data_dir, scratch / "cp")}
    if shutil.which("rsync"):
        refs["rsync -a"] = _timed_copy(["rsync", "-a"], data_dir, scratch / "rsync")
    return refs


def _row(scenario, seconds, refs, target=None, extra=""):
    row = {"scenario": scenario, "p2p s": round(seconds, 4), "target s": target,
           "met": None if target is None else seconds <= target, "note": extra}
    for name, ref in refs.items():
        row[f"{name} s"] = round(ref, 4)
        row[f"p2p/{name}"] = round(seconds / ref, 2) if ref > 0 else None
    return row


def run(quick: bool = False) -> list:
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as tmp:
        base = Path(tmp)
        a = Peer(base, "a").start()
        b = Peer(base, "b", peers=[a]).start()
        try:
            wait_until(lambda: ask(a.home, {"cmd": "status"})["peers"], 20, "peers to connect")
            # 1 KiB latency
            lat = []
            for i in range(5):
                data = os.urandom(1024)
                start = time.perf_counter()
                a.write(f"lat-{i}.bin", data)
                wait_until(lambda: b.has(f"lat-{i}.bin", data), 10, "1 KiB file", interval=0.001)
                lat.append(time.perf_counter() - start)
            src = base / "ref-small"
            (src / "d").mkdir(parents=True)
            (src / "d" / "f").write_bytes(os.urandom(1024))
            rows.append(_row("1 KiB write-to-peer latency (median of 5)", statistics.median(lat),
                             _references(src, base / "scratch-lat"), 0.1))

            # 1000 x 4 KiB files in 10 directories
            n = 200 if quick else 1000
            src = base / "ref-many"
            files = many_small_files(src, n)
            refs = _references(src, base / "scratch-many")
            start = time.perf_counter()
            shutil.copytree(src / "many", a.root / "many")
            wait_until(lambda: all(b.has(r, d) for r, d in files.items()), 120, "many files", interval=0.01)
            rows.append(_row(f"{n} x 4 KiB files in 10 directories", time.perf_counter() - start, refs, 1.0))

            # one big file
            size = (64 if quick else 256) * MiB
            src = base / "ref-big"
            src.mkdir()
            big = bytearray(os.urandom(size))
            (src / "big.bin").write_bytes(big)
            digest = hashlib.sha256(big).hexdigest()
            refs = _references(src, base / "scratch-big")
            before = _wire_bytes(a)
            start = time.perf_counter()
            shutil.copyfile(src / "big.bin", a.root / "big.bin")
            wait_until(lambda: b.root.joinpath("big.bin").exists() or
                       any(n.startswith(".p2p-tmp-") for n in os.listdir(b.root)), 60, "transfer start",
                       interval=0.005)
            small = os.urandom(1024)
            small_start = time.perf_counter()
            a.write("during-big.bin", small)
            wait_until(lambda: b.has("during-big.bin", small), 30, "1 KiB during the big transfer", interval=0.001)
            small_latency = time.perf_counter() - small_start

            def big_arrived():
                p = b.path("big.bin")
                return p.exists() and p.stat().st_size == size and file_sha256(p) == digest
            wait_until(big_arrived, 300, "big file", interval=0.02)
            t_big = time.perf_counter() - start
            rows.append(_row(f"one {size // MiB} MiB file (encrypted)", t_big, refs, 1.2 if not quick else None,
                             f"{(_wire_bytes(a) - before) / MiB:.1f} MiB on the wire"))
            rows.append(_row("1 KiB write while that file syncs", small_latency, {}, 0.1,
                             "big file still in flight" if small_start + small_latency < start + t_big
                             else "big file had finished first"))

            # 1 MiB changed inside it
            off = size // 2
            big[off:off + MiB] = os.urandom(MiB)
            (src / "big.bin").write_bytes(big)
            digest = hashlib.sha256(big).hexdigest()
            refs = {}
            if shutil.which("rsync"):
                refs["rsync -a"] = _timed_copy(["rsync", "-a", "--no-whole-file"], src, base / "scratch-big")
            before = _wire_bytes(a)
            start = time.perf_counter()
            with open(a.path("big.bin"), "r+b") as fh:
                fh.seek(off)
                fh.write(big[off:off + MiB])
            wait_until(big_arrived, 120, "changed big file", interval=0.02)
            rows.append(_row("1 MiB changed inside it", time.perf_counter() - start, refs, 1.0,
                             f"{(_wire_bytes(a) - before) / MiB:.2f} MiB on the wire"))

            # 100 deletes
            victims = [r for r in files][:100]
            start = time.perf_counter()
            for r in victims:
                os.remove(a.path(r))
            wait_until(lambda: all(b.lacks(r) for r in victims), 60, "deletes", interval=0.005)
            t_del = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(["rm", "-f"] + [str(base / "scratch-many" / "cp" / r.split("/", 1)[1])
                                           for r in victims], check=True)
            rows.append(_row("100 deletes", t_del, {"rm": time.perf_counter() - start}, 0.5))
        finally:
            a.stop()
            b.stop()
    return rows


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(4 * MiB), b""):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    from bench import print_table

    print_table("two-peer sync", run(quick="--quick" in sys.argv))
