"""One log stream, one format: what `p2p run` prints goes to stderr through
logging, activity lines included; --log-level and --log-json cover every
line; peers are named; a rename reads as a rename and a conflict says who won
and why, on every side."""

import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings

import pytest

from p2p.history.history import History
from p2p.logs import setup_logging
from p2p.security.identity import Identity
from p2p.history.precedence import why_wins, winner
from peers import free_port, wait_until

pytestmark = pytest.mark.slow

LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S")


def device(peer) -> str:
    return Identity.load_or_create(peer.home).device_id


def lines(peer):
    return peer.output().splitlines()


def assert_one_format(peer):
    bad = [line for line in lines(peer) if not LINE.match(line)]
    assert not bad, bad[:5]
    assert "Traceback" not in peer.output()
    assert peer.stdout_path.read_bytes() == b"", "something went to stdout"


def test_activity_lines_go_to_stderr_in_the_log_format_and_name_peers(make_peer):
    a = make_peer("a", split_output=True).start()
    b = make_peer("b", peers=[a], split_output=True).start()
    a_id, b_id = device(a), device(b)
    wait_until(lambda: f"+ peer b ({b_id[:7]}) at 127.0.0.1:{b.port} connected" in a.output(), 20, "a to name b")
    wait_until(lambda: f"+ peer a ({a_id[:7]}) at 127.0.0.1:{a.port} connected" in b.output(), 20, "b to name a")
    a.write("x.txt", b"hello")
    wait_until(lambda: b.has("x.txt", b"hello"), 20, "x.txt on b")
    os.rename(a.path("x.txt"), a.path("y.txt"))
    wait_until(lambda: b.has("y.txt", b"hello") and b.lacks("x.txt"), 20, "the rename on b")
    wait_until(lambda: "< rename x.txt -> y.txt" in b.output(), 10, "b to say the rename")
    assert a.stop() == 0
    wait_until(lambda: f"- peer a ({a_id[:7]}) disconnected" in b.output(), 20, "b to say a left")
    assert b.stop() == 0
    assert "> create x.txt" in a.output() and "> rename x.txt -> y.txt" in a.output()
    assert f"< create x.txt (5 B) from a ({a_id[:7]})" in b.output()
    assert f"< rename x.txt -> y.txt (5 B) from a ({a_id[:7]})" in b.output()
    assert "delete x.txt" not in b.output() and "create y.txt" not in b.output()   # a rename, not two changes
    assert_one_format(a)
    assert_one_format(b)


def start_alone(tmp_path, *flags):
    home = tmp_path / "solo"
    (home / "shared").mkdir(parents=True)
    err = open(tmp_path / "stderr.log", "wb")
    out = open(tmp_path / "stdout.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "p2p", "run", "--home", str(home), "--listen",
                             f"127.0.0.1:{free_port()}", "--discovery", "off", *flags], stdout=out, stderr=err)
    return home, proc, err, out


def recorded(home, path) -> bool:
    out = subprocess.run([sys.executable, "-m", "p2p", "log", "--home", str(home), "--json"],
                         capture_output=True, text=True, timeout=20).stdout
    return any(json.loads(line)["path"] == path for line in out.splitlines())


def run_and_record(tmp_path, *flags):
    home, proc, err, out = start_alone(tmp_path, *flags)
    try:
        wait_until(lambda: (home / ".p2p" / "control.sock").exists(), 20, "the peer to start")
        (home / "shared" / "x.txt").write_bytes(b"x")
        wait_until(lambda: recorded(home, "x.txt"), 20, "x.txt in the history")
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        err.close()
        out.close()
    assert (tmp_path / "stdout.log").read_bytes() == b""
    return (tmp_path / "stderr.log").read_text()


def test_log_level_error_hides_the_activity_lines(tmp_path):
    text = run_and_record(tmp_path, "--log-level", "error")
    assert text == "", text


def test_log_json_covers_every_line(tmp_path):
    text = run_and_record(tmp_path, "--log-json")
    records = [json.loads(line) for line in text.splitlines()]   # every line is JSON
    messages = {r["message"]: r for r in records}
    assert messages["> create x.txt"]["logger"] == "p2p.activity" and messages["> create x.txt"]["level"] == "info"
    assert any(m.startswith("p2p device ") for m in messages) and "stopped" in messages
    assert any(r["level"] == "warning" and "open LAN mode" in r["message"] for r in records)


def test_a_conflict_says_who_won_and_why_on_both_sides(make_peer, monkeypatch):
    monkeypatch.setenv("TZ", "JST-9")   # not UTC: the log says which zone the copy's name uses
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("doc.txt", b"first")
    wait_until(lambda: b.has("doc.txt", b"first"), 20, "doc.txt on b")
    assert b.stop() == 0
    a.write("doc.txt", b"edited on a")
    wait_until(lambda: "> update doc.txt" in a.output(), 20, "a to record its edit")
    time.sleep(0.01)   # b's edit is later (same Lamport clock: the later mtime wins)
    b.write("doc.txt", b"edited on b")
    b.start()
    a_id, b_id = device(a), device(b)
    said = f"! conflict on doc.txt: b ({b_id[:7]}"
    for peer in (a, b):
        wait_until(lambda: said in peer.output(), 20, f"{peer.name} to say the conflict")
    history = History.open(a.home, None, read_only=True)
    try:
        heads = history.heads("doc.txt")
        best = winner(heads)
        loser = next(e for e in heads if e is not best)
    finally:
        history.close()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(loser.mtime // 10 ** 9))
    copy = f"doc.sync-conflict-{stamp}-{a_id[:7]}.txt"
    for peer in (a, b):
        [line] = [line for line in lines(peer) if "! conflict on doc.txt" in line]
        assert f"b ({b_id[:7]}{', this peer' if peer is b else ''}) wins over a ({a_id[:7]}" in line
        assert f"({why_wins(best, loser)})" in line   # the rule's own words: Lamport clock, then mtime
        assert f"the losing version is kept as {copy} (time in UTC)" in line
        assert line.split()[1] == "WARNING"
        wait_until(lambda: peer.has(copy, b"edited on a"), 20, f"the copy on {peer.name}")
        assert "Traceback" not in peer.output()


def test_python_warnings_and_thread_errors_use_the_log_format(capsys):
    try:
        setup_logging("info")
        warnings.warn("something odd", UserWarning)
        warnings.warn_explicit("watch bookkeeping", RuntimeWarning, "inotify_c.py", 1,
                               module="watchdog.observers.inotify_c")
        import threading

        def boom():
            raise RuntimeError("a bug in a thread")

        thread = threading.Thread(target=boom, name="worker")
        thread.start()
        thread.join()
    finally:
        logging.captureWarnings(False)
        logging.getLogger().handlers[:] = []
        threading.excepthook = threading.__excepthook__
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert LINE.match(first) and "WARNING" in first and "something odd" in first
    assert "watch bookkeeping" not in err
    assert re.search(r"^\d\d:\d\d:\d\d ERROR   unexpected error in thread worker$", err, re.M)
    assert err.count("Traceback") == 1 and "RuntimeError: a bug in a thread" in err
