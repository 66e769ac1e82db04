"""The conflict rules of docs/CONFLICTS.md, one test per race of issue 5 item 2,
on real History objects for two or three devices and the pure plan/merge
functions the node uses; plus the ``.p2pignore`` rules (p2p/sync/ignore.py).

Each device makes its local events the way p2p/net/node.py does (parents from
``local_parents``), events travel with ``missing_for``/``merge``, and the
outcome is read from what every device computes: the winner, the tree, the
conflict copies each must write and the folder action for its disk.
"""

import hashlib
import os
import re
from datetime import datetime, timezone

import pytest

from p2p import limits


from p2p.history.event import Event
from p2p.history.history import History
from p2p.sync.ignore import IGNORE_FILE, IgnoreRules
from p2p.history.precedence import why_wins, winner
from p2p.sync.conflicts import conflict_name
from p2p.sync.plan import FETCH, NOTHING, RELABEL, REMOVE, conflict_copies, folder_action, local_parents

A, B, C = "A" * 32, "B" * 32, "C" * 32
SECOND = 10 ** 9
T0 = int(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()) * SECOND
COPY_PATTERN = re.compile(r"(?P<stem>.*)\.sync-conflict-(?P<date>\d{8})-(?P<time>\d{6})-(?P<peer>[A-Z2-7]{7})(?P<ext>.*)")


class Device:
    """One peer's history, and what its disk holds per path (the event id)."""

    def __init__(self, tmp_path, device_id):
        self.id = device_id
        self.history = History.open(tmp_path / device_id[:1], device_id)
        self.on_disk = {}   # path -> event id of the content on disk

    def _parents(self, path):
        on_disk = self.on_disk.get(path)
        return local_parents(on_disk, on_disk is not None, self.history.heads(path))

    def write(self, path, content: bytes, mtime: int):
        digest = hashlib.sha256(content).hexdigest()
        current = self.history.current(path)
        live = current is not None and not current.is_delete and path in self.on_disk
        event = self.history.make_local("update" if live else "create", "file", path, size=len(content), mode=0o644,
                                        mtime=mtime, hash=digest, blocks=((digest, len(content)),) if content else (),
                                        parents=self._parents(path), time=mtime / SECOND)
        self.on_disk[path] = event.id
        return event

    def mkdir(self, path, mtime: int):
        event = self.history.make_local("create", "dir", path, mode=0o755, mtime=mtime, parents=self._parents(path),
                                        time=mtime / SECOND)
        self.on_disk[path] = event.id
        return event

    def delete(self, path, moved_to=None):
        event = self.history.make_local("delete", self.history.current(path).kind, path, parents=self._parents(path),
                                        time=0.0, moved_to=moved_to)
        del self.on_disk[path]
        return event

    def rename(self, path, new_path, mtime: int):
        """A rename as the node records it: delete with moved_to, then create with moved_from."""
        old = self.history.current(path)
        gone = self.delete(path, moved_to=new_path)
        made = self.history.make_local("create", "file", new_path, size=old.size, mode=old.mode, mtime=mtime,
                                       hash=old.hash, blocks=old.blocks, parents=self._parents(new_path),
                                       time=mtime / SECOND, moved_from=path)
        self.on_disk[new_path] = made.id
        return gone, made

    def pull(self, other: "Device"):
        """Take every event ``other`` has that we lack (one anti-entropy exchange)."""
        accepted, rejected = self.history.merge(list(other.history.missing_for(self.history.vv)))
        assert not rejected
        return accepted

    def copies(self, path):
        return conflict_copies(path, self.history.heads(path), self.id)

    def action(self, path, disk_hash=None):
        """The folder action for ``path`` given what our disk holds."""
        event_id = self.on_disk.get(path)
        event = self.history.get(event_id) if event_id else None
        kind = event.kind if event else None
        return folder_action(self.history.current(path), kind, disk_hash or (event.hash if event else ""),
                             event_id or "")


@pytest.fixture
def devices(tmp_path):
    made = [Device(tmp_path, d) for d in (A, B, C)]
    yield made
    for d in made:
        d.history.close()


def sync_all(*devices):
    """Full exchange in both directions, in different orders, until nobody learns more."""
    for _ in range(2):
        for x in devices:
            for y in reversed(devices):
                if x is not y:
                    x.pull(y)
    vvs = [d.history.vv for d in devices]
    assert all(vv == vvs[0] for vv in vvs)


def shared_base(devices, path, content=b"base\n"):
    """``path`` written on the first device and synced to all (on everyone's disk)."""
    base = devices[0].write(path, content, T0)
    sync_all(*devices)
    for d in devices[1:]:
        d.on_disk[path] = base.id
    return base


def all_copies(devices, path):
    return [(d.id, copy, loser.id) for d in devices for copy, loser in d.copies(path)]


# -- edit vs edit ---------------------------------------------------------------

def test_edit_vs_edit_later_mtime_wins_and_the_loser_keeps_one_copy(devices):
    a, b, c = devices
    shared_base(devices, "notes/plan.txt")
    mine = a.write("notes/plan.txt", b"A's edit\n", T0 + 10 * SECOND)
    theirs = b.write("notes/plan.txt", b"B's edit\n", T0 + 20 * SECOND)   # same Lamport clock, later mtime
    assert mine.lamport == theirs.lamport
    sync_all(a, b, c)

    for d in devices:  # concurrent: neither descends from the other, so both are heads
        assert {e.id for e in d.history.heads("notes/plan.txt")} == {mine.id, theirs.id}
        assert d.history.current("notes/plan.txt").id == theirs.id
    # exactly one copy, written by the loser's origin only, named after the loser
    assert all_copies(devices, "notes/plan.txt") == [
        (A, "notes/plan.sync-conflict-20240102-030415-AAAAAAA.txt", mine.id)]
    assert a.action("notes/plan.txt") == FETCH      # the loser fetches the winner after keeping its copy
    assert b.action("notes/plan.txt") == NOTHING
    c.on_disk["notes/plan.txt"] = mine.id           # C happened to fetch A's version first
    assert c.action("notes/plan.txt") == FETCH


def test_edit_vs_edit_higher_lamport_clock_beats_later_mtime(devices):
    a, b, c = devices
    shared_base(devices, "f.txt")
    a.write("other.txt", b"A saw more before editing\n", T0)
    mine = a.write("f.txt", b"A\n", T0 + SECOND)
    theirs = b.write("f.txt", b"B\n", T0 + 99 * SECOND)
    assert mine.lamport > theirs.lamport
    sync_all(a, b, c)
    assert {d.history.current("f.txt").id for d in devices} == {mine.id}
    assert [loser for _, _, loser in all_copies(devices, "f.txt")] == [theirs.id]


def test_equal_clocks_and_mtimes_the_larger_device_id_wins(devices):
    a, b, c = devices
    shared_base(devices, "f.txt")
    mine = a.write("f.txt", b"A\n", T0 + SECOND)
    theirs = c.write("f.txt", b"C\n", T0 + SECOND)
    sync_all(a, b, c)
    assert {d.history.current("f.txt").id for d in devices} == {theirs.id}
    assert all_copies(devices, "f.txt") == [(A, "f.sync-conflict-20240102-030406-AAAAAAA.txt", mine.id)]


def test_an_edit_of_what_was_seen_supersedes_every_head_and_ends_the_conflict(devices):
    a, b, c = devices
    shared_base(devices, "f.txt")
    a.write("f.txt", b"A\n", T0 + SECOND)
    theirs = b.write("f.txt", b"B\n", T0 + 2 * SECOND)
    sync_all(a, b, c)
    a.on_disk["f.txt"] = theirs.id                 # A now shows the winner; the user edits it
    resolved = a.write("f.txt", b"merged by hand\n", T0 + 3 * SECOND)
    sync_all(a, b, c)
    for d in devices:
        assert [e.id for e in d.history.heads("f.txt")] == [resolved.id]
    assert all_copies(devices, "f.txt") == []


def test_an_edit_of_an_older_version_stays_concurrent_with_the_newer_one(devices):
    a, b, c = devices
    base = shared_base(devices, "f.txt")
    newer = b.write("f.txt", b"B's newer version\n", T0 + SECOND)
    a.pull(b)                                      # A has the event but not the content yet
    assert a.on_disk["f.txt"] == base.id
    edit = a.write("f.txt", b"A edited the old one\n", T0 + 2 * SECOND)
    assert edit.parents == (base.id,)              # it did not see B's version: no silent overwrite
    sync_all(a, b, c)
    assert {e.id for e in c.history.heads("f.txt")} == {newer.id, edit.id}


# -- edit vs delete -------------------------------------------------------------

def test_edit_vs_delete_the_edit_survives_without_a_copy(devices):
    a, b, c = devices
    shared_base(devices, "keep.txt")
    c.write("noise.txt", b"x", T0)
    c.pull(a)
    gone = c.delete("keep.txt")                     # the delete even has the higher Lamport clock
    edit = a.write("keep.txt", b"edited\n", T0 + SECOND)
    assert gone.lamport > edit.lamport
    sync_all(a, b, c)
    for d in devices:
        assert d.history.current("keep.txt").id == edit.id
        assert d.history.tree()["keep.txt"].hash == hashlib.sha256(b"edited\n").hexdigest()
    assert all_copies(devices, "keep.txt") == []
    assert c.action("keep.txt") == FETCH            # the deleter gets the edit back
    assert b.action("keep.txt") == FETCH


# -- delete vs delete -----------------------------------------------------------

def test_delete_vs_delete_the_path_is_gone_everywhere(devices):
    a, b, c = devices
    shared_base(devices, "old.txt")
    first, second = a.delete("old.txt"), b.delete("old.txt")
    sync_all(a, b, c)
    for d in devices:
        assert {e.id for e in d.history.heads("old.txt")} == {first.id, second.id}
        assert d.history.current("old.txt").is_delete
        assert "old.txt" not in d.history.tree()
    assert all_copies(devices, "old.txt") == []
    assert c.action("old.txt") == REMOVE
    assert a.action("old.txt") == NOTHING


# -- rename vs edit -------------------------------------------------------------

def test_rename_vs_edit_the_edit_stays_at_the_old_path_and_the_rename_at_the_new(devices):
    a, b, c = devices
    base = shared_base(devices, "draft.txt", b"first draft\n")
    gone, moved = a.rename("draft.txt", "final.txt", T0 + SECOND)
    edit = b.write("draft.txt", b"second draft\n", T0 + 2 * SECOND)
    sync_all(a, b, c)
    for d in devices:
        tree = d.history.tree()
        assert tree["draft.txt"].id == edit.id                     # the edit beats the rename's delete
        assert tree["final.txt"].id == moved.id and tree["final.txt"].hash == base.hash
        assert d.history.get(gone.id).moved_to == "final.txt" and moved.moved_from == "draft.txt"
    assert all_copies(devices, "draft.txt") == [] and all_copies(devices, "final.txt") == []
    assert a.action("draft.txt") == FETCH


# -- create vs create -----------------------------------------------------------

def test_create_vs_create_of_the_same_new_path_keeps_both(devices):
    a, b, c = devices
    mine = a.write("new.md", b"A's new file\n", T0 + 5 * SECOND)
    theirs = b.write("new.md", b"B's new file\n", T0 + 3 * SECOND)
    c.pull(b)
    c.pull(a)          # C learns them in the other order
    sync_all(a, b)
    for d in devices:
        assert d.history.current("new.md").id == mine.id
    assert all_copies(devices, "new.md") == [(B, "new.sync-conflict-20240102-030408-BBBBBBB.md", theirs.id)]


def test_a_local_create_beside_an_unseen_remote_version_is_concurrent(devices):
    a, b, c = devices
    remote = a.write("new.md", b"A\n", T0)
    b.pull(a)                                         # B has A's event; its disk has its own new file
    local = b.write("new.md", b"B\n", T0 + SECOND)
    assert remote.id not in local.parents
    assert {e.id for e in b.history.heads("new.md")} == {remote.id, local.id}


# -- directory deleted vs file added inside ------------------------------------

def test_directory_deleted_while_a_file_is_added_inside_the_new_file_survives(devices):
    a, b, c = devices
    a.mkdir("album", T0)
    a.write("album/one.jpg", b"one", T0)
    sync_all(a, b, c)
    for d in (b, c):
        d.on_disk.update(a.on_disk)
    a.delete("album/one.jpg")
    a.delete("album")                               # children first, as the node records them
    added = b.write("album/two.jpg", b"two", T0 + SECOND)
    sync_all(a, b, c)
    for d in devices:
        tree = d.history.tree()
        assert tree.get("album/two.jpg") is not None and tree["album/two.jpg"].id == added.id
        assert "album/one.jpg" not in tree
        assert d.history.current("album").is_delete   # the directory's own delete stands;
    assert b.action("album") == REMOVE                # the writer's rmdir keeps it while it holds two.jpg
    assert a.action("album/two.jpg") == FETCH         # and fetching two.jpg recreates it on A
    assert all_copies(devices, "album/two.jpg") == []


# -- same content on both sides -------------------------------------------------

def test_same_content_written_on_both_sides_is_no_conflict(devices):
    a, b, c = devices
    shared_base(devices, "same.txt")
    mine = a.write("same.txt", b"identical\n", T0 + SECOND)
    theirs = b.write("same.txt", b"identical\n", T0 + 2 * SECOND)
    sync_all(a, b, c)
    assert {e.id for e in c.history.heads("same.txt")} == {mine.id, theirs.id}
    assert c.history.current("same.txt").id == theirs.id
    assert all_copies(devices, "same.txt") == []
    assert a.action("same.txt") == RELABEL            # the disk already has it: nothing is fetched


# -- no duplicates --------------------------------------------------------------

def test_three_concurrent_edits_two_copies_each_made_once_by_its_origin(devices):
    a, b, c = devices
    shared_base(devices, "f.txt")
    made = {d.id: d.write("f.txt", d.id[:1].encode() * 3, T0 + (i + 1) * SECOND) for i, d in enumerate(devices)}
    sync_all(a, b, c)
    copies = all_copies(devices, "f.txt")
    assert sorted(copies) == [(A, "f.sync-conflict-20240102-030406-AAAAAAA.txt", made[A].id),
                              (B, "f.sync-conflict-20240102-030407-BBBBBBB.txt", made[B].id)]
    assert {d.history.current("f.txt").id for d in devices} == {made[C].id}


# -- conflict copy names --------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("report.txt", "report.sync-conflict-20240102-030405-AAAAAAA.txt"),
    ("a/b/archive.tar.gz", "a/b/archive.tar.sync-conflict-20240102-030405-AAAAAAA.gz"),
    (".bashrc", ".bashrc.sync-conflict-20240102-030405-AAAAAAA"),
    ("Makefile", "Makefile.sync-conflict-20240102-030405-AAAAAAA"),
])
def test_conflict_copy_name_pattern(devices, path, expected):
    loser = devices[0].write(path, b"x", T0 + 999_999_999)    # the time is the loser's mtime, whole seconds
    assert conflict_name(path, loser) == expected
    assert COPY_PATTERN.fullmatch(expected.rsplit("/", 1)[-1])


def test_conflict_copy_name_stays_within_one_segment(devices):
    path = "d/" + "x" * 250 + ".txt"
    loser = devices[0].write(path, b"x", T0)
    name = conflict_name(path, loser)
    assert name.startswith("d/x") and name.endswith("-AAAAAAA.txt")
    assert len(name.split("/")[-1].encode()) <= 255


def test_winner_is_the_same_whatever_the_order(devices):
    a, b, _ = devices
    heads = [a.write("f", b"1", T0), b.write("f", b"2", T0)]
    assert winner(heads) is winner(list(reversed(heads)))


# -- .p2pignore -----------------------------------------------------------------

def write_ignore(root, text):
    (root / IGNORE_FILE).write_text(text, encoding="utf-8")


def test_ignore_gitignore_syntax(tmp_path):
    write_ignore(tmp_path, "# comment\n*.tmp\n!keep.tmp\nbuild/\nnotes/\n/top-only.log\ncache/**/*.bin\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "notes").write_text("a file named like a directory pattern")
    rules = IgnoreRules(tmp_path)
    assert rules.matches("build") and not rules.matches("notes")      # "build/" names the directory itself
    assert rules.matches("x.tmp") and rules.matches("deep/down/y.tmp")
    assert not rules.matches("keep.tmp")                   # negation
    assert rules.matches("build/a.o") and rules.matches("build/out/a.o")  # everything under a directory
    assert rules.matches("src/build/x.c")                  # unanchored directory pattern
    assert rules.matches("top-only.log") and not rules.matches("sub/top-only.log")  # anchored
    assert rules.matches("cache/a/b/c.bin") and not rules.matches("cache/a/b/c.txt")
    assert not rules.matches("notes.txt") and not rules.matches("# comment")


def test_ignore_file_itself_is_never_ignored(tmp_path):
    write_ignore(tmp_path, "*\n.p2pignore\n")
    rules = IgnoreRules(tmp_path)
    assert rules.matches("anything.txt")
    assert not rules.matches(IGNORE_FILE)


def test_ignore_reload_picks_up_a_changed_file(tmp_path):
    rules = IgnoreRules(tmp_path)                          # no file: nothing ignored
    assert not rules.matches("a.log")
    write_ignore(tmp_path, "*.log\n")
    assert not rules.matches("a.log")                      # rules change only on reload
    rules.reload()
    assert rules.matches("a.log")
    (tmp_path / IGNORE_FILE).unlink()
    rules.reload()
    assert not rules.matches("a.log")


def test_ignore_file_that_is_not_utf8_ignores_nothing_at_start(tmp_path):
    (tmp_path / IGNORE_FILE).write_bytes(b"*.log\n\xff\xfe\n")
    assert not IgnoreRules(tmp_path).matches("a.log")


@pytest.mark.parametrize("make", ["directory", "fifo", "symlink", "too large", "not utf-8", "invalid pattern"])
def test_an_unusable_ignore_file_keeps_the_last_good_rules_and_warns_once(tmp_path, caplog, make):
    write_ignore(tmp_path, "*.log\n")
    rules = IgnoreRules(tmp_path)
    (tmp_path / IGNORE_FILE).unlink()
    path = tmp_path / IGNORE_FILE
    if make == "directory":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)                          # reading it would block the hub
    elif make == "symlink":
        (tmp_path / "rules.txt").write_text("*.txt\n")
        path.symlink_to("rules.txt")
    elif make == "too large":
        path.write_bytes(b"#" * (limits.MAX_IGNORE_BYTES + 1))
    elif make == "not utf-8":
        path.write_bytes(b"*.txt\n\xff\xfe\n")
    else:
        path.write_text("*.txt\n!\n")
    for _ in range(3):
        rules.reload()
    assert rules.matches("a.log") and not rules.matches("a.txt")
    assert caplog.text.count(".p2pignore is not used") == 1


def _event(origin, seq, lamport, mtime, type="update", kind="file", content=b"x"):
    digest = hashlib.sha256(content).hexdigest() if type != "delete" and kind == "file" else ""
    return Event(id=f"{origin}:{seq}", origin=origin, seq=seq, lamport=lamport, type=type, kind=kind, path="f",
                 size=0, mode=0, mtime=mtime, hash=digest, blocks=(), parents=(), time=0.0)


@pytest.mark.parametrize("one, other, why", [
    (_event(A, 1, 1, T0), _event(B, 1, 9, T0, type="delete"), "an edit beats a delete"),
    (_event(A, 1, 1, T0, type="create", kind="dir"), _event(B, 1, 9, T0), "a directory beats a file"),
    (_event(A, 1, 7, T0), _event(B, 1, 5, T0 + SECOND), "the later change: Lamport clock 7 > 5"),
    (_event(A, 1, 5, T0 + SECOND), _event(B, 1, 5, T0), "same Lamport clock, the later modification time"),
    (_event(B, 1, 5, T0), _event(A, 1, 5, T0), "same clock and modification time: the larger device id"),
])
def test_the_log_says_why_a_version_wins_in_the_rule_s_own_order(one, other, why):
    assert winner([one, other]) is one and winner([other, one]) is one
    assert why_wins(one, other) == why
