#!/usr/bin/env bash
# GET latency (p50, p99) before, during and after one node is paused (SIGSTOP), with hedged
# reads on and off, through the release proxy on 3 built-in nodes (r=2). Load from wrk.
#   bash benches/failover.sh            # PHASE_SECONDS=5 CONNECTIONS=8 by default
set -euo pipefail
cd "$(dirname "$0")/.."

PHASE_SECONDS=${PHASE_SECONDS:-5}
CONNECTIONS=${CONNECTIONS:-8}
KEYS=1000

if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q
BIN=target/release/hrwproxy
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts `hrwproxy ARGS` in the background (not in a subshell, so PIDS keeps it); sets LAST_PID
# and ADDR once it printed its address line.
start() {
    local out="$WORK/out.${#PIDS[@]}"
    "$BIN" "$@" >"$out" 2>/dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for _ in $(seq 1 200); do
        if grep -q "listening on" "$out" 2>/dev/null; then
            ADDR=$(head -1 "$out" | sed 's#.*http://##')
            return
        fi
        sleep 0.05
    done
    echo "hrwproxy $* did not start" >&2
    exit 1
}

cat >"$WORK/get.lua" <<LUA
math.randomseed(os.time())
request = function() return wrk.format("GET", "/kv/key-" .. math.random(0, $KEYS - 1)) end
LUA

# p50 and p99 of one wrk run, in milliseconds.
measure() {
    wrk -t2 -c"$CONNECTIONS" -d"${PHASE_SECONDS}s" --latency -s "$WORK/get.lua" "http://$1" |
        awk '
            function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
            $1 == "50%" { p50 = ms($2) }
            $1 == "99%" { p99 = ms($2) }
            /Requests\/sec/ { rps = $2 }
            END { printf "%8.2f %8.2f %9.0f", p50, p99, rps }'
}

printf "%-8s %-7s %8s %8s %9s\n" hedging phase p50_ms p99_ms req/s
for budget in 0 10 50; do
    NODE_PIDS=()
    NODES=""
    for id in a b c; do
        start node --listen 127.0.0.1:0
        NODE_PIDS+=("$LAST_PID")
        NODES+="  - { id: $id, url: \"http://$ADDR\" }"$'\n'
    done
    cat >"$WORK/proxy.yaml" <<YAML
listen: 127.0.0.1:0
admin: 127.0.0.1:0
replicas: 2
timeouts: { connect_ms: 100, request_ms: 1000, deadline_ms: 3000 }
hedge_budget_percent: $budget
nodes:
$NODES
YAML
    start serve --config "$WORK/proxy.yaml"
    proxy=$ADDR
    for i in $(seq 0 $((KEYS - 1))); do
        curl -s -o /dev/null -X PUT --data-binary "value-$i" "http://$proxy/kv/key-$i"
    done
    label=$([ "$budget" = 0 ] && echo off || echo "${budget}%")
    printf "%-8s %-7s %s\n" "$label" before "$(measure "$proxy")"
    kill -STOP "${NODE_PIDS[0]}"
    printf "%-8s %-7s %s\n" "$label" during "$(measure "$proxy")"
    kill -CONT "${NODE_PIDS[0]}"
    sleep 3 # ejection backoff and probe: the node is readmitted
    printf "%-8s %-7s %s\n" "$label" after "$(measure "$proxy")"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS=()
done
