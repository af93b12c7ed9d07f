# Sourced by the benchmark scripts: a work directory and the processes started, cleaned up on
# exit; hrwproxy processes started with their ports read from their output; CPU time and
# medians. Needs BIN, the hrwproxy binary; sets WORK and PIDS.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pidfile in "$WORK"/*.pid; do [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts `hrwproxy ARGS` with its output in $WORK/NAME.out; sets LAST_PID, and PORTS_SEEN to
# the ports of its "listening on http://..." lines once there are COUNT of them.
start_bin() { # name, count, args...
    local name=$1 count=$2
    shift 2
    RUST_LOG=error "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for _ in $(seq 1 200); do
        if [ "$(grep -c "listening on" "$WORK/$name.out")" -ge "$count" ]; then
            PORTS_SEEN=($(sed -n 's#.*http://127.0.0.1:##p' "$WORK/$name.out"))
            return
        fi
        sleep 0.05
    done
    echo "hrwproxy $* did not start:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
}

# CPU time (utime + stime, in clock ticks) of a process and its children (nginx's workers).
cpu_ticks() { # pid
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
