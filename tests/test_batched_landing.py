"""Small files finished together land as one batch (SmallCommits._commit_all):
each is fsynced (several at once) before any is renamed, their intents are
one local-state transaction made durable before the renames, the placed
files one more after them. A path the user changed meanwhile is not
overwritten (the others land), and a kill -9 between the renames and their
record leaves every file whole (old or new, never partial) and the local
state agreeing with the disk once the intents are settled at the next start."""

import os
import stat
import subprocess
import sys
import textwrap

import gevent
from pathlib import Path

from p2p.blocks.store import BlockStore
from p2p.folder.apply import FolderWriter, LocalChanged
from p2p.folder.state import Entry, LocalState
from p2p.history.event import Event
from p2p.net.reconciler import SmallCommits
from rogue import file_event

FILES = 40


def contents(version: str, directory: str = "d") -> dict:
    return {f"{directory}/f{i:02}.txt": f"{version} {i}\n".encode() * (i + 1) for i in range(FILES)}


def batch(writer: FolderWriter, version: str, seq: int, directory: str = "d", mtime: int = 0) -> list:
    """A pending file per path with all its blocks written (as the fetcher leaves them)."""
    pendings = []
    for n, (path, content) in enumerate(contents(version, directory).items()):
        raw = dict(file_event("R" * 32, seq + n, path, content), mtime=mtime)
        pending = writer.begin_file(path, Event.from_dict(raw))
        pending.write_block([0], content)
        pendings.append(pending)
    return pendings


def folder(tmp_path: Path):
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    state = LocalState(home / "local.db")
    return root, state, FolderWriter(root, state, BlockStore(home / "blocks"), case_folding=False)


def test_a_batch_is_two_transactions_and_spares_a_path_changed_meanwhile(tmp_path):
    root, state, writer = folder(tmp_path)
    commits = SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)
    pendings = batch(writer, "old", 1)
    assert all(outcome.event_id for outcome in commits._commit_all(pendings))
    edited = root / "d/f07.txt"
    edited.write_bytes(b"the user's edit, not scanned yet")
    transactions = []
    state._db.set_trace_callback(lambda sql: transactions.append(sql) if sql == "COMMIT" else None)
    outcomes = commits._commit_all(batch(writer, "new", 100))
    assert isinstance(outcomes[7], LocalChanged)
    assert len(transactions) <= 3   # the intents, the placed files (and the durable mark of state.sync)
    for n, (path, content) in enumerate(contents("new").items()):
        if n != 7:
            assert (root / path).read_bytes() == content and state.get(path).same_stat(os.lstat(root / path))
    assert edited.read_bytes() == b"the user's edit, not scanned yet"
    assert sorted(os.listdir(root / "d")) == sorted(p.split("/")[1] for p in contents("new")), "a temporary stayed"
    assert state._db.execute("SELECT path FROM intents").fetchall() == [(b"d/f07.txt",)]   # until it is rescanned


def test_a_file_the_user_wrote_and_the_scan_recorded_since_the_version_was_wanted_is_not_overwritten(tmp_path):
    """The reconciler found the remote version still wanted (its event the
    winner) and read the path's record; then the user wrote the file and the
    local loop recorded it: the disk agrees with the record, but the record
    is no longer the one the version was decided on."""
    root, state, writer = folder(tmp_path)
    commits = SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)
    assert all(outcome.event_id for outcome in commits._commit_all(batch(writer, "old", 1)))
    pendings = batch(writer, "new", 100)
    for pending in pendings:
        pending.expected = state.get(pending.path)   # as commit_remote_file reads it, right after still_wanted
    edited = root / "d/f07.txt"
    edited.write_bytes(b"the user's edit, scanned and recorded")
    state.set("d/f07.txt", Entry.from_stat(os.lstat(edited), "userhash", "U" * 32))
    outcomes = commits._commit_all(pendings)
    assert isinstance(outcomes[7], LocalChanged)
    assert edited.read_bytes() == b"the user's edit, scanned and recorded"
    assert state.get("d/f07.txt").event_id == "U" * 32
    for n, (path, content) in enumerate(contents("new").items()):
        if n != 7:
            assert (root / path).read_bytes() == content


def test_a_kill_between_the_renames_and_their_record_leaves_whole_files_and_a_true_state(tmp_path):
    root, state, writer = folder(tmp_path)
    SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)._commit_all(
        batch(writer, "old", 1))
    state.close()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path[:0] = {sys.path!r}
        import gevent
        import test_batched_landing as t
        from pathlib import Path
        root, state, writer = t.folder(Path({str(tmp_path)!r}))
        renames, real = [0], os.replace
        def replace(src, dst):
            if renames[0] == {FILES // 2}:
                os._exit(9)          # killed in the middle of the batch's renames
            renames[0] += 1
            real(src, dst)
        os.replace = replace
        t.SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)._commit_all(
            t.batch(writer, "new", 100))
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 9
    again = LocalState(tmp_path / "home" / "local.db")
    assert again.settle(root) == FILES
    old, new = contents("old"), contents("new")
    landed = 0
    for path in old:
        data = (root / path).read_bytes()
        assert data in (old[path], new[path]), f"{path} is neither version"
        landed += data == new[path]
        entry = again.get(path)
        assert entry.same_stat(os.lstat(root / path)) and entry.event_id == ("R" * 32 + ":") + (
            str(100 + int(path[3:5])) if data == new[path] else str(1 + int(path[3:5])))
    assert landed == FILES // 2
    temporaries = [n for n in os.listdir(root / "d") if n.startswith(".p2p-tmp-")]
    assert len(temporaries) == FILES - FILES // 2   # removed by the start-up scan (remove_temporaries)
    assert isinstance(again.get("d"), Entry)


def test_the_blocks_received_for_a_batch_are_stored_with_it_or_nothing_is_placed(tmp_path, monkeypatch):
    """The fetcher leaves a small file's verified blocks with its pending file
    (not stored one by one in the hub): the batch keeps them in the store
    before the renames; when the store refuses them, no file of it is placed."""
    root, state, writer = folder(tmp_path)
    commits = SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)
    pendings = batch(writer, "old", 1)
    for pending, content in zip(pendings, contents("old").values()):
        pending.to_store.append((pending.event.hash, content))
    writes = []
    real = writer.store._store_packed_many
    monkeypatch.setattr(writer.store, "_store_packed_many", lambda blocks: (writes.append(len(blocks)), real(blocks))[1])
    assert all(outcome.event_id for outcome in commits._commit_all(pendings))
    assert writes == [FILES] and all(writer.store.has(pending.event.hash) for pending in pendings)

    def no_room(blocks):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(writer.store, "_store_packed_many", no_room)
    pendings = batch(writer, "new", 100)
    for pending, content in zip(pendings, contents("new").values()):
        pending.to_store.append((pending.event.hash, content))
    assert all(isinstance(outcome, OSError) for outcome in commits._commit_all(pendings))
    assert all((root / path).read_bytes() == content for path, content in contents("old").items())


def test_every_file_of_a_batch_is_fsynced_before_any_is_renamed(tmp_path, monkeypatch):
    root, state, writer = folder(tmp_path)
    commits = SmallCommits(root=root, history=None, state=state, writer=writer,
                           threadpool=gevent.get_hub().threadpool)
    pendings = batch(writer, "old", 1)
    synced, renamed, real_fsync, real_replace = set(), [], os.fsync, os.replace

    def fsync(fd):
        real_fsync(fd)
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))

    def replace(src, dst):
        renamed.append(str(src))
        assert {str(pending.tmp) for pending in pendings} <= synced, "renamed before every file was durable"
        real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert all(outcome.event_id for outcome in commits._commit_all(pendings))
    assert len(renamed) == FILES


def test_each_file_is_fsynced_with_its_mode_and_mtime_set(tmp_path, monkeypatch):
    """The version's mode and mtime are set before the fsync, so they are
    durable with the content: after a power loss the file is not found with
    another mtime than its record (a change to rescan, or a metadata event)."""
    root, state, writer = folder(tmp_path)
    mtime = 1_234_567_890_123_456_789
    commits = SmallCommits(root=root, history=None, state=state, writer=writer, threadpool=gevent.get_hub().threadpool)
    seen, real_fsync = [], os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        seen.append((st.st_mtime_ns, stat.S_IMODE(st.st_mode)))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    assert all(outcome.event_id for outcome in commits._commit_all(batch(writer, "old", 1, mtime=mtime)))
    assert seen == [(mtime, 0o644)] * FILES
    assert all(os.lstat(root / path).st_mtime_ns == mtime for path in contents("old"))


class Synced:
    """The history's part in a commit: its events made durable first."""

    def sync(self) -> None:
        pass


def test_an_error_in_a_batch_reaches_each_of_its_files_and_the_next_batch_lands(tmp_path, monkeypatch):
    """A batch that fails for an unexpected reason hands the error to each of
    its files (the fetcher reports it and retries them) instead of stopping
    the committing loop with those files waiting for ever."""
    root, state, writer = folder(tmp_path)
    commits = SmallCommits(root=root, history=Synced(), state=state, writer=writer,
                           threadpool=gevent.get_hub().threadpool)
    real = commits._commit_all

    def broken_once(pendings):
        monkeypatch.setattr(commits, "_commit_all", real)
        raise RuntimeError("a bug")
    monkeypatch.setattr(commits, "_commit_all", broken_once)
    runner = gevent.spawn(commits.run)
    try:
        jobs = [gevent.spawn(commits.commit, pending) for pending in batch(writer, "a", 1, "a")]
        gevent.joinall(jobs, timeout=10)
        assert all(isinstance(job.exception, RuntimeError) for job in jobs), "a file of the failed batch still waits"
        jobs = [gevent.spawn(commits.commit, pending) for pending in batch(writer, "b", 100, "b")]
        gevent.joinall(jobs, timeout=10, raise_error=True)
    finally:
        runner.kill()
    assert all(job.value.event_id for job in jobs)
    assert all((root / path).read_bytes() == content for path, content in contents("b", "b").items())


def test_a_small_file_creates_its_temporary_file_only_once_finished(tmp_path):
    """No file creation while its blocks arrive (the hub writes them): the
    temporary file is created and written whole in the committing thread."""
    root, state, writer = folder(tmp_path)
    content = b"small and whole\n" * 50
    pending = writer.begin_file("d/small.txt", Event.from_dict(file_event("R" * 32, 1, "d/small.txt", content)))
    pending.write_block([0], content)
    assert os.listdir(root / "d") == [], "a temporary file was created before the file was finished"
    try:
        pending.write_block([len(content) - 3], b"past the end")
    except ValueError:
        pass
    else:
        raise AssertionError("a block past the end was taken")
    pending.write_block([len(content) - 3], content[-3:])
    assert pending.commit().same_stat(os.lstat(root / "d/small.txt"))
    assert (root / "d/small.txt").read_bytes() == content and os.listdir(root / "d") == ["small.txt"]


def test_a_parent_made_meanwhile_by_another_thread_is_no_error(tmp_path, monkeypatch):
    """A received file's missing parents are made in the hub while the
    reconciler's make_dirs runs in a pool thread: when both find a directory
    missing, the one whose mkdir comes second looks again and goes on."""
    root, state, writer = folder(tmp_path)
    content = b"sibling\n"
    real_mkdir = os.mkdir

    def mkdir_after_another(path, *args):
        real_mkdir(path, *args)   # the other thread's mkdir, between our lstat and ours
        raise FileExistsError(path)
    monkeypatch.setattr(os, "mkdir", mkdir_after_another)
    pending = writer.begin_file("new/dir/f.txt", Event.from_dict(file_event("R" * 32, 1, "new/dir/f.txt", content)))
    monkeypatch.setattr(os, "mkdir", real_mkdir)
    pending.write_block([0], content)
    pending.commit()
    assert (root / "new/dir/f.txt").read_bytes() == content
