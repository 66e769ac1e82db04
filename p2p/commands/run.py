"""`p2p run`: start a peer and sync until SIGINT or SIGTERM (then exit 0)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import gevent

from p2p.config import Config, parse_address, parse_discovery, parse_gui, parse_peers
from p2p.logs import setup_logging


def config_from_args(args) -> Config:
    return Config(
        home=Path(args.home).resolve(),
        root=Path(args.root).resolve(),
        listen=parse_address(args.listen),
        discovery=parse_discovery(args.discovery),
        peers=parse_peers(args.peer),
        secret_file=args.secret_file,
        secret_env=None if args.secret_file else _env_secret(),
        name=args.name,
        keep_bytes=int(args.keep_bytes) if args.keep_bytes else None,
        keep_days=float(args.keep_days) if args.keep_days else None,
        rescan_interval=args.rescan_interval,
        gui=parse_gui(args.gui),
        gui_required=args.gui is not None,
    )


def _env_secret():
    """P2P_SECRET as set: None if unset; an empty one is kept, so that
    ``load_secret`` refuses it instead of silently meaning open mode."""
    import os

    return os.environ.get("P2P_SECRET")


def run(args) -> int:
    setup_logging(args.log_level, args.log_json)
    from p2p.net.node import Node  # imports gevent-using modules only when running

    from p2p.folder.marker import FolderUnavailable
    from p2p.history.log import LogLocked
    from p2p.security.identity import IdentityError

    try:
        config = config_from_args(args)
        node = Node(config, out=lambda line: print(line, flush=True))
    except (ValueError, OSError, LogLocked, IdentityError, FolderUnavailable) as exc:  # a bad setting,
        # a busy home, an unsafe key, a missing folder: one line
        print(f"p2p run: {exc}", file=sys.stderr)
        return 2
    try:
        node.start()
    except OSError as exc:
        print(f"p2p run: cannot start: {exc}", file=sys.stderr)
        node.stop()
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, lambda: gevent.spawn(node.stop))
    node.serve_forever()
    logging.getLogger("p2p").info("stopped")
    return node.exit_code
