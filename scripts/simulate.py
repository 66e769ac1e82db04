"""Many real peers on one machine: start N `p2p run` processes, drive a random
workload of creates, edits and deletes at random peers, and measure what it
costs.

Each peer has its own home under a temporary directory and its own loopback
address (127.0.0.2, 127.0.0.3, ...), and finds the others by loopback
broadcast (127.255.255.255 on a free UDP port) -- never the LAN. With
``--netns`` (root) each peer runs in a network namespace of its own on a
private bridge with no uplink, with the product's real LAN-broadcast default.

Measured: for every change, the time until every peer has it (folders polled
every ``--poll`` seconds); the bytes sent per change (sum of the `status`
"sent" counters of every peer, before and after, over the changes); each
peer's RSS and CPU (/proc) when idle and over the workload. At the end every
folder must be identical byte for byte, else exit 1, loudly. Every process
started is stopped by pid (SIGTERM, then SIGKILL), whatever happens.

    .venv/bin/python scripts/simulate.py --peers 20 [--rate 2] [--duration 10] [--size 1024]
    .venv/bin/python scripts/simulate.py --sweep 2,5,10,20,50     # + sim-results/sweep.png
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from peers import LOOPBACK_BROADCAST, Peer, free_port, tree, wait_until  # noqa: E402

from p2p import limits  # noqa: E402
from p2p.net.control import ask  # noqa: E402

DEFAULT_OUT = HERE.parent / "sim-results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FILE_DIRS = 5                      # files are spread over this many directories
STARTS_AT_ONCE = 8                 # processes starting concurrently: 2 cores, keep start-up bounded
STOP_TIMEOUT = 15.0                # SIGTERM grace before SIGKILL
PEER_ARGS = ["--log-level", "warning"]  # debug logging of 50 peers would cost more CPU than syncing
CLONE_NEWNET = 0x40000000
# The kernel's ARP-table thresholds (shared by every namespace) and how many
# entries per expected neighbour each must allow during a --netns run.
ARP_LIMITS = (("/proc/sys/net/ipv4/neigh/default/gc_thresh2", 1),
              ("/proc/sys/net/ipv4/neigh/default/gc_thresh3", 2))

# Targets of issue 7 (reported, never asserted).
TARGET_CONVERGENCE_S = 2.0         # 50 peers converge on one change in <= 2 s
TARGET_CONVERGENCE_PEERS = 50
TARGET_IDLE_RSS_MB = 40.0          # idle RSS per peer
MAX_LINEAR_SLOPE = 1.3             # log-log slope of bytes/change against N still read as O(N)
MAX_HISTORY_GROWTH = 1.25          # bytes/change of the 2nd half over the 1st: not growing with history


# -- processes ------------------------------------------------------------------
def process_usage(pid: int) -> dict:
    """RSS (MiB) and CPU seconds (user + system) of one process, from /proc."""
    rss_kib = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
                break
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return {"rss_mb": rss_kib / 1024, "cpu_s": (int(fields[11]) + int(fields[12])) / CLK_TCK}


class Bridge:
    """N network namespaces joined by a bridge in a namespace of its own, with
    no uplink (scripts/lan.sh's layout). Needs root; ``close`` removes all.

    The kernel's ARP table is shared by every namespace and holds at most
    gc_thresh3 entries (1024 by default): a full mesh of N hosts needs about
    N*(N-1), so 33 hosts or more overflow it ("neighbor table overflow") and
    connections time out. The thresholds are raised for the run and restored.
    """

    SUBNET = "10.77.0"

    def __init__(self, count: int):
        self.tag = f"p2psim{os.getpid()}"
        self.switch = f"{self.tag}sw"
        self.hosts: list[str] = []
        self.saved_limits: dict[str, str] = {}
        try:
            self._raise_arp_limits(2 * count * count)
            self._build(count)
        except BaseException:
            self.close()
            raise

    def _build(self, count: int) -> None:
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        for i in range(1, count + 1):
            host, veth = f"{self.tag}h{i}", f"v{os.getpid()}x{i}"
            self.hosts.append(host)
            self._ip("netns", "add", host)
            self._ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host)
            self._ip("link", "set", veth, "netns", self.switch)
            self._ip("-n", self.switch, "link", "set", veth, "master", "br0", "up")
            self._ip("-n", host, "addr", "add", f"{self.address(i - 1)}/24", "brd", f"{self.SUBNET}.255", "dev", "eth0")
            self._ip("-n", host, "link", "set", "eth0", "up")
            self._ip("-n", host, "link", "set", "lo", "up")

    def address(self, index: int) -> str:
        return f"{self.SUBNET}.{index + 2}"

    def enter(self, index: int) -> None:
        """Move the calling thread into host ``index``'s namespace: processes it
        starts from now on live there (network namespaces are per thread)."""
        with open(f"/run/netns/{self.hosts[index]}") as fh:
            if ctypes.CDLL(None, use_errno=True).setns(fh.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")

    def _raise_arp_limits(self, entries: int) -> None:
        for path, factor in ARP_LIMITS:
            current = Path(path).read_text().strip()
            if int(current) < factor * entries:
                self.saved_limits[path] = current
                Path(path).write_text(str(factor * entries))

    def close(self) -> None:
        for name in self.hosts + [self.switch]:
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
        for path, value in self.saved_limits.items():
            Path(path).write_text(value)
        self.saved_limits = {}

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)


class Cluster:
    """N running peers; ``stop`` ends every process it started, by pid."""

    def __init__(self, base: Path, count: int, netns: bool):
        self.bridge = Bridge(count) if netns else None
        if self.bridge is not None:   # the product's defaults: LAN broadcast, the default port
            discovery, host, port = "lan", self.bridge.address, limits.DEFAULT_TCP_PORT
        else:
            discovery = f"{LOOPBACK_BROADCAST}:{free_port(socket.SOCK_DGRAM)}"
            host, port = (lambda i: f"127.0.0.{i + 2}"), None
        self.peers = [Peer(base, f"p{i:02d}", discovery=discovery, host=host(i), port=port, extra=PEER_ARGS)
                      for i in range(count)]

    def start(self) -> None:
        def start_one(index: int) -> None:
            if self.bridge is not None:
                self.bridge.enter(index)
            self.peers[index].start()

        with ThreadPoolExecutor(max_workers=STARTS_AT_ONCE) as pool:
            list(pool.map(start_one, range(len(self.peers))))

    def connections(self) -> dict[str, int]:
        """Peer name -> how many other peers it has a channel with."""
        return {peer.name: sum(p["state"] == "connected" for p in ask(peer.home, {"cmd": "status"})["peers"])
                for peer in self.peers}

    def wait_connected(self, timeout: float) -> None:
        """Until every peer has a channel with every other; name the laggards if not."""
        want = len(self.peers) - 1
        deadline = time.monotonic() + timeout
        while True:
            short = {name: n for name, n in self.connections().items() if n < want}
            if not short:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"after {timeout:.0f}s these peers still lack channels to all {want} others "
                                   f"(peer: channels): {short}")
            time.sleep(0.25)

    def sent(self) -> dict[tuple, int]:
        """Bytes sent on every channel: (peer name, remote id) -> counter."""
        out = {}
        for peer in self.peers:
            for remote in ask(peer.home, {"cmd": "status"})["peers"]:
                out[(peer.name, remote["id"])] = remote["sent"]
        return out

    def usage(self) -> list[dict]:
        return [process_usage(p.proc.pid) for p in self.peers]

    def stop(self) -> list[int]:
        """SIGTERM every live peer at once, wait, SIGKILL what is left; exit codes."""
        for peer in self.peers:
            if peer.alive():
                peer.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        codes = []
        for peer in self.peers:
            if peer.proc is None:
                codes.append(None)
                continue
            try:
                peer.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                peer.proc.kill()
            codes.append(peer.stop())  # reaps, closes the log; signals nothing if already gone
        if self.bridge is not None:
            self.bridge.close()
        return codes


def sent_delta(before: dict[tuple, int], after: dict[tuple, int]) -> int:
    """Bytes sent between two snapshots; a channel that reconnected restarted at 0."""
    total = 0
    for key, value in after.items():
        old = before.get(key, 0)
        total += value - old if value >= old else value
    return total


# -- the workload ----------------------------------------------------------------
@dataclass
class Change:
    index: int
    op: str                          # create | edit | delete
    path: str
    origin: str
    data: bytes | None            # None: the path must be gone
    started: float
    waiting: list[Peer] = field(default_factory=list)
    seconds: float | None = None


class Workload:
    """Random creates, edits and deletes at random peers, ``rate`` per second.

    A path is edited or deleted only once its previous change has reached
    every peer, so each change has one well-defined arrival time everywhere
    and no conflict copies are made. Randomness comes from ``rng``.
    """

    def __init__(self, peers: list[Peer], rng: random.Random, size: int):
        self.peers = peers
        self.rng = rng
        self.size = size
        self.settled: list[str] = []       # paths present everywhere, free to change
        self.pending: list[Change] = []
        self.done: list[Change] = []
        self._next_name = 0

    def make_change(self, now: float) -> Change:
        origin = self.rng.choice(self.peers)
        op = "create" if len(self.settled) < 2 else self.rng.choices(
            ("create", "edit", "delete"), weights=(4, 4, 2))[0]
        if op == "create":
            path = f"d{self._next_name % FILE_DIRS}/f{self._next_name:05d}.bin"
            self._next_name += 1
        else:
            path = self.settled.pop(self.rng.randrange(len(self.settled)))
        data = None if op == "delete" else self.rng.randbytes(self.size)
        change = Change(len(self.done) + len(self.pending), op, path, origin.name, data, now,
                        [p for p in self.peers if p is not origin])
        if data is None:
            os.remove(origin.path(path))
        else:
            origin.write(path, data)
        self.pending.append(change)
        return change

    def poll(self, now: float) -> None:
        """Note which peers have each pending change; retire the complete ones."""
        for change in list(self.pending):
            change.waiting = [p for p in change.waiting
                              if not (p.lacks(change.path) if change.data is None else p.has(change.path, change.data))]
            if not change.waiting:
                change.seconds = now - change.started
                self.pending.remove(change)
                self.done.append(change)
                if change.data is not None:
                    self.settled.append(change.path)

    def drain(self, timeout: float, interval: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(interval)
            self.poll(time.monotonic())
        return not self.pending

    def run(self, count: int, rate: float, interval: float) -> None:
        """``count`` changes at ``rate`` per second, polling in between."""
        start = time.monotonic()
        made = 0
        while made < count:
            now = time.monotonic()
            if now >= start + made / rate:
                self.make_change(now)
                made += 1
            self.poll(time.monotonic())
            next_due = start + made / rate
            time.sleep(max(0.0, min(interval, next_due - time.monotonic())))


# -- one scenario -------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def folder_differences(peers: list[Peer]) -> list[str]:
    """Paths on which some peer's folder differs from the first peer's."""
    reference = tree(peers[0].root)
    diffs = set()
    for peer in peers[1:]:
        other = tree(peer.root)
        diffs.update(p for p in reference.keys() | other.keys() if reference.get(p) != other.get(p))
    return sorted(diffs)


def run_scenario(count: int, args, base: Path) -> dict:
    rng = random.Random(args.seed)
    cluster = Cluster(base, count, args.netns)
    result = {"peers": count, "rate": args.rate, "duration": args.duration, "size": args.size,
              "poll_s": args.poll, "netns": args.netns, "seed": args.seed}
    try:
        t0 = time.monotonic()
        cluster.start()
        result["start_s"] = round(time.monotonic() - t0, 2)
        cluster.wait_connected(args.connect_timeout or 30 + count)
        result["connect_s"] = round(time.monotonic() - t0, 2)

        # idle: connected, nothing to do
        sent0, use0, t_idle = cluster.sent(), cluster.usage(), time.monotonic()
        time.sleep(args.idle)
        sent1, use1 = cluster.sent(), cluster.usage()
        idle_s = time.monotonic() - t_idle
        result["idle_bytes_per_s"] = round(sent_delta(sent0, sent1) / idle_s, 1)

        # the workload, in two halves with the network drained between them, so
        # bytes per change can be compared early and late in the history
        total = max(2, round(args.rate * args.duration))
        work = Workload(cluster.peers, rng, args.size)
        t_work = time.monotonic()
        halves = []
        for made in (total // 2, total - total // 2):
            before = cluster.sent()
            work.run(made, args.rate, args.poll)
            work.drain(args.timeout, args.poll)
            halves.append(sent_delta(before, cluster.sent()) / made)
        use2 = cluster.usage()
        work_s = time.monotonic() - t_work

        diffs = [] if work.pending else folder_differences(cluster.peers)
        if diffs:  # a change may still be settling (a directory left empty): give it a moment
            try:
                wait_until(lambda: not folder_differences(cluster.peers), 10, "folders to agree", interval=0.2)
                diffs = []
            except AssertionError:
                diffs = folder_differences(cluster.peers)
        times = [c.seconds for c in work.done]
        result.update({
            "changes": [{"index": c.index, "op": c.op, "path": c.path, "origin": c.origin,
                         "seconds": None if c.seconds is None else round(c.seconds, 4)}
                        for c in sorted(work.done + work.pending, key=lambda c: c.index)],
            "convergence_s": {"count": len(times), "unconverged": len(work.pending),
                              "median": _round(statistics.median(times) if times else None),
                              "p95": _round(percentile(times, 0.95)), "max": _round(max(times, default=None))},
            "bytes_per_change": round(sum(halves) / 2, 1),
            "bytes_per_change_halves": [round(h, 1) for h in halves],
            "resources": [{"peer": p.name, "pid": p.proc.pid, "idle_rss_mb": round(a["rss_mb"], 1),
                           "idle_cpu_pct": round(100 * (a["cpu_s"] - z["cpu_s"]) / idle_s, 1),
                           "end_rss_mb": round(b["rss_mb"], 1),
                           "workload_cpu_pct": round(100 * (b["cpu_s"] - a["cpu_s"]) / work_s, 1)}
                          for p, z, a, b in zip(cluster.peers, use0, use1, use2)],
            "identical": not work.pending and not diffs,
            "differences": diffs[:50],
        })
    finally:
        result["exit_codes"] = cluster.stop()
    return result


def _round(value, digits=4):
    return None if value is None else round(value, digits)


# -- reporting --------------------------------------------------------------------
def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x: 1 for O(N), 2 for O(N^2)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else None


def targets(results: list[dict]) -> list[dict]:
    """Issue 7's targets against these results: met, not met, or not measured."""
    largest = max(results, key=lambda r: r["peers"])
    p95 = largest["convergence_s"]["p95"]
    at = largest["peers"]
    rows = [{"target": f"{TARGET_CONVERGENCE_PEERS} peers converge on one change in <= {TARGET_CONVERGENCE_S:g} s",
             "measured": f"p95 {p95} s at {at} peers",
             "met": None if p95 is None or at < TARGET_CONVERGENCE_PEERS else p95 <= TARGET_CONVERGENCE_S}]
    # a change must reach N-1 peers: O(N) means bytes proportional to N-1
    slope = loglog_slope([r["peers"] - 1 for r in results], [r["bytes_per_change"] for r in results])
    rows.append({"target": "bytes per change grow O(N), not O(N^2)",
                 "measured": "needs --sweep" if slope is None else f"log-log slope {slope:.2f} against N-1",
                 "met": None if slope is None else slope <= MAX_LINEAR_SLOPE})
    growth = [r["bytes_per_change_halves"][1] / r["bytes_per_change_halves"][0]
              for r in results if r["bytes_per_change_halves"][0] > 0]
    rows.append({"target": "bytes per change do not grow with history",
                 "measured": f"2nd half / 1st half {max(growth):.2f}" if growth else "-",
                 "met": None if not growth else max(growth) <= MAX_HISTORY_GROWTH})
    rss = max(x["idle_rss_mb"] for r in results for x in r["resources"])
    rows.append({"target": f"idle RSS <= {TARGET_IDLE_RSS_MB:g} MB per peer", "measured": f"max {rss:.1f} MB",
                 "met": rss <= TARGET_IDLE_RSS_MB})
    return rows


def _verdict(met) -> str:
    return {True: "met", False: "NOT MET", None: "not measured"}[met]


def summary_row(r: dict) -> dict:
    res = r["resources"]
    c = r["convergence_s"]
    return {"peers": r["peers"], "changes": c["count"] + c["unconverged"], "conv median s": c["median"],
            "conv p95 s": c["p95"], "conv max s": c["max"], "bytes/change": r["bytes_per_change"],
            "idle B/s": r["idle_bytes_per_s"],
            "idle RSS MB (med/max)": f"{statistics.median(x['idle_rss_mb'] for x in res):.1f}/"
                                     f"{max(x['idle_rss_mb'] for x in res):.1f}",
            "end RSS MB max": max(x["end_rss_mb"] for x in res),
            "idle CPU % max": max(x["idle_cpu_pct"] for x in res),
            "work CPU % (med/max)": f"{statistics.median(x['workload_cpu_pct'] for x in res):.1f}/"
                                    f"{max(x['workload_cpu_pct'] for x in res):.1f}",
            "start s": r["start_s"], "identical": "yes" if r["identical"] else "NO"}


def print_report(results: list[dict], target_rows: list[dict]) -> None:
    from bench import print_table

    print_table("simulation (one row per N)", [summary_row(r) for r in results])
    if len(results) == 1 and results[0]["peers"] <= 20:
        print_table("per peer", results[0]["resources"])
    print_table("targets (issue 7)", [{**t, "met": _verdict(t["met"])} for t in target_rows])
    for r in results:
        if not r["identical"]:
            print(f"\n!!!! FOLDERS DIFFER with {r['peers']} peers: {r['convergence_s']['unconverged']} changes "
                  f"never arrived everywhere; differing paths: {r['differences'][:10]} !!!!", file=sys.stderr)


def plot_sweep(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["peers"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    left.plot(ns, [r["convergence_s"]["median"] for r in results], "o-", label="median")
    left.plot(ns, [r["convergence_s"]["p95"] for r in results], "s--", label="p95")
    left.axhline(TARGET_CONVERGENCE_S, color="grey", lw=0.8, ls=":", label=f"target {TARGET_CONVERGENCE_S:g} s")
    left.set(xlabel="peers (N)", ylabel="seconds until every peer has it", title="convergence per change")
    left.legend(fontsize=8)
    bpc = [r["bytes_per_change"] / 1024 for r in results]
    right.plot(ns, bpc, "o-", label="measured")
    right.plot(ns, [bpc[0] * (n - 1) / (ns[0] - 1) for n in ns], color="grey", lw=0.8, ls=":",
               label="O(N) from the first point")
    right.set(xlabel="peers (N)", ylabel="KiB sent, all peers", title="bytes on the wire per change")
    right.legend(fontsize=8)
    size = results[0]["size"]
    where = "one network namespace per peer" if results[0]["netns"] else "loopback addresses"
    fig.suptitle(f"p2p: {results[0]['rate']:g} changes/s of {size} B files for {results[0]['duration']:g} s, "
                 f"{where}, {os.cpu_count()} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_run(results: list[dict], path: Path) -> None:
    """One N: every change's convergence time in order, and their distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results[0]
    changes = [c for c in r["changes"] if c["seconds"] is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for op, marker in (("create", "o"), ("edit", "s"), ("delete", "x")):
        mine = [c for c in changes if c["op"] == op]
        left.plot([c["index"] for c in mine], [c["seconds"] for c in mine], marker, ls="", label=op)
    left.axhline(TARGET_CONVERGENCE_S, color="grey", lw=0.8, ls=":", label=f"target {TARGET_CONVERGENCE_S:g} s")
    left.set(xlabel="change (in order)", ylabel="seconds until every peer has it", title="convergence per change")
    left.legend(fontsize=8)
    right.hist([c["seconds"] for c in changes], bins=20)
    right.set(xlabel="seconds", ylabel="changes", title="distribution")
    fig.suptitle(f"p2p: {r['peers']} peers, {r['rate']:g} changes/s of {r['size']} B files for "
                 f"{r['duration']:g} s; {r['bytes_per_change'] / 1024:.1f} KiB sent per change", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- entry point -------------------------------------------------------------------
def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=5, help="number of peers (default 5)")
    p.add_argument("--sweep", help="comma-separated N values, e.g. 2,5,10,20,50; writes the PNG")
    p.add_argument("--rate", type=float, default=2.0, help="changes per second (default 2)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of workload (default 10)")
    p.add_argument("--size", type=int, default=1024, help="bytes per created or edited file (default 1024)")
    p.add_argument("--poll", type=float, default=0.005, help="folder polling interval, s (default 0.005)")
    p.add_argument("--idle", type=float, default=2.0, help="idle measurement window, s (default 2)")
    p.add_argument("--timeout", type=float, default=60.0, help="max wait for changes to arrive, s")
    p.add_argument("--connect-timeout", type=float, default=None, help="max wait for the full mesh, s (default 30 + N)")
    p.add_argument("--seed", type=int, default=1, help="workload random seed (default 1)")
    p.add_argument("--netns", action="store_true", help="one network namespace per peer (root)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "simulate.json", help="JSON results file")
    p.add_argument("--plot", type=Path, default=None,
                   help="PNG (default sim-results/sweep.png with --sweep, else sim-results/simulate.png)")
    p.add_argument("--workdir", type=Path, help="put the peers' homes here and keep them "
                   "(default: a temporary directory, removed unless something failed)")
    args = p.parse_args(argv)
    args.counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.peers]
    if min(args.counts) < 2 or max(args.counts) > 250:
        p.error("between 2 and 250 peers")
    if args.netns and os.geteuid() != 0:
        p.error("--netns needs root (ip netns)")
    return args


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the peers


def main(argv) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="p2p-sim-"))
    results = []
    ok = False
    try:
        for count in args.counts:
            print(f"-- {count} peers: starting", flush=True)
            try:
                results.append(run_scenario(count, args, base / f"n{count}"))
            except (RuntimeError, AssertionError, OSError) as exc:
                results.append({"peers": count, "error": str(exc), "identical": False})
                print(f"!!!! {count} peers: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            print(f"-- {count} peers: {'identical' if results[-1]['identical'] else 'FOLDERS DIFFER'}", flush=True)
        measured = [r for r in results if "error" not in r]
        target_rows = targets(measured) if measured else []
        print_report(measured, target_rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["simulate.py", *argv]),
                  "cpus": os.cpu_count(), "targets": target_rows, "runs": results}
        args.out.write_text(json.dumps(report, indent=1))
        print(f"\nwritten: {args.out}")
        if measured:
            plot = args.plot or DEFAULT_OUT / ("sweep.png" if args.sweep else "simulate.png")
            plot.parent.mkdir(parents=True, exist_ok=True)
            (plot_sweep if args.sweep else plot_run)(measured, plot)
            print(f"written: {plot}")
        ok = all(r["identical"] for r in results)
    finally:
        if ok and not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"peer homes and logs kept in {base}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
