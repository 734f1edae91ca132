"""oras-py (the ORAS project's Python SDK, pinned by scripts/test-all.sh) against a wharf
registry in Basic mode: a client nobody here wrote, on Python's `requests`.

Usage: oras_round_trip.py HOST USER PASSWORD WORKDIR [token]

Pushes an artifact of two files in one request each (POST, then PUT with the body) and another
in 1 MiB PATCH chunks, pulls the first back and compares every byte, lists the tags, deletes the
tag and checks it is gone. A wrong password must fail the push, and the right one work right
after it on the same client library. Prints "oras round trip ok" at the end; any failure raises.

oras-py's "token" backend keeps the first token it gets for every later request, whatever scope
a request needs, so a push (whose first request asks only for `pull`) fails against any
registry that checks a token's scope, Docker's registry included: Basic mode is how oras-py
pushes to an htpasswd registry (`auth_backend="basic"`). With `token` (against a token-mode
registry) the script checks that this push fails and that the error oras-py raises carries
wharf's reason: the token does not grant the push scope. Prints "oras token push refused".
"""

import hashlib
import os
import sys

import oras.client

host, user, password, workdir = sys.argv[1:5]
token_mode = sys.argv[5:] == ["token"]
os.chdir(workdir)


def noise(size, seed):
    """Incompressible-looking bytes, different per seed."""
    out = bytearray()
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def client(secret):
    c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    c.login(username=user, password=secret, hostname=host)
    return c


if token_mode:
    with open("small.txt", "w") as f:
        f.write("hello from oras-py\n")
    c = oras.client.OrasClient(hostname=host, insecure=True)
    c.login(username=user, password=password, hostname=host)
    try:
        c.push(files=["small.txt"], target=f"{host}/team/oras-token:v1")
        raise AssertionError("oras-py's token backend pushed: its token now follows the scope")
    except ValueError as e:
        print(e)
        assert "does not grant repository:team/oras-token:pull,push" in str(e), e
    print("oras token push refused")
    sys.exit(0)

big = noise(3 * 1024 * 1024 + 17, "big")
with open("big.bin", "wb") as f:
    f.write(big)
with open("small.txt", "w") as f:
    f.write("hello from oras-py\n")

# A wrong password: refused, nothing pushed.
refused = False
try:
    r = client(password + "-wrong").push(files=["small.txt"], target=f"{host}/team/oras-refused:v1")
    refused = r.status_code >= 400
except Exception as e:  # oras-py raises on a failed upload session
    print("wrong password refused:", type(e).__name__)
    refused = True
assert refused, "a push with a wrong password went through"

c = client(password)
target = f"{host}/team/oras:v1"
r = c.push(files=["big.bin", "small.txt"], target=target)
assert r.status_code == 201, f"push: {r.status_code} {r.text}"

r = c.push(
    files=["big.bin"],
    target=f"{host}/team/oras-chunked:v1",
    do_chunked=True,
    chunk_size=1024 * 1024,
)
assert r.status_code == 201, f"chunked push: {r.status_code} {r.text}"

files = c.pull(target=target, outdir="pulled")
names = sorted(os.path.basename(p) for p in files)
assert names == ["big.bin", "small.txt"], names
with open("pulled/big.bin", "rb") as f:
    assert f.read() == big, "the pulled big.bin differs from the pushed one"
c.pull(target=f"{host}/team/oras-chunked:v1", outdir="pulled-chunked")
with open("pulled-chunked/big.bin", "rb") as f:
    assert f.read() == big, "the chunked push pulled back differs"

tags = c.get_tags(f"{host}/team/oras")
assert tags == ["v1"], tags
manifest = c.get_manifest(target)
assert len(manifest["layers"]) == 2, manifest

c.delete_tag(f"{host}/team/oras", "v1")
try:
    c.get_manifest(target)
    raise AssertionError("the deleted tag still resolves")
except ValueError as e:
    assert "Not Found" in str(e), e

print("oras round trip ok")
