#!/usr/bin/env bash
# scripts/lan.sh N [--check]
#
# "N computers on a LAN", on this one machine: N network namespaces (hosts)
# joined by a bridge that lives in a namespace of its own and has no uplink,
# so nothing leaves the machine. Each host runs the real default — `make run`,
# discovery by LAN broadcast on UDP 9999, channels on TCP 9998 — with its own
# home (P2P_HOME) under a temporary directory.
#
#   scripts/lan.sh 3           # start 3 hosts, print their folders and how to ask
#                              # each one's status; Ctrl-C stops all
#   scripts/lan.sh 3 --check   # write a file on host 1, wait until every host has
#                              # it byte for byte and reports its peers, then stop
#                              # (exit 0 on success)
#
# Needs root (ip netns). Everything it creates (namespaces, links, processes,
# the temporary directory with the hosts' folders) is removed on exit,
# Ctrl-C included.
set -euo pipefail

N=${1:-2}
MODE=${2:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TAG=p2p$$
WORK=$(mktemp -d "/tmp/p2p-lan.XXXXXX")
SW="${TAG}sw"
PIDS=()

THRESH=()
cleanup() {
  trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short
  [ ${#THRESH[@]} -eq 3 ] && for k in 1 2 3; do sysctl -qw "net.ipv4.neigh.default.gc_thresh$k=${THRESH[$((k - 1))]}"; done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for i in $(seq 1 "$N"); do  # whatever still runs in a host (nothing, normally) goes with it
    ip netns pids "${TAG}h$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "${TAG}h$i" 2>/dev/null || true
  done
  ip netns del "$SW" 2>/dev/null || true
  rm -rf "$WORK"
  [ "$MODE" = "--check" ] || echo "lan.sh: stopped the hosts, removed their namespaces and $WORK"
}
trap cleanup EXIT
trap 'exit 0' INT TERM  # Ctrl-C is how this demo ends: clean up (EXIT) and succeed

[ "$(id -u)" = 0 ] || { echo "lan.sh: needs root for ip netns" >&2; exit 2; }
make -C "$REPO" --no-print-directory install >/dev/null

if [ "$N" -gt 30 ]; then  # a full mesh needs ~N*N neighbour entries; the default cap is 1024
  for k in 1 2 3; do THRESH+=("$(sysctl -n "net.ipv4.neigh.default.gc_thresh$k")"); done
  sysctl -qw net.ipv4.neigh.default.gc_thresh1=$((N * N)) net.ipv4.neigh.default.gc_thresh2=$((2 * N * N)) \
    net.ipv4.neigh.default.gc_thresh3=$((4 * N * N))
fi
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in $(seq 1 "$N"); do
  host="${TAG}h$i"
  ip netns add "$host"
  ip link add "v${TAG}$i" type veth peer name eth0 netns "$host"
  ip link set "v${TAG}$i" netns "$SW"
  ip -n "$SW" link set "v${TAG}$i" master br0 up
  ip -n "$host" addr add "10.77.0.$((i + 1))/24" brd 10.77.0.255 dev eth0
  ip -n "$host" link set eth0 up
  ip -n "$host" link set lo up
  mkdir -p "$WORK/host$i"
  ip netns exec "$host" env P2P_HOME="$WORK/host$i" P2P_NAME="host$i" \
    make -C "$REPO" --no-print-directory run >"$WORK/host$i/run.log" 2>&1 &
  PIDS+=($!)
  echo "host$i  10.77.0.$((i + 1))  folder $WORK/host$i/shared  log $WORK/host$i/run.log"
done
echo "Ask a host what it sees (from this shell: the control socket is a file in its home):"
for i in $(seq 1 "$N"); do echo "  $REPO/.venv/bin/p2p status --home $WORK/host$i"; done

wait_for() {  # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

if [ "$MODE" = "--check" ]; then
  payload="$WORK/payload"
  head -c 3000000 /dev/urandom >"$payload"
  all_started() { for i in $(seq 1 "$N"); do grep -q "scanned the folder" "$WORK/host$i/run.log" || return 1; done; }
  wait_for 60 all_started || { echo "lan.sh: hosts did not start"; tail -n 20 "$WORK"/host*/run.log; exit 1; }
  cp "$payload" "$WORK/host1/shared/from-host1.bin"
  all_have() { for i in $(seq 2 "$N"); do cmp -s "$payload" "$WORK/host$i/shared/from-host1.bin" || return 1; done; }
  if ! wait_for 60 all_have; then
    echo "lan.sh: FAILED: the file did not reach every host"; tail -n 30 "$WORK"/host*/run.log
    exit 1
  fi
  echo "lan.sh: all $N hosts have host1's file, byte for byte"
  status=$("$REPO/.venv/bin/p2p" status --home "$WORK/host1") || { echo "lan.sh: FAILED: p2p status"; exit 1; }
  for i in $(seq 2 "$N"); do
    grep -q "host$i" <<<"$status" || { echo "lan.sh: FAILED: host1's status lacks host$i:"; echo "$status"; exit 1; }
  done
  echo "lan.sh: p2p status --home $WORK/host1 lists every other host"
  exit 0
fi

echo "Edit the folders above; Ctrl-C stops every host."
wait
