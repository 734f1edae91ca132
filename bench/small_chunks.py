#!/usr/bin/env python3
"""One blob uploaded in CHUNKS chunks of one byte each (POST, a PATCH per byte, PUT), over one
keep-alive connection with Python's http.client: what each append and the closing PUT cost as
the upload grows. Used by `PARTS=chunks bash bench/s3.sh`.

    python3 bench/small_chunks.py PORT CHUNKS [EVERY]

Prints the mean time per PATCH over each EVERY (250) chunks, then the closing PUT's time."""
import hashlib
import http.client
import sys
import time

port, chunks = int(sys.argv[1]), int(sys.argv[2])
every = int(sys.argv[3]) if len(sys.argv) > 3 else 250
conn = http.client.HTTPConnection("127.0.0.1", port)
conn.request("POST", "/v2/bench/chunks/blobs/uploads/")
answer = conn.getresponse()
answer.read()
location = answer.getheader("location")
data = bytearray()
last = time.monotonic()
for i in range(chunks):
    byte = bytes([i % 251])
    conn.request("PATCH", location, body=byte, headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"{i}-{i}"})
    answer = conn.getresponse()
    answer.read()
    if answer.status != 202:
        sys.exit(f"chunk {i}: {answer.status}")
    location = answer.getheader("location")
    data += byte
    if (i + 1) % every == 0:
        now = time.monotonic()
        print(f"chunks {i + 2 - every}-{i + 1}: {(now - last) / every * 1000:.1f} ms per PATCH")
        last = now
digest = "sha256:" + hashlib.sha256(data).hexdigest()
sep = "&" if "?" in location else "?"
start = time.monotonic()
conn.request("PUT", f"{location}{sep}digest={digest}")
answer = conn.getresponse()
answer.read()
if answer.status != 201:
    sys.exit(f"closing PUT: {answer.status}")
print(f"closing PUT of {chunks} chunks: {time.monotonic() - start:.2f} s")
