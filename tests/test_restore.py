"""Restore: after a scripted sequence of changes, the folder rebuilt at each
point (by time and by event id) is exactly the tree that existed then."""

import hashlib
import os
import random
import stat
from argparse import Namespace
from datetime import datetime, timezone

import pytest

from p2p import limits
from p2p.blocks.store import BlockStore
from p2p.commands import restore as restore_cmd
from p2p.history.event import Event
from p2p.history.history import History
from p2p.history.restore import BadMoment, parse_moment, state_at, state_of
from stored import age

DEVICE = "R" * 32
T0 = 1_700_000_000


def snapshot_tree(root):
    """rel path -> what a user sees: bytes, modes, file mtimes, empty dirs, symlink targets."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(full, "rb") as f:
                    tree[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return tree


class Scripted:
    """A folder changed step by step, each change recorded as a local event."""

    def __init__(self, home):
        self.home = home
        self.root = home / "shared"
        self.root.mkdir(parents=True)
        self.history = History.open(home, DEVICE)
        self.store = BlockStore(home / ".p2p" / "blocks")
        self.points = []  # (time, last event id, expected tree)
        self.clock = T0

    def _tick(self):
        self.clock += 100
        return float(self.clock)

    def _record(self, event):
        self.history.sync()
        self.store.flush()   # as the node does with its history's group commit
        self.points.append((event.time, event.id, snapshot_tree(self.root)))

    def write(self, path, data, mode=0o644):
        full = self.root / path
        existed = full.exists()
        full.write_bytes(data)
        os.chmod(full, mode)
        st = os.stat(full)
        size, digest, blocks = self.store.ingest_file(full)
        event = self.history.make_local("update" if existed else "create", "file", path, size=size, hash=digest,
                                        blocks=blocks, mode=mode, mtime=st.st_mtime_ns, time=self._tick())
        self._record(event)

    def mkdir(self, path):
        (self.root / path).mkdir()
        st = os.stat(self.root / path)
        self._record(self.history.make_local("create", "dir", path, mode=stat.S_IMODE(st.st_mode),
                                             mtime=st.st_mtime_ns, time=self._tick()))

    def symlink(self, path, target):
        os.symlink(target, self.root / path)
        encoded = target.encode()
        self._record(self.history.make_local("create", "symlink", path, size=len(encoded), target=target,
                                             hash=hashlib.sha256(encoded).hexdigest(),
                                             mtime=os.lstat(self.root / path).st_mtime_ns, time=self._tick()))

    def delete(self, path):
        kind = "dir" if (self.root / path).is_dir() else "file"
        (self.root / path).rmdir() if kind == "dir" else (self.root / path).unlink()
        self._record(self.history.make_local("delete", kind, path, time=self._tick()))

    def rename(self, old, new):
        before = self.history.current(old)
        os.rename(self.root / old, self.root / new)
        time = self._tick()
        self.history.make_local("delete", "file", old, moved_to=new, time=time)
        self._record(self.history.make_local("create", "file", new, moved_from=old, size=before.size,
                                             hash=before.hash, blocks=before.blocks, mode=before.mode,
                                             mtime=before.mtime, time=time))


@pytest.fixture
def scripted(tmp_path):
    s = Scripted(tmp_path / "home")
    big = random.Random(1).randbytes(limits.CHUNK_AVG * 16)  # several blocks
    s.mkdir("docs")
    s.write("docs/a.txt", b"version one\n")
    s.write("b.bin", big, mode=0o600)
    s.write("docs/a.txt", b"version two, longer\n")
    s.symlink("link", "docs/a.txt")
    s.delete("b.bin")
    s.rename("docs/a.txt", "docs/c.txt")
    s.mkdir("empty")
    s.write("z.txt", b"")
    s.write("docs/c.txt", big[:1000] + b"edited")
    s.delete("link")
    yield s
    s.history.close()


def restore(home, at, to=None, path=None, root=None):
    return restore_cmd.run(Namespace(home=str(home), at=at, to=str(to) if to else None, path=path,
                                     root=str(root) if root else str(home / "shared")))


def iso_utc(t):
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_local_naive(t):
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def test_restore_at_each_point_by_time_and_by_event_id(scripted, tmp_path, capsys):
    assert len(scripted.points) == 11
    for index, (time, event_id, expected) in enumerate(scripted.points):
        for how, at in (("utc", iso_utc(time)), ("local", iso_local_naive(time + 50)), ("id", event_id)):
            dest = tmp_path / f"out-{index}-{how}"
            assert restore(scripted.home, at, to=dest) == 0, capsys.readouterr().err
            assert snapshot_tree(dest) == expected, (index, how)
            assert "restored" in capsys.readouterr().out


def test_before_the_first_event_nothing_is_restored_and_it_is_said(scripted, tmp_path, capsys):
    first = datetime.fromtimestamp(T0 + 100).isoformat(sep=" ")
    assert restore(scripted.home, iso_utc(T0), to=tmp_path / "empty-out") == 1
    assert capsys.readouterr().err == (f"p2p restore: nothing to restore as of {iso_utc(T0)}: "
                                       f"that is before the history starts ({first})\n")
    assert not (tmp_path / "empty-out").exists()
    assert restore(scripted.home, iso_utc(T0)) == 1                       # in place: the same, nothing touched
    assert "before the history starts" in capsys.readouterr().err
    assert sorted(os.listdir(scripted.root)) == ["docs", "empty", "z.txt"]


def test_a_moment_when_everything_was_deleted_is_said(tmp_path, capsys):
    history = History.open(tmp_path, DEVICE)
    history.make_local("create", "dir", "d", mode=0o755, time=T0)
    history.make_local("delete", "dir", "d", time=T0 + 1)
    history.close()
    assert restore(tmp_path, iso_utc(T0 + 2), to=tmp_path / "out") == 1
    assert "the folder was empty then" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_short_event_ids_as_p2p_log_prints_them(scripted, tmp_path, capsys):
    time, event_id, expected = scripted.points[4]
    seq = event_id.split(":")[1]
    for short in (f"{DEVICE[:7]}:{seq}", f"{DEVICE[:3].lower()}:{seq}", f"{DEVICE[:8]}-{DEVICE[8:16]}:{seq}"):
        dest = tmp_path / short.replace(":", "_")
        assert restore(scripted.home, short, to=dest) == 0, capsys.readouterr().err
        assert snapshot_tree(dest) == expected
        assert f"as of {short} into" in capsys.readouterr().out
    assert restore(scripted.home, f"{DEVICE[:7]}:99", to=tmp_path / "x") == 1
    assert capsys.readouterr().err == f"p2p restore: no event {DEVICE[:7]}:99 in the history: {DEVICE} has events 1 to 12\n"
    assert restore(scripted.home, "QQQQQQQ:1", to=tmp_path / "x") == 1
    assert "no device id in the history starts with QQQQQQQ" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_ambiguous_short_id_is_refused(tmp_path, capsys):
    a, b = "ABCDEFG" + "A" * 25, "ABCDEFG" + "B" * 25
    history = History.open(tmp_path, a)
    history.make_local("create", "dir", "d", mode=0o755, time=T0)
    history.merge([Event(id=f"{b}:1", origin=b, seq=1, lamport=2, type="create", kind="dir", path="e", mode=0o755,
                         size=0, mtime=0, hash="", blocks=(), parents=(), time=T0 + 1)])
    history.close()
    assert restore(tmp_path, "ABCDEFG:1", to=tmp_path / "x") == 1
    assert capsys.readouterr().err == (f"p2p restore: ABCDEFG:1 is ambiguous: ABCDEFG starts the device ids {a}, "
                                       f"{b}; give more of the id\n")
    assert restore(tmp_path, "ABCDEFGB:1", to=tmp_path / "x") == 0
    assert sorted(os.listdir(tmp_path / "x")) == ["d", "e"]  # the log up to and including it


def test_restore_one_path_into_a_directory(scripted, tmp_path):
    time, _, expected = scripted.points[3]
    assert restore(scripted.home, iso_utc(time), to=tmp_path / "only-docs", path="docs") == 0
    assert snapshot_tree(tmp_path / "only-docs") == {k: v for k, v in expected.items() if k.startswith("docs")}


def test_destination_must_be_empty(scripted, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert restore(scripted.home, scripted.points[0][1], to=tmp_path / "full") == 1
    assert "empty" in capsys.readouterr().err


def test_bad_moments(scripted, tmp_path, capsys):
    assert restore(scripted.home, "yesterday-ish", to=tmp_path / "x") == 1
    assert "ISO-8601" in capsys.readouterr().err
    assert restore(scripted.home, "Q" * 32 + ":1", to=tmp_path / "x") == 1
    assert "no event" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pruned_content_is_reported_clearly_and_nothing_written(scripted, tmp_path, capsys):
    time, _, _ = scripted.points[1]  # docs/a.txt "version one"
    version_one = hashlib.sha256(b"version one\n").hexdigest()
    keep = {h for e in scripted.history.tree().values() for h, _ in e.blocks}
    assert version_one not in keep
    age(scripted.store, version_one, 0)  # the oldest block
    assert scripted.store.prune(keep, max_age=3600, now=T0) == 1
    dest = tmp_path / "pruned"
    assert restore(scripted.home, iso_utc(time), to=dest) == 1
    err = capsys.readouterr().err
    assert f"cannot restore docs/a.txt as of {iso_utc(time)}: its content was pruned from the block store" in err
    assert "retention" in err and not dest.exists()
    assert restore(scripted.home, iso_utc(scripted.points[3][0]), to=tmp_path / "later") == 0  # v2 still there


def test_restore_in_place_brings_a_file_back(scripted, capsys):
    root = scripted.root
    time, _, expected = scripted.points[3]  # docs/a.txt is "version two" there; today it is gone (renamed)
    assert not (root / "docs" / "a.txt").exists()
    assert restore(scripted.home, iso_utc(time), path="docs/a.txt") == 0
    out = capsys.readouterr().out
    assert "restored docs/a.txt" in out and "new" in out and "syncs" in out
    assert (root / "docs" / "a.txt").read_bytes() == expected["docs/a.txt"][1]
    assert not [n for n in os.listdir(root / "docs") if n.startswith(".p2p-tmp-")]
    assert restore(scripted.home, iso_utc(time), path="docs/a.txt") == 0
    assert "nothing to restore" in capsys.readouterr().out


def test_restore_in_place_subtree_leaves_newer_files(scripted, capsys):
    root = scripted.root
    time, _, expected = scripted.points[2]  # docs/a.txt v1 and b.bin
    assert restore(scripted.home, iso_utc(time), path="docs/") == 0
    assert (root / "docs" / "a.txt").read_bytes() == b"version one\n"
    assert (root / "docs" / "c.txt").exists()  # created later: left alone
    assert restore(scripted.home, iso_utc(time), path="b.bin") == 0
    assert (root / "b.bin").read_bytes() == expected["b.bin"][1]
    assert restore(scripted.home, iso_utc(time), path="z.txt") == 1
    assert "did not exist" in capsys.readouterr().err
    assert restore(scripted.home, iso_utc(time), path="../etc") == 1


def test_state_at_and_parse_moment(scripted):
    history = scripted.history
    time, event_id, expected = scripted.points[4]
    by_id, by_time = state_at(history, event_id), state_at(history, iso_utc(time))
    assert by_id == by_time and set(by_id) == set(expected)
    assert parse_moment(event_id) == event_id
    assert parse_moment("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_moment("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    with pytest.raises(BadMoment):
        parse_moment("not a time")
    assert state_of([]) == {}


def test_chained_symlinks_never_let_a_restore_write_outside_its_directory(tmp_path, capsys):
    """`a -> .` then `a/b -> ..` is lexically inside the folder, but on disk
    a/b is DIR/b -> DIR/..: a restore must judge links by the tree it writes."""
    home = tmp_path / "home"
    history = History.open(home, DEVICE)
    store = BlockStore(home / ".p2p" / "blocks")

    def link(path, target):
        history.make_local("create", "symlink", path, size=len(target.encode()), target=target,
                           hash=hashlib.sha256(target.encode()).hexdigest(), time=float(T0))

    evil = b"written outside the restore"
    digest = hashlib.sha256(evil).hexdigest()
    store.put(digest, evil)
    link("a", ".")
    link("a/b", "..")
    history.make_local("create", "file", "a/b/evil.txt", size=len(evil), hash=digest, blocks=[(digest, len(evil))],
                       mode=0o644, time=float(T0))
    history.make_local("create", "dir", "a/b/evil-dir", mode=0o755, time=float(T0))
    history.make_local("create", "dir", "x", mode=0o755, time=float(T0))
    link("x/y", "../a/..")            # DIR/x/../a/.. is DIR/.. once a -> . is on disk
    history.make_local("create", "file", "x/fine.txt", size=len(evil), hash=digest, blocks=[(digest, len(evil))],
                       mode=0o644, time=float(T0))
    history.close()
    store.close()
    out = tmp_path / "out"
    assert restore(home, "now", to=out) == 0, capsys.readouterr().err
    summary = capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["home", "out"], "the restore wrote outside its directory"
    assert snapshot_tree(out) == {"a": ("link", "."), "x": ("dir", 0o755),
                                  "x/fine.txt": ("file", evil, 0o644, 0)}
    for skipped in ("a/b (a is a symbolic link)", "a/b/evil.txt (a is a symbolic link)",
                    "a/b/evil-dir (a is a symbolic link)", f"x/y (its target leaves {out} once resolved)"):
        assert skipped in summary, summary
