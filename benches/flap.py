#!/usr/bin/env python3
"""Black-box stale-read ("flap") measurement for hrwproxy, stdlib only.

Scenarios (fresh nodes + proxy for each):
  1a cut/overwrite : primary of K behind a TCP relay; PUT v1; cut; PUT v2; heal; wait; 20x GET
  1b cut/delete    : same, but DELETE instead of PUT v2; count GETs still returning v1
  2  pause         : 8 keys with the same primary P; PUT v1; SIGSTOP P; PUT v2..v11 to each;
                     SIGCONT P; wait; 20x GET each key (160); count GETs != v11

Usage: python3 benches/flap.py [--runs N] [--bin LABEL=PATH ...] [--logdir DIR]
  Runs target/release/hrwproxy (cargo build --release first) unless --bin names binaries:
  pass two, say an older build and this one, to compare them in the same run.
"""
import argparse, atexit, http.client, json, os, re, signal, socket, subprocess, sys, threading, time

PROCS = []
LOGDIR = None  # a temporary directory unless --logdir
NODE_IDS = ["n1", "n2", "n3"]
CLIENT_TIMEOUT = 3.0
SETTLE = 1.5
GETS = 20


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            p.kill()
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    PROCS.clear()


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def _drain(stream, fh):
    for line in iter(stream.readline, b""):
        fh.write(line)
        fh.flush()


def start(args, tag, n_listen):
    """Start a process; return (proc, [addr,...]) from its first n_listen 'listening on http://' lines."""
    err = open(os.path.join(LOGDIR, tag + ".stderr"), "wb")
    out = open(os.path.join(LOGDIR, tag + ".stdout"), "wb")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    PROCS.append(p)
    addrs = []
    deadline = time.time() + 20
    while len(addrs) < n_listen:
        if time.time() > deadline:
            raise RuntimeError("%s: no listening line" % tag)
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("%s exited early (rc=%s), see %s.stderr" % (tag, p.poll(), tag))
        out.write(line)
        m = re.search(rb"listening on http://(\S+)", line)
        if m:
            addrs.append(m.group(1).decode())
    threading.Thread(target=_drain, args=(p.stdout, out), daemon=True).start()
    return p, addrs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            p.kill()
        p.wait(timeout=5)
        if p in PROCS:
            PROCS.remove(p)


class Relay:
    """TCP relay 127.0.0.1:0 -> upstream. cut(): close all relayed connections and
    accept-then-close new ones. heal(): forward again."""

    def __init__(self, upstream):
        host, port = upstream.rsplit(":", 1)
        self.up = (host, int(port))
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.is_cut = False
        self.lock = threading.Lock()
        self.socks = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if self.is_cut:
                c.close()
                continue
            try:
                u = socket.create_connection(self.up, timeout=2)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                if self.is_cut:
                    c.close(); u.close()
                    continue
                self.socks.update((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            # Once either direction is done for good, drop the pair.
            self._drop(a)

    def _drop(self, s):
        with self.lock:
            self.socks.discard(s)
        try:
            s.close()
        except OSError:
            pass

    def cut(self):
        with self.lock:
            self.is_cut = True
            socks = list(self.socks)
            self.socks.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def heal(self):
        self.is_cut = False

    def close(self):
        self.closed = True
        self.cut()
        self.ls.close()


def req(addr, method, key, body=None):
    """Returns (status, body) or ('ERR:<exc>', None). New connection per request."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT)
    try:
        c.request(method, "/kv/" + key, body=body)
        r = c.getresponse()
        return r.status, r.read()
    except Exception as e:  # timeout, reset, ...
        return "ERR:%s" % type(e).__name__, None
    finally:
        c.close()


def write_config(path, urls):
    with open(path, "w") as f:
        f.write("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 3\nwrite_quorum: 2\n"
                "timeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 2000 }\n"
                "health_check_interval_ms: 200\nnodes:\n")
        for nid in NODE_IDS:
            f.write('  - { id: %s, url: "http://%s" }\n' % (nid, urls[nid]))


def locate(binary, key):
    cfg = os.path.join(LOGDIR, "locate.yaml")
    if not os.path.exists(cfg):
        write_config(cfg, {n: "127.0.0.1:%d" % (i + 1) for i, n in enumerate(NODE_IDS)})
    out = subprocess.run([binary, "locate", "--config", cfg, key], capture_output=True, text=True, check=True)
    return out.stdout.split()


def cluster(binary, tag, relay_node=None):
    procs, urls, nodes = [], {}, {}
    for nid in NODE_IDS:
        p, (a,) = start([binary, "node", "--listen", "127.0.0.1:0"], "%s-%s" % (tag, nid), 1)
        procs.append(p); nodes[nid] = p; urls[nid] = a
    relay = None
    if relay_node:
        relay = Relay(urls[relay_node])
        urls[relay_node] = relay.addr
    cfg = os.path.join(LOGDIR, tag + ".yaml")
    write_config(cfg, urls)
    p, addrs = start([binary, "serve", "--config", cfg], tag + "-proxy", 2)
    procs.append(p)
    time.sleep(0.5)  # let first health round finish
    return procs, nodes, relay, addrs[0]


def classify(res, val_map):
    st, body = res
    if isinstance(st, str):
        return "err"
    if st == 200:
        return val_map.get(body, "other")
    if st == 404:
        return "404"
    if st >= 500:
        return "5xx"
    return "st%d" % st


def scen_cut(binary, tag, key, mode):
    primary = locate(binary, key)[0]
    procs, nodes, relay, px = cluster(binary, tag, relay_node=primary)
    try:
        ev = {}
        ev["put_v1"] = req(px, "PUT", key, b"v1")[0]
        relay.cut()
        if mode == "overwrite":
            ev["write_during_cut"] = req(px, "PUT", key, b"v2")[0]
        else:
            ev["write_during_cut"] = req(px, "DELETE", key)[0]
        relay.heal()
        time.sleep(SETTLE)
        counts = {}
        for _ in range(GETS):
            c = classify(req(px, "GET", key), {b"v1": "v1", b"v2": "v2"})
            counts[c] = counts.get(c, 0) + 1
        stale = counts.get("v1", 0)
        return {"primary": primary, "events": ev, "gets": counts, "stale": stale}
    finally:
        relay.close()
        stop(procs)


def scen_pause(binary, tag, P="n1", nkeys=8):
    keys, i = [], 0
    while len(keys) < nkeys:
        k = "pause-%d" % i
        if locate(binary, k)[0] == P:
            keys.append(k)
        i += 1
    procs, nodes, _, px = cluster(binary, tag)
    try:
        put_status = {}
        for k in keys:
            s = req(px, "PUT", k, b"v1")[0]
            put_status["v1:%s" % s] = put_status.get("v1:%s" % s, 0) + 1
        os.kill(nodes[P].pid, signal.SIGSTOP)
        t0 = time.time()
        for v in range(2, 12):
            for k in keys:
                s = req(px, "PUT", k, b"v%d" % v)[0]
                put_status[str(s)] = put_status.get(str(s), 0) + 1
        put_secs = round(time.time() - t0, 2)
        os.kill(nodes[P].pid, signal.SIGCONT)
        time.sleep(SETTLE)
        counts, per_key = {}, {}
        vm = {b"v%d" % v: "v%d" % v for v in range(1, 12)}
        for k in keys:
            for _ in range(GETS):
                c = classify(req(px, "GET", k), vm)
                counts[c] = counts.get(c, 0) + 1
                if c != "v11":
                    per_key[k] = per_key.get(k, 0) + 1
        stale = sum(n for c, n in counts.items() if c != "v11")
        return {"P": P, "keys": keys, "puts": put_status, "put_secs": put_secs,
                "gets": counts, "stale": stale, "stale_keys": per_key}
    finally:
        stop(procs)


def main():
    global LOGDIR
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--bin", action="append",
                    help="LABEL=PATH (default hrwproxy=target/release/hrwproxy)")
    ap.add_argument("--logdir", default=None)
    a = ap.parse_args()
    LOGDIR = a.logdir or __import__("tempfile").mkdtemp(prefix="flap-")
    os.makedirs(LOGDIR, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    bins = a.bin or ["hrwproxy=" + os.path.join(here, "..", "target", "release", "hrwproxy")]
    bins = [b.split("=", 1) for b in bins]
    rows = []
    for run in range(1, a.runs + 1):
        for label, path in bins:
            t = "r%d-%s" % (run, label)
            ow = scen_cut(path, t + "-cutow", "flapkey-ow-%d" % run, "overwrite")
            de = scen_cut(path, t + "-cutdel", "flapkey-del-%d" % run, "delete")
            pa = scen_pause(path, t + "-pause")
            for name, r in (("cut-overwrite", ow), ("cut-delete", de), ("pause", pa)):
                print("run=%d bin=%s %s %s" % (run, label, name, json.dumps(r, sort_keys=True)), flush=True)
            rows.append((run, label, ow["stale"], de["stale"], pa["stale"]))
    print("\nrun  bin  stale_overwrite/20  stale_delete/20  stale_pause/160")
    for r in rows:
        print("%-4d %-4s %-18d %-16d %d" % r)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
