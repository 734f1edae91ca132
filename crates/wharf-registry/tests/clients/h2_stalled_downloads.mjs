// Downloads a client stops reading, over HTTP/2, from Node's `node:http2`: COUNT sessions
// (as many as the server's max_connections) each ask for the blob DIGEST and pause the stream
// once its answer starts, so the stream's flow-control window shuts and nothing more can be
// sent. After WAIT_MS the server must have closed those sessions, and another client must be
// served.
//
// usage: node h2_stalled_downloads.mjs HOST:PORT USER PASSWORD REPOSITORY DIGEST COUNT WAIT_MS
// Prints what happened; exits non-zero on a failure.

import http2 from "node:http2";
import { versionCheckStatus } from "./h2_version_check.mjs";

const [addr, user, password, repository, digest, count, waitMs] = process.argv.slice(2);
const base = `http://${addr}`;
const auth = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");

const stalled = [];
for (let i = 0; i < Number(count); i++) {
  const session = http2.connect(base);
  session.on("error", () => {});
  const started = new Promise((resolve, reject) => {
    const stream = session.request({ ":path": `/v2/${repository}/blobs/${digest}`, authorization: auth });
    stream.on("error", () => {});
    stream.on("response", (h) => {
      stream.pause();
      resolve(h[":status"]);
    });
    setTimeout(() => reject(new Error(`download ${i}: no answer in 10 s`)), 10000);
  });
  const status = await started;
  if (status !== 200) {
    console.log(`FAIL: download ${i} answered ${status}`);
    process.exit(1);
  }
  stalled.push(session);
}
console.log(`${stalled.length} downloads started and paused`);
await new Promise((resolve) => setTimeout(resolve, Number(waitMs)));
const open = stalled.filter((s) => !s.closed && !s.destroyed).length;
console.log(`sessions the server left open: ${open}`);
if (open > 0) {
  console.log("FAIL: a session whose download stalled was left open");
  process.exit(1);
}
const status = await versionCheckStatus(base, auth);
console.log(`another client afterwards: ${status}`);
if (status !== 200) {
  console.log("FAIL: another client is not served");
  process.exit(1);
}
console.log("all ok");
process.exit(0);
