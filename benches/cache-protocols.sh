#!/usr/bin/env bash
# hrwproxy's cache-protocol doors against twemproxy (nutcracker, `distribution: ketama`), both
# in front of the same three nodes at r=1, ROUNDS rounds with the proxies alternating, medians
# of requests per second and of each proxy's CPU time per request (user + system, from /proc);
# then each proxy's resident memory with IDLE idle clients.
# - Redis: three redis-server nodes, the RESP door; redis-benchmark GET and SET
#   (-n REQUESTS -c 50 -r 10000), plain and pipelined (-P 16).
# - memcached: three memcached nodes, the memcached door; memaslap (libmemcached-tools, one
#   thread, 50 connections, -x REQUESTS) with only sets, and with 90% gets and 10% sets.
# hrwproxy runs as configured by default (versions on) and with `versioning: off`.
#   bash benches/cache-protocols.sh      # ROUNDS=3 REQUESTS=200000 IDLE=10000 PROTOCOLS="redis memcached"
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
IDLE=${IDLE:-10000}
PROTOCOLS=${PROTOCOLS:-redis memcached}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v memcached >/dev/null || missing+=(memcached)
command -v memcaslap >/dev/null || missing+=(libmemcached-tools)
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
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

declare -A PORT PROC

# Three nodes of a protocol; their ports in NODE_PORTS.
start_nodes() { # redis | memcached
    NODE_PORTS=()
    local n port
    for n in 1 2 3; do
        port=$(free_port)
        if [ "$1" = redis ]; then
            redis-server --port "$port" --save "" --appendonly no --daemonize no --loglevel warning >"$WORK/redis$n.log" 2>&1 &
        else
            memcached -l 127.0.0.1 -p "$port" -U 0 -m 256 -u "$(id -un)" &
        fi
        PIDS+=("$!")
        wait_port "$port"
        NODE_PORTS+=("$port")
    done
}

start_hrwproxy() { # name, protocol, more settings
    local door scheme
    door=$(free_port)
    if [ "$2" = redis ]; then scheme=redis; else scheme=memcache; fi
    {
        printf 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n%s_listen: 127.0.0.1:%s\nreplicas: 1\nhealth_check_interval_ms: 0\n%s\nnodes:\n' \
            "$( [ "$2" = redis ] && echo resp || echo memcache )" "$door" "${3:-}"
        local n=0 port
        for port in "${NODE_PORTS[@]}"; do
            n=$((n + 1))
            echo "  - { id: n$n, url: \"$scheme://127.0.0.1:$port\" }"
        done
    } >"$WORK/$1.yaml"
    start_bin "$1" 3 serve --config "$WORK/$1.yaml"
    PORT[$1]=$door
    PROC[$1]=$LAST_PID
}

start_twemproxy() { # name, protocol
    PORT[$1]=$(free_port)
    {
        echo "pool:"
        echo "  listen: 127.0.0.1:${PORT[$1]}"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: $( [ "$2" = redis ] && echo true || echo false )"
        echo "  auto_eject_hosts: false"
        echo "  servers:"
        local n=0 port
        for port in "${NODE_PORTS[@]}"; do
            n=$((n + 1))
            echo "    - 127.0.0.1:$port:1 n$n"
        done
    } >"$WORK/$1.yml"
    nutcracker -c "$WORK/$1.yml" -s "$(free_port)" -o "$WORK/$1.log" &
    PROC[$1]=$!
    PIDS+=("$!")
    wait_port "${PORT[$1]}"
}

# memaslap's commands: the share of sets and of gets, 16-byte keys, 3-byte values.
printf 'key\n16 16 1\nvalue\n3 3 1\ncmd\n0 1.0\n1 0.0\n' >"$WORK/set.cfg"
printf 'key\n16 16 1\nvalue\n3 3 1\ncmd\n0 0.1\n1 0.9\n' >"$WORK/mix.cfg"

# One load against one target; appends "target test P req/s cpu_us/req" to $WORK/results.
measure() { # protocol, target, test, pipeline
    local before after rps ops
    before=$(cpu_ticks "${PROC[$2]}")
    if [ "$1" = redis ]; then
        ops=$REQUESTS
        rps=$(redis-benchmark -h 127.0.0.1 -p "${PORT[$2]}" -t "$3" -n "$REQUESTS" -c 50 -P "$4" -r 10000 -q --csv |
            awk -F'"' 'NR > 1 || $2 != "test" { print $4; exit }')
    else
        # The last line: "Run time: 2.1s Ops: 200000 TPS: 95000 Net_rate: ...".
        read -r ops rps < <(memcaslap -s "127.0.0.1:${PORT[$2]}" -T 1 -c 50 -w 1k -x "$REQUESTS" -F "$WORK/$3.cfg" |
            awk '/^Run time/ { print $5, $7 }')
    fi
    after=$(cpu_ticks "${PROC[$2]}")
    # CPU ticks are 10 ms: per request in microseconds.
    echo "$2 $3 $4 $rps $(echo "($after - $before) * 10000 / $ops" | bc -l)" >>"$WORK/results"
}

table() { # title, baseline, targets, tests, pipelines
    local test pipeline target rps cpu base_rps base_cpu
    echo
    echo "$1"
    printf "%-14s %-5s %3s %10s %11s %10s %10s\n" target test P "req/s" "cpu_us/req" "req/s vs" "cpu vs"
    of() { awk -v n="$1" -v t="$2" -v p="$3" -v f="$4" '$1 == n && $2 == t && $3 == p { print $f }' "$WORK/results" | median; }
    for pipeline in $5; do
        for test in $4; do
            base_rps=$(of "$2" "$test" "$pipeline" 4)
            base_cpu=$(of "$2" "$test" "$pipeline" 5)
            for target in $3; do
                rps=$(of "$target" "$test" "$pipeline" 4)
                cpu=$(of "$target" "$test" "$pipeline" 5)
                printf "%-14s %-5s %3s %10.0f %11.2f %9.2fx %9.2fx\n" "$target" "$test" "$pipeline" "$rps" "$cpu" \
                    "$(echo "$rps / $base_rps" | bc -l)" "$(echo "$cpu / $base_cpu" | bc -l)"
            done
        done
    done
}

# Resident memory with IDLE idle clients, each having sent one request and read its answer.
idle_memory() { # protocol, targets
    local target before after request answer
    if [ "$1" = redis ]; then request='*1\r\n$4\r\nPING\r\n' answer='+PONG'; else request='version\r\n' answer='VERSION'; fi
    echo
    printf "%-14s %14s %16s %12s\n" "$1 door" "RSS idle MiB" "RSS +$IDLE MiB" "KiB/client"
    for target in $2; do
        before=$(rss_kib "${PROC[$target]}")
        coproc IDLER {
            python3 - "${PORT[$target]}" "$IDLE" "$request" "$answer" <<'PY'
import codecs, resource, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
request = codecs.decode(sys.argv[3], "unicode_escape").encode()
answer = sys.argv[4].encode()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
for s in conns:
    s.sendall(request)
for s in conns:
    assert s.recv(64).startswith(answer), "no answer"
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
}

for protocol in $PROTOCOLS; do
    : >"$WORK/results"
    start_nodes "$protocol"
    start_hrwproxy "hrwproxy" "$protocol"
    start_hrwproxy "hrwproxy-off" "$protocol" "versioning: off"
    start_twemproxy twemproxy "$protocol"
    TARGETS="hrwproxy hrwproxy-off twemproxy"
    if [ "$protocol" = redis ]; then tests="set get" pipelines="1 16"; else tests="set mix" pipelines="1"; fi
    for round in $(seq 1 "$ROUNDS"); do
        for pipeline in $pipelines; do
            for test in $tests; do
                for target in $TARGETS; do
                    measure "$protocol" "$target" "$test" "$pipeline"
                done
            done
        done
        echo "$protocol: round $round of $ROUNDS done" >&2
    done
    if [ "$protocol" = redis ]; then
        table "Redis: median of $ROUNDS rounds, redis-benchmark -n $REQUESTS -c 50 -r 10000, 3 redis-server nodes, r=1" \
            twemproxy "$TARGETS" "get set" "$pipelines"
    else
        table "memcached: median of $ROUNDS rounds, memaslap -T 1 -c 50 -x $REQUESTS (mix: 90% get), 3 memcached nodes, r=1" \
            twemproxy "$TARGETS" "$tests" "$pipelines"
    fi
    idle_memory "$protocol" "hrwproxy twemproxy"
    for target in $TARGETS; do kill "${PROC[$target]}" 2>/dev/null || true; done
done
