"""What a peer cannot write never makes it spin: a FIFO, a symbolic link (to a
file outside, or dangling) or a symbolic link to an outside directory where a
peer's file should go gets one warning, a back-off and a "not synced" line;
the receiver stays idle, never writes through the link nor removes it, and
the file arrives as soon as the obstacle is gone."""

import os
import stat
import time

import pytest

from p2p.blocks.store import BlockStore
from p2p.folder.apply import FolderWriter, LocalChanged, UnsafeTarget
from p2p.folder.state import LocalState
from p2p.history.event import Event
from peers import wait_until
from rogue import dir_event, file_event

IDLE_CPU = 0.3          # s of CPU the receiver may use in IDLE_WINDOW once it has warned
IDLE_WINDOW = 3.0       # s
IDLE_LOG_LINES = 20     # lines its log may grow by meanwhile (debug level: retries after a back-off)
OBSTACLES = {"x.txt": "FIFO", "y.txt": "symbolic link", "z.txt": "symbolic link",
             "dir": "symbolic link", "dir/f.txt": "symbolic link"}


def not_synced(peer) -> dict:
    return {p["path"]: p["reason"] for p in peer.status()["not_synced"]}


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


@pytest.mark.slow
def test_fifo_and_symlinks_in_the_way_are_reported_once_and_cost_nothing(make_peer, tmp_path):
    outside_file = tmp_path / "outside.txt"
    outside_file.write_bytes(b"not p2p's to touch")
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    (outside_dir / "mine.txt").write_bytes(b"mine")

    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("seed.txt", b"both online")
    wait_until(lambda: b.has("seed.txt", b"both online"), 20, "first sync")
    os.mkfifo(b.path("x.txt"))
    os.symlink(outside_file, b.path("y.txt"))
    os.symlink(tmp_path / "nowhere", b.path("z.txt"))
    os.symlink(outside_dir, b.path("dir"))

    contents = {"x.txt": b"x from a", "y.txt": b"y from a", "z.txt": b"z from a", "dir/f.txt": b"f from a"}
    for rel, data in contents.items():
        a.write(rel, data)
    a.write("ok.txt", b"a path with nothing in the way")
    wait_until(lambda: b.has("ok.txt", b"a path with nothing in the way"), 20, "the free path")
    listed = wait_until(lambda: (lambda ns: ns if set(OBSTACLES) <= set(ns) else None)(not_synced(b)), 20,
                        "every blocked path to be listed")
    for path, word in OBSTACLES.items():
        assert word in listed[path], (path, listed[path])

    lines = len(b.output().splitlines())
    cpu = cpu_seconds(b.proc.pid)
    time.sleep(IDLE_WINDOW)   # measuring idleness over a window, not waiting for anything
    used = cpu_seconds(b.proc.pid) - cpu
    grown = len(b.output().splitlines()) - lines
    assert used < IDLE_CPU, f"the receiver used {used:.2f}s of CPU in {IDLE_WINDOW}s while blocked"
    assert grown < IDLE_LOG_LINES, b.output()[-3000:]
    for path in OBSTACLES:
        warned = [line for line in b.output().splitlines() if "WARNING" in line and f"{path!r}" in line]
        assert len(warned) == 1, (path, warned)

    assert stat.S_ISFIFO(os.lstat(b.path("x.txt")).st_mode)
    assert os.readlink(b.path("y.txt")) == str(outside_file) and os.readlink(b.path("dir")) == str(outside_dir)
    assert os.path.islink(b.path("z.txt")) and not os.path.lexists(tmp_path / "nowhere")
    assert outside_file.read_bytes() == b"not p2p's to touch"
    assert sorted(os.listdir(outside_dir)) == ["mine.txt"]
    assert [n for n in os.listdir(b.root) if n.startswith(".p2p-tmp-")] == []

    for rel in ("x.txt", "y.txt", "z.txt", "dir"):
        os.unlink(b.path(rel))
    wait_until(lambda: all(b.has(rel, data) for rel, data in contents.items()), 10,
               "every file once its obstacle is gone")
    wait_until(lambda: not not_synced(b), 10, "the not-synced list to empty")
    assert outside_file.read_bytes() == b"not p2p's to touch" and sorted(os.listdir(outside_dir)) == ["mine.txt"]


# --- the writer's checks, directly --------------------------------------------------------

ORIGIN = "A" * 32


@pytest.fixture
def obstacles(tmp_path):
    """A folder with every kind of node p2p must not write through or replace."""
    root = tmp_path / "shared"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_bytes(b"outside")
    os.mkfifo(root / "fifo")
    os.symlink(outside / "file.txt", root / "link")
    os.symlink(tmp_path / "nowhere", root / "dangling")
    os.symlink(outside, root / "linkdir")
    (root / "plain").write_bytes(b"a file never scanned")
    writer = FolderWriter(root, LocalState(tmp_path / "local.db"), BlockStore(tmp_path / "blocks"),
                          case_folding=False)
    return writer, outside


def stored_file(writer, path: str) -> Event:
    """A peer's version of ``path`` whose one block is already in the store."""
    event = Event.from_dict(file_event(ORIGIN, 1, path, b"from a peer"))
    writer.store.put(event.hash, b"from a peer")
    return event


@pytest.mark.parametrize("path, word", [("fifo", "FIFO"), ("link", "symbolic link"), ("dangling", "symbolic link"),
                                        ("linkdir", "symbolic link"), ("linkdir/new.txt", "parent linkdir"),
                                        ("fifo/new.txt", "parent fifo")])
def test_a_link_or_fifo_at_the_path_or_a_parent_is_refused_before_any_write(obstacles, path, word):
    writer, outside = obstacles
    with pytest.raises(UnsafeTarget, match=word) as refused:
        writer.check_target(path)
    assert refused.value.path == path and word in refused.value.reason
    with pytest.raises(UnsafeTarget, match=word):
        writer.make_dir(path, Event.from_dict(dir_event(ORIGIN, 1, path)))
    with pytest.raises(UnsafeTarget, match=word):
        writer.write_file(path, stored_file(writer, path))
    assert sorted(os.listdir(outside)) == ["file.txt"] and (outside / "file.txt").read_bytes() == b"outside"
    assert sorted(os.listdir(writer.root)) == ["dangling", "fifo", "link", "linkdir", "plain"]


def test_a_file_or_nothing_at_the_path_is_not_an_obstacle(obstacles):
    writer, _ = obstacles
    writer.check_target("plain")
    writer.check_target("new/deeper/file.txt")
    with pytest.raises(LocalChanged):            # a local file not scanned yet: rescan, then the rules decide
        writer.write_file("plain", stored_file(writer, "plain"))
    writer.write_file("new/deeper/file.txt", stored_file(writer, "new/deeper/file.txt"))
    assert (writer.root / "new/deeper/file.txt").read_bytes() == b"from a peer"


def test_a_directory_is_made_with_its_version_s_permissions_from_the_start(tmp_path, monkeypatch):
    """A scan that sees the new directory before its chmod (the watcher
    reported its creation) records the permissions it finds as a local
    change, which every peer then takes: none but the version's may show."""
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    writer = FolderWriter(root, LocalState(home / "local.db"), BlockStore(home / "blocks"), case_folding=False)
    seen = []
    real_mkdir = os.mkdir

    def mkdir_then_look(path, mode=0o777, **kwargs):
        real_mkdir(path, mode, **kwargs)
        seen.append(stat.S_IMODE(os.lstat(path).st_mode))
    monkeypatch.setattr(os, "mkdir", mkdir_then_look)
    old_umask = os.umask(0o022)
    try:
        writer.make_dir("d", Event.from_dict(dir_event(ORIGIN, 1, "d")))   # mode 0o755
    finally:
        os.umask(old_umask)
    assert seen == [0o755] and stat.S_IMODE(os.lstat(root / "d").st_mode) == 0o755
