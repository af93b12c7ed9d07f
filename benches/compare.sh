#!/usr/bin/env bash
# hrwproxy against nginx and HAProxy doing the same job in front of the same 3 built-in nodes
# (or, with NODES_KIND=webdav, 3 nginx WebDAV stores that hrwproxy reaches as `store: plain`),
# plus hrwproxy with `versioning: off` and the nodes hit directly as the ceiling. GET and PUT
# with wrk, targets alternating, several rounds, medians reported, with the CPU time (user +
# system, from /proc) each target spent per request; then hrwproxy at r=2 (GET waiting for both
# replicas, PUT for both acks) and GET and PUT at r=3 (quorum 2), sloppy (the default) and
# `quorum: strict`; then resident memory of each proxy holding IDLE (9000) idle keep-alive
# client connections.
#   bash benches/compare.sh       # ROUNDS=3 SECONDS_PER_RUN=5 CONNECTIONS=32 IDLE=9000
# Other builds of hrwproxy join the r=1 rows and the memory rows, to compare builds in one run:
#   BUILDS="mimalloc=/tmp/hrwproxy-mimalloc lto=/tmp/hrwproxy-lto" bash benches/compare.sh
# and so do variants of the config (a name, then settings with ";" between them):
#   VARIANTS="no-coalesce=coalesce_reads:false" bash benches/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
CONNECTIONS=${CONNECTIONS:-32}
IDLE=${IDLE:-9000} # HAProxy reserves two descriptors per connection; this machine allows 20000
KEYS=1000
NODES_KIND=${NODES_KIND:-builtin}
case $NODES_KIND in builtin | webdav) ;; *) echo "NODES_KIND is builtin or webdav" >&2; exit 2 ;; esac

missing=()
for tool in nginx haproxy wrk; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
ulimit -n "$(ulimit -Hn)"  # as many as allowed: the idle-connection test needs 10,000+
cargo build --release -q
BIN=$PWD/target/release/hrwproxy
source benches/common.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; cat "$WORK"/*.err >&2 2>/dev/null; exit 1; }
# Only for nginx and HAProxy, which cannot report a port they picked themselves.

# The three nodes, every key preloaded on each, so any proxy's choice of node finds it.
NODE_PORTS=()
NODE_PIDS=()
STORE=""
if [ "$NODES_KIND" = webdav ]; then
    STORE=", store: plain"
    for n in 1 2 3; do
        port=$(free_port)
        mkdir -p "$WORK/dav$n"
        # Workers as this user: the data directory is in a private temporary directory.
        cat >"$WORK/dav$n.conf" <<NGINX
user $(id -un) $(id -gn);
worker_processes 1;
pid $WORK/dav$n.pid;
error_log $WORK/dav$n.error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/dav$n-body;
    client_max_body_size 8m;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $WORK/dav$n;
        location / { dav_methods PUT DELETE; create_full_put_path on; }
    }
}
NGINX
        nginx -c "$WORK/dav$n.conf"
        wait_port "$port"
        NODE_PORTS+=("$port")
        NODE_PIDS+=("$(cat "$WORK/dav$n.pid")")
    done
else
    for n in 1 2 3; do
        start_bin "node$n" 1 node --listen 127.0.0.1:0
        NODE_PORTS+=("${PORTS_SEEN[0]}")
        NODE_PIDS+=("$LAST_PID")
    done
fi

hrw_config() { # replicas, more settings
    cat <<YAML
listen: 127.0.0.1:0
admin: 127.0.0.1:0
replicas: $1
${2:-}
health_check_interval_ms: 0
# Idle keep-alive clients stay as long as nginx's (75 s) for the memory measurement.
limits: { header_read_timeout_ms: 75000 }
nodes:
YAML
    local n=0
    for port in "${NODE_PORTS[@]}"; do
        n=$((n + 1))
        echo "  - { id: n$n, url: \"http://127.0.0.1:$port\"$STORE }"
    done
}

declare -A PORT PROCS
start_hrwproxy() { # name, replicas, more settings
    hrw_config "$2" "${3:-}" >"$WORK/$1.yaml"
    start_bin "$1" 2 serve --config "$WORK/$1.yaml"
    PORT[$1]=${PORTS_SEEN[0]}
    PROCS[$1]=$LAST_PID
}
# Every key written through hrwproxy at r=3, in the form hrwproxy keeps (a version, or for
# WebDAV an envelope around the value); nginx and HAProxy serve those bytes as they are.
start_hrwproxy preload 3
python3 - "$KEYS" "${PORT[preload]}" <<'PY'
import http.client, sys
keys, port = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(keys):
    conn.request("PUT", f"/kv/key-{i}", body=b"v" * 100)
    response = conn.getresponse()
    response.read()
    assert response.status == 204, (i, response.status, response.getheaders())
PY
kill "${PROCS[preload]}"
start_hrwproxy hrwproxy 1
start_hrwproxy hrwproxy-off 1 "versioning: off"
BUILD_NAMES=()
for build in ${BUILDS:-}; do
    BIN=${build#*=} start_hrwproxy "${build%%=*}" 1
    BUILD_NAMES+=("${build%%=*}")
done
for variant in ${VARIANTS:-}; do
    settings=${variant#*=}
    start_hrwproxy "${variant%%=*}" 1 "$(echo "$settings" | sed 's/:/: /g; s/;/\n/g')"
    BUILD_NAMES+=("${variant%%=*}")
done

PORT[nginx]=$(free_port)
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx.error.log error;
events { worker_connections 15000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-body;
    proxy_temp_path $WORK/nginx-proxy;
    client_max_body_size 8m;
    keepalive_requests 1000000;
    upstream nodes {
        hash \$uri consistent;
$(for port in "${NODE_PORTS[@]}"; do echo "        server 127.0.0.1:$port;"; done)
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503;
            proxy_request_buffering off;
        }
    }
}
NGINX
nginx -c "$WORK/nginx.conf"
wait_port "${PORT[nginx]}"
PROCS[nginx]=$(cat "$WORK/nginx.pid")

PORT[haproxy]=$(free_port)
cat >"$WORK/haproxy.cfg" <<HAPROXY
global
    nbthread 2
    maxconn 9500
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend front
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend nodes
backend nodes
    balance uri
    hash-type consistent
$(n=0; for port in "${NODE_PORTS[@]}"; do n=$((n + 1)); echo "    server n$n 127.0.0.1:$port"; done)
HAPROXY
haproxy -f "$WORK/haproxy.cfg" >/dev/null 2>"$WORK/haproxy.err" &
PIDS+=($!)
PROCS[haproxy]=$!
wait_port "${PORT[haproxy]}"

PORT[nodes-direct]=${NODE_PORTS[0]}
PROCS[nodes-direct]=${NODE_PIDS[0]}

cat >"$WORK/get.lua" <<LUA
math.randomseed(os.time())
request = function() return wrk.format("GET", "/kv/key-" .. math.random(0, $KEYS - 1)) end
LUA
cat >"$WORK/put.lua" <<LUA
math.randomseed(os.time())
local body = string.rep("v", 100)
request = function() return wrk.format("PUT", "/kv/key-" .. math.random(0, $KEYS - 1), nil, body) end
LUA

# requests/s, p50 ms, p99 ms and CPU µs per request of one wrk run against a target; non-2xx
# answers make the run fail loudly.
run_wrk() { # target, get|put
    local before after
    before=$(cpu_ticks "${PROCS[$1]}")
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/$2.lua" \
        "http://127.0.0.1:${PORT[$1]}" >"$WORK/wrk.out"
    after=$(cpu_ticks "${PROCS[$1]}")
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $2 == "requests" && $3 == "in" { requests = $1 }
        /Non-2xx/ { bad = $NF }
        /Requests\/sec/ { rps = $2 }
        END {
            if (bad > 0) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 }
            printf "%.0f %.3f %.3f %.1f\n", rps, p50, p99, ticks * 1e6 / hz / requests
        }' "$WORK/wrk.out"
}


TARGETS=(hrwproxy hrwproxy-off "${BUILD_NAMES[@]}" nginx haproxy nodes-direct)
for round in $(seq 1 "$ROUNDS"); do
    for load in get put; do
        for target in "${TARGETS[@]}"; do
            run_wrk "$target" "$load" >>"$WORK/$target.$load"
        done
    done
    echo "round $round of $ROUNDS done" >&2
done

start_hrwproxy hrwproxy-r2 2 "read_quorum: 2"
start_hrwproxy hrwproxy-r3 3
start_hrwproxy r3-strict 3 "quorum: strict"
for round in $(seq 1 "$ROUNDS"); do
    run_wrk hrwproxy-r2 get >>"$WORK/hrwproxy-r2.get"
    for target in hrwproxy-r3 r3-strict; do
        run_wrk "$target" get >>"$WORK/$target.get"
    done
    for target in hrwproxy-r2 hrwproxy-r3 r3-strict; do
        run_wrk "$target" put >>"$WORK/$target.put"
    done
done

column_of() { awk -v c="$2" '{ print $c }' "$1" | median; }
row() { # target, load: the medians, and requests/s and CPU per request as ratios to hrwproxy's
    local rps cpu
    rps=$(column_of "$WORK/$1.$2" 1)
    cpu=$(column_of "$WORK/$1.$2" 4)
    printf "%-14s %-4s %10s %9s %9s %10s %9.2fx %9.2fx\n" "$1" "$2" "$rps" \
        "$(column_of "$WORK/$1.$2" 2)" "$(column_of "$WORK/$1.$2" 3)" "$cpu" \
        "$(echo "$rps / $(column_of "$WORK/hrwproxy.$2" 1)" | bc -l)" \
        "$(echo "$cpu / $(column_of "$WORK/hrwproxy.$2" 4)" | bc -l)"
}
echo
echo "median of $ROUNDS rounds, wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, 100-byte values, $KEYS keys, 3 $NODES_KIND nodes"
printf "%-14s %-4s %10s %9s %9s %10s %10s %10s\n" target load req/s p50_ms p99_ms cpu_us/req "req/s vs" "cpu vs"
for load in get put; do
    for target in "${TARGETS[@]}"; do row "$target" "$load"; done
done
row hrwproxy-r2 get
row hrwproxy-r2 put
for target in hrwproxy-r3 r3-strict; do
    row "$target" get
    row "$target" put
done

# Resident memory with IDLE idle keep-alive clients (all processes of the proxy).
rss_kib() { # pid (and its children)
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")))
    done
    echo "$total"
}
echo
printf "%-14s %14s %14s\n" proxy "RSS idle MiB" "RSS +${IDLE} MiB"
for target in hrwproxy "${BUILD_NAMES[@]}" nginx haproxy; do
    before=$(rss_kib "${PROCS[$target]}")
    coproc IDLER { python3 benches/idle_connections.py 127.0.0.1 "${PORT[$target]}" "$IDLE" /kv/key-1; }
    read -r ready <&"${IDLER[0]}"
    [ "$ready" = ready ] || { echo "idle connections to $target failed" >&2; exit 1; }
    after=$(rss_kib "${PROCS[$target]}")
    exec {IDLER[1]}>&-
    wait "$IDLER_PID" 2>/dev/null || true
    printf "%-14s %14.1f %14.1f\n" "$target" "$(echo "$before / 1024" | bc -l)" "$(echo "$after / 1024" | bc -l)"
done
