"""`p2p gui`: print the address of the running peer's dashboard with its
access token (``HOME/.p2p/gui.token``), to open in a browser. Opens nothing."""

from __future__ import annotations

import sys

from p2p.gui.access import read_token
from p2p.net.control import ask


def run(args) -> int:
    try:
        reply = ask(args.home, {"cmd": "gui"})
    except OSError:
        print(f"p2p gui: no peer is running with home {args.home}: start one with `p2p run`", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"p2p gui: {reply['error']}", file=sys.stderr)
        return 1
    token = read_token(args.home)
    if token is None:
        print(f"p2p gui: the running peer's token file is missing ({args.home}/.p2p/gui.token): restart it",
              file=sys.stderr)
        return 1
    print(f"{reply['url']}?token={token}")
    return 0
