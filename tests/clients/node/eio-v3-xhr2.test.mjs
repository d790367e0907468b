// engine.io-client 3.x with its browser code paths (see browser-v3-env.mjs):
// XHR2 polling, where any payload holding binary travels as an XHR2 binary
// payload (application/octet-stream) in both directions, as with every
// browser Socket.IO v2 client. Polling only (the browser parser is not meant
// for Node's `ws`).

import "./browser-v3-env.mjs"; // must come first: patches the client's modules

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { toArrayBuffer, xhrLog } from "./browser-v3-env.mjs";
import { TEST_TIMEOUT_MS, defineEchoSuites } from "./echo-suite.mjs";
import { assertBinary, assertText, closeClient, openClient, patternBytes, startServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const sidOf = (entry) => new URL(entry.url).searchParams.get("sid");

defineEchoSuites({
  version: 3,
  label: "engine.io-client v3, browser XHR2 (EIO=3)",
  getServer: () => server,
  modes: ["polling"],
  toWire: toArrayBuffer,
  onOpen: (client) => {
    assert.equal(client.socket.transport.supportsBinary, true, "XHR2 polling supports binary");
  },
});

describe("engine.io-client v3, browser XHR2: wire format", () => {
  test("binary travels as application/octet-stream both ways, without b64", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(3, server.url, { transports: ["polling"] });
    try {
      const sid = client.socket.id;
      const bytes = patternBytes(300, 3);
      client.socket.send(toArrayBuffer(bytes));
      assertBinary(await client.messages.next(), bytes, "binary echo");
      client.socket.send("plain text");
      assertText(await client.messages.next(), "plain text", "text echo");

      const mine = xhrLog.filter((e) => sidOf(e) === sid);
      assert.ok(mine.length > 0, "requests with this sid were logged");
      for (const e of mine) {
        assert.equal(new URL(e.url).searchParams.get("b64"), null, `no b64 in ${e.url}`);
      }
      const binaryPost = mine.find((e) => e.method === "POST" && e.requestContentType === "application/octet-stream");
      assert.ok(binaryPost, "the client POSTed an XHR2 binary payload");
      assert.equal(binaryPost.status, 200, "server accepted the binary POST");
      const getTypes = mine.filter((e) => e.method === "GET" && e.status === 200).map((e) => e.contentType);
      assert.ok(
        getTypes.includes("application/octet-stream"),
        `a poll answer was application/octet-stream (saw ${JSON.stringify(getTypes)})`,
      );
      assert.ok(
        getTypes.includes("text/plain; charset=UTF-8"),
        `a text-only poll answer was text/plain; charset=UTF-8 (saw ${JSON.stringify(getTypes)})`,
      );
    } finally {
      await closeClient(client);
    }
  });

  test("non-ASCII text and binary in one binary payload", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = await openClient(3, server.url, { transports: ["polling"] });
    try {
      const sid = client.socket.id;
      // Batching depends on timing, so repeat the burst until one poll answer
      // mixed a non-ASCII string part with a binary part (first try on the
      // reference server). String parts are length-prefixed in UTF-8 bytes.
      let mixed;
      for (let round = 0; round < 5 && !mixed; round++) {
        const sent = ["héllo", patternBytes(10, 5), "日本語 🎉👍🏽", patternBytes(1000, 6), "a€𝄞b", "plain"];
        for (const m of sent) client.socket.send(typeof m === "string" ? m : toArrayBuffer(m));
        const got = await client.messages.take(sent.length);
        sent.forEach((m, i) => {
          if (typeof m === "string") assertText(got[i], m, `round ${round} message ${i}`);
          else assertBinary(got[i], m, `round ${round} message ${i}`);
        });
        for (const e of xhrLog) {
          if (sidOf(e) !== sid || e.method !== "GET" || e.contentType !== "application/octet-stream") continue;
          const parts = parseXhr2Payload(e.responseBytes);
          const strings = parts.filter((p) => p.isString).map((p) => p.bytes.toString("utf8"));
          if (parts.some((p) => !p.isString) && strings.some((str) => /[^\x00-\x7f]/.test(str))) {
            mixed = { parts, strings };
          }
        }
      }
      assert.ok(mixed, "a poll answer mixed a non-ASCII text packet with a binary packet");
      for (const str of mixed.strings) assert.match(str, /^4/, "string parts are message packets");
    } finally {
      await closeClient(client);
    }
  });
});

/**
 * Parses an XHR2 binary payload strictly: per packet a 0 (string) or 1
 * (binary) byte, the length as one byte per decimal digit, 0xFF, then the
 * packet. Throws if the parts do not add up to the whole buffer.
 */
function parseXhr2Payload(buf) {
  const parts = [];
  let i = 0;
  while (i < buf.length) {
    const kind = buf[i++];
    assert.ok(kind === 0 || kind === 1, `part kind byte ${kind} at ${i - 1}`);
    let digits = "";
    while (buf[i] !== 0xff) {
      assert.ok(i < buf.length && buf[i] <= 9, `length digit ${buf[i]} at ${i}`);
      digits += String(buf[i++]);
    }
    i++; // 0xFF
    const len = Number(digits);
    assert.ok(digits.length > 0 && i + len <= buf.length, `part length ${digits} fits the payload`);
    parts.push({ isString: kind === 0, bytes: buf.subarray(i, i + len) });
    i += len;
  }
  return parts;
}
