"""`p2p ls PEER [PATH]`: list a connected peer's folder as its events say,
without syncing anything (asks the running peer, which asks that peer).

PATH is a directory (its entries are listed) or a file (its own line) inside
the folder; an empty directory and a path the peer does not have are said so.
"""

from __future__ import annotations

import sys
import time
import unicodedata

from p2p.net.control import ask


def _folder_path(text: str) -> str:
    text = text.strip().strip("/")
    while text.startswith("./"):
        text = text[2:]
    return "" if text == "." else unicodedata.normalize("NFC", text)


def run(args) -> int:
    path = _folder_path(args.path or "")
    try:
        reply = ask(args.home, {"cmd": "ls", "peer": args.peer, "path": path})
    except OSError:
        print(f"p2p ls: no peer is running with home {args.home}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"p2p ls: {reply['error']}", file=sys.stderr)
        return 1
    peer = reply["name"] or reply["peer"][:7]
    entries = reply["entries"]
    if not entries:
        print(f"p2p ls: {path}: no such file or directory in the folder of {peer}", file=sys.stderr)
        return 1
    print(f"{peer}:/{path}")
    listed = [e for e in entries if e["name"] != "."]
    if not listed:
        print("  (empty directory)")
    for e in listed:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["mtime"] / 1e9)) if e["mtime"] else ""
        name = e["name"] + ("/" if e["kind"] == "dir" else "")
        size = str(e["size"]) if e["kind"] == "file" else "-"
        print(f"{size:>12}  {when:<16}  {name}")
    return 0
