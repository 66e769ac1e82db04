"""`make bench`: every benchmark, each beside a reference measured in the same
run, printed as tables and written to bench-results/bench.json.

Usage: .venv/bin/python scripts/bench.py [--quick] [--only transport,history,sync,syncthing,trees]
       [--trees-only] [--scale X] [--scenarios tar,stdlib,big,present,history,edits] [--tools p2p,syncthing,rsync]
       [--profile DIR] [--out DIR]
(`make bench ARGS="..."` passes the same options; the trees options are scripts/bench_trees.py's.)
"""

from __future__ import annotations

import argparse
import json
import os
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
    import bench_trees

    parser = argparse.ArgumentParser(description="every benchmark, beside its references")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (trees: --scale 0.1)")
    parser.add_argument("--only", help="comma-separated suites: transport,history,sync,syncthing,trees")
    parser.add_argument("--trees-only", action="store_true", help="the real-tree suite alone (--only trees)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "bench-results", help="where bench.json goes")
    bench_trees.add_arguments(parser)
    args = parser.parse_args(argv)
    only = {"trees"} if args.trees_only else set(args.only.split(",")) if args.only else None
    suites = [("transport", "bench_transport"), ("history", "bench_history"), ("sync", "bench_sync"),
              ("syncthing", "bench_syncthing"), ("trees", "bench_trees")]
    results = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
               "command": " ".join(["make bench"] + (["ARGS=" + repr(" ".join(argv))] if argv else [])),
               "load_average": os.getloadavg(), "suites": {}}
    for name, module in suites:
        if only and name not in only:
            continue
        mod = __import__(module)
        rows = mod.run(quick=args.quick, **(bench_trees.options(args) if name == "trees" else {}))
        results["suites"][name] = rows
        print_table(name, rows)
    if results["suites"].get("sync") and results["suites"].get("syncthing"):
        from bench_syncthing import join

        joined = join(results["suites"]["sync"], results["suites"]["syncthing"])
        results["suites"]["sync beside syncthing"] = joined
        print_table("sync beside syncthing", joined)
    results["load_average_end"] = os.getloadavg()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {out / 'bench.json'}")
    failed = [row["scenario"] for rows in results["suites"].values() for row in rows if row.get("error")]
    if failed:
        print("FAILED: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
