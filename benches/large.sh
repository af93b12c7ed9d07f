#!/usr/bin/env bash
# hrwproxy with large memberships, for every placement function (PLACEMENTS, default
# "rendezvous consistent hierarchical") and size (SIZES, default "10 1000 10000 100000
# 1000000"); medians of ROUNDS (default 3). For each:
# - a proxy started with 3 nodes (unreachable addresses) is reloaded to n: how long that reload
#   takes, its resident memory at n, how long `locate` takes on the file, a one-node change by
#   `POST /admin/reload` and by a live edit of the file (file event, 100 ms debounce, reload),
#   and its memory back at 3 nodes once the handoff window (2 s) closed, against its start;
# - `hrwproxy plan` from n to n-1 nodes: the keys whose primary moved against the exact share
#   of the node removed (sampled keys; fewer with rendezvous at 100,000 nodes and more, where
#   each key costs a scan of every node);
# - GETs through the proxy (wrk -t2 -c32, 5 s a round) with n entries spread over 10 built-in
#   nodes: requests/s, CPU per request, and requests/s against the same function at 10 entries.
#   bash benches/large.sh
#   SIZES="10 10000" PLACEMENTS=hierarchical ROUNDS=5 bash benches/large.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-10 1000 10000 100000 1000000}
PLACEMENTS=${PLACEMENTS:-rendezvous consistent hierarchical}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
source benches/common.sh
ulimit -n "$(ulimit -Hn)"
# A million nodes are a YAML file of about 50 MB.
export HRWPROXY_MAX_CONFIG_BYTES=200000000

NODE_PORTS=()
for _ in $(seq 1 10); do
    start_bin "node${#NODE_PORTS[@]}" 1 node --listen 127.0.0.1:0
    NODE_PORTS+=("${PORTS_SEEN[0]}")
done
cat >"$WORK/get.lua" <<'LUA'
math.randomseed(os.time())
request = function() return wrk.format("GET", "/kv/key-" .. math.random(0, 999)) end
LUA

python3 - "$BIN" "$WORK" "$ROUNDS" "$SIZES" "$PLACEMENTS" "${NODE_PORTS[@]}" <<'PY'
import json, os, re, statistics, subprocess, sys, time, urllib.request
binary, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sizes = [int(n) for n in sys.argv[4].split()]
placements, node_ports = sys.argv[5].split(), [int(p) for p in sys.argv[6:]]
hz = os.sysconf("SC_CLK_TCK")

# Every key on every built-in node, so any entry can answer any GET.
import http.client
for port in node_ports:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(1000):
        conn.request("PUT", f"/kv/key-{i}", body=b"v" * 100, headers={"x-hrw-version": "1"})
        response = conn.getresponse()
        response.read()
        assert response.status == 204, (port, i, response.status)

def write_config(path, placement, count, port_of, extra=""):
    # The points of consistent placement: 100 per unit of weight, fewer where a ring could not
    # hold them (16,777,216 points in all).
    per_weight = max(1, min(100, (1 << 24) // max(count, 1)))
    with open(path, "w") as f:
        f.write(f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nplacement: {placement}\n"
                f"points_per_weight: {per_weight}\nhealth_check_interval_ms: 0\n{extra}nodes:\n")
        f.writelines(f'  - {{ id: n{i}, url: "http://127.0.0.1:{port_of(i)}" }}\n' for i in range(count))

def start(name, config):
    out, err = open(f"{work}/{name}.out", "w"), open(f"{work}/{name}.err", "w")
    env = dict(os.environ, RUST_LOG="error")
    proc = subprocess.Popen([binary, "serve", "--config", config], stdout=out, stderr=err, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        ports = re.findall(r"listening on http://127.0.0.1:(\d+)", open(f"{work}/{name}.out").read())
        if len(ports) >= 2:
            return proc, int(ports[0]), f"http://127.0.0.1:{ports[1]}"
        time.sleep(0.05)
    sys.exit(f"{name} did not start: {open(f'{work}/{name}.err').read()}")

def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def timed_ms(run):
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000

def generation(admin):
    return json.load(urllib.request.urlopen(admin + "/admin/config"))["generation"]

def reload(admin):
    # The file watcher may have applied the edit first (the POST then finds nothing new): the
    # generation moved either way.
    before = generation(admin)
    request = urllib.request.Request(admin + "/admin/reload", method="POST")
    urllib.request.urlopen(request, timeout=600).read()
    assert generation(admin) > before, "the edit was not applied"

def drop_last_node(path):
    text = open(path).read()
    open(path, "w").write(text[: text.rstrip("\n").rfind("\n") + 1])

def membership(placement, n):
    """Reload and locate timings and memory, 3 -> n -> 3 nodes."""
    path = f"{work}/membership.yaml"
    unreachable = lambda i: 1 + i % 60000
    write_config(path, placement, 3, unreachable, "handoff_window_s: 2\n")
    proc, _, admin = start("membership", path)
    time.sleep(1)
    at_start = rss_mib(proc.pid)
    write_config(path, placement, n + 2 * rounds, unreachable, "handoff_window_s: 2\n")
    to_n = timed_ms(lambda: reload(admin))
    time.sleep(3.5)  # the handoff window of the 3 nodes closes
    at_n = rss_mib(proc.pid)
    locate = [timed_ms(lambda: subprocess.run([binary, "locate", "--config", path, f"key-{i}"],
                                              stdout=subprocess.DEVNULL, check=True))
              for i in range(rounds)]
    def admin_reload():
        drop_last_node(path)
        reload(admin)
    one_node = [timed_ms(admin_reload) for _ in range(rounds)]
    def live_edit():
        before = generation(admin)
        drop_last_node(path)
        while generation(admin) == before:
            time.sleep(0.002)
    edits = []
    for _ in range(rounds):
        time.sleep(0.5)
        edits.append(timed_ms(live_edit))
    write_config(path, placement, 3, unreachable, "handoff_window_s: 2\n")
    reload(admin)
    time.sleep(3.5)
    back = rss_mib(proc.pid)
    proc.kill()
    proc.wait()
    med = statistics.median
    return dict(to_n=to_n, at_start=at_start, at_n=at_n, back=back, locate=med(locate),
                one_node=med(one_node), edit=med(edits))

def moved(placement, n):
    """Keys whose primary moved when the last of n nodes is removed, and its exact share."""
    if n < 2:
        return None
    paths = [f"{work}/plan-{count}.yaml" for count in (n, n - 1)]
    for path, count in zip(paths, (n, n - 1)):
        write_config(path, placement, count, lambda i: 1 + i % 60000, "replicas: 1\n")
    keys = 1_000_000 if placement != "rendezvous" else max(2_000, min(1_000_000, 2 * 10**9 // n // 100))
    out = subprocess.run([binary, "plan", "--from", paths[0], "--to", paths[1], "--keys", str(keys)],
                         capture_output=True, text=True, check=True).stdout
    share = re.search(rf"^n{n - 1} .*?([\d.]+)% -> -", out, re.M)
    changed = re.search(r"keys whose primary changes:\s+([\d.]+)%", out)
    return dict(keys=keys, moved=float(changed.group(1)), share=float(share.group(1)))

def throughput(placement, n):
    path = f"{work}/spread.yaml"
    write_config(path, placement, n, lambda i: node_ports[i % 10], "replicas: 1\n")
    proc, port, _ = start("spread", path)
    runs = []
    for _ in range(rounds):
        before = cpu_ticks(proc.pid)
        out = subprocess.run(["wrk", "-t2", "-c32", "-d5s", "-s", f"{work}/get.lua",
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        after = cpu_ticks(proc.pid)
        assert "Non-2xx" not in out, out
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        runs.append((rps, (after - before) * 1e6 / hz / requests))
    proc.kill()
    proc.wait()
    return dict(rps=statistics.median(r for r, _ in runs), cpu=statistics.median(c for _, c in runs))

print(f"medians of {rounds}; memory in MiB (start with 3 nodes -> n -> 3 again), times in ms")
header = (f"{'placement':<13} {'nodes':>9} {'to n':>8} {'locate':>8} {'1-node':>8} {'edit':>8} "
          f"{'RSS 3->n->3':>22} {'moved/share (keys)':>28} {'GET/s':>8} {'cpu_us':>7} {'vs 1st':>6}")
print(header)
for placement in placements:
    base = None
    for n in sizes:
        m, mv, t = membership(placement, n), moved(placement, n), throughput(placement, n)
        base = base or t["rps"]
        rss = f"{m['at_start']:.0f} -> {m['at_n']:.0f} -> {m['back']:.0f}"
        mv = f"{mv['moved']:.4f}%/{mv['share']:.4f}% ({mv['keys']})" if mv else "-"
        print(f"{placement:<13} {n:>9} {m['to_n']:>8.0f} {m['locate']:>8.0f} {m['one_node']:>8.0f} "
              f"{m['edit']:>8.0f} {rss:>22} {mv:>28} {t['rps']:>8.0f} {t['cpu']:>7.1f} "
              f"{t['rps'] / base:>6.2f}", flush=True)
PY
