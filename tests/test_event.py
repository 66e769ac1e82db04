"""Event: canonical JSON round trips, and every invalid field rejected."""

import hashlib
import sys

import pytest
from hypothesis import given, settings, strategies as st

from p2p.history.event import Event, InvalidEvent, canonical_json

A = "A" * 32
B = "B2" * 16
H = "ab" * 32
H2 = "cd" * 32


def file_event(**changes):
    data = dict(id=f"{A}:3", origin=A, seq=3, lamport=7, type="update", kind="file", path="docs/a.txt",
                size=300, mode=0o644, mtime=1_700_000_000_123_456_789, hash=H, blocks=[[H2, 200], [H, 100]],
                parents=[f"{B}:1", f"{A}:2"], time=1700000000.25)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def symlink_event(target="../b/c"):
    encoded = target.encode()
    return file_event(kind="symlink", path="a/link", size=len(encoded), hash=hashlib.sha256(encoded).hexdigest(),
                      blocks=[], target=target)


def test_round_trip_and_canonical_form():
    data = file_event()
    event = Event.from_dict(data)
    assert event.blocks == ((H2, 200), (H, 100)) and event.parents == (f"{B}:1", f"{A}:2")
    line = event.to_json()
    assert line == canonical_json(data)
    assert line.startswith('{"blocks":[[') and ", " not in line and "\n" not in line
    assert Event.from_json(line) == event and Event.from_json(line).to_json() == line
    assert list(event.to_dict()) and "moved_from" not in event.to_dict()


def test_canonical_form_is_utf8_and_keeps_slashes():
    event = Event.from_dict(file_event(path="dossier/été.txt"))
    assert '"path":"dossier/été.txt"' in event.to_json()


def test_optional_fields_round_trip():
    rename_create = Event.from_dict(file_event(type="create", moved_from="old/a.txt"))
    rename_delete = Event.from_dict(file_event(type="delete", size=0, hash="", blocks=[], moved_to="docs/b.txt"))
    link = Event.from_dict(symlink_event())
    for event in (rename_create, rename_delete, link):
        assert Event.from_json(event.to_json()) == event
    assert link.target == "../b/c" and '"target":"../b/c"' in link.to_json()


@pytest.mark.parametrize("changes", [
    {}, dict(type="create", moved_from="old/a.txt"), dict(type="delete", size=0, hash="", blocks=[], moved_to="b"),
    dict(kind="dir", size=0, hash="", blocks=[]), "symlink", dict(blocks=[[H, 300]]), dict(parents=[])])
def test_json_is_the_canonical_form_of_every_field(changes):
    """to_json writes the fields in key order itself (no sort): the same bytes as canonical_json of to_dict."""
    event = Event.from_dict(symlink_event() if changes == "symlink" else file_event(**changes))
    assert event.to_json() == canonical_json(event.to_dict())
    assert Event.from_json(event.to_json()) == event


def test_of_builds_what_init_builds():
    data = file_event(type="create", moved_from="old/a.txt")
    fields = dict(data, blocks=tuple(tuple(b) for b in data["blocks"]), parents=tuple(data["parents"]))
    event = Event.of(fields)
    assert event == Event(**fields) and event.moved_to is None and event.target is None
    assert event.blocks is fields["blocks"]   # a tuple of pairs is kept as it is
    # about the size of the dataclass's (whose instances share their keys; a copy of the keys is 1.7x: 16,384
    assert sys.getsizeof(event.__dict__) <= 1.2 * sys.getsizeof(Event(**fields).__dict__)   # events are cached)
    with pytest.raises(InvalidEvent, match="block hash"):   # and still checked
        Event.of(dict(fields, blocks=(("zz", 200), (H, 100))))
    with pytest.raises(InvalidEvent, match="block hash"):   # a one-block file's too
        Event.of(dict(fields, blocks=(("cd" * 31, 300),)))


def test_integer_time_becomes_float():
    assert Event.from_dict(file_event(time=1700000000)).time == 1700000000.0


def test_directory_and_delete_events():
    Event.from_dict(file_event(type="create", kind="dir", path="photos", size=0, hash="", blocks=[], mode=0o755))
    Event.from_dict(file_event(type="delete", size=0, hash="", blocks=[]))


def test_empty_file():
    empty = hashlib.sha256(b"").hexdigest()
    assert Event.from_dict(file_event(size=0, hash=empty, blocks=[])).size == 0


BAD = [
    ("not a dict", None, "JSON object"),
    ("unknown key", dict(colour="red"), "unknown field"),
    ("missing key", "drop:hash", "missing field"),
    ("id mismatch", dict(id=f"{A}:4"), "id"),
    ("id other origin", dict(id=f"{B}:3"), "id"),
    ("origin short", dict(origin="ABC", id="ABC:3"), "origin"),
    ("origin lowercase", dict(origin="a" * 32, id="a" * 32 + ":3"), "origin"),
    ("origin bad char", dict(origin="1" * 32, id="1" * 32 + ":3"), "origin"),
    ("seq zero", dict(seq=0, id=f"{A}:0"), "seq"),
    ("seq str", dict(seq="3"), "seq"),
    ("seq bool", dict(seq=True, id=f"{A}:True"), "seq"),
    ("lamport zero", dict(lamport=0), "lamport"),
    ("lamport float", dict(lamport=2.0), "lamport"),
    ("type", dict(type="rename"), "type"),
    ("kind", dict(kind="fifo"), "kind"),
    ("path absolute", dict(path="/etc/passwd"), "path"),
    ("path dotdot", dict(path="a/../../b"), "path"),
    ("path not NFC", dict(path="cafe\u0301"), "NFC"),
    ("path internal", dict(path=".p2p/identity"), "path"),
    ("size negative", dict(size=-1), "size"),
    ("size mismatch", dict(size=299), "add up"),
    ("mode too big", dict(mode=0o10000), "mode"),
    ("mode negative", dict(mode=-1), "mode"),
    ("mtime float", dict(mtime=1.5), "mtime"),
    ("hash short", dict(hash="ab"), "hash"),
    ("hash upper", dict(hash=H.upper()), "hash"),
    ("block not pair", dict(blocks=[[H, 200, 1], [H, 100]]), "pair"),
    ("block hash", dict(blocks=[["zz", 200], [H, 100]]), "block hash"),
    ("block size zero", dict(blocks=[[H2, 0], [H, 300]]), "block size"),
    ("blocks not list", dict(blocks="x"), "blocks"),
    ("parents not list", dict(parents="x"), "parents"),
    ("parent bad id", dict(parents=["nope"]), "event id"),
    ("parent seq 0", dict(parents=[f"{A}:0"]), "event id"),
    ("parents duplicate", dict(parents=[f"{B}:1", f"{B}:1"]), "duplicates"),
    ("own parent", dict(parents=[f"{A}:3"]), "own parent"),
    ("time nan", dict(time=float("nan")), "time"),
    ("time negative", dict(time=-1.0), "time"),
    ("time str", dict(time="now"), "time"),
    ("time huge int", dict(time=10 ** 400), "time"),
    ("delete with content", dict(type="delete"), "no content"),
    ("dir with hash", dict(kind="dir"), "no content"),
    ("moved_from on update", dict(moved_from="x"), "moved_from"),
    ("moved_to on create", dict(type="create", moved_to="x"), "moved_to"),
    ("moved_from unsafe", dict(type="create", moved_from="../x"), "moved_from"),
    ("moved_from self", dict(type="create", moved_from="docs/a.txt"), "equals"),
    ("target on file", dict(target="x"), "target"),
]


@pytest.mark.parametrize("name, change, reason", BAD, ids=[b[0] for b in BAD])
def test_every_invalid_field_is_rejected(name, change, reason):
    if change is None:
        data = "not a dict"
    elif change == "drop:hash":
        data = file_event()
        del data["hash"]
    else:
        data = file_event(**change)
    with pytest.raises(InvalidEvent, match=reason):
        Event.from_dict(data)


@pytest.mark.parametrize("target, reason", [
    ("/etc/passwd", "relative"), ("../../x", "outside"), ("", "target"), ("a\x00b", "NUL")])
def test_bad_symlink_targets(target, reason):
    data = symlink_event("x")
    data["target"] = target
    with pytest.raises(InvalidEvent, match=reason):
        Event.from_dict(data)


def test_symlink_hash_and_size_follow_target():
    data = symlink_event()
    data["hash"] = H
    with pytest.raises(InvalidEvent, match="sha256 of its target"):
        Event.from_dict(data)


def test_not_json():
    with pytest.raises(InvalidEvent, match="JSON"):
        Event.from_json(b'{"id": ')
    with pytest.raises(InvalidEvent, match="JSON object"):
        Event.from_json(b"[1]")


def test_invalid_event_is_value_error():
    assert issubclass(InvalidEvent, ValueError)


@settings(max_examples=200, deadline=None)
@given(path=st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30),
       time=st.floats(min_value=0, max_value=4e9), mtime=st.integers(-2**63, 2**63 - 1),
       seq=st.integers(1, 2**63 - 1))
def test_canonical_round_trip_is_stable(path, time, mtime, seq):
    try:
        event = Event.from_dict(file_event(path=path, time=time, mtime=mtime, seq=seq, id=f"{A}:{seq}",
                                           parents=[f"{B}:1"]))
    except InvalidEvent:
        return
    line = event.to_json()
    again = Event.from_json(line.encode("utf-8"))
    assert again == event and again.to_json() == line


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=6)


@settings(max_examples=int(__import__("os").environ.get("P2P_FUZZ_EXAMPLES", "300")), deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(file_event()) + ["moved_from", "moved_to", "target"]),
                               json_values, max_size=4))
def test_fuzz_from_dict_raises_only_invalid_event(changes):
    try:
        Event.from_dict(file_event(**changes))
    except InvalidEvent:
        pass
