// engine.io-client 3.x (Engine.IO protocol v3, npm alias engine.io-client-v3)
// against the conformance server with --shards 2: polling only, websocket
// only, polling upgraded to websocket; then the same with forceBase64 (b64=1);
// the base64 polling payloads; and refusal under --no-eio3. (Node's XHR for
// this client has no XHR2, so it always polls with b64=1; the XHR2 binary
// payloads of browser clients are covered by eio-v3-xhr2.test.mjs.)

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, test } from "node:test";

import { TEST_TIMEOUT_MS, defineEchoSuites } from "./echo-suite.mjs";
import {
  assertBinary,
  closeClient,
  createClient,
  describeError,
  openClient,
  patternBytes,
  startServer,
  withTimeout,
} from "./helpers.mjs";

// Record every completed XHR of the v3 client (same module instance the
// client uses) so tests can check what the server put on the wire.
const require = createRequire(import.meta.url);
const { Request } = require("engine.io-client-v3/lib/transports/polling-xhr.js");
const xhrLog = [];
const originalOnLoad = Request.prototype.onLoad;
Request.prototype.onLoad = function onLoadRecorded() {
  let contentType;
  try {
    contentType = this.xhr.getResponseHeader("Content-Type");
  } catch {
    contentType = undefined;
  }
  let body;
  try {
    body = this.xhr.responseText;
  } catch {
    body = undefined;
  }
  xhrLog.push({ method: this.method, uri: this.uri, contentType, body });
  return originalOnLoad.call(this);
};

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

defineEchoSuites({ version: 3, label: "engine.io-client v3 (EIO=3)", getServer: () => server });

defineEchoSuites({
  version: 3,
  label: "engine.io-client v3 forceBase64 (b64=1)",
  getServer: () => server,
  clientOpts: { forceBase64: true },
  onOpen: (client) => {
    assert.equal(client.socket.transport.supportsBinary, false, "forceBase64 client does not send raw binary");
  },
});

function getsFor(sid) {
  return xhrLog.filter((r) => r.method === "GET" && new URL(r.uri).searchParams.get("sid") === sid);
}

describe("engine.io-client v3: base64 polling payloads", () => {
  test("in Node the client polls with b64=1 and binary comes back as <len>:b4<base64>", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(3, server.url, { transports: ["polling"] });
    try {
      const bytes = patternBytes(300, 3);
      client.socket.send(bytes);
      assertBinary(await client.messages.next(), bytes, "binary echo");
      const gets = getsFor(client.socket.id);
      assert.ok(gets.length > 0, "polling GETs were recorded");
      const b64 = bytes.toString("base64");
      const framed = `${2 + b64.length}:b4${b64}`;
      const carrier = gets.find((g) => typeof g.body === "string" && g.body.includes(framed));
      assert.ok(carrier, `a poll answer carried ${framed.slice(0, 24)}... (saw ${JSON.stringify(gets.map((g) => g.body?.slice(0, 40)))})`);
      assert.equal(carrier.contentType, "text/plain; charset=UTF-8", "base64 payload content type");
    } finally {
      await closeClient(client);
    }
  });

  test("with b64=1 every poll response is text (base64 binary)", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(3, server.url, { transports: ["polling"], forceBase64: true });
    try {
      const bytes = patternBytes(300, 4);
      client.socket.send(bytes);
      client.socket.send("and text");
      const [bin, text] = await client.messages.take(2);
      assertBinary(bin, bytes, "binary echo over b64");
      assert.equal(text, "and text");
      const gets = getsFor(client.socket.id);
      assert.ok(gets.length > 0, "polling GETs were recorded");
      for (const g of gets) {
        assert.equal(new URL(g.uri).searchParams.get("b64"), "1", "b64=1 in query");
        assert.equal(g.contentType, "text/plain; charset=UTF-8", "b64 poll response content type");
      }
    } finally {
      await closeClient(client);
    }
  });
});

describe("--no-eio3", () => {
  let strict;
  before(async () => {
    strict = await startServer(["--no-eio3"]);
  });
  after(async () => {
    await strict?.stop();
  });

  test("a v3 client is refused with 'Unsupported protocol version'", { timeout: TEST_TIMEOUT_MS }, async () => {
    const res = await fetch(`${strict.url}/engine.io/?EIO=3&transport=polling&t=x`);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 5, message: "Unsupported protocol version" });

    const client = createClient(3, strict.url, { transports: ["polling"] });
    const outcome = await withTimeout(
      new Promise((resolve) => {
        client.socket.once("open", () => resolve("open"));
        client.socket.once("error", (err) => resolve(`error: ${describeError(err)}`));
      }),
      10_000,
      "v3 client outcome under --no-eio3",
    );
    client.socket.close();
    assert.match(outcome, /^error: /, "v3 client must not open");
  });

  test("a v4 client still connects and echoes", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(4, strict.url, { transports: ["polling"] });
    try {
      client.socket.send("v4 only");
      assert.equal(await client.messages.next(), "v4 only");
    } finally {
      await closeClient(client);
    }
  });
});
