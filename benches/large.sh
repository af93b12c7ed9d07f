#!/usr/bin/env bash
# hrwproxy with a large membership (NODES, default 10000, unreachable addresses): how long
# `locate` takes, how long `POST /admin/reload` takes to apply a one-node change, and how
# long a live edit of the file takes to apply (file event, 100 ms debounce, reload). Medians
# of ROUNDS (default 5).
#   bash benches/large.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-10000}
ROUNDS=${ROUNDS:-5}
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
WORK=$(mktemp -d)
trap 'kill "$PROXY" 2>/dev/null || true; rm -rf "$WORK"' EXIT

{
    printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nhealth_check_interval_ms: 0\nnodes:\n'
    for ((i = 0; i < NODES + ROUNDS * 2; i++)); do
        printf '  - { id: n%d, url: "http://127.0.0.1:%d" }\n' "$i" $((1 + i % 60000))
    done
} >"$WORK/hrwproxy.yaml"

RUST_LOG=error "$BIN" serve --config "$WORK/hrwproxy.yaml" >"$WORK/out" 2>"$WORK/err" &
PROXY=$!
for _ in $(seq 1 200); do
    [ "$(grep -c "listening on" "$WORK/out")" -ge 2 ] && break
    sleep 0.05
done
ADMIN=$(grep -o 'http://[0-9.:]*' "$WORK/out" | sed -n 2p)

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
