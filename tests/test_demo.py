"""The README matches reality, output by output: scripts/readme_demo.py runs
every command whose output README.md shows (two real peers on loopback) and
compares each block with what the commands print today."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "readme_demo.py"


def demo_module():
    spec = importlib.util.spec_from_file_location("readme_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_output_shown_in_the_readme_is_what_the_commands_print_today():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"\$ p2p log\n.*  rename  13 B  \w{8}  notes\.txt -> docs/notes\.txt\n", text)
    assert "  delete     -  -         docs/a.txt" in text
    assert "$ cat then/notes.txt then/docs/a.txt\nfirst draft\nalpha\n" in text      # the folder as it was
    restored = re.search(r"\$ p2p log --limit 1\n(.*)\n", text).group(1)
    assert re.fullmatch(r"\S+ \S+  [A-Z2-7]{7}:7  create  6 B  \w{8}  docs/a\.txt", restored)  # a new event
    assert re.search(r"\$ p2p ls desktop docs\ndesktop:/docs\n +6 .* a\.txt\n +13 .* notes\.txt\n", text)
    assert re.search(r"\$ p2p gui\nhttp://127\.0\.0\.1:\d+/\?token=[\w-]{40,}\n", text)
    assert "readme_demo: the 10 outputs in README.md match this run" in text


def test_the_check_tells_a_changed_format_from_a_different_run():
    demo = demo_module()
    readme = "x\n<!-- output: log -->\n```\n$ p2p log\n2026-11-25 12:29:08  KJIPTYV:7  create  6 B  b6a98d9c  a.txt\n```\n"
    same = "$ p2p log\n2027-01-02 03:04:05  ABCDEFG:7  create    6 B  b6a98d9c  a.txt\n"  # other time, id, widths
    assert demo.differences(readme, {"log": same}) == []
    moved = "$ p2p log\n2027-01-02 03:04:05  ABCDEFG:7  6 B  create  b6a98d9c  a.txt\n"
    assert "block 'log' differs" in demo.differences(readme, {"log": moved})[0]
    assert demo.differences(readme, {"log": same, "ls": "x"}) == ["README.md has no block <!-- output: ls -->"]
    assert demo.readme_blocks(demo.update(readme, {"log": moved})) == {"log": moved}


def test_the_loopback_example_uses_a_secret_and_only_loopback():
    readme = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "127.255.255.255" in b)
    assert "export P2P_SECRET=" in block
    runs = [line for line in block.splitlines() if " run " in line]
    assert len(runs) == 2
    for line in runs:
        assert re.search(r"--listen 127\.\d+\.\d+\.\d+:\d+", line) and "--discovery 127.255.255.255:" in line
