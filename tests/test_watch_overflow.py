"""Missed file-system events are recovered (issue 10, item 6).

- The watch mask holds only what changes content or names: reading, listing,
  scanning and walking the folder queue no inotify event at all (checked on
  the raw kernel events and on the masks the kernel lists in /proc).
- A real kernel queue overflow (a peer SIGSTOPped while more files than
  ``max_queued_events`` appear) is followed by a rescan of the whole folder:
  every file reaches the other peer.
- The periodic rescan (``--rescan-interval``) finds a change that inotify
  cannot see (a write through a hard link outside the folder) and records
  nothing for unchanged files.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

from p2p.blocks.store import BlockStore
from p2p.folder.scan import Scanner
from p2p.folder.state import LocalState
from p2p.watch.watcher import Coalescer, FolderWatcher
from peers import wait_until

IN_ACCESS, IN_CLOSE_NOWRITE, IN_OPEN = 0x1, 0x10, 0x20
READ_ONLY_EVENTS = IN_ACCESS | IN_CLOSE_NOWRITE | IN_OPEN


def inotify_masks(pid="self"):
    """The mask of every inotify watch the process holds, as the kernel lists them."""
    masks = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:   # closed meanwhile (e.g. the fd listdir itself used)
            continue
        for line in info.splitlines():
            if line.startswith("inotify wd:"):
                fields = dict(item.split(":", 1) for item in line.split()[1:])
                masks.append(int(fields["mask"], 16))
    return masks


def event_lines(peer) -> int:
    return len((peer.home / "events.jsonl").read_bytes().splitlines())


# -- the mask -----------------------------------------------------------------------------
class Watched:
    """A FolderWatcher on ``root`` in this process, counting raw kernel events and handler paths."""

    def __init__(self, root: Path):
        self.paths = []
        self.raw = []
        self.coalescer = Coalescer(lambda paths, shallow: self.paths.extend(paths))
        self.watcher = FolderWatcher(root, self.coalescer)
        fd = self.watcher.observer._inotify_fd
        handle = fd.handle_event

        def counting(event):   # watchdog's inotify thread: every event the kernel queued
            self.raw.append(event)
            handle(event)
        fd.handle_event = counting
        self.greenlet = gevent.spawn(self.coalescer.run)
        self.watcher.start()

    def settle(self, quiet=0.3, timeout=10.0):
        """Wait (in the hub) until neither raw events nor handler paths came for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        seen = (-1, -1)
        while (len(self.raw), len(self.paths)) != seen:
            assert time.monotonic() < deadline, "file-system events never stopped"
            seen = (len(self.raw), len(self.paths))
            gevent.sleep(quiet)

    def stop(self):
        self.watcher.stop()
        self.greenlet.kill()


def wait_until_hub(condition, what, timeout=10.0):
    """wait_until for this process's hub: gevent sleeps, so the watcher's inbox is drained."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        gevent.sleep(0.02)


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "shared"
    for d in range(3):
        (root / f"d{d}" / "sub").mkdir(parents=True)
        for i in range(20):
            (root / f"d{d}" / "sub" / f"f{i}").write_bytes(b"x" * (i + 1))
    w = Watched(root)
    w.root = root
    yield w
    w.stop()


def test_the_watch_mask_holds_only_changes(watched):
    masks = inotify_masks()
    assert len(masks) >= 7, masks              # the root and its six directories
    assert all(m & READ_ONLY_EVENTS == 0 for m in masks), [hex(m) for m in masks]


def test_reading_and_listing_the_folder_queues_no_event(watched):
    (watched.root / "d1" / "new").write_bytes(b"seen")
    wait_until_hub(lambda: "d1/new" in watched.paths, "the watcher to work")
    watched.settle()
    assert set(watched.paths) == {"d1/new"}    # not its directory (which would rescan all of d1)
    watched.raw.clear()
    watched.paths.clear()
    for _ in range(3):
        for dirpath, dirnames, filenames in os.walk(watched.root):
            os.listdir(dirpath)
            for name in filenames:
                with open(os.path.join(dirpath, name), "rb") as f:
                    f.read()
    watched.settle()
    assert watched.raw == [] and watched.paths == []


def test_the_scan_and_walk_queue_no_event(watched, tmp_path):
    """The start-up scan and every rescan read the whole folder: not one event from it."""
    state = LocalState(tmp_path / "local.db")
    scanner = Scanner(watched.root, state, BlockStore(tmp_path / "blocks"))
    watched.settle()
    watched.raw.clear()
    for path in scanner.walk("", remove_temporaries=True):
        change = scanner.observe(path)       # hashes every file into the block store
        assert change is not None
        state.set(path, change.entry("e1"))
    assert all(scanner.observe(p) is None for p in scanner.walk(""))   # and a rescan: nothing changed
    watched.settle()
    assert watched.raw == [] and watched.paths == []


def test_a_write_through_an_outside_hard_link_is_invisible_to_the_watcher(watched, tmp_path):
    """The premise of the periodic-rescan test below: inotify cannot see this change."""
    outside = tmp_path / "outside"
    os.link(watched.root / "d0" / "sub" / "f0", outside)
    watched.settle()
    watched.paths.clear()
    outside.write_bytes(b"changed behind the watcher's back")
    watched.settle(quiet=1.0)
    assert watched.paths == []


# -- the queue overflow -------------------------------------------------------------------
def max_queued_events() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def stopped(pid: int) -> bool:
    """Every thread of the process is stopped (SIGSTOP took effect): none reads inotify."""
    tasks = os.listdir(f"/proc/{pid}/task")
    return all(Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for t in tasks)


@pytest.mark.slow
def test_a_kernel_queue_overflow_is_followed_by_a_rescan(make_peer):
    """While a is stopped, more files than the kernel queue holds appear in an ignored
    directory (watched, never synced: cheap), then 2000 files to sync: every event of
    those is dropped by the kernel, so only the rescan after the overflow finds them."""
    dirs = [f"batch{d}" for d in range(4)]
    a = make_peer("a")
    a.write(".p2pignore", b"noise/\n")
    a.path("noise").mkdir()
    for d in dirs:
        a.path(d).mkdir()
    a.start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: all(b.path(d).is_dir() for d in dirs), 20, "the directories to sync")
    assert all(m & READ_ONLY_EVENTS == 0 for m in inotify_masks(a.proc.pid))
    a.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(a.proc.pid), 5, "a to stop")
        for i in range(max_queued_events() + 1):     # at least one event each: the queue overflows
            (a.root / "noise" / f"n{i}").write_bytes(b"")
        expected = {f"{dirs[i % len(dirs)]}/f{i}": b"%d" % i for i in range(2000)}
        for rel, data in expected.items():
            (a.root / rel).write_bytes(data)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: b"inotify queue overflow" in a.log_path.read_bytes(), 15, "a to notice the overflow")
    wait_until(lambda: all(b.has(rel, data) for rel, data in expected.items()), 40,
               f"b to receive all {len(expected)} files, byte for byte", interval=0.5)
    assert a.output().count("file-system events were lost (inotify queue overflow): rescanning the folder") == 1


# -- the periodic rescan ------------------------------------------------------------------
@pytest.mark.slow
def test_the_periodic_rescan_finds_what_the_watcher_cannot_see(make_peer, tmp_path):
    a = make_peer("a", extra=["--rescan-interval", "0.5"])
    for i in range(5):
        a.write(f"dir/f{i}", b"unchanged %d" % i)
    a.write("f.txt", b"one")
    a.start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: b.has("f.txt", b"one") and b.has("dir/f4", b"unchanged 4"), 20, "the first sync")
    outside = tmp_path / "outside"          # same file system, outside the watched folder
    os.link(a.path("f.txt"), outside)

    def rescans():
        return a.output().count("rescanning the folder (every 0.5s)")
    before, done = event_lines(a), rescans()
    wait_until(lambda: rescans() >= done + 3, 20, "three periodic rescans")
    assert event_lines(a) == before, "a rescan recorded unchanged files"
    outside.write_bytes(b"two: changed behind the watcher's back")
    wait_until(lambda: b.has("f.txt", b"two: changed behind the watcher's back"), 20,
               "the periodic rescan to find the change")
    done = rescans()
    wait_until(lambda: rescans() >= done + 3, 20, "three more periodic rescans")
    assert event_lines(a) == before + 1     # the one update, nothing for the files that did not change


def test_a_bad_rescan_interval_is_a_clear_error(tmp_path):
    for value in ("-1", "soon", "inf"):
        out = subprocess.run([sys.executable, "-m", "p2p", "run", "--home", str(tmp_path), "--discovery", "off",
                              "--listen", "127.0.0.1:0", "--rescan-interval", value],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "--rescan-interval" in out.stderr and "Traceback" not in out.stderr


def test_the_rescan_interval_defaults_to_an_hour_and_has_an_environment_variable(monkeypatch):
    from p2p import limits
    from p2p.cli import build_parser
    from p2p.commands.run import config_from_args

    monkeypatch.delenv("P2P_RESCAN_INTERVAL", raising=False)
    assert build_parser().parse_args(["run"]).rescan_interval == limits.RESCAN_INTERVAL == 3600
    monkeypatch.setenv("P2P_RESCAN_INTERVAL", "0")
    args = build_parser().parse_args(["run", "--home", "h", "--root", "r", "--listen", "127.0.0.1:0"])
    assert config_from_args(args).rescan_interval == 0
    assert build_parser().parse_args(["run", "--rescan-interval", "2.5"]).rescan_interval == 2.5
