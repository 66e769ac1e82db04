"""The local loop records a scanned batch with work that does not grow per
path: one local-state transaction, one write of the history's log and one
look-up of the paths' heads per batch, the same events and entries as
before, moves within one batch paired once."""

import os
import time

from test_bad_names import local_loop, make


def count_queries(state) -> list:
    """The SELECTs the local state runs from now on (SQLite's trace of every statement)."""
    queries = []
    state._db.set_trace_callback(lambda sql: queries.append(sql) if sql.lstrip().upper().startswith("SELECT") else None)
    return queries


def count_transactions(state, monkeypatch) -> list:
    """A list that grows by one per local-state transaction."""
    writes = []
    real = state._write

    def counted(statements):
        writes.append(1)
        return real(statements)

    monkeypatch.setattr(state, "_write", counted)
    return writes


def test_a_batch_of_new_files_is_recorded_in_one_local_state_transaction(tmp_path, monkeypatch):
    from p2p import limits
    monkeypatch.setattr(limits, "RECORD_INTERVAL", 60.0)   # one batch however slow the machine
    loop = local_loop(tmp_path)
    make(loop.root, "before.txt", b"first")
    loop._scan(["before.txt"])                   # the history's index holds heads: each path is looked up
    loop.sent.clear()
    names = [f"f{i:03d}.txt" for i in range(100)]
    for name in names:
        make(loop.root, name, name.encode())
    writes = count_transactions(loop.state, monkeypatch)
    queries = count_queries(loop.state)
    heads_queries = count_queries(loop.history._index)
    appends = []
    real_append = loop.history._log.append
    monkeypatch.setattr(loop.history._log, "append", lambda events, **kw: appends.append(1) or real_append(events, **kw))
    loop._scan(names)
    assert sorted(e.path for e in loop.sent) == names
    assert len(writes) == 1                      # not one per path
    assert len(queries) <= 10, queries            # the entries, the moves' sources, the totals: not per path
    assert len(appends) == 1                     # the batch's events: one write of the log
    assert len([q for q in heads_queries if "FROM heads" in q]) <= 2, heads_queries   # not one (or two) per path
    by_path = {e.path: e for e in loop.sent}
    for name in names:
        entry = loop.state.get(name)
        assert entry.event_id == by_path[name].id and entry.hash == by_path[name].hash
    assert loop.state.totals()["files"] == 101   # with before.txt
    loop.sent.clear()
    loop._scan(names)                            # unchanged: no event, no transaction
    assert loop.sent == [] and len(writes) == 1


def test_deletes_and_already_recorded_content_are_one_transaction_too(tmp_path, monkeypatch):
    loop = local_loop(tmp_path)
    names = [f"f{i:02d}.txt" for i in range(20)]
    for name in names:
        make(loop.root, name, name.encode())
    loop._scan(names)
    loop.sent.clear()
    for name in names[:10]:
        (loop.root / name).unlink()
    writes = count_transactions(loop.state, monkeypatch)
    loop._scan(names)
    assert sorted((e.type, e.path) for e in loop.sent) == [("delete", n) for n in names[:10]]
    assert len(writes) == 1
    assert sorted(loop.state.paths()) == names[10:]


def test_one_vanished_file_is_the_source_of_one_move_only(tmp_path):
    """A recorded file gone from disk, and two new files with its content in a
    later batch than its deletion would be: one rename, one create, never two
    deletes of the same path."""
    loop = local_loop(tmp_path)
    make(loop.root, "old.txt", b"same content")
    loop._scan(["old.txt"])
    loop.sent.clear()
    (loop.root / "old.txt").rename(loop.root / "new1.txt")
    make(loop.root, "new2.txt", b"same content")
    loop._scan(["new1.txt", "new2.txt"])        # old.txt is not in this batch
    kinds = sorted((e.type, e.path, e.moved_from or e.moved_to or "") for e in loop.sent)
    assert kinds == [("create", "new1.txt", "old.txt"), ("create", "new2.txt", ""),
                     ("delete", "old.txt", "new1.txt")]
    assert sorted(loop.state.paths()) == ["new1.txt", "new2.txt"]


def count_statements(db, *verbs: str) -> list:
    """The statements starting with one of ``verbs`` that ``db`` runs from now on."""
    seen = []
    db.set_trace_callback(lambda sql: seen.append(sql) if sql.lstrip().upper().startswith(verbs) else None)
    return seen


def test_small_files_blocks_are_stored_with_one_lookup_per_scan_job(tmp_path):
    loop = local_loop(tmp_path)
    names = [f"f{i:03d}.txt" for i in range(200)]
    for name in names:
        make(loop.root, name, name.encode() * 10)
    store = loop.scanner.store
    lookups = count_statements(store._db, "SELECT", "UPDATE")
    loop._scan(names)
    assert sorted(e.path for e in loop.sent) == names
    assert len(lookups) <= 200 // 64 + 1     # not a lookup (an UPDATE that finds no row) per block
    for e in loop.sent:
        assert store.get(e.blocks[0][0]) == e.path.encode() * 10
    loop.sent.clear()
    before = dict(store._db.execute("SELECT hash, stored FROM packed"))
    for name in names[:100]:                    # new files with content the store has: stored again
        make(loop.root, f"copy-{name}", name.encode() * 10)
    lookups = count_statements(store._db, "SELECT")
    loop._scan([f"copy-{name}" for name in names[:100]])
    assert len(loop.sent) == 100 and len(lookups) <= 100 // 64 + 1
    after = dict(store._db.execute("SELECT hash, stored FROM packed"))
    assert after.keys() == before.keys()        # no second record
    assert sum(after[k] > before[k] for k in after) == 100   # their time renewed: recent content


def test_a_store_that_refuses_a_jobs_blocks_records_none_of_its_files_until_it_has_room(tmp_path, monkeypatch):
    import errno
    import types
    loop = local_loop(tmp_path)
    held = []
    loop.disk = types.SimpleNamespace(held=False, hold=lambda exc, paths=(): held.append(exc))
    for name in ("a.txt", "b.txt"):
        make(loop.root, name, name.encode())
    store = loop.scanner.store
    real = store.put_many

    def full(blocks, verified=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "put_many", full)
    loop._scan(["a.txt", "b.txt"])
    assert loop.sent == [] and held and loop.state.paths() == []    # the node is held, nothing recorded
    assert loop.coalescer.count(lambda path: True) == 2              # both looked at again later
    monkeypatch.setattr(store, "put_many", real)
    loop._scan(["a.txt", "b.txt"])
    assert sorted(e.path for e in loop.sent) == ["a.txt", "b.txt"]
    assert all(store.has(e.blocks[0][0]) for e in loop.sent)


def test_the_scan_jobs_never_run_far_ahead_of_the_recording(tmp_path, monkeypatch):
    """Each change waiting for the hub is memory: with a slow recording, the
    pool observes at most a few jobs more than the hub has taken."""
    import time

    from p2p import limits
    loop = local_loop(tmp_path)
    names = [f"f{i:02d}.txt" for i in range(60)]
    for name in names:
        make(loop.root, name, name.encode())
    monkeypatch.setattr(limits, "SCAN_CHUNK", 1)
    monkeypatch.setattr(limits, "RECORD_EVERY", 1)
    observed, taken, ahead = [], [], []
    observe_chunk, record = loop._observe_chunk, loop._record_each_path_apart

    def counted_observe(paths):
        observed.append(paths)
        return observe_chunk(paths)

    def slow_record(changes):
        taken.extend(changes)
        ahead.append(len(observed) - len(taken))
        time.sleep(0.005)                       # the hub busy (blocking): the pool threads go on
        return record(changes)

    monkeypatch.setattr(loop, "_observe_chunk", counted_observe)
    monkeypatch.setattr(loop, "_record_each_path_apart", slow_record)
    loop._scan(names)
    assert sorted(e.path for e in loop.sent) == names
    assert max(ahead) <= limits.SCAN_THREADS, ahead   # the jobs running or waiting for the hub


def test_a_burst_of_new_directories_is_listed_in_one_hand_off_to_the_pool(tmp_path, monkeypatch):
    """The receiver's watcher reports every directory it makes: listing each
    (its files on disk, its recorded children) is one pool job for the batch,
    not one per directory; what is found is the same."""
    loop = local_loop(tmp_path)
    dirs = [f"d{i:02d}" for i in range(30)]
    for d in dirs:
        (loop.root / d / "sub").mkdir(parents=True)
        make(loop.root, f"{d}/sub/f.txt", d.encode())
    jobs = []
    pool = loop.threadpool
    monkeypatch.setattr(loop, "threadpool", type("Counting", (), {
        "apply": staticmethod(lambda fn, args=(), kwargs=None: (jobs.append(fn), pool.apply(fn, args, kwargs))[1]),
        "spawn": staticmethod(pool.spawn)})())
    loop._scan(dirs)
    assert sorted(e.path for e in loop.sent) == sorted(
        [*dirs, *(f"{d}/sub" for d in dirs), *(f"{d}/sub/f.txt" for d in dirs)])
    assert len(jobs) == 1, jobs
    (loop.root / "d00/sub/f.txt").unlink()
    (loop.root / "d00/sub").rmdir()
    loop.sent.clear()
    loop._scan(["d00"])                          # its recorded children that are gone: deleted
    assert sorted((e.path, e.type) for e in loop.sent) == [("d00/sub", "delete"), ("d00/sub/f.txt", "delete")]


def test_the_start_up_scan_leaves_the_reconciler_only_what_it_did_not_settle(tmp_path):
    """At start-up a path whose new event is now its only head holds its winner
    on disk: the reconciler is not asked to look at it (a first scan of
    100,000 files is then no second pass over them). A new file beside a
    remote version it has not seen, a deletion and the deleted path's parent
    still are."""
    from p2p.history.event import Event
    loop = local_loop(tmp_path)
    marked = []
    loop.reconciler.mark_dirty = marked.extend
    os.mkdir(loop.root / "gone")
    make(loop.root, "gone/old.txt", b"old")
    loop._scan(["gone", "gone/old.txt"])             # recorded before this start
    (loop.root / "gone/old.txt").unlink()
    os.mkdir(loop.root / "dir")
    for name in ("new.txt", "dir/inner.txt", "shared"):
        make(loop.root, name, name.encode())
    other = "B" * 32
    remote = Event(id=f"{other}:1", origin=other, seq=1, lamport=1, type="create", kind="dir", path="shared",
                   size=0, mode=0o755, mtime=1, hash="", blocks=(), parents=(), time=1.0)
    assert loop.history.merge([remote.to_dict()])[0]
    marked.clear()
    loop.sent.clear()
    loop.scanned.clear()                             # a start
    loop._scan([""])
    assert sorted((e.path, e.type) for e in loop.sent) == [
        ("dir", "create"), ("dir/inner.txt", "create"), ("gone/old.txt", "delete"), ("new.txt", "create"),
        ("shared", "create")]
    assert sorted(set(marked)) == ["gone", "gone/old.txt", "shared"]


def test_a_running_scan_leaves_the_reconciler_only_what_it_did_not_settle(tmp_path):
    """While the peer runs too, a path whose recorded event is its only head
    holds its winner on disk: neither the new files and directories a scan
    records (a `tar xf`) nor what a later scan finds unchanged (a file the
    watcher reports twice, or one the reconciler just placed) is handed to
    the reconciler. A path whose record is not its only head (a remote
    version not written yet), a deletion and the deleted path's parent still
    are."""
    from p2p.history.event import Event
    loop = local_loop(tmp_path)
    marked = []
    loop.reconciler.mark_dirty = marked.extend
    os.mkdir(loop.root / "d")
    for name in ("d/a.txt", "d/b.txt", "d/old.txt", "top.txt"):
        make(loop.root, name, name.encode())
    loop._scan(["d", "d/a.txt", "d/b.txt", "d/old.txt", "top.txt"])
    assert len(loop.sent) == 5 and marked == []
    loop._scan(["d", "d/a.txt", "top.txt"])             # reported again, unchanged
    assert marked == []
    other = "B" * 32
    mine = {e.path: e for e in loop.sent}["d/b.txt"]
    remote = Event(id=f"{other}:1", origin=other, seq=1, lamport=mine.lamport + 1, type="update", kind="file",
                   path="d/b.txt", size=3, mode=0o644, mtime=1, hash="b" * 64, blocks=(("b" * 64, 3),),
                   parents=(mine.id,), time=1.0)
    assert loop.history.merge([remote.to_dict()])[0]   # its winner now, not on disk yet
    (loop.root / "d/old.txt").unlink()
    loop.sent.clear()
    loop._scan(["d/a.txt", "d/b.txt", "d/old.txt", "top.txt"])
    assert [(e.path, e.type) for e in loop.sent] == [("d/old.txt", "delete")]
    assert sorted(set(marked)) == ["d", "d/b.txt", "d/old.txt"]


def _reconciler(loop, jobs=None):
    """A real reconciler over ``loop``'s history, local state and folder (no
    fetching: what it would fetch is listed in ``wanted``), made the loop's."""
    import gevent
    import types
    from gevent.event import Event as Flag
    from p2p.folder.apply import FolderWriter
    from p2p.net.reconciler import Reconciler
    scanned = Flag()
    scanned.set()
    pool = gevent.get_hub().threadpool
    wanted = []
    fetcher = types.SimpleNamespace(jobs=jobs if jobs is not None else {},
                                    want=lambda path, event: wanted.append(path))
    reconciler = Reconciler(
        root=loop.root, history=loop.history, state=loop.state, store=loop.scanner.store, archive=frozenset(),
        writer=FolderWriter(loop.root, loop.state, loop.scanner.store, case_folding=False),
        unsynced=loop.unsynced, fetcher=fetcher, rescan=loop.rescan, pools=(pool, pool), gates=(scanned,),
        ignored=lambda path: False, quiet=lambda seconds: True, label=lambda device: device[:7],
        spawn=gevent.spawn)
    reconciler.wanted = wanted
    loop.reconciler = reconciler
    return reconciler


def test_a_path_the_reconciler_retries_is_looked_at_once_a_scan_settles_it(tmp_path, monkeypatch):
    """A remote directory that could not be made (a symbolic link was in the
    way) is listed as not synced and retried after a back-off. Once the user
    puts a directory there, the scan finds it as the history says (settled),
    yet the reconciler still looks: the listing is cleared at once, and the
    file that waited under it is fetched, not after the back-off."""
    import gevent
    from p2p import limits
    from p2p.history.event import Event
    from rogue import dir_event, file_event
    monkeypatch.setattr(limits, "UNSYNCED_RETRY_MIN", 600.0)
    loop = local_loop(tmp_path)
    reconciler = _reconciler(loop)
    other = "B" * 32
    events = [Event.from_dict(dir_event(other, 1, "d")), Event.from_dict(file_event(other, 2, "d/f.txt", b"f"))]
    assert len(loop.history.merge([e.to_dict() for e in events])[0]) == 2
    os.mkdir(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", loop.root / "d")
    reconciler._reconcile_all((e.path, e) for e in events)
    assert "d" in reconciler.blocked and "d/f.txt" in reconciler.blocked and reconciler.wanted == []
    os.unlink(loop.root / "d")
    os.mkdir(loop.root / "d", 0o755)
    os.chmod(loop.root / "d", 0o755)
    loop._scan(["d"])
    assert loop.sent == [] and loop.state.get("d").event_id == events[0].id   # as the history says
    running = gevent.spawn(reconciler.run)
    try:
        deadline = time.monotonic() + 5
        while "d" in loop.unsynced or reconciler.wanted != ["d/f.txt"]:
            assert time.monotonic() < deadline, (reconciler.blocked, reconciler.wanted)
            gevent.sleep(0.01)
    finally:
        running.kill()


def test_a_path_being_fetched_is_looked_at_once_a_scan_settles_it(tmp_path):
    """A fetch in flight for a version since deleted, and the user makes a
    file there: its event supersedes every head (settled), but the path is
    handed to the reconciler all the same while the fetcher works on it."""
    from p2p.history.event import Event
    from rogue import file_event
    loop = local_loop(tmp_path)
    reconciler = _reconciler(loop, jobs={"f.txt": object()})
    other = "B" * 32
    created = Event.from_dict(file_event(other, 1, "f.txt", b"theirs"))
    deleted = Event.from_dict({**created.to_dict(), "id": f"{other}:2", "seq": 2, "lamport": 2, "type": "delete",
                               "size": 0, "hash": "", "blocks": [], "parents": [created.id]})
    assert len(loop.history.merge([created.to_dict(), deleted.to_dict()])[0]) == 2
    make(loop.root, "f.txt", b"mine")
    loop._scan(["f.txt"])
    assert [e.parents for e in loop.sent] == [(deleted.id,)]   # its only head now
    assert "f.txt" in reconciler.dirty
    del reconciler.fetcher.jobs["f.txt"]
    reconciler.dirty.clear()
    make(loop.root, "f.txt", b"mine, edited")
    loop._scan(["f.txt"])
    assert len(loop.sent) == 2 and reconciler.dirty == set()


def test_a_recorded_directory_reported_shallow_is_observed_alone(tmp_path, monkeypatch):
    """A directory whose attributes alone changed (``tar xf`` sets each
    directory's time once it has filled it) is observed, not what is under
    it, which is as recorded or reported path by path; reported as created,
    or new to the record, it is listed whole."""
    loop = local_loop(tmp_path)
    os.makedirs(loop.root / "top/sub")
    names = ["top", "top/sub"] + [f"top/sub/f{i}.txt" for i in range(5)]
    for name in names[2:]:
        make(loop.root, name, name.encode())
    loop._scan(["top"])
    assert sorted(e.path for e in loop.sent) == names
    observed = []
    real = loop._observe
    monkeypatch.setattr(loop, "_observe", lambda path, *rest: observed.append(path) or real(path, *rest))
    os.utime(loop.root / "top", ns=(1, 1))
    loop._scan(["top"], {"top"})
    assert observed == ["top"]
    observed.clear()
    loop._scan(["top"])                                 # created (or written in): listed whole
    assert sorted(observed) == names
    os.mkdir(loop.root / "other")
    make(loop.root, "other/g.txt", b"g")
    observed.clear()
    loop._scan(["other"], {"other"})                    # not recorded yet: listed whole all the same
    assert sorted(observed) == ["other", "other/g.txt"]


def test_a_scan_of_many_new_files_says_its_first_lines_and_counts_the_rest(tmp_path, caplog):
    """Every file is recorded and sent; the activity lines say the first
    ``limits.ACTIVITY_LINES`` of them and one count of the rest."""
    import logging

    from p2p import limits
    loop = local_loop(tmp_path)
    names = [f"f{i:03d}.txt" for i in range(limits.ACTIVITY_LINES + 30)]
    for name in names:
        make(loop.root, name, name.encode())
    with caplog.at_level(logging.INFO, logger="p2p.activity"):
        loop._scan(names)
    assert sorted(e.path for e in loop.sent) == names
    lines = [r.getMessage() for r in caplog.records if r.name == "p2p.activity"]
    assert len(lines) == limits.ACTIVITY_LINES + 1, lines
    assert all(line.startswith("> create f") for line in lines[:-1])
    assert lines[-1] == "> ... and 30 more (30 create; `p2p log` lists them)"
