"""The local state survives kill -9 at any moment: every change is committed
before the call returns, a transaction a crash interrupted leaves the old
state, a replace interrupted between its intent and its rename is settled from
the disk, threads changing and reading it at once lose nothing, a database
deleted or corrupt is rebuilt empty (with one warning) and the older
local.json + journals are imported, entries naming events the log lost
are rehashed, a read of many paths finds exactly those recorded, and a read
never waits for a change being committed (the hub reads, pool threads commit)."""

import os
import subprocess
import sys
import textwrap
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

from p2p import limits
from p2p.folder.state import Entry, LocalState


def entry(path, event_id, hash="h" * 64) -> Entry:
    return Entry.from_stat(os.lstat(path), hash, event_id)


def reopen(state: LocalState) -> LocalState:
    """What the next process sees after a kill -9 (no close, no compaction)."""
    return LocalState(state.file)


def test_entry_from_stat_is_the_entry_of_its_fields(tmp_path):
    (tmp_path / "f").write_bytes(b"xyz")
    os.chmod(tmp_path / "f", 0o4755)   # (setuid: not a synced bit)
    (tmp_path / "d").mkdir()
    for name, digest in (("f", "h" * 64), ("d", "")):
        st = os.lstat(tmp_path / name)
        made = Entry.from_stat(st, digest, "A:1")
        assert made == Entry("file" if name == "f" else "dir", 3 if name == "f" else 0, st.st_mtime_ns, st.st_ino,
                             0o755 if name == "f" else st.st_mode & 0o777, digest, "A:1")
        assert hash(made) == hash(Entry(*made.row()))
        with pytest.raises(AttributeError):   # frozen still
            made.size = 1


def test_every_change_survives_without_a_save(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.db")
    state.set("f", entry(tmp_path / "f", "A:1"))
    state.set("g", entry(tmp_path / "f", "A:2"))
    state.pop("g")
    again = reopen(state)
    assert again.get("f").event_id == "A:1" and again.get("g") is None


def in_a_process_killed_after(tmp_path, code: str) -> None:
    """Run ``code`` (with ``state`` open on tmp_path/local.db) in a child that dies with os._exit: no close."""
    script = textwrap.dedent(f"""
        import os
        from p2p.folder.state import Entry, LocalState
        state = LocalState({str(tmp_path / "local.db")!r})
        base = Entry("file", 1, 5, 7, 0o644, "ab", "A:1")
    """) + textwrap.dedent(code) + "\nos._exit(9)\n"
    subprocess.run([sys.executable, "-c", script], check=False, timeout=30)


def test_a_change_survives_a_killed_process_and_an_unfinished_transaction_does_not(tmp_path):
    in_a_process_killed_after(tmp_path, """
        state.set("kept", base)
        state._db.execute("BEGIN IMMEDIATE")          # a transaction the kill interrupts
        state._db.execute("DELETE FROM entries")
        state._db.execute("INSERT INTO entries VALUES (?, 'file', 1, 1, 1, 420, 'cd', 'A:2')", (b"half",))
    """)
    again = LocalState(tmp_path / "local.db")
    assert again.get("kept").event_id == "A:1" and again.get("half") is None
    assert again.totals() == {"files": 1, "dirs": 0, "bytes": 1}


def test_a_deleted_or_corrupt_database_is_rebuilt_empty_and_says_why(tmp_path):
    state = LocalState(tmp_path / "local.db")
    assert state.fresh == "local.db missing"
    state.set("f", Entry("file", 1, 5, 7, 0o644, "ab", "A:1"))
    state.close()
    assert LocalState(tmp_path / "local.db").fresh is None
    with open(tmp_path / "local.db", "r+b") as db:   # truncated mid-page, its header garbled
        db.truncate(1000)
        db.write(b"not a database")
    again = LocalState(tmp_path / "local.db")
    assert again.get("f") is None and again.paths() == [] and again.fresh.startswith("local.db unreadable")
    again.set("g", Entry("file", 1, 5, 7, 0o644, "ab", "A:2"))
    assert again.get("g").event_id == "A:2"
    again.close()
    os.unlink(tmp_path / "local.db")
    assert LocalState(tmp_path / "local.db").paths() == []


def test_a_replace_interrupted_before_its_rename_keeps_the_old_entry(tmp_path):
    dest, tmp = tmp_path / "f", tmp_path / "tmp"
    dest.write_bytes(b"old")
    tmp.write_bytes(b"new!")
    state = LocalState(tmp_path / "local.db")
    state.set("f", entry(dest, "A:1"))
    state.intend("f", entry(tmp, "B:1"))      # killed here: no rename
    again = reopen(state)
    assert again.settle(tmp_path) == 1 and again.get("f").event_id == "A:1"


def test_a_replace_interrupted_after_its_rename_keeps_the_new_entry(tmp_path):
    dest, tmp = tmp_path / "f", tmp_path / "tmp"
    dest.write_bytes(b"old")
    tmp.write_bytes(b"new!")
    state = LocalState(tmp_path / "local.db")
    state.set("f", entry(dest, "A:1"))
    state.intend("f", entry(tmp, "B:1"))
    os.replace(tmp, dest)                      # killed here: renamed, not confirmed
    again = reopen(state)
    again.settle(tmp_path)
    assert again.get("f").event_id == "B:1" and again.get("f").same_stat(os.lstat(dest))


def test_threads_changing_and_reading_the_state_at_once_lose_nothing(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    base = entry(tmp_path / "f", "")
    state = LocalState(tmp_path / "local.db")
    errors = []

    def writer(n):
        try:
            for i in range(3000):
                state.set(f"t{n}/p{i}", replace(base, event_id=f"A:{i}"))
                assert state.get(f"t{n}/p{i}").event_id == f"A:{i}"   # this thread's reader sees it at once
                if i % 3 == 0:
                    state.pop(f"t{n}/p{i}")
                    assert state.get(f"t{n}/p{i}") is None
        except Exception as exc:   # the crash this guards against: a dict changed during iteration
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        state.sync()
        state.paths()
        state.get("t1/p1")
        state.under("t1")
        state.with_hashes([base.hash])
    for t in threads:
        t.join()
    assert errors == []
    expected = {f"t{n}/p{i}" for n in range(3) for i in range(3000) if i % 3}
    assert set(reopen(state).paths()) == expected
    state.close()
    assert set(LocalState(tmp_path / "local.db").paths()) == expected
    assert state.totals()["files"] == len(expected)


def test_entries_naming_lost_events_are_rehashed(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.db")
    state.set("f", entry(tmp_path / "f", "A:9"))
    state.set("g", entry(tmp_path / "f", "A:1"))
    state.set("h", entry(tmp_path / "f", "B:1"))
    assert state.forget_unknown({"A": 1}) == 2                 # A:9 beyond A's count, B unknown
    assert state.get("h").event_id == ""
    assert not state.get("f").same_stat(os.lstat(tmp_path / "f")) and state.get("f").event_id == ""
    assert state.get("g").event_id == "A:1"


def test_the_format_before_journals_is_read(tmp_path):
    (tmp_path / "local.json").write_text(
        '{"f": {"kind": "file", "size": 1, "mtime": 5, "ino": 7, "mode": 420, "hash": "ab", "event_id": "A:1"}}')
    assert LocalState(tmp_path / "local.db").get("f").event_id == "A:1"
    assert not (tmp_path / "local.json").exists()


def test_the_snapshot_and_journals_before_sqlite_are_imported_intents_included(tmp_path):
    e = '{"kind": "file", "size": 1, "mtime": 5, "ino": 7, "mode": 420, "hash": "ab", "event_id": "A:%d"}'
    (tmp_path / "local.json").write_text('{"journal": 3, "entries": {"f": %s, "g": %s}}' % (e % 1, e % 2))
    (tmp_path / "local.journal.3").write_text(
        '{"p": "g"}\n{"p": "h", "e": %s, "or": null}\n{"p": "f", "e": %s}\n{"p": "x", "e": {"ki'
        % (e % 3, e % 4))
    state = LocalState(tmp_path / "local.db")
    assert state.get("f").event_id == "A:4" and state.get("g") is None and state.get("h").event_id == "A:3"
    assert state.settle(tmp_path) == 1 and state.get("h") is None   # intended, never renamed in: gone
    assert not list(tmp_path.glob("local.j*"))
    assert set(LocalState(tmp_path / "local.db").paths()) == {"f"}


def test_permissions_beyond_0777_are_not_part_of_the_entry(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    os.chmod(tmp_path / "f", 0o4755)
    assert entry(tmp_path / "f", "A:1").mode == 0o755
    e = entry(tmp_path / "f", "A:1")
    os.chmod(tmp_path / "f", 0o700)
    assert not e.same_stat(os.lstat(tmp_path / "f")), "a chmod is a change"


def test_under_lists_a_subtree_parents_first(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    base = entry(tmp_path / "f", "A:1")
    state = LocalState(tmp_path / "local.db")
    for path in ["a", "a/b", "a/b/c.txt", "a/d.txt", "ab", "ab/e.txt", "z.txt"]:
        state.set(path, base)
    state.pop("a/d.txt")
    assert sorted(state.under("a")) == ["a/b", "a/b/c.txt"]
    assert sorted(state.under("")) == ["a", "a/b", "a/b/c.txt", "ab", "ab/e.txt", "z.txt"]
    order = state.under("")
    assert order.index("a/b") < order.index("a/b/c.txt")
    assert reopen(state).under("ab") == ["ab/e.txt"] and state.under("z.txt") == []
    state.set("a\udcff/x", base)                     # a name that is not UTF-8 (surrogate-escaped)
    assert state.under("a\udcff") == ["a\udcff/x"] and reopen(state).get("a\udcff/x") == base


def test_the_highest_seq_an_entry_names(tmp_path):
    state = LocalState(tmp_path / "local.db")
    base = Entry("file", 1, 5, 7, 0o644, "ab", "")
    assert state.highest_seq("A") == 0
    for path, event_id in [("a", "A:9"), ("b", "A:10"), ("c", "AB:99"), ("d", "")]:
        state.set(path, replace(base, event_id=event_id))
    assert state.highest_seq("A") == 10 and state.highest_seq("AB") == 99


def test_a_batch_of_changes_is_one_transaction_and_keeps_the_totals_exact(tmp_path):
    base = Entry("file", 10, 5, 7, 0o644, "ab", "A:1")
    state = LocalState(tmp_path / "local.db")
    state.set("gone", base)
    state.intend("moved", base)
    state.set_many([("a", base), ("b", replace(base, size=3)), ("a", replace(base, size=4)),
                    ("gone", None), ("moved", base), ("never", None)])
    again = reopen(state)
    assert again.get("a").size == 4 and again.get("b").size == 3 and again.get("gone") is None
    assert state.totals() == again.totals() == {"files": 3, "dirs": 0, "bytes": 17}
    assert again._db.execute("SELECT count(*) FROM intents").fetchone() == (0,)


def test_a_read_does_not_wait_for_a_commit_in_progress(tmp_path):
    """While a pool thread's commit (a batch, or sync()'s fsync of the WAL) is
    under way, the hub's reads answer at once, with what was committed."""
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.db")
    state.set("f", entry(tmp_path / "f", "A:1"))
    in_commit, release = threading.Event(), threading.Event()
    write = state._write

    def slow_write(statements):   # a commit that takes as long as the test says
        in_commit.set()
        assert release.wait(30)
        write(statements)

    with mock.patch.object(state, "_write", slow_write):
        committing = threading.Thread(target=state.set, args=("g", entry(tmp_path / "f", "A:2")))
        committing.start()
        assert in_commit.wait(10)
        answers = {}
        reading = threading.Thread(target=lambda: answers.update(
            f=state.get("f"), g=state.get("g"), many=state.get_many(["f", "g"]), top=state.children(""),
            totals=state.totals()))
        reading.start()
        reading.join(10)
        done_while_committing = not reading.is_alive()
        release.set()
        committing.join(10)
        reading.join(10)
    assert done_while_committing, "a read waited for a commit"
    assert answers["f"].event_id == "A:1" and answers["g"] is None
    assert set(answers["many"]) == {"f"} and set(answers["top"]) == {"f"} and answers["totals"]["files"] == 1
    assert state.get("g").event_id == "A:2" and state.totals()["files"] == 2


def test_a_batch_that_fails_writes_nothing(tmp_path):
    base = Entry("file", 10, 5, 7, 0o644, "ab", "A:1")
    state = LocalState(tmp_path / "local.db")
    state.intend("x", base)
    state._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN new.path = X'62' BEGIN SELECT RAISE(ABORT, 'no'); END")
    try:
        state.set_many([("a", base), ("x", base), ("b", base)])
    except Exception:
        pass
    else:
        raise AssertionError("the refused row did not fail the batch")
    assert state.get("a") is None and state.totals()["files"] == 0
    assert "x" in state._intended
    assert reopen(state).settle(tmp_path) == 1


def test_a_batch_of_intents_is_one_transaction_and_settles_like_intents_apart(tmp_path):
    for name in ("old", "renamed", "new"):
        (tmp_path / f"{name}.tmp").write_bytes(name.encode() * 3)
    (tmp_path / "old").write_bytes(b"before")
    (tmp_path / "renamed").write_bytes(b"before")
    state = LocalState(tmp_path / "local.db")
    state.set_many([("old", entry(tmp_path / "old", "A:1")), ("renamed", entry(tmp_path / "renamed", "A:2"))])
    commits = []
    state._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    state.intend_many([(name, entry(tmp_path / f"{name}.tmp", "B:1")) for name in ("old", "renamed", "new")])
    assert commits == ["COMMIT"]                 # one transaction for the batch
    os.replace(tmp_path / "renamed.tmp", tmp_path / "renamed")   # killed here: one of three renamed
    again = reopen(state)
    assert again.settle(tmp_path) == 3
    assert again.get("old").event_id == "A:1"    # not renamed: the old entry
    assert again.get("renamed").event_id == "B:1" and again.get("renamed").same_stat(os.lstat(tmp_path / "renamed"))
    assert again.get("new") is None              # never renamed in, nothing there before
    assert again._db.execute("SELECT count(*) FROM intents").fetchone() == (0,)


def test_a_batch_of_intents_that_fails_records_none(tmp_path):
    base = Entry("file", 10, 5, 7, 0o644, "ab", "A:1")
    state = LocalState(tmp_path / "local.db")
    state._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON intents WHEN new.path = X'62' BEGIN SELECT RAISE(ABORT, 'no'); END")
    try:
        state.intend_many([("a", base), ("b", base)])
    except OSError:
        pass
    else:
        raise AssertionError("the refused intent did not fail the batch")
    assert state._intended == set() and reopen(state).settle(tmp_path) == 0


NAMES = st.text(alphabet="ab/é\udcff", min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(recorded=st.lists(NAMES, max_size=40), asked=st.lists(NAMES, max_size=30), range_rows=st.sampled_from([1, 4]))
def test_get_many_finds_exactly_the_recorded_paths_asked_for_wherever_they_lie(recorded, asked, range_rows):
    """A read of many paths (one key range, then lookups past its end) returns
    every recorded path asked for and nothing else, the paths close together
    or spread among many others (``range_rows`` 1: the range runs out at once)."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(limits, "STATE_RANGE_ROWS", range_rows):
        state = LocalState(Path(tmp) / "local.db")
        model = {path: Entry("file", number, number, number, 0o644, "h" * 64, f"A:{number + 1}")
                 for number, path in enumerate(dict.fromkeys(recorded))}
        state.set_many(model.items())
        assert state.get_many(asked) == {path: model[path] for path in asked if path in model}
        state.close()


def test_large_files_are_read_from_their_own_index_not_from_every_entry(tmp_path):
    """The start's look for large files not archived yet reads the large
    files only: a partial index holds them (at 100,000 small files a scan of
    every entry was 12 % of a restart)."""
    state = LocalState(tmp_path / "local.db")
    large = limits.ARCHIVE_LATER_MIN + 1
    state.set_many([(f"f{i}", Entry("file", large if i % 10 == 0 else limits.ARCHIVE_LATER_MIN, 1, i, 0o644, "h", "A:1"))
                    for i in range(100)] + [("d", Entry("dir", 0, 1, 1, 0o755, "", "A:1"))])
    assert sorted(state.large_files()) == sorted(f"f{i}" for i in range(0, 100, 10))
    plan = state._reading.db.execute(f"EXPLAIN QUERY PLAN SELECT path FROM entries WHERE kind = 'file' "
                                 f"AND size > {limits.ARCHIVE_LATER_MIN}").fetchall()
    assert any("entries_large" in row[-1] for row in plan), plan
    assert sorted(reopen(state).large_files()) == sorted(state.large_files())
