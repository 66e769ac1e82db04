"""The local state survives kill -9 at any moment: every change is journalled
before the call returns, a replace interrupted between its intent and its
rename is settled from the disk, compaction never loses a change made while it
runs (threads included), and entries naming events the log lost are rehashed."""

import os
import threading
from dataclasses import replace

from p2p.folder.state import Entry, LocalState


def entry(path, event_id, hash="h" * 64) -> Entry:
    return Entry.from_stat(os.lstat(path), hash, event_id)


def reopen(state: LocalState) -> LocalState:
    """What the next process sees after a kill -9 (no close, no compaction)."""
    return LocalState(state.file)


def test_every_change_survives_without_a_save(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.json")
    state.set("f", entry(tmp_path / "f", "A:1"))
    state.set("g", entry(tmp_path / "f", "A:2"))
    state.pop("g")
    again = reopen(state)
    assert again.get("f").event_id == "A:1" and again.get("g") is None


def test_a_torn_last_journal_line_is_ignored(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.json")
    state.set("f", entry(tmp_path / "f", "A:1"))
    journal = next(tmp_path.glob("local.journal.*"))
    with open(journal, "ab") as out:
        out.write(b'{"p": "f", "e": {"kind": "fi')
    assert reopen(state).get("f").event_id == "A:1"


def test_a_replace_interrupted_before_its_rename_keeps_the_old_entry(tmp_path):
    dest, tmp = tmp_path / "f", tmp_path / "tmp"
    dest.write_bytes(b"old")
    tmp.write_bytes(b"new!")
    state = LocalState(tmp_path / "local.json")
    state.set("f", entry(dest, "A:1"))
    state.intend("f", entry(tmp, "B:1"))      # killed here: no rename
    again = reopen(state)
    assert again.settle(tmp_path) == 1 and again.get("f").event_id == "A:1"


def test_a_replace_interrupted_after_its_rename_keeps_the_new_entry(tmp_path):
    dest, tmp = tmp_path / "f", tmp_path / "tmp"
    dest.write_bytes(b"old")
    tmp.write_bytes(b"new!")
    state = LocalState(tmp_path / "local.json")
    state.set("f", entry(dest, "A:1"))
    state.intend("f", entry(tmp, "B:1"))
    os.replace(tmp, dest)                      # killed here: renamed, not confirmed
    again = reopen(state)
    again.settle(tmp_path)
    assert again.get("f").event_id == "B:1" and again.get("f").same_stat(os.lstat(dest))


def test_compaction_while_threads_change_the_state_loses_nothing(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    base = entry(tmp_path / "f", "")
    state = LocalState(tmp_path / "local.json")
    errors = []

    def writer(n):
        try:
            for i in range(3000):
                state.set(f"t{n}/p{i}", replace(base, event_id=f"A:{i}"))
                if i % 3 == 0:
                    state.pop(f"t{n}/p{i}")
        except Exception as exc:   # the crash this guards against: a dict changed during iteration
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        state.compact()
        state.under("t1")
        state.with_hash(base.hash)
    for t in threads:
        t.join()
    assert errors == []
    expected = {f"t{n}/p{i}" for n in range(3) for i in range(3000) if i % 3}
    assert set(reopen(state).paths()) == expected
    state.close()
    assert set(LocalState(tmp_path / "local.json").paths()) == expected
    assert len(list(tmp_path.glob("local.journal.*"))) == 1


def test_entries_naming_lost_events_are_rehashed(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    state = LocalState(tmp_path / "local.json")
    state.set("f", entry(tmp_path / "f", "A:9"))
    state.set("g", entry(tmp_path / "f", "A:1"))
    assert state.forget_unknown(lambda event_id: event_id == "A:1") == 1
    assert not state.get("f").same_stat(os.lstat(tmp_path / "f")) and state.get("f").event_id == ""
    assert state.get("g").event_id == "A:1"


def test_the_format_before_journals_is_read(tmp_path):
    (tmp_path / "local.json").write_text(
        '{"f": {"kind": "file", "size": 1, "mtime": 5, "ino": 7, "mode": 420, "hash": "ab", "event_id": "A:1"}}')
    assert LocalState(tmp_path / "local.json").get("f").event_id == "A:1"


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
    state = LocalState(tmp_path / "local.json")
    for path in ["a", "a/b", "a/b/c.txt", "a/d.txt", "ab", "ab/e.txt", "z.txt"]:
        state.set(path, base)
    state.pop("a/d.txt")
    assert sorted(state.under("a")) == ["a/b", "a/b/c.txt"]
    assert sorted(state.under("")) == ["a", "a/b", "a/b/c.txt", "ab", "ab/e.txt", "z.txt"]
    order = state.under("")
    assert order.index("a/b") < order.index("a/b/c.txt")
    assert reopen(state).under("ab") == ["ab/e.txt"] and state.under("z.txt") == []
