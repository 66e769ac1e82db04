"""`p2p log`: one line per change newest first, --json, --limit, the PATH filter."""

import hashlib
from argparse import Namespace
from datetime import datetime

import ujson

from p2p.commands import log as log_cmd
from p2p.units import human_size
from p2p.history.event import Event
from p2p.history.history import History

A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B = "Z" * 32
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
    history.close()


def run_log(home, capsys, path=None, json=False, limit=None):
    assert log_cmd.run(Namespace(home=str(home), path=path, json=json, limit=limit)) == 0
    return capsys.readouterr().out.splitlines()


def stamp(t):
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def test_lines_newest_first_like_git_log(tmp_path, capsys):
    build(tmp_path)
    lines = run_log(tmp_path, capsys)
    assert lines == [
        f"{stamp(T0 + 5)}  ABCDEFG  create  docsother.txt  0 B  {digest(b'')[:8]}",
        f"{stamp(T0 + 4)}  ABCDEFG  create  link -> notes/a.txt  11 B  {digest(b'notes/a.txt')[:8]}",
        f"{stamp(T0 + 3)}  ABCDEFG  rename  docs/a.txt -> notes/a.txt  5 B  {digest(b'hello')[:8]}",
        f"{stamp(T0 + 2)}  ZZZZZZZ  update  docs/a.txt  5 B  {digest(b'hello')[:8]}",
        f"{stamp(T0 + 1)}  ABCDEFG  create  docs/a.txt  1.2 KiB  {digest(b'x' * 1229)[:8]}",
        f"{stamp(T0)}  ABCDEFG  create  docs/  -  -",
    ]


def test_json_prints_every_event_canonically(tmp_path, capsys):
    build(tmp_path)
    lines = run_log(tmp_path, capsys, json=True)
    assert len(lines) == 7
    events = [Event.from_json(line) for line in lines]
    assert [e.time for e in events] == sorted((e.time for e in events), reverse=True)
    assert all(line == e.to_json() for line, e in zip(lines, events))
    assert any(e.moved_to == "notes/a.txt" for e in events)  # the delete half too
    assert ujson.loads(lines[0])["path"] == "docsother.txt"


def test_limit(tmp_path, capsys):
    build(tmp_path)
    assert len(run_log(tmp_path, capsys, limit=2)) == 2
    assert run_log(tmp_path, capsys, limit=2, json=True)[0].startswith("{")
    assert run_log(tmp_path, capsys, limit=0) == []


def test_path_filter_matches_the_path_what_is_under_it_and_renames(tmp_path, capsys):
    build(tmp_path)
    docs = run_log(tmp_path, capsys, path="docs")
    assert [line.split("  ")[3] for line in docs] == ["docs/a.txt -> notes/a.txt", "docs/a.txt", "docs/a.txt", "docs/"]
    assert run_log(tmp_path, capsys, path="docs/") == docs and run_log(tmp_path, capsys, path="./docs") == docs
    assert [line.split("  ")[3] for line in run_log(tmp_path, capsys, path="notes/a.txt")] == [
        "docs/a.txt -> notes/a.txt"]
    assert len(run_log(tmp_path, capsys, path="docs", json=True)) == 5
    assert len(run_log(tmp_path, capsys, path=".")) == 6


def test_no_history_yet(tmp_path, capsys):
    assert log_cmd.run(Namespace(home=str(tmp_path), path=None, json=False, limit=None)) == 0
    assert "no history" in capsys.readouterr().err


def test_human_size():
    assert [human_size(n) for n in (0, 1023, 1024, 1229, 5 * 1024 ** 2, 3 * 1024 ** 3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.2 KiB", "5.0 MiB", "3.0 GiB"]
