"""`make bench`: every benchmark, each beside a reference measured in the same
run, printed as tables and written to bench-results/bench.json.

Usage: .venv/bin/python scripts/bench.py [--quick] [--only transport,history,sync,syncthing]
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def print_table(title: str, rows: list) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    cols = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    cells = [[_fmt(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main(argv) -> int:
    quick = "--quick" in argv
    only = None
    if "--only" in argv:
        only = set(argv[argv.index("--only") + 1].split(","))
    suites = [("transport", "bench_transport"), ("history", "bench_history"), ("sync", "bench_sync"),
              ("syncthing", "bench_syncthing")]
    results = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
               "command": "make bench", "suites": {}}
    for name, module in suites:
        if only and name not in only:
            continue
        mod = __import__(module)
        rows = mod.run(quick=quick)
        results["suites"][name] = rows
        print_table(name, rows)
    if results["suites"].get("sync") and results["suites"].get("syncthing"):
        from bench_syncthing import join

        joined = join(results["suites"]["sync"], results["suites"]["syncthing"])
        results["suites"]["sync beside syncthing"] = joined
        print_table("sync beside syncthing", joined)
    out = HERE.parent / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
