#!/usr/bin/env bash
# scripts/demo_history.sh — the history at work, on a folder that changes several times.
#
# Starts one peer (discovery off, loopback only) in a temporary home, changes its
# folder in three steps, then shows `p2p log`, rebuilds the folder as it was
# after step 1 with `p2p restore --at`, and brings one file back in place.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
P2P="$REPO/.venv/bin/p2p"
HOME_DIR=$(mktemp -d /tmp/p2p-demo.XXXXXX)
F="$HOME_DIR/shared"
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$HOME_DIR"' EXIT

"$P2P" run --home "$HOME_DIR" --listen 127.0.0.1:0 --discovery off --name demo >"$HOME_DIR/run.log" 2>&1 &
PID=$!
events() { wc -l <"$HOME_DIR/events.jsonl" 2>/dev/null || echo 0; }
wait_events() {  # wait until the history holds at least $1 events
  for _ in $(seq 200); do [ "$(events)" -ge "$1" ] && return 0; sleep 0.05; done
  echo "demo: the peer did not record the change" >&2; cat "$HOME_DIR/run.log" >&2; exit 1
}
until grep -qs "scanned the folder" "$HOME_DIR/run.log"; do sleep 0.05; done
run() { echo "\$ $*"; "$@"; }

echo "# 1. write two files"
mkdir -p "$F/docs"; echo "first draft" >"$F/notes.txt"; echo "alpha" >"$F/docs/a.txt"
wait_events 3
sleep 1.1; STEP1=$(date +%Y-%m-%dT%H:%M:%S); sleep 1.1

echo "# 2. edit one, delete the other"
echo "second draft" >"$F/notes.txt"; rm "$F/docs/a.txt"
wait_events 5
echo "# 3. move notes.txt into docs/"
mv "$F/notes.txt" "$F/docs/notes.txt"
wait_events 7

run "$P2P" log --home "$HOME_DIR"
echo
run "$P2P" restore --home "$HOME_DIR" --at "$STEP1" --to "$HOME_DIR/then"
(cd "$HOME_DIR/then" && find . -type f | sort | while read -r f; do echo "  $f: $(cat "$f")"; done)
echo
run "$P2P" restore --home "$HOME_DIR" docs/a.txt --at "$STEP1"
wait_events 8
run "$P2P" log --home "$HOME_DIR" --limit 1
