// engine.io-client 3.x JSONP polling (`forceJSONP: true`, `j=` query), the
// transport of browsers without XHR. The client library's JSONP transport
// needs a DOM (<script> for GETs, a <form> posted into an <iframe> for POSTs);
// browser-v3-env.mjs supplies a minimal one, so the real client code runs
// unchanged. Polling only; binary travels base64 (JSONP never supports binary).

import "./browser-v3-env.mjs"; // must come first: patches the client's modules

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { installDocumentShim, toArrayBuffer, xhrLog } from "./browser-v3-env.mjs";
import { TEST_TIMEOUT_MS, defineEchoSuites } from "./echo-suite.mjs";
import { assertBinary, assertText, closeClient, openClient, patternBytes, sleep, startServer } from "./helpers.mjs";

const uninstallDocument = installDocumentShim();

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
  uninstallDocument();
});

const sidOf = (entry) => new URL(entry.url).searchParams.get("sid");

defineEchoSuites({
  version: 3,
  label: "engine.io-client v3 JSONP (EIO=3, j=)",
  getServer: () => server,
  modes: ["polling"],
  clientOpts: { forceJSONP: true },
  toWire: toArrayBuffer,
  // The browser parser base64-encodes with String.fromCharCode.apply(), which
  // overflows the stack past ~100 KB (in browsers too): keep binary smaller.
  largeBinaryBytes: 60_000,
  onOpen: (client) => {
    assert.equal(client.socket.transport.constructor.name, "JSONPPolling", "the JSONP transport is in use");
    assert.equal(client.socket.transport.supportsBinary, false);
  },
});

describe("engine.io-client v3 JSONP: wire format", () => {
  test("GETs are answered with ___eio[j](\"...\"); and POSTs are urlencoded d=", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(3, server.url, { transports: ["polling"], forceJSONP: true });
    try {
      const sid = client.socket.id;
      const j = client.socket.transport.index;
      const text = 'line1\nline2 "quoted" \\n back\\slash é 🎉 \u2028';
      const bytes = patternBytes(64, 9);
      client.socket.send(text);
      assertText(await client.messages.next(), text, "text echo with newlines and escapes");
      client.socket.send(toArrayBuffer(bytes));
      assertBinary(await client.messages.next(), bytes, "binary echo (base64)");

      // The echo can arrive before the POST that carried it is answered.
      const postsOf = () => xhrLog.filter((e) => e.jsonp && e.method === "POST" && sidOf(e) === sid);
      for (let i = 0; i < 40 && postsOf().some((p) => p.status === undefined); i++) await sleep(50);
      const mine = xhrLog.filter((e) => e.jsonp && sidOf(e) === sid);
      const gets = mine.filter((e) => e.method === "GET");
      const posts = mine.filter((e) => e.method === "POST");
      assert.ok(gets.length > 0 && posts.length > 0, "JSONP GETs and POSTs were made");
      for (const e of mine) {
        assert.equal(new URL(e.url).searchParams.get("j"), String(j), `j=${j} in ${e.url}`);
      }
      for (const p of posts) assert.equal(p.status, 200, "form POST accepted");
      const answered = gets.filter((g) => g.status === 200);
      assert.ok(answered.length > 0, "some JSONP GET was answered");
      for (const g of answered) {
        assert.ok(
          g.body.startsWith(`___eio[${j}]("`) && g.body.endsWith('");'),
          `JSONP body shape: ${g.body.slice(0, 60)}`,
        );
        assert.equal(g.contentType, "text/plain; charset=UTF-8", "JSONP answer content type (as engine.io sends it)");
        assert.ok(!/[\u2028\u2029]/.test(g.body), "U+2028/U+2029 are escaped in the script");
      }
      const b64 = bytes.toString("base64");
      assert.ok(
        answered.some((g) => g.body.includes(`b4${b64}`)),
        "binary came back base64-encoded inside the JSONP answer",
      );
    } finally {
      await closeClient(client);
    }
  });
});
