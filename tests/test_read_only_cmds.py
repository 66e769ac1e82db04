"""The read-only commands (`p2p id`, `log`, `restore --to`, `status`, `ls`) run
as real processes: they create nothing where they run, and an empty answer is
one line that says why, with exit code 1. `p2p log` shows short event ids that
`restore --at` takes, and file-system paths inside the folder."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from p2p.history.history import History
from peers import wait_until


def p2p(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={k: v for k, v in os.environ.items() if not k.startswith("P2P_")})


def everything(directory):
    return sorted(os.path.relpath(os.path.join(d, n), directory)
                  for d, dirs, files in os.walk(directory) for n in dirs + files)


NO_HISTORY = "no history in {home} (no events.jsonl): `p2p run` records one from its first start there"


@pytest.mark.parametrize("command, message", [
    (["id"], "p2p id: no identity in {home} yet (no .p2p/identity.key): `p2p run` creates it at its first start "
             "there"),
    (["log"], "p2p log: " + NO_HISTORY),
    (["log", "docs/a.txt"], "p2p log: " + NO_HISTORY),
    (["status"], "p2p status: no peer is running with home .: " + NO_HISTORY),
    (["status", "--json"], "p2p status: no peer is running with home .: " + NO_HISTORY),
    (["restore", "--at", "now", "--to", "out"], "p2p restore: " + NO_HISTORY),
    (["restore", "--at", "2026-01-01T00:00", "--to", "out"], "p2p restore: " + NO_HISTORY),
    (["restore", "--at", "now"], "p2p restore: " + NO_HISTORY),
    (["restore", "docs/a.txt", "--at", "now"], "p2p restore: " + NO_HISTORY),
    (["ls", "somebody"], "p2p ls: no peer is running with home ."),
    (["gui"], "p2p gui: no peer is running with home .: start one with `p2p run`"),
    (["pause"], "p2p pause: no peer is running with home ."),
    (["resume", "somebody"], "p2p resume: no peer is running with home ."),
])
def test_in_an_empty_directory_nothing_is_created_and_the_answer_says_why(tmp_path, command, message):
    out = p2p(*command, cwd=tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", message.format(home=tmp_path) + "\n")
    assert everything(tmp_path) == []


def test_a_home_that_does_not_exist_is_said_so_and_not_created(tmp_path):
    home = tmp_path / "nowhere"
    out = p2p("log", "--home", str(home))
    assert out.returncode == 1
    assert out.stderr == (f"p2p log: {home} does not exist (--home names the directory where `p2p run` "
                          f"keeps events.jsonl)\n")
    assert not home.exists()


def test_restore_to_beside_a_copied_history_writes_only_the_destination(tmp_path):
    """A home holding only events.jsonl (no block store): restoring a tree of
    directories writes DIR and nothing else (no .p2p/blocks)."""
    source = History.open(tmp_path / "source", "A" * 32)
    source.make_local("create", "dir", "docs", mode=0o755, time=1_764_072_063.0)
    source.close()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(tmp_path / "source" / "events.jsonl", home / "events.jsonl")
    out = p2p("restore", "--at", "now", "--to", "then", cwd=home)
    assert out.returncode == 0, out.stderr
    assert everything(home) == ["events.jsonl", "then", "then/docs"]


@pytest.mark.slow
def test_history_answers_of_a_real_peer(make_peer, tmp_path):
    a = make_peer("a").start()
    a.write("docs/a.txt", b"one")
    wait_until(lambda: "docs/a.txt" in p2p("log", "--home", str(a.home)).stdout, 20, "the change recorded")
    a.write("docs/a.txt", b"two")
    wait_until(lambda: "update" in p2p("log", "--home", str(a.home)).stdout, 20, "the edit recorded")
    before = everything(a.home)

    # `p2p id` beside the running peer prints its id and writes nothing
    ident = p2p("id", "--home", str(a.home))
    status = json.loads(p2p("status", "--home", str(a.home), "--json").stdout)
    assert ident.stdout.splitlines()[0].replace("-", "") == status["device"]

    # the log: aligned, newest first, short ids; a file-system path works from the home and absolute
    log = p2p("log", cwd=a.home)
    lines = log.stdout.splitlines()
    short = status["device"][:7]
    assert [line.split()[2:4] for line in lines] == [[f"{short}:3", "update"], [f"{short}:2", "create"],
                                                     [f"{short}:1", "create"]]
    assert len({line.index(" docs") for line in lines}) == 1  # the path column lines up
    one_file = p2p("log", "docs/a.txt", "--home", str(a.home)).stdout
    assert p2p("log", "shared/docs/a.txt", cwd=a.home).stdout == one_file
    assert p2p("log", str(a.root / "docs" / "a.txt"), "--home", str(a.home)).stdout == one_file
    assert len(one_file.splitlines()) == 2

    # an unknown path, a path outside the folder
    unknown = p2p("log", "docs/b.txt", cwd=a.home)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == f"p2p log: no event in the history concerns docs/b.txt (in the folder {a.root})\n"
    outside = p2p("log", str(tmp_path), "--home", str(a.home))
    assert outside.stderr == f"p2p log: {tmp_path} is not inside the folder {a.root}\n"

    # `--at` takes the short id that `p2p log` shows
    first_write = re.split(r"\s{2,}", lines[1])[1]
    then = tmp_path / "then"
    restored = p2p("restore", "--home", str(a.home), "--at", first_write, "--to", str(then))
    assert restored.returncode == 0, restored.stderr
    assert (then / "docs" / "a.txt").read_bytes() == b"one"

    # before the first event: said so, nothing written
    early = p2p("restore", "--home", str(a.home), "--at", "2001-01-01T00:00", "--to", str(tmp_path / "early"))
    assert early.returncode == 1
    assert early.stderr.startswith("p2p restore: nothing to restore as of 2001-01-01T00:00: "
                                   "that is before the history starts (")
    assert not (tmp_path / "early").exists()
    assert everything(a.home) == before  # nothing above wrote into the home


@pytest.mark.slow
def test_ls_says_when_a_path_is_missing_or_empty(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("docs/readme.txt", b"x" * 1234)
    (a.root / "empty").mkdir()
    wait_until(lambda: b.has("docs/readme.txt", b"x" * 1234) and (b.root / "empty").is_dir(), 20, "sync")
    missing = p2p("ls", "--home", str(b.home), "a", "docs/nosuch.txt")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "p2p ls: docs/nosuch.txt: no such file or directory in the folder of a\n"
    empty = p2p("ls", "--home", str(b.home), "a", "empty/")
    assert (empty.returncode, empty.stdout) == (0, "a:/empty\n  (empty directory)\n")
    one = p2p("ls", "--home", str(b.home), "a", "./docs/readme.txt")
    assert one.returncode == 0
    assert one.stdout.splitlines()[0] == "a:/docs/readme.txt"
    assert one.stdout.splitlines()[1].split()[0] == "1234" and one.stdout.endswith("  readme.txt\n")
    top = p2p("ls", "--home", str(b.home), "a").stdout.splitlines()
    assert top[0] == "a:/" and [line.split()[-1] for line in top[1:]] == ["docs/", "empty/"]
