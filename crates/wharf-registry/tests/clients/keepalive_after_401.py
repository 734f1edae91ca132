"""A keep-alive client that is not ours (Python's http.client) against wharf's registry.

For each body size, on ONE HTTPConnection: start an upload with credentials, PUT the body
without credentials (401 expected), then PUT it again with credentials (201 expected). Also
404 and 413 answers to requests with bodies, each followed by a request on the same connection.

usage: keepalive_after_401.py HOST:PORT basic|token USER PASSWORD
Prints one line per step; exits non-zero on the first failure.
"""

import base64
import hashlib
import http.client
import json
import sys
import urllib.parse

addr, mode, user, password = sys.argv[1:5]
host, port = addr.rsplit(":", 1)
repo = "hostile/keepalive"
basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
conn = http.client.HTTPConnection(host, int(port), timeout=20)


def exchange(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r, data


def credentials():
    if mode == "basic":
        return {"Authorization": basic}
    scope = urllib.parse.quote(f"repository:{repo}:pull,push")
    r, data = exchange(
        "GET",
        f"/token?service=wharf-registry&scope={scope}",
        headers={"Authorization": basic},
    )
    assert r.status == 200, (r.status, data)
    return {"Authorization": "Bearer " + json.loads(data)["token"]}


def expect(r, data, status, what):
    if r.status != status:
        print(f"FAIL {what}: {r.status} {data[:300]!r}")
        sys.exit(1)
    print(f"ok {what}: {r.status} (connection: {r.getheader('Connection')})")


auth = credentials()
for size in [0, 2000, 300 * 1024, 1024 * 1024]:
    body = bytes((i * 7 + size) % 251 for i in range(size))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    r, data = exchange("POST", f"/v2/{repo}/blobs/uploads/", headers=dict(auth))
    expect(r, data, 202, f"{mode} start upload for {size} B")
    location = r.getheader("Location")
    put = f"{location}{'&' if '?' in location else '?'}digest={urllib.parse.quote(digest)}"
    plain = {"Content-Type": "application/octet-stream"}
    r, data = exchange("PUT", put, body=body, headers=plain)
    expect(r, data, 401, f"{mode} PUT {size} B without credentials")
    r, data = exchange("PUT", put, body=body, headers={**plain, **auth})
    expect(r, data, 201, f"{mode} PUT {size} B again with credentials")

# Sibling early answers to requests with bodies, each followed by a request on the connection.
for size in [2000, 300 * 1024]:
    body = b"x" * size
    r, data = exchange(
        "PATCH", f"/v2/{repo}/blobs/uploads/nosuchsession", body=body, headers=dict(auth)
    )
    expect(r, data, 404, f"{mode} PATCH {size} B to an unknown session")
    r, data = exchange("GET", "/v2/", headers=dict(auth))
    expect(r, data, 200, f"{mode} GET /v2/ after the 404")
    r, data = exchange("PUT", f"/v2/{repo}/manifests/BAD%20TAG", body=body, headers=dict(auth))
    expect(r, data, 400, f"{mode} PUT {size} B manifest with a bad tag")
    r, data = exchange("GET", "/v2/", headers=dict(auth))
    expect(r, data, 200, f"{mode} GET /v2/ after the 400")
big = b"{" + b" " * (5 * 1024 * 1024) + b"}"
r, data = exchange(
    "PUT",
    f"/v2/{repo}/manifests/big",
    body=big,
    headers={**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
)
expect(r, data, 413, f"{mode} PUT 5 MiB manifest")
r, data = exchange("GET", "/v2/", headers=dict(auth))
expect(r, data, 200, f"{mode} GET /v2/ after the 413")
print("all ok")
