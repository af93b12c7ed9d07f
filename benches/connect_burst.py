#!/usr/bin/env python3
"""A burst of new client connections against a listener: how many took over half a second to
connect (a SYN or handshake the kernel dropped waits a second for its retry), and the kernel's
own counters of listen-queue overflows and SYN retransmits over the burst.

    python3 benches/connect_burst.py HOST:PORT [CONNECTIONS]

Starts CONNECTIONS (default 5000) non-blocking connects as fast as it can, times each until it
is established, holds all of them, then closes them. Loopback only.
"""
import errno
import selectors
import socket
import sys
import time


def kernel_counters():
    """TcpExt ListenOverflows, ListenDrops and TCPSynRetrans from /proc/net/netstat."""
    wanted = {"ListenOverflows", "ListenDrops", "TCPSynRetrans"}
    lines = open("/proc/net/netstat").read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            pairs = zip(names.split()[1:], values.split()[1:])
            return {k: int(v) for k, v in pairs if k in wanted}
    return {}


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    before = kernel_counters()
    selector = selectors.DefaultSelector()
    started, times, sockets = {}, [], []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex((host, int(port)))
        if err not in (0, errno.EINPROGRESS):
            times.append(float("inf"))
            s.close()
            continue
        started[s.fileno()] = time.monotonic()
        selector.register(s, selectors.EVENT_WRITE)
        sockets.append(s)
    deadline = time.monotonic() + 30
    while started and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            now = time.monotonic()
            s = key.fileobj
            ok = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            times.append(now - started.pop(s.fileno()) if ok else float("inf"))
            selector.unregister(s)
    times.extend(float("inf") for _ in started)
    for s in sockets:
        s.close()
    after = kernel_counters()
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))] * 1000
    slow = sum(1 for t in times if t > 0.5)
    failed = sum(1 for t in times if t == float("inf"))
    delta = " ".join(f"{k} +{after[k] - before.get(k, 0)}" for k in sorted(after))
    print(f"{count} connects: p50 {pct(50):.2f} ms, p99 {pct(99):.2f} ms, max {times[-1]*1000:.1f} ms, "
          f"over 0.5 s: {slow}, failed: {failed}; kernel: {delta}")


main()
