#!/usr/bin/env bash
# hrwproxy with a large membership (NODES, default 10000):
# 1. (unreachable addresses) how long `locate` takes, how long `POST /admin/reload` takes to
#    apply a one-node change, and how long a live edit of the file takes to apply (file event,
#    100 ms debounce, reload); medians of ROUNDS (default 5);
# 2. resident memory of a proxy started with 3 nodes, moved to NODES and back to 3, and the
#    size of a /metrics scrape at each;
# 3. GETs through the proxy (wrk, medians of ROUNDS runs of 5 s) with 10 built-in nodes, then
#    with NODES entries spread over the same 10 nodes: requests/s and CPU per request.
#   bash benches/large.sh
#   PLACEMENT=consistent bash benches/large.sh   # the same with `placement: consistent`
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-10000}
ROUNDS=${ROUNDS:-5}
PLACEMENT=${PLACEMENT:-rendezvous}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
source benches/common.sh
ulimit -n "$(ulimit -Hn)"

{
    printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nplacement: %s\nhealth_check_interval_ms: 0\nnodes:\n' "$PLACEMENT"
    for ((i = 0; i < NODES + ROUNDS * 2; i++)); do
        printf '  - { id: n%d, url: "http://127.0.0.1:%d" }\n' "$i" $((1 + i % 60000))
    done
} >"$WORK/hrwproxy.yaml"

start_bin large 2 serve --config "$WORK/hrwproxy.yaml"
ADMIN=http://127.0.0.1:${PORTS_SEEN[1]}

python3 - "$BIN" "$WORK/hrwproxy.yaml" "$ADMIN" "$ROUNDS" "$NODES" <<'PY'
import json, statistics, subprocess, sys, time, urllib.request
binary, path, admin, rounds, nodes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def generation():
    return json.load(urllib.request.urlopen(admin + "/admin/config"))["generation"]

def drop_last_node():
    lines = open(path).read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")

def timed(run):
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000

locate = [timed(lambda: subprocess.run([binary, "locate", "--config", path, f"key-{i}"],
                                       stdout=subprocess.DEVNULL, check=True)) for i in range(rounds)]

def admin_reload():
    drop_last_node()
    request = urllib.request.Request(admin + "/admin/reload", method="POST")
    assert json.load(urllib.request.urlopen(request))["changed"]

reload = [timed(admin_reload) for _ in range(rounds)]

def live_edit():
    before = generation()
    drop_last_node()
    while generation() == before:
        time.sleep(0.002)

edit = []
for _ in range(rounds):
    time.sleep(0.5)
    edit.append(timed(live_edit))

print(f"{nodes} nodes, median of {rounds} (min-max), ms")
for name, values in [("locate", locate), ("POST /admin/reload", reload), ("live edit applied", edit)]:
    print(f"{name:<20} {statistics.median(values):8.1f}   ({min(values):.1f}-{max(values):.1f})")
PY
kill "$LAST_PID"

# 2. Memory and scrape size: 3 nodes, NODES, 3 again (after the handoff window closed).
nodes_yaml() { # count, port of node i
    printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nplacement: %s\nhealth_check_interval_ms: 0\nhandoff_window_s: 2\nnodes:\n' "$PLACEMENT"
    for ((i = 0; i < $1; i++)); do
        printf '  - { id: n%d, url: "http://127.0.0.1:%d" }\n' "$i" $((1 + i % 60000))
    done
}
nodes_yaml 3 >"$WORK/memory.yaml"
start_bin memory 2 serve --config "$WORK/memory.yaml"
python3 - "$WORK/memory.yaml" "http://127.0.0.1:${PORTS_SEEN[1]}" "$LAST_PID" "$NODES" <<'PY'
import json, subprocess, sys, time, urllib.request
path, admin, pid, nodes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def scrape_kib():
    return len(urllib.request.urlopen(admin + "/metrics").read()) / 1024

def move_to(count):
    lines = open(path).read().splitlines()
    head = lines[: lines.index("nodes:") + 1]
    body = [f'  - {{ id: n{i}, url: "http://127.0.0.1:{1 + i % 60000}" }}' for i in range(count)]
    open(path, "w").write("\n".join(head + body) + "\n")
    request = urllib.request.Request(admin + "/admin/reload", method="POST")
    assert json.load(urllib.request.urlopen(request))["changed"]
    time.sleep(3.5)  # the 2 s handoff window closes, and the summary thread ends

print(f"\nresident memory, MiB, and /metrics scrape, KiB")
print(f"{'3 nodes at start':<24} {rss_mib():8.1f}   {scrape_kib():8.1f}")
move_to(nodes)
print(f"{f'{nodes} nodes':<24} {rss_mib():8.1f}   {scrape_kib():8.1f}")
move_to(3)
print(f"{'3 nodes again':<24} {rss_mib():8.1f}   {scrape_kib():8.1f}")
PY
kill "$LAST_PID"

# 3. Throughput: 10 built-in nodes, every key on each, as 10 node entries and as NODES.
NODE_PORTS=()
for _ in $(seq 1 10); do
    start_bin "node${#NODE_PORTS[@]}" 1 node --listen 127.0.0.1:0
    NODE_PORTS+=("${PORTS_SEEN[0]}")
done
python3 - "${NODE_PORTS[@]}" <<'PY'
import http.client, sys
for port in sys.argv[1:]:
    conn = http.client.HTTPConnection("127.0.0.1", int(port))
    for i in range(1000):
        conn.request("PUT", f"/kv/key-{i}", body=b"v" * 100, headers={"x-hrw-version": "1"})
        response = conn.getresponse()
        response.read()
        assert response.status == 204, (port, i, response.status)
PY
spread_yaml() { # entries
    printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 1\nplacement: %s\nhealth_check_interval_ms: 0\nnodes:\n' "$PLACEMENT"
    for ((i = 0; i < $1; i++)); do
        printf '  - { id: n%d, url: "http://127.0.0.1:%d" }\n' "$i" "${NODE_PORTS[i % 10]}"
    done
}
cat >"$WORK/get.lua" <<'LUA'
math.randomseed(os.time())
request = function() return wrk.format("GET", "/kv/key-" .. math.random(0, 999)) end
LUA
echo
echo "GET through the proxy, wrk -t2 -c32 -d5s, medians of $ROUNDS"
printf "%-14s %10s %12s\n" entries req/s cpu_us/req
for entries in 10 "$NODES"; do
    spread_yaml "$entries" >"$WORK/spread.yaml"
    start_bin "spread$entries" 2 serve --config "$WORK/spread.yaml"
    : >"$WORK/runs"
    for _ in $(seq 1 "$ROUNDS"); do
        before=$(cpu_ticks "$LAST_PID")
        wrk -t2 -c32 -d5s -s "$WORK/get.lua" "http://127.0.0.1:${PORTS_SEEN[0]}" >"$WORK/wrk.out"
        after=$(cpu_ticks "$LAST_PID")
        ! grep -q Non-2xx "$WORK/wrk.out" || { cat "$WORK/wrk.out" >&2; exit 1; }
        awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
            $2 == "requests" && $3 == "in" { requests = $1 }
            /Requests\/sec/ { rps = $2 }
            END { printf "%.0f %.1f\n", rps, ticks * 1e6 / hz / requests }' "$WORK/wrk.out" >>"$WORK/runs"
    done
    printf "%-14s %10s %12s\n" "$entries" "$(awk '{ print $1 }' "$WORK/runs" | median)" "$(awk '{ print $2 }' "$WORK/runs" | median)"
    kill "$LAST_PID"
done
