#!/usr/bin/env bash
# The Redis front door against twemproxy (nutcracker, `distribution: ketama`), both in front of
# the same three redis-server nodes at r=1: redis-benchmark GET and SET (-n REQUESTS -c 50),
# plain and pipelined (-P 16), ROUNDS rounds with the proxies alternating, medians of requests
# per second and of each proxy's CPU time per request (user + system, from /proc); then each
# proxy's resident memory with IDLE idle clients. hrwproxy runs as configured by default
# (versions on: a value is written with a Lua script on the node) and with `versioning: off`.
#   bash benches/cache-protocols.sh      # ROUNDS=3 REQUESTS=200000 IDLE=10000
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
IDLE=${IDLE:-10000}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v nutcracker >/dev/null || [ -x /usr/sbin/nutcracker ] || missing+=(nutcracker)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
ulimit -n "$(ulimit -Hn)"
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
source benches/common.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }

NODE_PORTS=()
for n in 1 2 3; do
    port=$(free_port)
    redis-server --port "$port" --save "" --appendonly no --daemonize no --loglevel warning >"$WORK/redis$n.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$port"
    NODE_PORTS+=("$port")
done

declare -A PORT PROC
start_hrwproxy() { # name, more settings
    local resp
    resp=$(free_port)
    {
        printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nresp_listen: 127.0.0.1:%s\nreplicas: 1\nhealth_check_interval_ms: 0\n%s\nnodes:\n' "$resp" "${2:-}"
        local n=0
        for port in "${NODE_PORTS[@]}"; do
            n=$((n + 1))
            echo "  - { id: r$n, url: \"redis://127.0.0.1:$port\" }"
        done
    } >"$WORK/$1.yaml"
    start_bin "$1" 3 serve --config "$WORK/$1.yaml"
    PORT[$1]=$resp
    PROC[$1]=$LAST_PID
}
start_hrwproxy hrwproxy
start_hrwproxy hrwproxy-off "versioning: off"

PORT[twemproxy]=$(free_port)
{
    echo "pool:"
    echo "  listen: 127.0.0.1:${PORT[twemproxy]}"
    echo "  hash: fnv1a_64"
    echo "  distribution: ketama"
    echo "  redis: true"
    echo "  auto_eject_hosts: false"
    echo "  servers:"
    n=0
    for port in "${NODE_PORTS[@]}"; do
        n=$((n + 1))
        echo "    - 127.0.0.1:$port:1 r$n"
    done
} >"$WORK/nutcracker.yml"
nutcracker -c "$WORK/nutcracker.yml" -s "$(free_port)" -o "$WORK/nutcracker.log" &
PROC[twemproxy]=$!
PIDS+=("$!")
wait_port "${PORT[twemproxy]}"

TARGETS=(hrwproxy hrwproxy-off twemproxy)
for round in $(seq 1 "$ROUNDS"); do
    for pipeline in 1 16; do
        for test in set get; do
            for target in "${TARGETS[@]}"; do
                before=$(cpu_ticks "${PROC[$target]}")
                rps=$(redis-benchmark -h 127.0.0.1 -p "${PORT[$target]}" -t "$test" -n "$REQUESTS" -c 50 -P "$pipeline" -r 10000 -q --csv |
                    awk -F'"' 'NR > 1 || $2 != "test" { print $4; exit }')
                after=$(cpu_ticks "${PROC[$target]}")
                # CPU ticks are 10 ms: per request in microseconds.
                echo "$target $test $pipeline $rps $(echo "($after - $before) * 10000 / $REQUESTS" | bc -l)" >>"$WORK/results"
            done
        done
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "median of $ROUNDS rounds, redis-benchmark -n $REQUESTS -c 50 -r 10000, 3 redis-server nodes, r=1"
printf "%-14s %-5s %3s %10s %11s %10s %10s\n" target test P "req/s" "cpu_us/req" "req/s vs" "cpu vs"
for pipeline in 1 16; do
    for test in get set; do
        base_rps=$(awk -v t="$test" -v p="$pipeline" '$1 == "twemproxy" && $2 == t && $3 == p { print $4 }' "$WORK/results" | median)
        base_cpu=$(awk -v t="$test" -v p="$pipeline" '$1 == "twemproxy" && $2 == t && $3 == p { print $5 }' "$WORK/results" | median)
        for target in "${TARGETS[@]}"; do
            rps=$(awk -v n="$target" -v t="$test" -v p="$pipeline" '$1 == n && $2 == t && $3 == p { print $4 }' "$WORK/results" | median)
            cpu=$(awk -v n="$target" -v t="$test" -v p="$pipeline" '$1 == n && $2 == t && $3 == p { print $5 }' "$WORK/results" | median)
            printf "%-14s %-5s %3s %10.0f %11.2f %9.2fx %9.2fx\n" "$target" "$test" "$pipeline" "$rps" "$cpu" \
                "$(echo "$rps / $base_rps" | bc -l)" "$(echo "$cpu / $base_cpu" | bc -l)"
        done
    done
done

# Resident memory with IDLE idle clients, each having sent one PING.
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
echo
printf "%-14s %14s %16s %12s\n" proxy "RSS idle MiB" "RSS +$IDLE MiB" "KiB/client"
for target in hrwproxy twemproxy; do
    before=$(rss_kib "${PROC[$target]}")
    coproc IDLER {
        python3 - "${PORT[$target]}" "$IDLE" <<'PY'
import resource, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
for s in conns:
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
for s in conns:
    assert s.recv(16).startswith(b"+PONG"), "no PONG"
print("ready", flush=True)
sys.stdin.read()
PY
    }
    read -r _ <&"${IDLER[0]}"
    after=$(rss_kib "${PROC[$target]}")
    exec {IDLER[1]}>&-
    wait "$IDLER_PID" 2>/dev/null || true
    printf "%-14s %14.1f %16.1f %12.2f\n" "$target" "$(echo "$before / 1024" | bc -l)" "$(echo "$after / 1024" | bc -l)" \
        "$(echo "($after - $before) / $IDLE" | bc -l)"
done
