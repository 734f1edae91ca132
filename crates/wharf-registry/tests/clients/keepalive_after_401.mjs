// Three clients that are not ours, Node's: `node:http` with a one-socket keep-alive agent, the
// global `fetch` (undici, another HTTP/1.1 implementation), and `node:http2` on one cleartext
// HTTP/2 session (prior knowledge, as wharf serves it without TLS), against wharf's registry. The same steps as keepalive_after_401.py: for each body size, start an upload with
// credentials, PUT the body without credentials (401 expected), then again with credentials
// (201 expected); fetch also sends a streamed body (no Content-Length, chunked), which it cannot
// send twice, so a connection the server left unusable shows as a failed next request. Over
// HTTP/2 an early answer ends one stream, never the session the next requests use.
// Then 404, 400 and 413 answers to requests with bodies, each followed by a request.
//
// usage: node keepalive_after_401.mjs HOST:PORT basic|token USER PASSWORD
// Prints one line per step; exits non-zero on the first failure.

import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";

const [addr, mode, user, password] = process.argv.slice(2);
const base = `http://${addr}`;
const repo = "hostile/keepalive-node";
const basic = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let connections = 0;
const createConnection = agent.createConnection.bind(agent);
agent.createConnection = (...args) => {
  connections += 1;
  return createConnection(...args);
};

function exchange(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${base}${path}`,
      { method, agent, headers: { ...headers, "Content-Length": body ? body.length : 0 } },
      (response) => {
        const parts = [];
        response.on("data", (part) => parts.push(part));
        response.on("end", () => resolve({ status: response.statusCode, headers: response.headers, data: Buffer.concat(parts) }));
        response.on("error", reject);
      },
    );
    request.setTimeout(20000, () => request.destroy(new Error(`${method} ${path}: no answer in 20 s`)));
    request.on("error", reject);
    request.end(body);
  });
}

function expect(answer, status, what) {
  if (answer.status !== status) {
    console.log(`FAIL ${what}: ${answer.status} ${String(answer.data).slice(0, 300)}`);
    process.exit(1);
  }
  console.log(`ok ${what}: ${answer.status} (connection: ${answer.headers.connection ?? "-"})`);
}

async function credentials() {
  if (mode === "basic") return { Authorization: basic };
  const scope = encodeURIComponent(`repository:${repo}:pull,push`);
  const answer = await exchange("GET", `/token?service=wharf-registry&scope=${scope}`, null, { Authorization: basic });
  expect(answer, 200, `${mode} token`);
  return { Authorization: "Bearer " + JSON.parse(answer.data).token };
}

function pattern(size) {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 7 + size) % 251;
  return body;
}

function putPath(location, body) {
  const digest = "sha256:" + createHash("sha256").update(body).digest("hex");
  const path = location.startsWith("http") ? new URL(location).pathname + new URL(location).search : location;
  return `${path}${path.includes("?") ? "&" : "?"}digest=${encodeURIComponent(digest)}`;
}

async function main() {
  const auth = await credentials();
  const plain = { "Content-Type": "application/octet-stream" };
  const sizes = [0, 2000, 300 * 1024, 1024 * 1024, 8 * 1024 * 1024];

  // For each size, with `send` (one client): start an upload, PUT the body without
  // credentials (401), then again with them (201); then `after`, if given.
  const uploadsAfterA401 = async (label, send, sizes, after) => {
    for (const size of sizes) {
      const body = pattern(size);
      const started = await send("POST", `/v2/${repo}/blobs/uploads/`, null, auth);
      expect(started, 202, `${label}: ${mode} start upload for ${size} B`);
      const put = putPath(started.headers.location, body);
      expect(await send("PUT", put, body, plain), 401, `${label}: ${mode} PUT ${size} B without credentials`);
      expect(await send("PUT", put, body, { ...plain, ...auth }), 201, `${label}: ${mode} PUT ${size} B again with credentials`);
      if (after) await after(label);
    }
  };

  // node:http, one socket.
  await uploadsAfterA401("http", exchange, sizes);
  for (const size of [2000, 300 * 1024]) {
    const body = Buffer.alloc(size, "x");
    expect(await exchange("PATCH", `/v2/${repo}/blobs/uploads/nosuchsession`, body, auth), 404, `http: ${mode} PATCH ${size} B to an unknown session`);
    expect(await exchange("GET", "/v2/", null, auth), 200, `http: ${mode} GET /v2/ after the 404`);
    expect(await exchange("PUT", `/v2/${repo}/manifests/BAD%20TAG`, body, auth), 400, `http: ${mode} PUT ${size} B manifest with a bad tag`);
    expect(await exchange("GET", "/v2/", null, auth), 200, `http: ${mode} GET /v2/ after the 400`);
  }
  const big = Buffer.concat([Buffer.from("{"), Buffer.alloc(5 * 1024 * 1024, " "), Buffer.from("}")]);
  expect(
    await exchange("PUT", `/v2/${repo}/manifests/big`, big, { ...auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json" }),
    413,
    `http: ${mode} PUT 5 MiB manifest`,
  );
  expect(await exchange("GET", "/v2/", null, auth), 200, `http: ${mode} GET /v2/ after the 413`);
  console.log(`http: ${connections} connection(s) for all of it`);

  // fetch (undici): buffered and streamed bodies.
  const fetched = async (method, path, body, headers, streamed) => {
    const init = { method, headers, body };
    if (streamed && body) {
      init.body = new ReadableStream({
        start(controller) {
          for (let at = 0; at < body.length; at += 64 * 1024) controller.enqueue(body.subarray(at, at + 64 * 1024));
          controller.close();
        },
      });
      init.duplex = "half";
    }
    const response = await fetch(`${base}${path}`, init);
    const data = Buffer.from(await response.arrayBuffer());
    return { status: response.status, headers: { connection: response.headers.get("connection"), location: response.headers.get("location") }, data };
  };
  for (const streamed of [false, true]) {
    const label = `fetch, ${streamed ? "streamed" : "buffered"}`;
    const send = (method, path, body, headers) => fetched(method, path, body, headers, streamed);
    const versionCheck = async () => expect(await fetched("GET", "/v2/", null, auth, false), 200, `${label}: ${mode} GET /v2/ after it`);
    await uploadsAfterA401(label, send, sizes.filter((s) => s > 0), versionCheck);
  }

  // node:http2: every request a stream of one session, which must outlive the early answers.
  const session = http2.connect(base);
  let sessionError = null;
  session.on("error", (error) => {
    sessionError = error;
  });
  const streamed = (method, path, body, headers) =>
    new Promise((resolve, reject) => {
      const length = body ? { "content-length": body.length } : {};
      const request = session.request({ ":method": method, ":path": path, ...headers, ...length });
      let answer = { status: 0, headers: {} };
      const parts = [];
      request.on("response", (h) => {
        answer = { status: h[":status"], headers: { connection: "h2", location: h.location } };
      });
      request.on("data", (part) => parts.push(part));
      request.on("end", () => resolve({ ...answer, data: Buffer.concat(parts) }));
      request.on("error", (error) => reject(new Error(`${method} ${path} over HTTP/2: ${error.message}`)));
      request.setTimeout(20000, () => request.close(http2.constants.NGHTTP2_CANCEL));
      request.end(body ?? undefined);
    });
  await uploadsAfterA401("http2", streamed, sizes);
  expect(await streamed("PATCH", `/v2/${repo}/blobs/uploads/nosuchsession`, pattern(300 * 1024), auth), 404, `http2: ${mode} PATCH to an unknown session`);
  expect(await streamed("GET", "/v2/", null, auth), 200, `http2: ${mode} GET /v2/ after the 404`);
  session.close();
  if (sessionError) throw new Error(`the HTTP/2 session failed: ${sessionError.message}`);
  console.log("all ok");
}

main().then(
  () => process.exit(0),
  (error) => {
    console.log(`FAIL: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
