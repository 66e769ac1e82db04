"""Ignore rules: ``.p2pignore`` in the folder root, in gitignore syntax.

Matching is done by the ``pathspec`` library (gitignore semantics, including
negation and directory patterns) rather than a hand-written matcher. An
ignored path is never announced and never overwritten by a remote version.
The ``.p2pignore`` file itself is an ordinary synced file, so every peer of
a folder shares the same rules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pathspec

log = logging.getLogger("p2p.ignore")

IGNORE_FILE = ".p2pignore"


class IgnoreRules:
    def __init__(self, root: Path):
        self.root = root
        self.spec = pathspec.GitIgnoreSpec.from_lines([])
        self.reload()

    def reload(self) -> None:
        try:
            lines = (self.root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            lines = []
        self.spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def matches(self, path: str) -> bool:
        if not path or path == IGNORE_FILE or not self.spec.patterns:
            return False
        parts = path.split("/")
        # a path is ignored when it, or any directory above it, matches; a
        # directory is also tried with a trailing slash ("build/" patterns)
        if any(self.spec.match_file("/".join(parts[:i]) + "/") for i in range(1, len(parts))):
            return True
        return self.spec.match_file(path) or ((self.root / path).is_dir() and self.spec.match_file(path + "/"))
