"""`make bench`'s real-tree scenarios (scripts/bench_trees.py) at a tiny scale:
every scenario runs through `scripts/bench.py --trees-only` with real `p2p run`
peers and rsync, and every receiver ends byte-identical to the reference
tree. Also: the tree comparison the benchmark relies on sees a changed byte,
a left-over temporary file and a missing directory, and ignores the tools'
folder markers."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_trees import identical  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_tree_scenario_runs_tiny_and_ends_identical(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--trees-only", "--scale", "0.004",
                           "--tools", "p2p,rsync", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "bench.json").read_text())["suites"]["trees"]
    trees = [r for r in rows if "identical" in r]
    assert len(trees) == 3, rows                                      # tar, stdlib, big
    for row in trees:
        assert row["identical"] is True, row
        assert row["p2p s"] > 0 and row["p2p wire MB"] > 0 and row["p2p peak RSS MB"] > 0, row
        assert (row["rsync -a s"] is not None) == bool(shutil.which("rsync")), row
        assert row["syncthing s"] is None and row["met"] is None, row   # not asked for; targets need --scale 1
    starts = [r for r in rows if "recorded all" in r]
    assert [r["scenario"].rsplit(": ", 1)[1] for r in starts] == ["first scan", "restart"], rows
    for row in starts:
        assert row["recorded all"] is True and row["p2p s"] > 0 and row["p2p RSS MB"] > 0, row
    history = [r for r in rows if "events over" in r["scenario"]]
    assert len(history) == 2, rows                                    # first start, restart
    for row in history:
        assert row["p2p s"] > 0 and row["p2p peak RSS MB"] > 0, row
    edits = [r for r in rows if "p2p store growth MB" in r]
    assert len(edits) == 4, rows                                      # insert, delete, sqlite, append
    for row in edits:
        assert row["p2p s"] > 0 and row["p2p wire MB"] > 0 and row["p2p store growth MB"] is not None, row
        assert (row["rsync wire MB"] is not None) == bool(shutil.which("rsync")), row
    assert not [r for r in rows if r.get("error")], rows


def test_tree_comparison_sees_every_difference_but_the_markers(tmp_path):
    ref, got = tmp_path / "ref", tmp_path / "got"
    for root in (ref, got):
        (root / "d" / "empty").mkdir(parents=True)
        (root / "d" / "f").write_bytes(b"abc")
    (got / ".p2p-folder").write_text("marker")
    (got / ".stfolder").mkdir()
    assert identical(got, ref)
    (got / "d" / "f").write_bytes(b"abd")                              # same size, one byte differs
    assert not identical(got, ref)
    (got / "d" / "f").write_bytes(b"abc")
    (got / "d" / ".p2p-tmp-0123456789abcdef").write_bytes(b"")         # a transfer not finished
    assert not identical(got, ref)
    (got / "d" / ".p2p-tmp-0123456789abcdef").unlink()
    (got / "d" / "empty").rmdir()
    assert not identical(got, ref)
