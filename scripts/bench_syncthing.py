"""The two-peer sync scenarios of scripts/bench_sync.py, run against Syncthing
(the field's reference, Debian package `syncthing`) on the same machine, so
`make bench` can print p2p/Syncthing ratios.

Two Syncthing instances talk over loopback only: GUI/REST on 127.0.0.1 with
an API key; local and global discovery, relays, NAT, STUN, usage and crash
reporting and upgrades all off; each device knows the other by the static
address tcp://127.0.0.1:PORT; one shared folder watched with
fsWatcherDelayS=1. The REST API (X-API-Key) says when they are connected and
idle. Scenario names are bench_sync's, so ``join`` can line the rows up.
Every process started here is stopped by pid. If `syncthing` is not on the
PATH, ``run`` returns no rows.

Run: `make bench` or `.venv/bin/python scripts/bench_syncthing.py [--quick]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from peers import free_port, wait_until  # noqa: E402

from bench_sync import file_sha256, many_small_files  # noqa: E402

MiB = 1024 * 1024
FOLDER_ID = "bench"
WATCH_DELAY_S = 1
STOP_TIMEOUT = 15.0

# <options> settings that keep Syncthing on loopback and quiet.
LOOPBACK_OPTIONS = {
    "globalAnnounceEnabled": "false",
    "localAnnounceEnabled": "false",
    "relaysEnabled": "false",
    "natEnabled": "false",
    "stunKeepaliveStartS": "0",       # 0 disables STUN
    "stunKeepaliveMinS": "0",
    "urAccepted": "-1",               # usage reporting declined
    "urSeen": "3",
    "crashReportingEnabled": "false",
    "autoUpgradeIntervalH": "0",
    "startBrowser": "false",
    "setLowPriority": "false",        # same CPU priority as the p2p peers
    "announceLANAddresses": "false",
}


class SyncthingPeer:
    """One Syncthing instance with its home, folder, ports and REST key."""

    def __init__(self, base: Path, name: str):
        self.name = name
        self.home = base / name / "config"
        self.root = base / name / "shared"
        self.root.mkdir(parents=True)
        (self.root / ".stfolder").mkdir()          # the folder marker Syncthing insists on
        self.gui_port = free_port()
        self.listen_port = free_port()
        self.api_key = f"bench-{name}-{os.urandom(8).hex()}"
        self.proc = None
        self.log = None
        out = subprocess.run(["syncthing", "generate", "--home", str(self.home), "--no-default-folder"],
                             check=True, capture_output=True, text=True)
        tree = ET.parse(self.home / "config.xml")
        self.device_id = tree.getroot().find("device").get("id")
        if not self.device_id or self.device_id not in out.stdout + out.stderr:
            raise RuntimeError(f"syncthing generate did not report the device id:\n{out.stdout}{out.stderr}")

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.listen_port}"

    def configure(self, other: SyncthingPeer) -> None:
        """Loopback only, the other device at its static address, one shared folder."""
        path = self.home / "config.xml"
        tree = ET.parse(path)
        root = tree.getroot()
        gui = root.find("gui")
        gui.set("tls", "false")
        _child(gui, "address").text = f"127.0.0.1:{self.gui_port}"
        _child(gui, "apikey").text = self.api_key
        options = root.find("options")
        for key, value in {**LOOPBACK_OPTIONS, "listenAddress": self.address}.items():
            _child(options, key).text = value
        for device in root.findall("device"):
            _child(device, "address").text = self.address if device.get("id") == self.device_id else "dynamic"
        remote = ET.SubElement(root, "device", id=other.device_id, name=other.name, compression="metadata",
                               introducer="false")
        ET.SubElement(remote, "address").text = other.address
        folder = ET.Element("folder", id=FOLDER_ID, label=FOLDER_ID, path=str(self.root), type="sendreceive",
                            rescanIntervalS="3600", fsWatcherEnabled="true", fsWatcherDelayS=str(WATCH_DELAY_S))
        ET.SubElement(folder, "filesystemType").text = "basic"
        for device_id in (self.device_id, other.device_id):
            ET.SubElement(folder, "device", id=device_id)
        root.insert(0, folder)
        tree.write(path)

    def start(self) -> None:
        # STMONITORED: run Syncthing itself, not its monitor process and a child, so proc.pid is the
        # process whose CPU and memory are measured and stopped
        env = dict(os.environ, STNOUPGRADE="1", STNORESTART="1", STNODEFAULTFOLDER="1", STMONITORED="1")
        self.log = open(self.home / "run.log", "ab")
        self.proc = subprocess.Popen(["syncthing", "serve", "--home", str(self.home), "--no-browser",
                                      "--no-restart", "--no-upgrade", "--logflags=0"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def rest(self, endpoint: str) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.gui_port}/rest/{endpoint}",
                                     headers={"X-API-Key": self.api_key})
        with urllib.request.urlopen(req, timeout=10) as reply:
            return json.loads(reply.read())

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"syncthing {self.name} exited:\n{(self.home / 'run.log').read_text()[-2000:]}")
        try:
            self.rest("system/ping")
            return True
        except OSError:
            return False

    def connected_to(self, other: SyncthingPeer) -> bool:
        conn = self.rest("system/connections")["connections"].get(other.device_id)
        return bool(conn and conn["connected"])

    def idle(self, other: SyncthingPeer) -> bool:
        """Our folder is scanned and pulled, and the other device needs nothing from us."""
        status = self.rest(f"db/status?folder={FOLDER_ID}")
        completion = self.rest(f"db/completion?folder={FOLDER_ID}&device={other.device_id}")
        return status["state"] == "idle" and status["needTotalItems"] == 0 and completion["completion"] == 100

    def wire_bytes(self) -> int:
        total = self.rest("system/connections")["total"]
        return total["inBytesTotal"] + total["outBytesTotal"]

    def path(self, rel: str) -> Path:
        return self.root / rel

    def has(self, rel: str, data: bytes) -> bool:
        try:
            return self.path(rel).read_bytes() == data
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False


def _child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    return found if found is not None else ET.SubElement(parent, tag)


def _row(scenario: str, seconds: float, note: str = "") -> dict:
    return {"scenario": scenario, "syncthing s": round(seconds, 4), "note": note}


def _settle(a: SyncthingPeer, b: SyncthingPeer) -> None:
    wait_until(lambda: a.idle(b) and b.idle(a), 120, "syncthing to be idle", interval=0.1)


def pair(base: Path) -> tuple[SyncthingPeer, SyncthingPeer]:
    """Two instances under ``base``, each configured to share the folder with the other."""
    a, b = SyncthingPeer(base, "a"), SyncthingPeer(base, "b")
    a.configure(b)
    b.configure(a)
    return a, b


def start_pair(a: SyncthingPeer, b: SyncthingPeer) -> None:
    """Start both, and return once they are connected and idle."""
    a.start()
    b.start()
    wait_until(lambda: a.answers() and b.answers(), 60, "syncthing REST APIs")
    wait_until(lambda: a.connected_to(b) and b.connected_to(a), 60, "syncthing to connect", interval=0.1)
    _settle(a, b)


def run(quick: bool = False) -> list[dict]:
    if shutil.which("syncthing") is None:
        print("syncthing not installed: apt-get install syncthing")
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2p-bench-st-") as tmp:
        base = Path(tmp)
        a, b = pair(base)
        try:
            start_pair(a, b)

            # 1 KiB latency
            lat = []
            for i in range(5):
                data = os.urandom(1024)
                start = time.perf_counter()
                a.path(f"lat-{i}.bin").write_bytes(data)
                wait_until(lambda rel=f"lat-{i}.bin", data=data: b.has(rel, data), 30, "1 KiB file", interval=0.001)
                lat.append(time.perf_counter() - start)
                _settle(a, b)
            rows.append(_row("1 KiB write-to-peer latency (median of 5)", statistics.median(lat),
                             f"watcher delay {WATCH_DELAY_S} s"))

            # 1000 x 4 KiB files in 10 directories
            n = 200 if quick else 1000
            src = base / "ref-many"
            files = many_small_files(src, n)
            start = time.perf_counter()
            shutil.copytree(src / "many", a.path("many"))
            wait_until(lambda: all(b.has(r, d) for r, d in files.items()), 300, "many files", interval=0.01)
            rows.append(_row(f"{n} x 4 KiB files in 10 directories", time.perf_counter() - start))
            _settle(a, b)

            # one big file
            size = (64 if quick else 256) * MiB
            big = bytearray(os.urandom(size))
            (base / "big.bin").write_bytes(big)
            digest = hashlib.sha256(big).hexdigest()

            def big_arrived():
                p = b.path("big.bin")
                return p.exists() and p.stat().st_size == size and file_sha256(p) == digest
            before = a.wire_bytes()
            start = time.perf_counter()
            shutil.copyfile(base / "big.bin", a.path("big.bin"))
            wait_until(big_arrived, 600, "big file", interval=0.02)
            rows.append(_row(f"one {size // MiB} MiB file (encrypted)", time.perf_counter() - start,
                             f"{(a.wire_bytes() - before) / MiB:.1f} MiB on the wire (TLS)"))
            _settle(a, b)

            # 1 MiB changed inside it
            off = size // 2
            big[off:off + MiB] = os.urandom(MiB)
            digest = hashlib.sha256(big).hexdigest()
            before = a.wire_bytes()
            start = time.perf_counter()
            with open(a.path("big.bin"), "r+b") as fh:
                fh.seek(off)
                fh.write(big[off:off + MiB])
            wait_until(big_arrived, 300, "changed big file", interval=0.02)
            seconds = time.perf_counter() - start
            _settle(a, b)
            rows.append(_row("1 MiB changed inside it", seconds,
                             f"{(a.wire_bytes() - before) / MiB:.2f} MiB on the wire"))

            # 100 deletes
            victims = list(files)[:100]
            start = time.perf_counter()
            for r in victims:
                os.remove(a.path(r))
            wait_until(lambda: not any(os.path.lexists(b.path(r)) for r in victims), 300, "deletes",
                       interval=0.005)
            rows.append(_row("100 deletes", time.perf_counter() - start))
        finally:
            a.stop()
            b.stop()
    return rows


def join(p2p_rows: list[dict], syncthing_rows: list[dict]) -> list[dict]:
    """p2p's rows with "syncthing s" and "p2p/syncthing" added, matched by scenario."""
    by_scenario = {r["scenario"]: r["syncthing s"] for r in syncthing_rows}
    out = []
    for row in p2p_rows:
        theirs = by_scenario.get(row["scenario"])
        ours = row.get("p2p s")
        out.append({**row, "syncthing s": theirs,
                    "p2p/syncthing": round(ours / theirs, 2) if theirs and ours is not None else None})
    return out


if __name__ == "__main__":
    from bench import print_table

    print_table("two-peer sync, Syncthing", run(quick="--quick" in sys.argv))
