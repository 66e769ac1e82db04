"""`p2p ls PEER [PATH]`: list a connected peer's folder as its events say,
without syncing anything (asks the running peer, which asks that peer)."""

from __future__ import annotations

import sys
import time

from p2p.net.control import ask


def run(args) -> int:
    try:
        reply = ask(args.home, {"cmd": "ls", "peer": args.peer, "path": args.path or ""})
    except OSError:
        print(f"p2p ls: no peer is running with home {args.home}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"p2p ls: {reply['error']}", file=sys.stderr)
        return 1
    print(f"{reply['name'] or reply['peer'][:7]}:/{args.path or ''}")
    for e in reply["entries"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["mtime"] / 1e9)) if e["mtime"] else ""
        name = e["name"] + ("/" if e["kind"] == "dir" else "")
        size = str(e["size"]) if e["kind"] == "file" else "-"
        print(f"{size:>12}  {when:<16}  {name}")
    return 0
