"""`p2p status`: what the running peer sees — whether it is in sync and if
not what is missing, its peers (connected or not, what each lacks of ours,
the last error), the transfers, the folder, what cannot be synced.

Asks the running `p2p run` over its control socket; `--watch` redraws every
second, `--json` prints the whole answer. The view fits 80 columns.
"""

from __future__ import annotations

import sys
import textwrap
import time

import ujson

from p2p.commands.home import no_history
from p2p.net.control import ask
from p2p.security.identity import format_device_id
from p2p.units import human_size
from p2p.verdict import describe_lack, describe_paused


WIDTH = 80          # the view fits an 80-column terminal
NAME = 12           # columns for a peer's name
INDENT = " " * (2 + NAME + 2)


def _ago(t, now) -> str:
    if not t:
        return "-"
    s = max(0, now - t)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


def _span(t, now) -> str:
    return _ago(t, now)[:-4] if t else "-"


def _duration(seconds) -> str:
    if seconds is None:
        return "time left unknown"
    s = int(seconds + 0.999)
    return f"about {s}s left" if s < 120 else f"about {s // 60}m left" if s < 7200 else f"about {s // 3600}h left"


def _printable(path: str) -> str:
    """A not-synced path as typed, quoted and escaped when it holds control characters."""
    return path if path.isprintable() else repr(path)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _cut_middle(text: str, width: int) -> str:
    """A long path keeps its start and its end: ``/home/me/…/p2p/shared``."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[:keep // 3] + "…" + text[len(text) - (keep - keep // 3):]


def _bar(done: int, total: int, width: int = 20) -> str:
    frac = done / total if total else 0.0
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * frac:5.1f}%"


def _device(device_id: str) -> str:
    try:
        return format_device_id(device_id)
    except ValueError:   # not ours to judge here: shown as it came
        return device_id


def _wrap(parts, indent: str = INDENT) -> list:
    return textwrap.wrap(", ".join(p for p in parts if p), WIDTH, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_on_hyphens=False) or []


def _peer_lines(p: dict, now: float) -> list:
    state = "connected" if p["connected"] else "disconnected"
    lines = [f"  {_cut(p['name'] or '?', NAME):<{NAME}}  {_device(p['id'])}  {state}"]
    lacks = p.get("lacks")
    if lacks is None:
        has = "what it has: unknown yet" if p["connected"] else ""
    else:
        lacking = describe_lack(lacks)
        has = f"lacks {lacking}" if lacking else "has all of ours"
        if not p["connected"]:
            has += " when last seen" if lacking else " (when last seen)"
    since = f"since {_span(p['connected_since'], now)}" if p["connected"] else ""
    lines += _wrap([p["address"], since, f"seen {_ago(p['last_seen'], now)}" if p["last_seen"] else "", has])
    lines += _error_lines(p.get("last_error"), now)
    return lines


def _error_lines(error, now) -> list:
    if not error:
        return []
    times = f" ({error['count']} times)" if error.get("count", 1) > 1 else ""
    return _wrap([f"last error {_ago(error['time'], now)}{times}: {error['reason']}"])


def render(st: dict) -> str:
    now = st["now"]
    lines = [f"device  {_device(st['device'])}", _cut(f"name    {st['name']}", WIDTH),
             f"folder  {_cut_middle(st['folder'], WIDTH - 8)}", f"listen  {st['listen']}", ""]
    peers = st["peers"]
    connected = sum(p["connected"] for p in peers)
    if st["in_sync"]:
        lines.append(f"IN SYNC with {connected} connected peer{'s' if connected != 1 else ''}")
    else:
        lines.append("NOT IN SYNC")
        for reason in st["missing"]:
            lines += textwrap.wrap(reason, WIDTH, initial_indent="  ", subsequent_indent="    ")
    lines += ["", f"PEERS ({connected} of {len(peers)} connected)" if peers else "PEERS"]
    for p in sorted(peers, key=lambda p: (not p["connected"], p["name"], p["id"])):
        lines += _peer_lines(p, now)
    for u in st.get("unreached", []):
        lines.append(f"  {'?':<{NAME}}  {u['address']}  not connected")
        lines += _error_lines(u["last_error"], now)
    if not peers and not st.get("unreached"):
        lines.append("  none yet")
    total = st["transfer_total"]
    if total["files"]:
        lines += ["", _cut(f"TRANSFERS: {total['files']} file{'s' if total['files'] != 1 else ''}, "
                           f"{human_size(total['done'])} of {human_size(total['bytes'])} at "
                           f"{human_size(total['rate'])}/s, {_duration(total['eta'])}", WIDTH)]
        for t in st["transfers"]:
            if t["started"]:
                amounts = f"{human_size(t['done'])}/{human_size(t['bytes'])}"
                lines.append(f"  {_cut(t['path'], 26):<26} {_bar(t['done'], t['bytes'])} {amounts}"[:WIDTH])
            else:
                lines.append(f"  {_cut(t['path'], 26):<26} waiting for its turn")
        more = total["files"] - len(st["transfers"])
        if more > 0:
            lines.append(f"  and {more} more")
    f = st["folder_state"]
    lines += ["", "FOLDER",
              f"  {f['files']} file{'s' if f['files'] != 1 else ''}, {f['dirs']} "
              f"director{'ies' if f['dirs'] != 1 else 'y'}, {human_size(f['bytes'])} on disk",
              f"  {f['events']} events in the history, {human_size(f['store_bytes'])} in the block store"
              + (f" (bound {human_size(f['store_bound'])})" if f.get("store_bound", sys.maxsize) < sys.maxsize else "")]
    paused = st.get("user_paused") or {}
    if paused.get("folder") or paused.get("peers"):
        lines += ["", "PAUSED (`p2p resume [PEER]` to go on)", "  " + describe_paused(paused)]
    not_synced = st.get("not_synced") or []
    if not_synced:
        lines += ["", f"NOT SYNCED ({len(not_synced)})"]
        lines += [_cut(f"  {_printable(p['path'])}: {p['reason']}", WIDTH) for p in not_synced]
    if st.get("recent"):
        lines += ["", "RECENT EVENTS"]
        for e in reversed(st["recent"]):
            if e.get("moved_to"):   # the first half of a rename: shown with its second half
                continue
            what = f"rename {e['moved_from']} -> {e['path']}" if e.get("moved_from") else f"{e['type']:<6} {e['path']}"
            lines.append(_cut(f"  {time.strftime('%H:%M:%S', time.localtime(e['time']))}  {e['origin'][:7]}  "
                              f"{what}", WIDTH))
    return "\n".join(lines)


def run(args) -> int:
    while True:
        try:
            st = ask(args.home, {"cmd": "status"})
        except OSError:
            print(f"p2p status: no peer is running with home {args.home}: "
                  + (no_history(args.home) or "start one with `p2p run`"), file=sys.stderr)
            return 1
        if args.json:
            print(ujson.dumps(st, indent=2, ensure_ascii=False, escape_forward_slashes=False))
        else:
            if args.watch:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(render(st), flush=True)
        if not args.watch:
            return 0
        time.sleep(1.0)
