"""Floods a running wharf registry the way issue 7 did and measures what a legitimate client
gets meanwhile. Driven by bench/hostile.sh (which starts the server); loopback only.

usage: hostile.py HOST:PORT SERVER_PID SECONDS [all|fresh]
"fresh": only the baseline and the wrong-password flood (run against a server whose
credential cache is off, so every legitimate request is a fresh bcrypt login).
Prints one Markdown table row per flood: legitimate requests answered / sent, their median and
worst latency, and the server's peak RSS and open fds during the flood.
"""

import base64
import os
import socket
import statistics
import sys
import threading
import time

addr, pid, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
which = sys.argv[4] if len(sys.argv) > 4 else "all"
host, port = addr.rsplit(":", 1)
port = int(port)
ALICE = "Basic " + base64.b64encode(b"alice:alice-pw").decode()
WRONG = "Basic " + base64.b64encode(b"alice:guess").decode()


def connect(source="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


def one_request(source, method, path, auth, timeout=5.0):
    """Status code of one request on its own connection, or None."""
    try:
        s = connect(source, timeout)
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n"
            f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        return int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


def server_usage():
    rss_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return rss_kib, len(os.listdir(f"/proc/{pid}/fd"))


def measure(name, flood):
    stop = threading.Event()
    peak = [0, 0]

    def sample():
        while not stop.is_set():
            rss, fds = server_usage()
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], fds)
            time.sleep(0.1)

    threads = [threading.Thread(target=sample)] + [
        threading.Thread(target=f, args=(stop,)) for f in flood
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let the flood build up
    answered, sent, latencies = 0, 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        status = one_request("127.0.0.5", "GET", "/v2/", ALICE)
        sent += 1
        if status == 200:
            answered += 1
            latencies.append(time.monotonic() - t0)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    med = statistics.median(latencies) * 1000 if latencies else float("nan")
    worst = max(latencies) * 1000 if latencies else float("nan")
    print(
        f"| {name} | {answered}/{sent} | {med:.1f} ms | {worst:.1f} ms | "
        f"{peak[0] / 1024:.0f} MiB | {peak[1]} |",
        flush=True,
    )
    time.sleep(2.0)


def silent_sockets(count, send_head):
    def run(stop):
        socks = []
        while not stop.is_set():
            # Keep `count` open: reopen what the server closed.
            socks = [s for s in socks if s.fileno() != -1]
            while len(socks) < count and not stop.is_set():
                try:
                    s = connect("127.0.0.66")
                    if send_head:
                        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
                    s.setblocking(False)
                    socks.append(s)
                except OSError:
                    break
            for s in list(socks):
                try:
                    if s.recv(1) == b"":
                        s.close()
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
            time.sleep(0.2)
        for s in socks:
            s.close()

    return run


def idle_keep_alive(count):
    def run(stop):
        socks = []
        for _ in range(count):
            if stop.is_set():
                break
            try:
                s = connect("127.0.0.66")
                s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {ALICE}\r\n\r\n".encode())
                s.recv(4096)
                socks.append(s)
            except OSError:
                pass
        stop.wait()
        for s in socks:
            s.close()

    return run


def upload_sessions(stop):
    while not stop.is_set():
        one_request("127.0.0.66", "POST", "/v2/flood/blobs/uploads/", ALICE)


def wrong_passwords(stop):
    while not stop.is_set():
        one_request("127.0.0.66", "GET", "/v2/", WRONG)


print("| flood | legitimate requests answered | median | worst | server RSS peak | server fds peak |")
print("| ----- | ---------------------------- | ------ | ----- | --------------- | --------------- |")
if which == "fresh":
    measure("none, every request a fresh bcrypt login (cost 10)", [])
    measure("wrong passwords (30 parallel connections), every legitimate request a fresh login", [wrong_passwords] * 30)
    sys.exit(0)
measure("none (baseline)", [])
measure("1,100 silent sockets (half-sent head, reopened when closed)", [silent_sockets(1100, True)])
measure("1,100 idle keep-alive connections", [idle_keep_alive(1100)])
measure("upload sessions (POST loop, 4 threads)", [upload_sessions] * 4)
measure("wrong passwords (30 parallel connections)", [wrong_passwords] * 30)
