// Shared by the HTTP/2 client scripts here: whether the server still serves a new client.

import http2 from "node:http2";

// The status of `GET /v2/` with `authorization`, on a new cleartext HTTP/2 session to `base`.
export const versionCheckStatus = (base, authorization) =>
  new Promise((resolve, reject) => {
    const session = http2.connect(base);
    session.on("error", reject);
    const request = session.request({ ":path": "/v2/", authorization });
    request.on("response", (h) => {
      resolve(h[":status"]);
      session.close();
    });
    request.on("error", reject);
    request.end();
  });
