#!/usr/bin/env python3
"""The README's command outputs, for real: two peers on this machine, a folder
that changes, and every command the README shows, run as a user runs it.

    scripts/readme_demo.py            # run the demo, print each command and its output
    scripts/readme_demo.py --update   # ... and write those outputs into README.md
    scripts/readme_demo.py --check    # ... and fail (exit 1, with a diff) if README.md differs

Two peers, "laptop" and "desktop", each with its own home in a temporary
directory, listen on 127.0.0.1 (free ports), with discovery off and a
cluster secret; laptop names desktop with --peer. Nothing leaves loopback.
The commands run in laptop's home, the way the README writes them (`p2p
log`, not `.venv/bin/p2p log --home ...`).

README.md marks each output block with a line `<!-- output: NAME -->` just
above its fence. ``--check`` compares each block with this run's output after
masking what changes from run to run (times, device ids, ports, temporary
paths, "5s ago", rates) and the width of the columns those fill; a changed
output format fails the check until ``--update`` is run. The `p2p run` block
is compared as a set of lines (the order of concurrent lines can vary).
tests/test_demo.py runs ``--check``. Needs `make install` (uses .venv/bin/p2p).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BIN = REPO / ".venv" / "bin"
SECRET = "a long phrase only your machines know"
MARKER = re.compile(r"<!-- output: ([\w-]+) -->\n```[^\n]*\n(.*?)```\n", re.S)
UNORDERED = {"run"}
MASKS = [  # (pattern, stand-in): what differs between two honest runs
    (r"/tmp/p2p-demo\.\w+", "<tmp>"),
    (r"[A-Z2-7]{8}(?:-[A-Z2-7]{8}){3}", "<device>"),
    (r"\b[A-Z2-7]{32}\b", "<device>"),
    (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?", "<time>"),
    (r"\b\d{8}-\d{6}\b", "<time>"),
    (r"\b\d\d:\d\d:\d\d\b", "<clock>"),
    (r"\b[A-Z2-7]{7}\b", "<id>"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
    (r"token=[\w-]+", "token=<token>"),
    (r"\b\d+(?:\.\d+)?[smh] ago\b", "<ago>"),
    (r"\bsince \d+(?:\.\d+)?[smh]\b", "since <ago>"),
    (r"\b\d+(?:\.\d+)? [KMGT]?i?B/s\b", "<rate>"),
    (r"[ \t]+", " "),
]


def mask(text: str) -> List[str]:
    lines = []
    for line in text.strip("\n").splitlines():
        for pattern, stand_in in MASKS:
            line = re.sub(pattern, stand_in, line)
        lines.append(line.strip())
    return lines


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"readme_demo: timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    def __init__(self, base: Path, name: str):
        self.name, self.home, self.port, self.gui = name, base / name, free_port(), free_port()
        self.root = self.home / "shared"
        self.root.mkdir(parents=True)
        self.log = self.home / "run.log"
        self.proc = None
        self.command = ""

    def start(self, *peers: "Peer") -> None:
        cmd = ["p2p", "run", "--listen", f"127.0.0.1:{self.port}", "--discovery", "off", "--name", self.name,
               "--gui", f"127.0.0.1:{self.gui}"]
        for other in peers:
            cmd += ["--peer", f"127.0.0.1:{other.port}"]
        self.command = f"$ P2P_SECRET='{SECRET}' {' '.join(cmd)}"
        cmd[0] = str(BIN / "p2p")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(_clean_env(), P2P_SECRET=SECRET))
        wait_for(lambda: "scanned the folder" in self.output() or self.proc.poll() is not None, f"{self.name}")
        if self.proc.poll() is not None:
            raise SystemExit(f"readme_demo: {self.name} exited:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self) -> int:
        try:
            with open(self.home / "events.jsonl", "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def has(self, rel: str, data: bytes) -> bool:
        try:
            return (self.root / rel).read_bytes() == data
        except OSError:
            return False


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Demo:
    def __init__(self, base: Path):
        self.laptop, self.desktop = Peer(base, "laptop"), Peer(base, "desktop")
        self.outputs: Dict[str, str] = {}

    def command(self, section: str, *argv: str) -> str:
        """Run ``argv`` in laptop's home as a user types it; its transcript joins ``section``."""
        result = self._run(argv)
        if result.returncode != 0:
            raise SystemExit(f"readme_demo: {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        transcript = f"$ {' '.join(argv)}\n{result.stdout}"
        self.outputs[section] = self.outputs.get(section, "") + ("\n" if section in self.outputs else "") + transcript
        print(transcript, flush=True)
        return result.stdout

    def quietly(self, *argv: str) -> str:
        """What ``argv`` prints in laptop's home (not shown)."""
        return self._run(argv).stdout

    def _run(self, argv) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=self.laptop.home, capture_output=True, text=True, env=_clean_env(),
                              timeout=60)

    def change(self, peer: Peer, what: Callable[[], None], events: int, *mirrors) -> None:
        """Make one change on ``peer``, wait until it is recorded (``events`` more
        in its history) and every (peer, path, bytes) in ``mirrors`` holds."""
        before = peer.events()
        what()
        wait_for(lambda: peer.events() >= before + events, "the change to be recorded")
        for other, rel, data in mirrors:
            wait_for(lambda: other.has(rel, data), f"{rel} on {other.name}")

    def run(self) -> None:
        laptop, desktop, folder = self.laptop, self.desktop, self.laptop.root
        desktop.start()
        laptop.start(desktop)
        wait_for(lambda: "connected" in laptop.output() and "connected" in desktop.output(), "the peers to meet")

        print("# 1. laptop writes two files", flush=True)
        self.change(laptop, lambda: (folder / "docs").mkdir(), 1)
        self.change(laptop, lambda: (folder / "notes.txt").write_text("first draft\n"), 1,
                    (desktop, "notes.txt", b"first draft\n"))
        self.change(laptop, lambda: (folder / "docs" / "a.txt").write_text("alpha\n"), 1,
                    (desktop, "docs/a.txt", b"alpha\n"))
        _next_second()
        step1 = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
        _next_second()

        print("# 2. desktop edits notes.txt; laptop deletes docs/a.txt", flush=True)
        self.change(desktop, lambda: (desktop.root / "notes.txt").write_text("second draft\n"), 1,
                    (laptop, "notes.txt", b"second draft\n"))
        self.change(laptop, lambda: (folder / "docs" / "a.txt").unlink(), 1)
        wait_for(lambda: not (desktop.root / "docs" / "a.txt").exists(), "the delete on desktop")
        print("# 3. laptop moves notes.txt into docs/", flush=True)
        self.change(laptop, lambda: (folder / "notes.txt").rename(folder / "docs" / "notes.txt"), 2,
                    (desktop, "docs/notes.txt", b"second draft\n"))

        self.command("id", "p2p", "id")
        wait_for(lambda: any(line.startswith("IN SYNC") for line in self.quietly("p2p", "status").splitlines()),
                 "laptop's status to say in sync")
        self.command("status", "p2p", "status")
        log = self.command("log", "p2p", "log")
        self.command("log-path", "p2p", "log", "shared/docs/notes.txt")
        self.command("restore-to", "p2p", "restore", "--at", step1, "--to", "then")
        self.command("restore-to", "cat", "then/notes.txt", "then/docs/a.txt")
        created = next(line for line in log.splitlines() if line.split()[3:4] == ["create"]
                       and line.endswith("  docs/a.txt"))
        before = laptop.events()
        self.command("restore-in-place", "p2p", "restore", "docs/a.txt", "--at", created.split()[2])
        wait_for(lambda: laptop.events() > before and desktop.has("docs/a.txt", b"alpha\n"), "the restore to sync")
        self.command("restore-in-place", "p2p", "log", "--limit", "1")
        self.command("ls", "p2p", "ls", "desktop")
        self.command("ls", "p2p", "ls", "desktop", "docs")
        self.command("gui", "p2p", "gui")
        self.command("pause", "p2p", "pause")
        self.command("pause", "p2p", "resume")

        desktop.stop()
        wait_for(lambda: "disconnected" in laptop.output(), "laptop to see desktop leave")
        laptop.stop()
        self.outputs["run"] = f"{laptop.command}\n{laptop.output()}"
        print("# laptop's `p2p run` said:\n" + self.outputs["run"], flush=True)

    def stop(self) -> None:
        self.desktop.stop()
        self.laptop.stop()


def _next_second() -> None:
    """Sleep past the next whole second (a moment strictly between two steps)."""
    time.sleep(1.05 - time.time() % 1)


def readme_blocks(text: str) -> Dict[str, str]:
    return {m.group(1): m.group(2) for m in MARKER.finditer(text)}


def differences(readme: str, outputs: Dict[str, str]) -> List[str]:
    problems = []
    blocks = readme_blocks(readme)
    for name, output in outputs.items():
        if name not in blocks:
            problems.append(f"README.md has no block <!-- output: {name} -->")
            continue
        shown, real = mask(blocks[name]), mask(output)
        if name in UNORDERED:
            shown, real = sorted(shown), sorted(real)
        if shown != real:
            problems.append(f"README.md block {name!r} differs from the real output (masked):\n" + "\n".join(
                difflib.unified_diff(shown, real, "README.md", "this run", lineterm="")))
    problems += [f"README.md block {name!r} is produced by no command of this demo"
                 for name in blocks if name not in outputs]
    return problems


def update(readme: str, outputs: Dict[str, str]) -> str:
    def replace(match):
        name = match.group(1)
        body = "".join(line.rstrip() + "\n" for line in outputs.get(name, match.group(2)).strip("\n").splitlines())
        return f"<!-- output: {name} -->\n```\n{body}```\n"
    return MARKER.sub(replace, readme)


def main(argv: List[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    if mode not in ("", "--update", "--check"):
        print(__doc__, file=sys.stderr)
        return 2
    if not (BIN / "p2p").exists():
        print("readme_demo: run `make install` first (needs .venv/bin/p2p)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="p2p-demo.", dir="/tmp"))
    demo = Demo(base)
    try:
        demo.run()
    finally:
        demo.stop()
        shutil.rmtree(base, ignore_errors=True)
    readme = README.read_text()
    if mode == "--update":
        README.write_text(update(readme, demo.outputs))
        print(f"readme_demo: wrote {len(demo.outputs)} outputs into {README}")
    elif mode == "--check":
        problems = differences(readme, demo.outputs)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("readme_demo: README.md does not match reality; run scripts/readme_demo.py --update",
                  file=sys.stderr)
            return 1
        print(f"readme_demo: the {len(demo.outputs)} outputs in README.md match this run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
