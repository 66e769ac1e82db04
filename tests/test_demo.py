"""The README's history demo runs and shows what it claims."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_history_demo_log_and_restore_at_a_past_moment():
    out = subprocess.run([str(REPO / "scripts" / "demo_history.sh")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "rename  notes.txt -> docs/notes.txt" in text
    assert "delete  docs/a.txt" in text
    assert "./docs/a.txt: alpha" in text and "./notes.txt: first draft" in text   # the folder as it was
    assert text.rstrip().splitlines()[-1].split()[3:5] == ["create", "docs/a.txt"]  # restore is a new event
