"""kill -9 of either side at random moments of a sync never reverts a newer
version, never makes a conflict copy when only one side edits, leaves no
temporary file and no invalid history line (scripts/kill_rounds.py; the full
20-round run is in the closing notes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import kill_rounds  # noqa: E402


def test_kill_9_rounds_on_either_side_lose_and_revert_nothing(tmp_path):
    outcome = kill_rounds.run(tmp_path, rounds=6, small=200, large=1, seed=20261201, out=lambda line: None)
    assert kill_rounds.passed(outcome), outcome
