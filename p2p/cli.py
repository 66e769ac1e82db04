"""The ``p2p`` command: argument parsing and dispatch to the sub-commands.

Every ``run`` flag has an environment variable (``P2P_HOME``, ``P2P_ROOT``,
``P2P_LISTEN``, ``P2P_DISCOVERY``, ``P2P_PEERS``, ``P2P_SECRET``,
``P2P_SECRET_FILE``, ``P2P_NAME``, ``P2P_RESCAN_INTERVAL``, ``P2P_GUI``, ...); flags win
over the environment. The sub-command modules are imported lazily so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import socket
import sys
from pathlib import Path

from p2p import __version__, limits
from p2p.config import env


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (exit code 2), and no
    flag may be abbreviated (``--secret x`` must not mean ``--secret-file x``)."""

    def __init__(self, *args, **kwargs):
        kwargs.pop("allow_abbrev", None)   # never on, whoever builds the parser (sub-commands too)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one worth showing."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if "default:" in text or action.default in (None, False, [], argparse.SUPPRESS) \
                or not action.option_strings:
            return text
        if text.endswith(")"):   # "(env P2P_HOME)" -> "(env P2P_HOME; default: .)"
            return f"{text[:-1]}; default: %(default)s)"
        return f"{text} (default: %(default)s)"


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=env("P2P_HOME", "."),
                   help="directory holding events.jsonl and .p2p/ (env P2P_HOME)")


def _logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default=env("P2P_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"],
                   help="the least severe lines shown; 'warning' or 'error' also hide the activity "
                        "lines (env P2P_LOG_LEVEL)")
    p.add_argument("--log-json", action="store_true", default=env("P2P_LOG_JSON") == "1",
                   help="every line as one JSON object, on stderr (env P2P_LOG_JSON=1)")


def _seconds(text) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds, 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="p2p",
        description="Peer-to-peer file synchroniser for local networks, with a replayable history.",
        epilog="`p2p COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"p2p {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    parser.commands = {}

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        parser.commands[name] = sub.add_parser(name, help=summary, description=description)
        return parser.commands[name]

    run = command("run", "sync the shared folder with the peers on the network",
                  "Watch the shared folder, find peers and keep every folder identical, until "
                  "SIGINT or SIGTERM (exit 0). What happens is logged on stderr, one line each.")
    _home(run)
    run.add_argument("--root", default=env("P2P_ROOT"),
                     help="the synced folder (env P2P_ROOT; default: HOME/shared)")
    run.add_argument("--listen", default=env("P2P_LISTEN", f"0.0.0.0:{limits.DEFAULT_TCP_PORT}"),
                     metavar="HOST:PORT", help="TCP address for peer channels (env P2P_LISTEN)")
    run.add_argument("--discovery", default=env("P2P_DISCOVERY", "lan"), metavar="lan|off|ADDR:PORT",
                     help="'lan' (broadcast on every interface, UDP %d), an IPv4 ADDR:PORT such as "
                          "127.255.255.255:%d for loopback, or 'off' (env P2P_DISCOVERY)"
                          % (limits.DEFAULT_UDP_PORT, limits.DEFAULT_UDP_PORT))
    run.add_argument("--peer", action="append", default=[env("P2P_PEERS")] if env("P2P_PEERS") else [],
                     metavar="HOST:PORT", help="a static peer; repeatable (env P2P_PEERS, comma separated)")
    run.add_argument("--secret-file", default=env("P2P_SECRET_FILE"), metavar="FILE",
                     help="file holding the cluster secret; only peers that know it get in "
                          "(env P2P_SECRET_FILE, or the secret itself in P2P_SECRET)")
    run.add_argument("--name", default=env("P2P_NAME", socket.gethostname()),
                     help="a human name for this peer; the host name by default (env P2P_NAME)")
    run.add_argument("--keep-bytes", default=env("P2P_KEEP_BYTES"), metavar="SIZE",
                     help="bound the block store (current and old versions) to this size, e.g. 500M, 10G, "
                          "1TiB, or 'unlimited' (env P2P_KEEP_BYTES; default: the folder's size plus as much "
                          "again of old versions, at least 1 GiB of them; the oldest go first)")
    run.add_argument("--keep-days", default=env("P2P_KEEP_DAYS"), metavar="DAYS",
                     help="also prune old versions replaced more than this many days ago "
                          "(env P2P_KEEP_DAYS; default: only the size bound prunes)")
    run.add_argument("--rescan-interval", type=_seconds, default=env("P2P_RESCAN_INTERVAL", limits.RESCAN_INTERVAL),
                     metavar="SECONDS", help="rescan the whole folder this often, for changes the watcher missed; "
                                             "0 = never (env P2P_RESCAN_INTERVAL)")
    run.add_argument("--gui", default=env("P2P_GUI"), metavar="HOST:PORT|off",
                     help="serve the dashboard (`p2p gui` prints its address) on this loopback address, port 0 for "
                          "any free one, or 'off' (env P2P_GUI; default: 127.0.0.1:%d, skipped with a warning when "
                          "that port is taken)" % limits.DEFAULT_GUI_PORT)
    _logging(run)

    status = command("status", "peers, transfers and the folder of the running peer",
                     "Ask the peer running with this home whether it is in sync, and if not what is "
                     "missing; its peers (connected or not, what each lacks, the last error), the "
                     "transfers, the folder and what cannot be synced.")
    _home(status)
    status.add_argument("--watch", action="store_true", help="refresh the view every second")
    status.add_argument("--json", action="store_true", help="print the whole status as JSON")

    log = command("log", "the history, newest first (like git log)",
                  "Print the events of the history (every change of every peer), newest first.")
    _home(log)
    log.add_argument("path", nargs="?", help="only events of this file or directory: a path inside the folder, "
                     "or a file-system path (absolute, or relative to the current directory) that lies in it")
    log.add_argument("--root", default=env("P2P_ROOT"), help="the synced folder (env P2P_ROOT, default HOME/shared)")
    log.add_argument("--json", action="store_true", help="one canonical JSON event per line")
    log.add_argument("--limit", "-n", type=int, help="at most N events")

    restore = command("restore", "rebuild the folder (or one path) as it was at a moment",
                      "Bring the folder, or one path, back as it was at a moment of the history: in "
                      "place (a new change that syncs like any other) or into another directory.")
    _home(restore)
    restore.add_argument("path", nargs="?", help="bring only this file or directory back, in place "
                         "(with neither PATH nor --to: the whole folder, in place)")
    restore.add_argument("--at", required=True, help="an ISO-8601 time, an event id as `p2p log` shows it "
                         "(ORIGIN:SEQ; a unique prefix of the origin is enough), or 'now'")
    restore.add_argument("--to", help="rebuild the folder into this (empty or new) directory instead")
    restore.add_argument("--root", default=env("P2P_ROOT"), help="the synced folder (default: HOME/shared)")

    ls = command("ls", "list a connected peer's folder, as its events say, without syncing",
                 "List one directory of a connected peer's folder, as that peer's history says.")
    _home(ls)
    ls.add_argument("peer", help="device id (or a unique prefix) or name of a connected peer")
    ls.add_argument("path", nargs="?", default="", help="a directory inside the folder")

    ident = command("id", "print this peer's device id",
                    "Print this peer's device id, the one other peers list in their .p2p/trusted.")
    _home(ident)

    gui = sub.add_parser("gui", help="print the address of the running peer's dashboard, with its access token",
                         description="Print the URL of the dashboard that `p2p run` serves, with the token that "
                                     "opens it (from HOME/.p2p/gui.token). It opens nothing by itself.")
    _home(gui)

    for name, verb in (("pause", "stop"), ("resume", "start again")):
        cmd = sub.add_parser(name, help=f"{verb} syncing the folder, or with one peer, in the running peer",
                             description=f"{name.capitalize()}: with no PEER, {verb} recording local changes "
                                         f"and writing remote ones (the whole folder); with PEER, {verb} "
                                         f"exchanging with that peer. `p2p status` shows what is paused.")
        _home(cmd)
        cmd.add_argument("peer", nargs="?", default="", help="device id (or a unique prefix) or name of a peer")
    return parser


def _unknown_arguments(command: argparse.ArgumentParser, unknown) -> None:
    """One line naming what is not understood, and the flag meant when it is an
    abbreviation (abbreviations are refused, never guessed); exits with code 2."""
    flags = [f for action in command._actions for f in action.option_strings if f.startswith("--")]
    first = unknown[0].split("=", 1)[0]
    meant = [f for f in flags if f.startswith(first)] if first.startswith("--") else []
    if meant:
        command.error(f"{first} is not a flag: did you mean {' or '.join(meant)}? (flags cannot be abbreviated)")
    command.error(f"unrecognized arguments: {' '.join(unknown)}")


COMMANDS = {
    "run": "p2p.commands.run",
    "status": "p2p.commands.status",
    "log": "p2p.commands.log",
    "restore": "p2p.commands.restore",
    "ls": "p2p.commands.ls",
    "id": "p2p.commands.id",
    "gui": "p2p.commands.gui",
    "pause": "p2p.commands.pause",
    "resume": "p2p.commands.pause",
}


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:   # `p2p` alone: the help, and exit code 2 (no command ran)
        parser.print_help()
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_arguments(parser.commands[args.command], unknown)
    args.home = str(Path(args.home).expanduser())
    if getattr(args, "root", None) is None and hasattr(args, "root"):
        args.root = str(Path(args.home) / "shared")
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return module.run(args) or 0
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `p2p log | head`
        sys.stderr.close()
        return 0
