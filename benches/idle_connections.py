"""Opens N keep-alive client connections to HOST:PORT, makes one GET on each, keeps them all
open and idle, prints "ready" and waits for stdin to close. Used by benches/compare.sh to
measure each proxy's memory with that many idle clients."""
import resource
import socket
import sys

host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
conns = []
request = f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
for _ in range(count):
    s = socket.create_connection((host, port))
    s.sendall(request)
    conns.append(s)
for s in conns:
    # Read the whole small response: headers up to the blank line, then the body.
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(f"a connection closed before answering ({len(conns)} open)")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        rest += s.recv(65536)
print("ready", flush=True)
sys.stdin.read()
