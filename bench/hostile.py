#!/usr/bin/env python3
"""bench/hostile.py: the hostile-client probes of issue 9, against one or
more shoal binaries side by side (say, the last release and this build).

    bench/hostile.py target/release/shoal [/path/to/older/shoal ...]

For each binary, on 127.0.0.60 (ports 3160/8160/7160/9160), with the open-file
limit at soft = hard = 512 so the node cannot raise it:

  1. idle RSS;
  2. 200 connections each sending one 300 KB header, slowly: RSS while they
     are open, and how many the node cut;
  3. 600 idle connections to the service port: does /healthz still answer,
     and within how long;
  4. (a node with a keyring) 100 unsigned PUTs of 1 MiB to the peer port:
     RSS after;
  5. how long an idle connection, a trickling head and a stalled body stay
     open (capped at 30 s by the probe).

Prints one table; the figures go into BENCHMARKS.md. Needs only Python 3.
"""

import base64
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

IP = "127.0.0.60"
SERVICE, PEER, GOSSIP, ADMIN = 3160, 8160, 7160, 9160
FD_LIMIT = 512
CAP = 30.0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def start(binary, workdir, keyring=False):
    args = [
        binary,
        "--bind", IP, "--advertise", IP,
        "--service-port", str(SERVICE), "--peer-port", str(PEER),
        "--gossip-port", str(GOSSIP), "--admin-port", str(ADMIN),
    ]
    if keyring:
        path = os.path.join(workdir, "keyring")
        with open(path, "w") as f:
            f.write(base64.b64encode(bytes([7] * 32)).decode() + "\n")
        args += ["--keyring", path]
    log = open(os.path.join(workdir, f"node-{time.time_ns()}.log"), "w")
    proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=limit_fds)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{IP}:{ADMIN}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{binary} did not start")


def stop(proc):
    proc.kill()
    proc.wait()


def healthz_seconds():
    """Seconds until /healthz answers (CAP if it does not)."""
    started = time.time()
    while time.time() - started < CAP:
        try:
            with urllib.request.urlopen(f"http://{IP}:{ADMIN}/healthz", timeout=2):
                return time.time() - started
        except OSError:
            time.sleep(0.1)
    return CAP


def open_seconds(send_first, trickle=None):
    """How long a connection that sends `send_first` (then `trickle` every
    0.5 s) stays open, capped at CAP."""
    sock = socket.create_connection((IP, SERVICE))
    sock.settimeout(0.5)
    started = time.time()
    if send_first:
        sock.sendall(send_first)
    try:
        while time.time() - started < CAP:
            try:
                data = sock.recv(4096)
                if not data:
                    return time.time() - started
            except socket.timeout:
                if trickle:
                    sock.sendall(trickle)
            except OSError:
                return time.time() - started
        return CAP
    finally:
        sock.close()


def big_headers(pid):
    socks, cut = [], 0
    header = b"X-Big: " + b"a" * (300 * 1024) + b"\r\n"
    for _ in range(200):
        try:
            s = socket.create_connection((IP, SERVICE), timeout=2)
            s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            cut += 1
    for offset in range(0, len(header), 16 * 1024):
        for s in list(socks):
            try:
                s.sendall(header[offset:offset + 16 * 1024])
            except OSError:
                socks.remove(s)
                cut += 1
    rss = rss_kib(pid)
    for s in socks:
        s.close()
    return rss, cut


def idle_flood():
    socks = []
    for _ in range(600):
        try:
            socks.append(socket.create_connection((IP, SERVICE), timeout=2))
        except OSError:
            break
    # Let the node accept what it will before the probe asks.
    time.sleep(2)
    seconds = healthz_seconds()
    for s in socks:
        s.close()
    return seconds


def unsigned_puts(pid):
    body = b"v" * (1 << 20)
    head = (
        "PUT /_shoal/v1/heavy/aw HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    socks = []
    for _ in range(100):
        try:
            s = socket.create_connection((IP, PEER), timeout=2)
            s.sendall(head)
            socks.append(s)
        except OSError:
            pass
    for s in socks:
        try:
            s.settimeout(2)
            s.sendall(body)
        except OSError:
            pass
    time.sleep(1)
    rss = rss_kib(pid)
    for s in socks:
        s.close()
    return rss


def probe(binary):
    with tempfile.TemporaryDirectory() as workdir:
        row = {}
        node = start(binary, workdir)
        try:
            time.sleep(0.5)
            row["idle RSS (MiB)"] = rss_kib(node.pid) / 1024
            rss, cut = big_headers(node.pid)
            row["RSS with 200 × 300 KB headers (MiB)"] = rss / 1024
            row["of those cut by the node"] = cut
            row["/healthz under 600 idle conns (s)"] = idle_flood()
            row["idle connection open (s)"] = open_seconds(b"")
            row["trickled head open (s)"] = open_seconds(
                b"GET /k HTTP/1.1\r\nHost: x\r\n", trickle=b"X")
            row["stalled body open (s)"] = open_seconds(
                b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        finally:
            stop(node)
        node = start(binary, workdir, keyring=True)
        try:
            time.sleep(0.5)
            before = rss_kib(node.pid)
            row["RSS after 100 unsigned 1 MiB peer PUTs (MiB)"] = unsigned_puts(node.pid) / 1024
            row["  (idle, keyring node)"] = before / 1024
        finally:
            stop(node)
        return row


def main():
    binaries = sys.argv[1:] or ["target/release/shoal"]
    rows = [(b, probe(b)) for b in binaries]
    names = list(rows[0][1])
    print("| probe | " + " | ".join(b for b, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in names:
        cells = []
        for _, row in rows:
            value = row[name]
            cells.append(f"{value:.1f}" if isinstance(value, float) else str(value))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
