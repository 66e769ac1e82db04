"""History integrity under disk faults: an append that fails leaves events.jsonl
and the index exactly as they were; a failed fsync is final; a full home disk
holds the peer, which records every change exactly once when space returns."""

import contextlib
import errno
import os
import shutil
import subprocess

import pytest

from p2p.history.event import Event
from p2p.history.history import History
from p2p.history.log import EventLog, LogBroken, LogWriteFailed

A = "A" * 32
B = "B" * 32


def make_event(seq, origin=A, path=None):
    return Event(id=f"{origin}:{seq}", origin=origin, seq=seq, lamport=seq, type="create", kind="dir",
                 path=path or f"{origin[0]}{seq}", size=0, mode=0o755, mtime=seq, hash="", blocks=(),
                 parents=(), time=float(seq))


class FailingWrite:
    """os.write that lets ``allow`` bytes through (possibly in short writes), then fails."""

    def __init__(self, allow, code=errno.ENOSPC, short=None, zero=False):
        self.real = os.write
        self.allow, self.code, self.short, self.zero = allow, code, short, zero
        self.calls = 0

    def __call__(self, fd, data):
        self.calls += 1
        if self.allow <= 0:
            if self.zero:
                return 0
            raise OSError(self.code, os.strerror(self.code))
        n = min(len(data), self.allow, self.short or len(data))
        self.allow -= n
        return self.real(fd, bytes(data[:n]))


def lines_valid(path):
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "a partial last line"
    return [Event.from_json(line) for line in data.split(b"\n")[:-1]]


@pytest.mark.parametrize("allow,code,short,zero", [
    (0, errno.ENOSPC, None, False),       # nothing written
    (150, errno.ENOSPC, None, False),     # half of the first line
    (700, errno.EDQUOT, None, False),     # whole lines and a partial one
    (700, errno.EIO, 64, False),          # short writes, then an I/O error
    (500, errno.ENOSPC, None, True),      # a write that takes nothing
])
def test_an_append_that_fails_mid_batch_leaves_the_log_as_it_was(tmp_path, monkeypatch, allow, code, short, zero):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append([make_event(i) for i in range(1, 4)], durable=True)
    before = path.read_bytes()
    fake = FailingWrite(allow, code, short, zero)
    monkeypatch.setattr(os, "write", fake)
    with pytest.raises(LogWriteFailed) as failure:
        log.append([make_event(i) for i in range(4, 9)])
    assert failure.value.errno == code and fake.calls >= 1
    monkeypatch.undo()
    assert path.read_bytes() == before and log.size == len(before)
    offsets = log.append([make_event(4)], durable=True)   # space is back: appends right after
    assert offsets == [len(before)]
    log.close()
    assert not list(tmp_path.glob("events.jsonl.torn-*"))
    reopened = EventLog(path)
    assert [e.seq for _, e in reopened.iter_from()] == [1, 2, 3, 4]
    reopened.close()
    assert [e.seq for e in lines_valid(path)] == [1, 2, 3, 4]


def test_many_failing_appends_never_leave_a_bad_line(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    written, failures = [], 0
    for round_ in range(60):
        batch = [make_event(len(written) + i + 1) for i in range(1 + round_ % 7)]
        if round_ % 3:   # the disk takes a few hundred bytes, in short writes or at once, then is full
            monkeypatch.setattr(os, "write", FailingWrite((round_ * 97) % 900, short=(round_ % 5) * 40 or None))
        try:
            log.append(batch)
            written += batch
        except LogWriteFailed:
            failures += 1
        monkeypatch.undo()
        assert log.size == path.stat().st_size
    log.close()
    assert failures > 20
    assert lines_valid(path) == written


def test_a_failed_append_leaves_the_history_unchanged_and_reusable(tmp_path, monkeypatch):
    history = History.open(tmp_path, A)
    first = history.make_local("create", "dir", "kept", time=1.0)
    state = (history.vv, len(history), history.lamport, history.heads("kept"), list(history.paths()))
    monkeypatch.setattr(os, "write", FailingWrite(40))
    with pytest.raises(LogWriteFailed):
        history.make_local("update", "dir", "kept", mode=0o700, time=2.0)
    with pytest.raises(LogWriteFailed):
        history.make_local("create", "dir", "other", time=2.0)
    monkeypatch.undo()
    assert (history.vv, len(history), history.lamport, history.heads("kept"), list(history.paths())) == state
    second = history.make_local("create", "dir", "other", time=3.0)
    assert second.seq == first.seq + 1     # the failed seq was never written, so never seen
    history.close()
    reopened = History.open(tmp_path, A)
    assert [e.id for e in reopened.events()] == [first.id, second.id]
    reopened.close()


def test_merge_puts_the_events_it_released_back_when_the_append_fails(tmp_path, monkeypatch):
    history = History.open(tmp_path, A)
    later = [make_event(2, B), make_event(3, B)]
    assert history.merge([e.to_dict() for e in later]) == ([], [])
    assert history.pending_count == 2           # waiting for B:1
    monkeypatch.setattr(os, "write", FailingWrite(200))
    with pytest.raises(LogWriteFailed):
        history.merge([make_event(1, B).to_dict()])
    monkeypatch.undo()
    assert history.vv == {} and len(history) == 0 and history.pending_count == 3   # none lost
    accepted, rejected = history.merge([])       # space is back
    assert [e.seq for e in accepted] == [1, 2, 3] and rejected == [] and history.vv == {B: 3}
    history.close()
    assert [e.id for e in lines_valid(tmp_path / "events.jsonl")] == [f"{B}:{i}" for i in (1, 2, 3)]


def test_a_failed_fsync_is_final(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append([make_event(1)], durable=True)
    calls = []

    def failing_fdatasync(fd):
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    log.append([make_event(2)])
    with pytest.raises(LogBroken):
        log.sync()
    assert log.broken is not None
    with pytest.raises(LogBroken):          # no retry can be trusted after a failed fsync
        log.sync()
    with pytest.raises(LogBroken):
        log.append([make_event(3)])
    log.close()                             # releases the file without another fsync
    assert len(calls) == 1


def test_a_failed_fsync_of_a_local_event_leaves_it_unindexed(tmp_path, monkeypatch):
    history = History.open(tmp_path, A)
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(LogBroken):
        history.make_local("create", "dir", "x", time=1.0)
    assert history.vv == {} and history.broken is not None
    history.close()


def test_an_index_save_the_disk_has_no_room_for_is_kept_in_memory_with_one_warning(tmp_path, monkeypatch, caplog):
    import sqlite3
    from p2p.history.index import IndexDB
    history = History.open(tmp_path, A)
    real_flush = IndexDB.flush

    def no_room(self, offsets, meta):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(IndexDB, "flush", no_room)
    for i in range(4):
        history.make_local("create", "dir", f"d{i}", time=1.0)
    assert caplog.text.count("history index not saved") == 1         # once, not per batch
    assert [len(history.heads(f"d{i}")) for i in range(4)] == [1] * 4 and len(list(history.paths())) == 4
    monkeypatch.setattr(IndexDB, "flush", real_flush)
    history.make_local("create", "dir", "d4", time=1.0)               # saved with the next batch
    history._log.close()                                               # a crash: no close()
    history._index.close()
    reopened = History.open(tmp_path, A)
    assert reopened.replayed == 0 and len(reopened) == 5 and sorted(reopened.paths()) == [f"d{i}" for i in range(5)]
    reopened.close()


# --- real peers -----------------------------------------------------------------

from peers import tree, wait_until  # noqa: E402
from rogue import limits_hook  # noqa: E402

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounts a tmpfs: root only")


@contextlib.contextmanager
def tmpfs(directory, size: str):
    """``directory`` on its own small tmpfs for the block; unmounted after, lazily if busy."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)
        if os.path.ismount(directory):
            subprocess.run(["umount", "-l", str(directory)], check=True)


def same_trees(*roots):
    try:
        first = tree(roots[0])
        return all(tree(root) == first for root in roots[1:])
    except FileNotFoundError:   # a file being placed (its temporary renamed) while read
        return False


def fill(directory):
    """Take every free byte of the file system holding ``directory``."""
    with open(directory / "filler", "wb", buffering=0) as out:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    out.write(bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def log_lines(home):
    """Every line of events.jsonl, each checked valid; and the ids are unique."""
    events = lines_valid(home / "events.jsonl")
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event id appears twice"
    return events


def same_ids_same_events(*homes):
    seen = {}
    for home in homes:
        for line in (home / "events.jsonl").read_bytes().splitlines():
            event = Event.from_json(line)
            assert seen.setdefault(event.id, line) == line, f"{event.id} names two different events"


@needs_root
def test_a_full_home_disk_holds_the_peer_then_every_change_becomes_one_event(make_peer, tmp_path, monkeypatch):
    for name, value in limits_hook(tmp_path / "hook", DISK_PROBE_INTERVAL=0.5).items():
        monkeypatch.setenv(name, value)
    b = make_peer("b").start()
    home = tmp_path / "a"
    home.mkdir()
    with tmpfs(home, "3m"):   # the home only
        a = make_peer("a", peers=[b], extra=["--root", str(tmp_path / "a-root")])
        try:
            a.root, a.log_path = tmp_path / "a-root", tmp_path / "a.log"   # the folder and the log elsewhere
            a.root.mkdir()
            for name in ("edited.txt", "deleted.txt", "renamed.txt"):
                a.write(name, name.encode() * 100)
            a.start()
            wait_until(lambda: same_trees(a.root, b.root), 30, "the first sync")

            fill(home)
            created = [f"new/{i:02d}.txt" for i in range(25)]
            for name in created:
                a.write(name, os.urandom(3000))
            a.write("edited.txt", b"edited while the disk was full")
            os.remove(a.path("deleted.txt"))
            os.rename(a.path("renamed.txt"), a.path("moved.txt"))
            os.mkdir(a.path("empty-dir"))
            b.write("from-b.txt", b"made on b while a's disk was full")
            wait_until(lambda: "cannot write the history" in a.output(), 20, "a to say its history cannot be written")
            a.write("new/late.txt", b"made while still full")
            created.append("new/late.txt")
            probes = a.output().count("the disk still refuses writes")
            wait_until(lambda: a.output().count("the disk still refuses writes") >= probes + 3, 20, "three more probes")
            assert a.alive() and a.output().count("cannot write the history") == 1   # one line, not one per change
            assert not b.has("new/late.txt", b"made while still full")

            os.remove(home / "filler")
            wait_until(lambda: "can be written again" in a.output(), 20, "a to find room again")
            wait_until(lambda: same_trees(a.root, b.root) and a.has("from-b.txt", b"made on b while a's disk was full"),
                       30, "a and b to converge")
            events = log_lines(home)
            mine = [e for e in events if e.path != "from-b.txt"]
            for path in created + ["edited.txt", "deleted.txt", "moved.txt", "empty-dir"]:
                twice = path in ("edited.txt", "deleted.txt")
                assert len([e for e in mine if e.path == path]) == (2 if twice else 1), path
            assert [e.type for e in mine if e.path == "renamed.txt"] == ["create", "delete"]
            assert len([e for e in events if e.path == "from-b.txt"]) == 1
            log_lines(b.home)
            same_ids_same_events(home, b.home)
            assert a.stop() == 0
        finally:
            a.stop()


EIO_HOOK = '''"""Test hook: every fdatasync fails with EIO once the file $P2P_TEST_EIO_TRIGGER exists."""
import errno
import os
_trigger = os.environ.get("P2P_TEST_EIO_TRIGGER")
if _trigger:
    _real = os.fdatasync

    def fdatasync(fd):
        if os.path.exists(_trigger):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return _real(fd)
    os.fdatasync = fdatasync
'''


def test_a_failed_fsync_stops_the_peer_with_a_clear_reason_and_loses_nothing(make_peer, tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(EIO_HOOK)
    trigger = tmp_path / "eio"
    b = make_peer("b").start()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("P2P_TEST_EIO_TRIGGER", str(trigger))   # for a only
    a = make_peer("a", peers=[b]).start()
    a.write("before.txt", b"synced")
    wait_until(lambda: b.has("before.txt", b"synced"), 20, "the first sync")
    trigger.touch()
    a.write("during.txt", b"its event could not be made durable")
    wait_until(lambda: not a.alive() or a.proc.poll() is not None, 20, "a to stop")
    assert a.proc.returncode == 1
    assert "stopping: fsync of" in a.output() and "(Input/output error)" in a.output()
    assert "Traceback" not in a.output()
    a.stop()
    assert not b.has("during.txt", b"its event could not be made durable")
    assert "during.txt" not in (b.home / "events.jsonl").read_text()   # never left a before it was durable
    log_lines(a.home)
    trigger.unlink()
    a.start()
    wait_until(lambda: b.has("during.txt", b"its event could not be made durable"), 30, "the change after restart")
    log_lines(a.home)
    log_lines(b.home)
    same_ids_same_events(a.home, b.home)


@needs_root
def test_a_full_folder_disk_keeps_the_history_going_and_catches_up(make_peer, tmp_path):
    b = make_peer("b").start()
    disk = tmp_path / "a-disk"
    disk.mkdir()
    with tmpfs(disk, "2m"):   # the folder only
        a = make_peer("a", peers=[b], extra=["--root", str(disk / "shared")])
        a.root = disk / "shared"
        try:
            a.root.mkdir()
            a.write("old-name.txt", b"renamed while the folder's disk is full")
            a.start()
            wait_until(lambda: same_trees(a.root, b.root), 30, "the first sync")
            fill(disk)
            b.write("from-b.bin", os.urandom(300 * 1024))         # a has no room for it
            os.rename(a.path("old-name.txt"), a.path("new-name.txt"))   # needs no room: recorded and sent
            wait_until(lambda: b.has("new-name.txt", b"renamed while the folder's disk is full"), 20, "the rename on b")
            assert not a.has("from-b.bin", (b.root / "from-b.bin").read_bytes()) and a.alive()
            wait_until(lambda: "not syncing 'from-b.bin': cannot write it: No space left on device" in a.output(),
                       20, "a to list from-b.bin as not synced, with the reason")
            assert "Traceback" not in a.output()
            os.remove(disk / "filler")
            wait_until(lambda: same_trees(a.root, b.root), 30, "a to get from-b.bin once there is room")
            assert not [n for n in os.listdir(a.root) if n.startswith(".p2p-tmp-")]
            log_lines(a.home)
            log_lines(b.home)
            same_ids_same_events(a.home, b.home)
            assert a.stop() == 0
        finally:
            a.stop()


def test_a_batch_of_local_events_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    history = History.open(tmp_path, A)
    first = history.make_local("create", "dir", "a", time=1.0)
    specs = [dict(type="create", kind="dir", path="b", time=2.0), dict(type="delete", kind="dir", path="a", time=2.0)]
    size = (tmp_path / "events.jsonl").stat().st_size
    monkeypatch.setattr(os, "write", FailingWrite(150))   # the disk fills half way through the batch's line
    with pytest.raises(LogWriteFailed):
        history.make_local_many(specs, durable=False)
    assert history.vv == {A: 1} and history.heads("b") == () and (tmp_path / "events.jsonl").stat().st_size == size
    monkeypatch.undo()
    with pytest.raises(ValueError):   # one path twice: the second's parents would miss the first
        history.make_local_many(specs + [dict(type="create", kind="dir", path="b", time=3.0)])
    assert history.vv == {A: 1}
    made = history.make_local_many(specs)
    assert [e.seq for e in made] == [2, 3] and made[0].lamport < made[1].lamport
    assert made[1].parents == (first.id,) and history.heads("a") == (made[1],)   # parents: the heads before
    assert [e.id for e in lines_valid(tmp_path / "events.jsonl")] == [first.id] + [e.id for e in made]
    history.close()
