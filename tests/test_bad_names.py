"""A name that cannot be synced never stops the peer: created while two peers
run, each bad name is skipped with one warning and listed by `p2p status` as
not synced, every other change keeps syncing, and an NFD name is synced under
its NFC form (renamed on disk first, as Syncthing's autoNormalize does)."""

import os
import unicodedata

import pytest
import ujson
from hypothesis import given, settings, strategies as st

from p2p.blocks.store import BlockStore
from p2p.folder.scan import NotSynced, Renamed, Scanner
from p2p.folder.state import LocalState
from p2p.folder.unsynced import Unsynced
from p2p.history.paths import check_path, shown
from peers import p2p, wait_until

EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "150"))

NFD = unicodedata.normalize("NFD", "café.txt")
NFC = unicodedata.normalize("NFC", "café.txt")
BOTH_NFD = unicodedata.normalize("NFD", "both-é.txt")
BOTH_NFC = unicodedata.normalize("NFC", "both-é.txt")
NOT_UTF8 = os.fsdecode(b"\xff-latin1-\xe9.txt")     # what os.walk and watchdog give for these bytes

BAD = {                                   # name on disk -> a word its reason must contain
    "new\nline.txt": "control",
    "tab\there.txt": "control",
    "bell\x07.txt": "control",
    "back\\slash.txt": "backslash",
    "CON": "reserved",
    "NUL.txt": "reserved",
    "com1.log": "reserved",
    NOT_UTF8: "UTF-8",
    BOTH_NFD: "NFC",
    "bad\rdir": "control",               # a directory: listed once, not each file in it
}


def not_synced(peer) -> dict:
    return {p["path"]: p["reason"] for p in peer.status()["not_synced"]}


def warnings_about(peer, name) -> int:
    return sum(1 for line in peer.output().splitlines() if "WARNING" in line and repr(name) in line)


@pytest.mark.slow
def test_bad_names_made_while_running_are_skipped_and_listed_and_the_rest_syncs(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("seed.txt", b"both online")
    wait_until(lambda: b.has("seed.txt", b"both online"), 20, "first sync")

    a.write(BOTH_NFC, b"the NFC twin")
    wait_until(lambda: b.has(BOTH_NFC, b"the NFC twin"), 20, "the NFC twin to sync")
    for name in BAD:
        if name == "bad\rdir":
            os.mkdir(os.fsencode(a.path(name)))
            for i in range(3):
                a.path(f"{name}/inner{i}.txt").write_bytes(b"inside a bad directory")
        else:
            with open(os.fsencode(a.path(name)), "wb") as f:
                f.write(b"bad name " + os.fsencode(name))
    a.write(NFD, b"decomposed")
    a.write("after.txt", b"a normal file made after the bad ones")

    wait_until(lambda: b.has("after.txt", b"a normal file made after the bad ones"), 20, "the normal file")
    wait_until(lambda: b.has(NFC, b"decomposed"), 20, "the NFD file under its NFC name")
    assert os.listdir(os.fsencode(a.root)).count(os.fsencode(NFC)) == 1
    assert not os.path.lexists(os.fsencode(a.path(NFD))), "A's NFD name is renamed to its NFC form"
    listed = wait_until(lambda: (lambda ns: ns if len(ns) >= len(BAD) else None)(not_synced(a)), 20,
                        "every bad name to be listed")
    assert set(listed) == {shown(name) for name in BAD}
    for name, word in BAD.items():
        assert word in listed[shown(name)], (name, listed[shown(name)])

    a.write("after.txt", b"a later edit still syncs")
    wait_until(lambda: b.has("after.txt", b"a later edit still syncs"), 20, "a later edit")
    a.write("bad\rdir/inner0.txt", b"edited inside the bad directory")
    for name in BAD:
        assert warnings_about(a, name) == 1, (name, a.output())
    assert not any(warnings_about(a, f"bad\rdir/inner{i}.txt") for i in range(3))
    assert "Traceback" not in a.output() and "crashed" not in a.output()
    for name in BAD:
        assert not b.path(name).exists() and name not in os.listdir(b.root)
    assert "not synced" not in p2p("status", "--home", str(b.home)).stdout.lower()

    text = p2p("status", "--home", str(a.home))
    assert f"NOT SYNCED ({len(BAD)})" in text.stdout and "NOT IN SYNC" in text.stdout
    assert f"{len(BAD)} paths not synced: see below" in text.stdout

    os.unlink(os.fsencode(a.path("CON")))
    os.unlink(os.fsencode(a.path(NOT_UTF8)))
    wait_until(lambda: "CON" not in not_synced(a) and shown(NOT_UTF8) not in not_synced(a), 20,
               "removed bad names to leave the table")


# --- the scanner, directly ---------------------------------------------------------------

def scanner(tmp_path) -> Scanner:
    root = tmp_path / "shared"
    root.mkdir(exist_ok=True)
    return Scanner(root, LocalState(tmp_path / "local.db"), BlockStore(tmp_path / "blocks"))


def make(root, name: str, data: bytes = b"x") -> None:
    with open(os.fsencode(root / name), "wb") as f:
        f.write(data)


def test_walk_lists_bad_names_but_does_not_enter_bad_directories(tmp_path):
    scan = scanner(tmp_path)
    os.mkdir(scan.root / "bad\rdir")
    make(scan.root, "bad\rdir/inside.txt")
    for name in ("ok.txt", "CON", NOT_UTF8):
        make(scan.root, name)
    assert sorted(scan.walk()) == sorted(["bad\rdir", "ok.txt", "CON", NOT_UTF8])
    assert list(scan.walk("bad\rdir")) == ["bad\rdir"]
    for name, word in (("CON", "reserved"), (NOT_UTF8, "UTF-8"), ("bad\rdir", "control")):
        with pytest.raises(NotSynced, match=word):
            scan.observe(name)
    assert scan.observe("bad\rdir/inside.txt") is None      # its directory is the one reported
    assert scan.observe("ok.txt").path == "ok.txt"
    assert scan.observe("CON-gone") is None                  # a bad name that is gone: nothing to say


def test_an_nfd_file_and_directory_are_renamed_to_nfc(tmp_path):
    scan = scanner(tmp_path)
    make(scan.root, NFD, b"decomposed")
    with pytest.raises(Renamed) as renamed:
        scan.observe(NFD)
    assert renamed.value.new == NFC
    assert os.listdir(scan.root) == [NFC] and (scan.root / NFC).read_bytes() == b"decomposed"
    assert scan.observe(NFC).path == NFC

    folder = unicodedata.normalize("NFD", "résumés")
    os.mkdir(scan.root / folder)
    make(scan.root, f"{folder}/{NFD}", b"inside")
    assert scan.observe(f"{folder}/{NFD}") is None          # the directory is renamed first
    with pytest.raises(Renamed):
        scan.observe(folder)
    nfc_folder = unicodedata.normalize("NFC", folder)
    assert list(scan.walk(nfc_folder)) == [nfc_folder, f"{nfc_folder}/{NFD}"]
    with pytest.raises(Renamed):
        scan.observe(f"{nfc_folder}/{NFD}")
    assert (scan.root / nfc_folder / NFC).read_bytes() == b"inside"


def test_an_nfd_name_whose_nfc_form_exists_is_not_synced_and_neither_is_touched(tmp_path):
    scan = scanner(tmp_path)
    make(scan.root, BOTH_NFD, b"decomposed")
    make(scan.root, BOTH_NFC, b"composed")
    with pytest.raises(NotSynced, match="NFC form"):
        scan.observe(BOTH_NFD)
    assert (scan.root / BOTH_NFD).read_bytes() == b"decomposed" and (scan.root / BOTH_NFC).read_bytes() == b"composed"


def test_shown_paths_are_valid_utf8_and_the_listing_is_json(tmp_path):
    table = Unsynced()
    for name in BAD:
        table.report(name, f"reason for {name}", now=0.0)
    table.report("a\ud800lone", "a lone surrogate from somewhere", now=0.0)
    text = ujson.dumps(table.listing(), ensure_ascii=False)
    text.encode("utf-8")
    assert shown(NOT_UTF8) == "\\xff-latin1-\\xe9.txt"
    assert shown("plain é") == "plain é"


NAMES = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40)
RAW = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\x00" not in b)


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=st.one_of(NAMES.map(os.fsencode), RAW))
def test_every_name_on_disk_is_synced_as_a_valid_path_renamed_or_reported(tmp_path_factory, name):
    """Whatever the bytes of a name, observe never fails otherwise: the change
    it returns has a path every peer accepts, or the name is reported."""
    if name in (b".", b"..") or len(name) > 255:
        return
    scan = scanner(tmp_path_factory.mktemp("names"))
    with open(os.fsencode(scan.root) + b"/" + name, "wb") as f:
        f.write(b"content")
    path = os.fsdecode(name)
    try:
        change = scan.observe(path)
    except NotSynced as problem:
        assert problem.reason and shown(problem.path).encode("utf-8")
        return
    except Renamed as renamed:
        change = scan.observe(renamed.new)
    if change is not None:      # None: an internal name (.p2p-tmp-*, events.jsonl...)
        assert check_path(change.path) == change.path


# --- the local loop, in process: an unexpected error stays with its path ------------------

def local_loop(tmp_path):
    """LocalChanges over real parts (history, state, scanner, not-synced
    table) and stand-ins for the rest: no sockets, no other loops. The events
    it publishes are kept in ``loop.sent``."""
    import types

    import gevent
    from gevent.event import Event as Flag

    from p2p.history.history import History
    from p2p.net.local_changes import LocalChanges

    scan = scanner(tmp_path)
    sent = []
    loop = LocalChanges(
        root=scan.root, history=History.open(tmp_path / "home", "A" * 32), state=scan.state, scanner=scan,
        ignore=types.SimpleNamespace(reload=lambda: None), unsynced=Unsynced(),
        disk=types.SimpleNamespace(held=False), threadpool=gevent.get_hub().threadpool,
        gates=(Flag(), types.SimpleNamespace(folder=False)), folder_present=lambda: True,
        folder_missing=lambda: None, publish=lambda events, source=None: sent.extend(events),
        broken=lambda exc: None, spawn=gevent.spawn, watch=lambda directory, recursive: None)
    loop.reconciler = types.SimpleNamespace(mark_dirty=lambda paths: None, archive_later=lambda *a: None,
                                            busy=lambda paths: set())
    loop.scanned.set()
    loop.sent = sent
    return loop


def sent_paths(loop) -> list:
    """The paths of the events published since the last call."""
    paths = sorted(e.path for e in loop.sent)
    loop.sent.clear()
    return paths


def test_an_unexpected_error_on_one_path_is_logged_once_and_the_batch_goes_on(tmp_path, monkeypatch, caplog):
    loop = local_loop(tmp_path)
    for name in ("a.txt", "boom.txt", "b.txt"):
        make(loop.root, name, name.encode())
    observe = loop.scanner.observe

    def faulty(path, *entry):
        if path == "boom.txt":
            raise RuntimeError("a bug in the scanner")
        return observe(path, *entry)

    monkeypatch.setattr(loop.scanner, "observe", faulty)
    with caplog.at_level("WARNING"):
        loop._scan(["a.txt", "boom.txt", "b.txt"])
        make(loop.root, "c.txt", b"later")
        loop._scan(["boom.txt", "c.txt"])
    assert sent_paths(loop) == ["a.txt", "b.txt", "c.txt"]
    assert "a bug in the scanner" in loop.unsynced.get("boom.txt").reason
    about = [r for r in caplog.records if "boom.txt" in r.getMessage()]
    assert [r.levelname for r in about] == ["ERROR", "WARNING"] and about[0].exc_info   # the traceback, once
    monkeypatch.setattr(loop.scanner, "observe", observe)
    loop._scan(["boom.txt"])
    assert "boom.txt" not in loop.unsynced and sent_paths(loop) == ["boom.txt"]


def test_an_error_while_recording_one_change_loses_none_of_the_others(tmp_path, monkeypatch):
    loop = local_loop(tmp_path)
    for name in ("a.txt", "bad-record.txt", "z.txt"):
        make(loop.root, name, name.encode())
    make_local_many = loop.history.make_local_many

    def faulty(specs, **options):
        if any(spec["path"] == "bad-record.txt" for spec in specs):
            raise RuntimeError("a bug while recording")
        return make_local_many(specs, **options)

    monkeypatch.setattr(loop.history, "make_local_many", faulty)
    loop._scan(["a.txt", "bad-record.txt", "z.txt"])
    assert sent_paths(loop) == ["a.txt", "z.txt"]            # made before the error, or after it
    assert "a bug while recording" in loop.unsynced.get("bad-record.txt").reason
    assert loop.history.vv == {"A" * 32: 2}
