"""`p2p run`: start a peer and sync until SIGINT or SIGTERM (then exit 0)."""

from __future__ import annotations

import errno
import logging
import math
import signal
import sys
from pathlib import Path

import gevent

from p2p.config import Config, parse_address, parse_discovery, parse_gui, parse_peers
from p2p.history.paths import TEMP_PREFIX
from p2p.logs import activity, setup_logging
from p2p.units import parse_size


def config_from_args(args) -> Config:
    """The settings; ValueError naming the flag for a bad one."""
    return Config(
        home=Path(args.home).resolve(),
        root=Path(args.root).resolve(),
        listen=_setting("--listen", parse_address, args.listen),
        discovery=_setting("--discovery", parse_discovery, args.discovery),
        peers=_setting("--peer", parse_peers, args.peer),
        secret_file=args.secret_file,
        secret_env=None if args.secret_file else _env_secret(),
        name=args.name,
        keep_bytes=None if args.keep_bytes is None else _setting("--keep-bytes", _keep_bytes, args.keep_bytes),
        keep_days=None if args.keep_days is None else _setting("--keep-days", _days, args.keep_days),
        rescan_interval=args.rescan_interval,
        gui=parse_gui(args.gui),
        gui_required=args.gui is not None,
    )


def _setting(flag: str, parse, value):
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _keep_bytes(text) -> int:
    """A size (500M, 10G), or ``unlimited``: no bound at all."""
    return sys.maxsize if str(text).strip().lower() == "unlimited" else parse_size(text)


def _days(text) -> float:
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not 0 <= days < math.inf:
        raise ValueError(f"{text!r} is not a number of days (0 or more)")
    return days


def explain_os_error(exc: OSError, root: Path) -> str:
    """An OSError as one sentence: the path p2p could not use and why (a
    temporary file in the folder is reported as the folder itself)."""
    reason = (exc.strerror or str(exc)).rstrip(".")
    name = exc.filename
    if name is None:
        return reason[0].lower() + reason[1:]
    if Path(name).name.startswith(TEMP_PREFIX):
        name = Path(name).parent
    hint = ""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (p2p must be able to read and write the folder and HOME/.p2p: check owner and permissions)"
    elif Path(name) == root or exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = " (check --root and --home)"
    return f"cannot use {name}: {reason[0].lower() + reason[1:]}{hint}"


def explain_listen_error(exc: OSError, address) -> str:
    host, port = address
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: the port is in use (another p2p peer or another program); "
                f"choose another with --listen")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: {host} is not an address of this machine (see --listen)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _env_secret():
    """P2P_SECRET as set: None if unset; an empty one is kept, so that
    ``load_secret`` refuses it instead of silently meaning open mode."""
    import os

    return os.environ.get("P2P_SECRET")


def run(args) -> int:
    setup_logging(args.log_level, args.log_json)
    from p2p.net.node import CannotListen, Node  # imports gevent-using modules only when running

    from p2p.folder.marker import FolderUnavailable
    from p2p.history.log import LogLocked
    from p2p.security.identity import IdentityError

    # after the imports: the hub's child watcher would stall the subprocess
    # that pycryptodome's import runs (platform.architecture)
    gevent.get_hub().print_exception = _log_greenlet_error

    def refuse(message: str) -> int:
        """One line, exit code 2 (a JSON line with --log-json)."""
        if args.log_json:
            logging.getLogger("p2p").error(message)
        else:
            print(f"p2p run: {message}", file=sys.stderr)
        return 2

    try:
        config = config_from_args(args)
    except ValueError as exc:
        return refuse(str(exc))
    try:
        node = Node(config)
    except OSError as exc:   # an unreadable folder, a home that is a file, ...
        return refuse(explain_os_error(exc, config.root))
    except (ValueError, LogLocked, IdentityError, FolderUnavailable) as exc:  # a bad setting,
        # a busy home, an unsafe key, a missing folder: one line
        return refuse(str(exc))
    try:
        node.start()
    except OSError as exc:
        node.stop()
        if isinstance(exc, CannotListen):
            return refuse(explain_listen_error(exc, config.listen))
        return refuse(f"cannot start: {explain_os_error(exc, config.root)}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, lambda: gevent.spawn(node.stop))
    node.serve_forever()
    activity().info("stopped")
    return node.exit_code


def _log_greenlet_error(context, kind, value, tb) -> None:
    """gevent's hub prints a dying greenlet's traceback straight to stderr: send
    it through logging instead, once, in the one format (a bug, by definition:
    every expected failure is handled where it happens)."""
    logging.getLogger("p2p").error("unexpected error in %s", context, exc_info=(kind, value, tb))
