"""scripts/simulate.py end to end: one small real run of three peers on loopback."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from peers import tree

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "simulate.py"
RUN_TIMEOUT = 90


def run_simulation(args) -> subprocess.CompletedProcess:
    """Run the script; on a timeout, SIGTERM it so that it stops its own peers."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"simulate.py ran over {RUN_TIMEOUT}s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_three_peers_small_workload(tmp_path):
    out_json = tmp_path / "simulate.json"
    homes = tmp_path / "homes"
    plot = tmp_path / "simulate.png"
    done = run_simulation(["--peers", "3", "--rate", "5", "--duration", "3",
                           "--out", str(out_json), "--plot", str(plot), "--workdir", str(homes)])
    assert done.returncode == 0, done.stdout + done.stderr

    assert "simulation (one row per N)" in done.stdout
    assert "targets (issue 7)" in done.stdout
    assert "idle RSS <= 40 MB per peer" in done.stdout

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out_json.read_text())
    assert {"when", "command", "cpus", "targets", "runs"} <= report.keys()
    (run,) = report["runs"]
    assert {"peers", "rate", "duration", "size", "start_s", "connect_s", "idle_bytes_per_s", "changes",
            "convergence_s", "bytes_per_change", "bytes_per_change_halves", "resources", "identical",
            "differences", "exit_codes"} <= run.keys()
    assert run["peers"] == 3 and run["identical"] and run["differences"] == []
    assert run["exit_codes"] == [0, 0, 0]
    assert len(run["changes"]) == 15
    assert all(c["seconds"] is not None and c["seconds"] > 0 for c in run["changes"])
    assert run["convergence_s"]["unconverged"] == 0
    assert run["convergence_s"]["median"] <= run["convergence_s"]["p95"] <= run["convergence_s"]["max"]
    # every change moved its content to two other peers at least
    assert run["bytes_per_change"] >= 2 * 1024 * 0.5
    assert [r["peer"] for r in run["resources"]] == ["p00", "p01", "p02"]
    assert all(r["idle_rss_mb"] > 5 and r["end_rss_mb"] > 5 for r in run["resources"])
    assert {t["target"] for t in report["targets"]} >= {"idle RSS <= 40 MB per peer"}

    # the folders the script calls identical are, byte for byte
    folders = [tree(homes / "n3" / name / "shared") for name in ("p00", "p01", "p02")]
    assert folders[0] and folders[0] == folders[1] == folders[2]
