"""`p2p log`: one aligned line per change, newest first in time order, with short
event ids; --json, --limit, the PATH filter (folder or file-system paths)."""

import hashlib
import re
from argparse import Namespace
from datetime import datetime

import ujson

from p2p.commands import log as log_cmd
from p2p.units import human_size
from p2p.history.event import Event
from p2p.history.history import History

A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B = "Z" * 32
C = "C" * 32
T0 = 1_764_072_063.0


def digest(data):
    return hashlib.sha256(data).hexdigest()


def build(home):
    history = History.open(home, A)
    data = b"x" * 1229
    h = digest(data)
    history.make_local("create", "dir", "docs", mode=0o755, time=T0)
    history.make_local("create", "file", "docs/a.txt", size=1229, hash=h, blocks=[(h, 1229)], time=T0 + 1)
    history.merge([Event(id=f"{B}:1", origin=B, seq=1, lamport=3, type="update", kind="file", path="docs/a.txt",
                         size=5, hash=digest(b"hello"), blocks=((digest(b"hello"), 5),), mode=0o644, mtime=0,
                         parents=(f"{A}:2",), time=T0 + 2)])
    history.make_local("delete", "file", "docs/a.txt", moved_to="notes/a.txt", time=T0 + 3)
    history.make_local("create", "file", "notes/a.txt", moved_from="docs/a.txt", size=5, hash=digest(b"hello"),
                       blocks=[(digest(b"hello"), 5)], time=T0 + 3)
    history.make_local("create", "symlink", "link", size=11, hash=digest(b"notes/a.txt"), target="notes/a.txt",
                       time=T0 + 4)
    history.make_local("create", "file", "docsother.txt", size=0, hash=digest(b""), time=T0 + 5)
    # from a peer that was offline for a while: appended last, but the oldest change
    history.merge([Event(id=f"{C}:1", origin=C, seq=1, lamport=1, type="create", kind="file", path="old.txt",
                         size=3, hash=digest(b"old"), blocks=((digest(b"old"), 3),), mode=0o644, mtime=0,
                         parents=(), time=T0 - 10)])
    history.close()


def run_log(home, capsys, path=None, json=False, limit=None, code=0):
    assert log_cmd.run(Namespace(home=str(home), root=str(home / "shared"), path=path, json=json,
                                 limit=limit)) == code
    return capsys.readouterr().out.splitlines()


def stamp(t):
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def test_lines_newest_first_in_time_order_aligned_with_short_ids(tmp_path, capsys):
    build(tmp_path)
    lines = run_log(tmp_path, capsys)
    assert lines == [
        f"{stamp(T0 + 5)}  ABCDEFG:6  create      0 B  {digest(b'')[:8]}  docsother.txt",
        f"{stamp(T0 + 4)}  ABCDEFG:5  create     11 B  {digest(b'notes/a.txt')[:8]}  link -> notes/a.txt",
        f"{stamp(T0 + 3)}  ABCDEFG:4  rename      5 B  {digest(b'hello')[:8]}  docs/a.txt -> notes/a.txt",
        f"{stamp(T0 + 2)}  ZZZZZZZ:1  update      5 B  {digest(b'hello')[:8]}  docs/a.txt",
        f"{stamp(T0 + 1)}  ABCDEFG:2  create  1.2 KiB  {digest(b'x' * 1229)[:8]}  docs/a.txt",
        f"{stamp(T0)}  ABCDEFG:1  create        -  -         docs/",
        f"{stamp(T0 - 10)}  CCCCCCC:1  create      3 B  {digest(b'old')[:8]}  old.txt",  # merged last
    ]


def test_json_prints_every_event_canonically_in_the_same_order(tmp_path, capsys):
    build(tmp_path)
    lines = run_log(tmp_path, capsys, json=True)
    assert len(lines) == 8
    events = [Event.from_json(line) for line in lines]
    assert [e.time for e in events] == sorted((e.time for e in events), reverse=True)
    assert all(line == e.to_json() for line, e in zip(lines, events))
    assert any(e.moved_to == "notes/a.txt" for e in events)  # the delete half too
    assert ujson.loads(lines[0])["path"] == "docsother.txt"
    assert ujson.loads(lines[-1])["path"] == "old.txt"


def test_limit_keeps_the_newest_in_time(tmp_path, capsys):
    build(tmp_path)
    assert [line.split()[2] for line in run_log(tmp_path, capsys, limit=2)] == ["ABCDEFG:6", "ABCDEFG:5"]
    assert run_log(tmp_path, capsys, limit=2, json=True)[0].startswith("{")
    assert run_log(tmp_path, capsys, limit=0) == []


def paths(lines):
    return [re.split(r"\s{2,}", line, maxsplit=5)[-1] for line in lines]  # columns: 2 spaces or more


def test_path_filter_matches_the_path_what_is_under_it_and_renames(tmp_path, capsys):
    build(tmp_path)
    docs = run_log(tmp_path, capsys, path="docs")
    assert paths(docs) == ["docs/a.txt -> notes/a.txt", "docs/a.txt", "docs/a.txt", "docs/"]
    assert run_log(tmp_path, capsys, path="docs/") == docs and run_log(tmp_path, capsys, path="./docs") == docs
    assert paths(run_log(tmp_path, capsys, path="notes/a.txt")) == ["docs/a.txt -> notes/a.txt"]
    assert len(run_log(tmp_path, capsys, path="docs", json=True)) == 5
    assert len(run_log(tmp_path, capsys, path=".")) == 7


def test_path_as_a_file_system_path_absolute_or_relative(tmp_path, capsys, monkeypatch):
    build(tmp_path)
    (tmp_path / "shared" / "docs").mkdir(parents=True)
    docs = run_log(tmp_path, capsys, path="docs/a.txt")
    assert len(docs) == 3
    assert run_log(tmp_path, capsys, path=str(tmp_path / "shared" / "docs" / "a.txt")) == docs  # absolute
    monkeypatch.chdir(tmp_path)
    assert run_log(tmp_path, capsys, path="shared/docs/a.txt") == docs     # relative to the current directory
    assert run_log(tmp_path, capsys, path="./shared/docs/a.txt/") == docs
    monkeypatch.chdir(tmp_path / "shared" / "docs")
    assert run_log(tmp_path, capsys, path="a.txt") == docs                 # from inside the folder
    assert len(run_log(tmp_path, capsys, path="..")) == 7                  # the folder itself
    monkeypatch.chdir(tmp_path.parent)
    assert run_log(tmp_path, capsys, path="docs/a.txt") == docs            # else: inside the folder


def log_error(home, capsys, path=None):
    """What `p2p log` says on stderr when it has nothing to show (exit 1, nothing on stdout)."""
    assert log_cmd.run(Namespace(home=str(home), root=str(home / "shared"), path=path, json=False,
                                 limit=None)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err.strip()


def test_a_path_outside_the_folder_or_unknown_is_said_so(tmp_path, capsys):
    build(tmp_path)
    assert log_error(tmp_path, capsys, str(tmp_path / "x")) == (
        f"p2p log: {tmp_path / 'x'} is not inside the folder {tmp_path / 'shared'}")
    assert log_error(tmp_path, capsys, "no/such.txt") == (
        f"p2p log: no event in the history concerns no/such.txt (in the folder {tmp_path / 'shared'})")


def test_a_corrupt_line_is_skipped_and_said(tmp_path, capsys):
    build(tmp_path)
    with open(tmp_path / "events.jsonl", "ab") as log:
        log.write(b'{"not": "an event"}\n')
    assert len(run_log(tmp_path, capsys)) == 7
    lines = run_log(tmp_path, capsys, path="docs")
    assert len(lines) == 4
    assert log_cmd.run(Namespace(home=str(tmp_path), root=str(tmp_path / "shared"), path=None, json=False,
                                 limit=None)) == 0
    assert "skipping a corrupt line at byte" in capsys.readouterr().err


def test_no_history_yet(tmp_path, capsys):
    assert log_error(tmp_path, capsys) == (
        f"p2p log: no history in {tmp_path} (no events.jsonl): `p2p run` records one from its first start there")
    (tmp_path / "events.jsonl").write_bytes(b"")
    assert log_error(tmp_path, capsys) == f"p2p log: the history in {tmp_path} is empty: no change recorded yet"


def test_human_size():
    assert [human_size(n) for n in (0, 1023, 1024, 1229, 5 * 1024 ** 2, 3 * 1024 ** 3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.2 KiB", "5.0 MiB", "3.0 GiB"]
