"""Ignore rules: ``.p2pignore`` in the folder root, in gitignore syntax.

Matching is done by the ``pathspec`` library (gitignore semantics, including
negation and directory patterns) rather than a hand-written matcher. An
ignored path is never announced and never overwritten by a remote version.
The ``.p2pignore`` file itself is an ordinary synced file, so every peer of
a folder shares the same rules.

A ``.p2pignore`` that cannot be used (a directory, a FIFO, a symbolic link,
unreadable, larger than ``limits.MAX_IGNORE_BYTES``, not UTF-8, or with an
invalid pattern) never stops the peer: the warning is logged once (until the
problem changes), and the last good rules stay (none at start).

``pathspec`` is imported only once there are rules to compile: a folder
without a ``.p2pignore`` never needs it (80 ms of every start).
"""

from __future__ import annotations

import errno
import logging
import os
import stat as statmod
from pathlib import Path
from typing import Optional

from p2p import limits

log = logging.getLogger("p2p.ignore")

IGNORE_FILE = ".p2pignore"


class UnusableRules(Exception):
    """The ignore file cannot be used; the message says why."""


class IgnoreRules:
    def __init__(self, root: Path):
        self.root = root
        self.spec = None                     # the compiled rules (a pathspec.GitIgnoreSpec); None: none
        self.problem: Optional[str] = None   # why the file on disk is not in use (warned once)
        self.reload()

    def reload(self) -> None:
        """Read the rules again; an unusable file keeps the last good ones."""
        try:
            text = self._read()
            spec = _compiled(text) if text else None
        except (UnusableRules, ValueError) as exc:   # ValueError: not UTF-8, or an invalid pattern
            problem = str(exc)
            if problem != self.problem:
                log.warning("%s is not used (%s): %s", IGNORE_FILE, problem,
                            "keeping the rules read before" if self.spec is not None and self.spec.patterns
                            else "nothing is ignored")
                self.problem = problem
            return
        self.problem = None
        self.spec = spec

    def _read(self) -> str:
        """The file's text ("" if there is none); never blocks (a FIFO), never
        follows a link, never reads more than ``limits.MAX_IGNORE_BYTES``."""
        try:
            fd = os.open(self.root / IGNORE_FILE, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return ""
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnusableRules("it is a symbolic link") from None
            raise UnusableRules(f"cannot open it: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not statmod.S_ISREG(st.st_mode):
                raise UnusableRules("it is a directory" if statmod.S_ISDIR(st.st_mode) else "not a regular file")
            if st.st_size > limits.MAX_IGNORE_BYTES:
                raise UnusableRules(f"{st.st_size} bytes, more than {limits.MAX_IGNORE_BYTES}")
            try:
                data = os.read(fd, limits.MAX_IGNORE_BYTES + 1)
            except OSError as exc:
                raise UnusableRules(f"cannot read it: {exc.strerror}") from None
            if len(data) > limits.MAX_IGNORE_BYTES:
                raise UnusableRules(f"more than {limits.MAX_IGNORE_BYTES} bytes")
        finally:
            os.close(fd)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableRules("it is not UTF-8 text") from None

    def matches(self, path: str) -> bool:
        if not path or path == IGNORE_FILE or self.spec is None or not self.spec.patterns:
            return False
        parts = path.split("/")
        # a path is ignored when it, or any directory above it, matches; a
        # directory is also tried with a trailing slash ("build/" patterns)
        if any(self.spec.match_file("/".join(parts[:i]) + "/") for i in range(1, len(parts))):
            return True
        return self.spec.match_file(path) or ((self.root / path).is_dir() and self.spec.match_file(path + "/"))


def _compiled(text: str):
    """The rules of ``text`` (ValueError: an invalid pattern)."""
    import pathspec   # (only when there are rules: see the module's docstring)

    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())
