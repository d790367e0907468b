// engine.io-client 3.x (Engine.IO protocol v3, npm alias engine.io-client-v3)
// against the conformance server with --shards 2: polling only, websocket
// only, polling upgraded to websocket; then the same with forceBase64 (b64=1);
// the base64 polling payloads; and refusal under --no-eio3. (Node's XHR for
// this client has no XHR2, so it always polls with b64=1; the XHR2 binary
// payloads of browser clients are covered by eio-v3-xhr2.test.mjs.) Also a
// raw `ws` client that only listens for messages once `open` has fired.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { TEST_TIMEOUT_MS, defineEchoSuites } from "./echo-suite.mjs";
import {
  assertBinary,
  closeClient,
  ENGINE_PATH,
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

/** Resolves with the next `type` event of a `ws` WebSocket, or null after `ms`. */
function nextEvent(socket, type, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    socket.addEventListener(
      type,
      (event) => {
        clearTimeout(timer);
        resolve(event);
      },
      { once: true },
    );
  });
}

describe("raw v3 WebSocket: a client that listens for messages after open", () => {
  // As the engine.io-protocol test suite does: await `open`, then wait for
  // the handshake. When the open packet comes in the same read as the 101,
  // `ws` emits it before the continuation after `open` runs, and a v3
  // server never pings: the client would wait forever. The reference server
  // loses it so; hub holds the open packet until the client has answered a
  // WebSocket ping sent right after the 101.
  // The reference server has the race: against it, losses are reported,
  // not failed.
  const reference = (process.env.HUB_CONFORMANCE_CMD ?? "").includes("reference-server");
  test("gets the open packet, 200 connections in a row", { timeout: 120_000 }, async (t) => {
    const wsUrl = server.url.replace("http", "ws");
    const lost = [];
    let tried = 0;
    for (let run = 0; run < 200; run++) {
      tried += 1;
      const socket = new WebSocket(`${wsUrl}${ENGINE_PATH}?EIO=3&transport=websocket`);
      try {
        assert.ok(await nextEvent(socket, "open", 10_000), `run ${run}: the WebSocket opened`);
        const handshake = await nextEvent(socket, "message", 2_000);
        if (handshake === null) {
          lost.push(run);
          // Each loss waits out its timeout: ten tell enough.
          if (lost.length === 10) break;
          continue;
        }
        assert.match(String(handshake.data), /^0\{"sid":/, `run ${run}: the open packet`);
        socket.send("4hello");
        const echo = await nextEvent(socket, "message", 2_000);
        assert.equal(echo && String(echo.data), "4hello", `run ${run}: the echo`);
      } finally {
        socket.close();
      }
    }
    if (reference) {
      t.diagnostic(`reference server: no open packet in ${lost.length} of ${tried} runs`);
    } else {
      assert.deepEqual(lost, [], "runs whose open packet never came");
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
