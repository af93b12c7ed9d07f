#!/usr/bin/env bash
# A skewed read load: GETs of 100,000 keys drawn from a Zipf distribution (exponent 1.1)
# through hrwproxy in front of NODES (6) built-in nodes at r=2, with coalescing on (the
# default) and off, and with bounded load (`read_load_factor: 1.25`) on. For each: client
# GETs per second and p99 (wrk), backend reads per client GET, and the busiest node's share of
# backend reads over the mean share (from the proxy's /metrics). Medians of ROUNDS (3).
#   bash benches/zipf.sh        # NODES=6 ROUNDS=3 SECONDS_PER_RUN=10 CONNECTIONS=64
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-6}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-64}
KEYS=100000
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
source benches/common.sh

NODE_PORTS=()
for n in $(seq 1 "$NODES"); do
    start_bin "node$n" 1 node --listen 127.0.0.1:0
    NODE_PORTS+=("${PORTS_SEEN[0]}")
done
config() { # more settings
    printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 2\nhealth_check_interval_ms: 0\nhedge_budget_percent: 0\n%s\nnodes:\n' "$1"
    local n=0
    for port in "${NODE_PORTS[@]}"; do
        n=$((n + 1))
        printf '  - { id: n%d, url: "http://127.0.0.1:%d" }\n' "$n" "$port"
    done
}

# Every key written once, through a proxy at r=2.
config "" >"$WORK/preload.yaml"
start_bin preload 2 serve --config "$WORK/preload.yaml"
python3 - "${PORTS_SEEN[0]}" "$KEYS" <<'PY'
import http.client, sys, threading
port, keys = int(sys.argv[1]), int(sys.argv[2])
def load(start):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(start, keys, 4):
        conn.request("PUT", f"/kv/z-{i}", body=b"v" * 100)
        response = conn.getresponse()
        response.read()
        assert response.status == 204, (i, response.status)
threads = [threading.Thread(target=load, args=(s,)) for s in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PY
kill "$LAST_PID"

cat >"$WORK/zipf.lua" <<LUA
-- Key ranks 1..$KEYS with P(k) proportional to 1 / k^1.1, by binary search of the CDF.
local n, s = $KEYS, 1.1
local cdf, total = {}, 0
for k = 1, n do total = total + 1 / k ^ s; cdf[k] = total end
-- Each wrk thread its own random sequence.
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init() math.randomseed(os.time() * 100 + id) end
request = function()
    local u, lo, hi = math.random() * total, 1, n
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return wrk.format("GET", "/kv/z-" .. (lo - 1))
end
LUA

# Sums of get attempts per node and client GETs from a scrape.
scrape() { # admin port
    python3 - "$1" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
nodes = {m[1]: float(m[2]) for m in re.finditer(r'hrw_node_attempts_total\{node="([^"]+)",op="get"\} (\S+)', text)}
gets = sum(float(m[1]) for m in re.finditer(r'hrw_requests_total\{op="get",status="\d+"\} (\S+)', text))
print(gets, " ".join(f"{n}={v}" for n, v in sorted(nodes.items())))
PY
}

echo "Zipf 1.1 over $KEYS keys, $NODES nodes, r=2, wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, medians of $ROUNDS"
printf "%-22s %10s %9s %18s %16s\n" variant req/s p99_ms "backend/client GET" "max/mean node"
for variant in "coalescing on" "coalescing off" "bounded load 1.25"; do
    case $variant in
        "coalescing on") extra="" ;;
        "coalescing off") extra="coalesce_reads: false" ;;
        "bounded load 1.25") extra="read_load_factor: 1.25" ;;
    esac
    config "$extra" >"$WORK/zipf.yaml"
    start_bin zipf 2 serve --config "$WORK/zipf.yaml"
    port=${PORTS_SEEN[0]} admin=${PORTS_SEEN[1]}
    : >"$WORK/runs"
    for _ in $(seq 1 "$ROUNDS"); do
        before=$(scrape "$admin")
        wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/zipf.lua" "http://127.0.0.1:$port" >"$WORK/wrk.out"
        after=$(scrape "$admin")
        ! grep -q Non-2xx "$WORK/wrk.out" || { cat "$WORK/wrk.out" >&2; exit 1; }
        python3 - "$before" "$after" "$WORK/wrk.out" >>"$WORK/runs" <<'PY'
import re, sys
def parse(line):
    gets, *nodes = line.split()
    return float(gets), {n.split("=")[0]: float(n.split("=")[1]) for n in nodes}
(g0, n0), (g1, n1) = parse(sys.argv[1]), parse(sys.argv[2])
reads = {n: n1[n] - n0.get(n, 0) for n in n1}
wrk = open(sys.argv[3]).read()
rps = float(re.search(r"Requests/sec:\s+(\S+)", wrk)[1])
p99 = re.search(r"^\s+99%\s+(\S+)", wrk, re.M)[1]
p99 = float(p99[:-2]) if p99.endswith("ms") else float(p99[:-2]) / 1000 if p99.endswith("us") else float(p99[:-1]) * 1000
mean = sum(reads.values()) / len(reads)
print(f"{rps:.0f} {p99:.2f} {sum(reads.values()) / (g1 - g0):.3f} {max(reads.values()) / mean:.2f}")
PY
    done
    printf "%-22s %10s %9s %18s %16s\n" "$variant" \
        "$(awk '{ print $1 }' "$WORK/runs" | median)" "$(awk '{ print $2 }' "$WORK/runs" | median)" \
        "$(awk '{ print $3 }' "$WORK/runs" | median)" "$(awk '{ print $4 }' "$WORK/runs" | median)"
    kill "$LAST_PID"
done
