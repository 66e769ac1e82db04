"""`p2p status`: what the running peer sees — peers, transfers, the folder.

Asks the running `p2p run` over its control socket; `--watch` redraws every
second, `--json` prints the raw answer.
"""

from __future__ import annotations

import sys
import time

import ujson

from p2p.commands.home import no_history
from p2p.commands.pause import describe
from p2p.net.control import ask
from p2p.units import human_size


def _ago(t, now) -> str:
    if not t:
        return "-"
    s = max(0, now - t)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


def _printable(path: str) -> str:
    """A not-synced path as typed, quoted and escaped when it holds control characters."""
    return path if path.isprintable() else repr(path)


def _bar(done: int, total: int, width: int = 24) -> str:
    frac = done / total if total else 1.0
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * frac:5.1f}%"


def render(st: dict) -> str:
    now = st["now"]
    lines = [f"device  {st['device']}  ({st['name']})",
             f"folder  {st['folder']}   listening on {st['listen']}", ""]
    peers = st["peers"]
    lines.append(f"PEERS ({sum(p['state'] == 'connected' for p in peers)} connected)")
    if peers:
        lines.append(f"  {'ID':<8} {'NAME':<16} {'ADDRESS':<22} {'STATE':<13} {'SINCE':<10} {'LAST SEEN':<10}")
        for p in sorted(peers, key=lambda p: p["id"]):
            lines.append(f"  {p['id'][:7]:<8} {p['name'][:16]:<16} {p['address']:<22} {p['state']:<13} "
                         f"{_ago(p['connected_since'], now):<10} {_ago(p['last_seen'], now):<10}")
    else:
        lines.append("  none yet")
    lines.append("")
    transfers = st["transfers"]
    lines.append(f"TRANSFERS ({len(transfers)})")
    for t in transfers:
        lines.append(f"  {t['path'][:40]:<40} {_bar(t['done'], t['bytes'])} "
                     f"{human_size(t['done'])}/{human_size(t['bytes'])} {human_size(t['rate'])}/s")
    f = st["folder_state"]
    lines += ["", "FOLDER",
              f"  {f['files']} files, {f['dirs']} directories, {human_size(f['bytes'])}; "
              f"{f['events']} events in history" + (f", {f['pending']} waiting" if f["pending"] else ""),
              "  " + ("in sync" if f["in_sync"] else "syncing…")]
    paused = st.get("user_paused") or {}
    if paused.get("folder") or paused.get("peers"):
        lines += ["", "PAUSED (`p2p resume [PEER]` to go on)", "  " + describe(paused)]
    not_synced = st.get("not_synced") or []
    if not_synced:
        lines += ["", f"NOT SYNCED ({len(not_synced)})"]
        lines += [f"  {_printable(p['path'])}: {p['reason']}" for p in not_synced]
    if st.get("recent"):
        lines += ["", "RECENT EVENTS"]
        for e in reversed(st["recent"]):
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(e['time']))}  {e['origin'][:7]}  "
                         f"{e['type']:<6} {e['path']}")
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
            print(ujson.dumps(st, indent=2, ensure_ascii=False))
        else:
            if args.watch:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(render(st), flush=True)
        if not args.watch:
            return 0
        time.sleep(1.0)
