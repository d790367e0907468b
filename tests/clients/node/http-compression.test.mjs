// Long-polling answers compressed (engine.io's `httpCompression`, issue 13):
// engine.io-client 6 and socket.io-client 4.8, polling only, exchanging
// large messages with a server that compresses answers of 1024 bytes and
// more, --shards 1 and 2 (with two shards and several clients sharing
// Node's fetch connection pool, GETs land on the shard that does not own
// their session and are forwarded; tests/http_compression.rs forces it).
//
// Which client asks for compression: engine.io-client's default polling
// transport in Node (xmlhttprequest-ssl) sends no Accept-Encoding (it may
// not: the header is forbidden in XHR) so its answers stay plain; its
// `Fetch` transport (Node's fetch, undici) sends `gzip, deflate` and
// decodes the answers. Browsers always ask (browser.test.mjs).
//
// A proxy between client and server counts the bytes the server sends and
// the `Content-Encoding` of its answers, so each test checks the server
// really compressed, not only that messages arrive.
//
// Runs against hub's example servers and, with HUB_CONFORMANCE_CMD /
// HUB_TESTBED_CMD, against the reference ones (engine.io / socket.io), which
// compress when given --http-compression-threshold.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { Fetch } from "engine.io-client";
import { io as ioV4 } from "socket.io-client";

import {
  assertBinary,
  assertText,
  closeClient,
  openClient,
  sioConnected,
  sioEcho,
  patternBytes,
  startCountingProxy,
  startServer,
} from "./helpers.mjs";
import { createSioClient, startTestbed, waitConnected } from "./sio-helpers.mjs";

const T = { timeout: 30_000 };
const THRESHOLD = ["--http-compression-threshold", "1024"];

/** JSON text of about `n` bytes that compresses as real application data does. */
function jsonText(n, tag) {
  const items = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const item = { id: i, tag, user: `user-${i % 17}`, text: `message number ${i} in ${tag}`, ok: i % 3 === 0 };
    items.push(item);
    size += JSON.stringify(item).length + 1;
  }
  return JSON.stringify(items);
}

// reference-server.mjs has no Socket.IO part, so no `message-uncompressed`.
const REFERENCE_SERVER =
  (process.env.HUB_CONFORMANCE_CMD ?? "").includes("reference-server") &&
  "reference-server.mjs has no Socket.IO part (no compress(false) echo)";

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

async function serverAndProxy(start, shards) {
  const server = await start([...THRESHOLD], { shards });
  cleanup.push(() => server.stop());
  const proxy = await startCountingProxy(server);
  cleanup.push(() => proxy.stop());
  return { server, proxy };
}

for (const shards of [1, 2]) {
  describe(`engine.io-client 6, polling only, --shards ${shards}`, () => {
    test("Fetch: large text and binary echoes come back gzipped", T, async () => {
      const { proxy } = await serverAndProxy(startServer, shards);
      // Several clients at once: their GETs share fetch's connections.
      const clients = await Promise.all(
        [0, 1, 2, 3].map(() => openClient(4, proxy.url, { transports: [Fetch] })),
      );
      let sent = 0;
      for (const [i, client] of clients.entries()) {
        for (const size of [100, 2000, 20_000, 300_000]) {
          const text = jsonText(size, `c${i}-${size}`);
          client.socket.send(text);
          assertText(await client.messages.next(10_000), text, `echo of ${size} bytes`);
          sent += text.length;
        }
        const bytes = patternBytes(50_000, i + 1).map((b) => b & 0x0f);
        client.socket.send(bytes);
        assertBinary(await client.messages.next(10_000), bytes, "binary echo");
        sent += bytes.length;
      }
      await Promise.all(clients.map((c) => closeClient(c)));
      assert.ok(proxy.stats.coded.gzip >= 4 * 4, `gzip answers: ${JSON.stringify(proxy.stats)}`);
      assert.equal(proxy.stats.coded.deflate, 0);
      assert.ok(proxy.stats.down < sent / 3, `${proxy.stats.down} bytes down for ${sent} echoed`);
    });

    test("Fetch asking for deflate only gets deflate", T, async () => {
      const { proxy } = await serverAndProxy(startServer, shards);
      const client = await openClient(4, proxy.url, {
        transports: [Fetch],
        extraHeaders: { "accept-encoding": "deflate" },
      });
      const text = jsonText(50_000, "deflate");
      client.socket.send(text);
      assertText(await client.messages.next(10_000), text, "echo");
      await closeClient(client);
      assert.ok(proxy.stats.coded.deflate >= 1, JSON.stringify(proxy.stats));
      assert.equal(proxy.stats.coded.gzip, 0);
    });

    test("the default XHR transport asks for nothing and gets plain answers", T, async () => {
      const { proxy } = await serverAndProxy(startServer, shards);
      const client = await openClient(4, proxy.url, { transports: ["polling"] });
      const text = jsonText(50_000, "xhr");
      client.socket.send(text);
      assertText(await client.messages.next(10_000), text, "echo");
      await closeClient(client);
      assert.deepEqual(proxy.stats.coded, { gzip: 0, deflate: 0 });
      assert.ok(proxy.stats.down > text.length, `${proxy.stats.down} bytes down`);
    });
  });

  describe(`socket.io-client 4.8, polling only, --shards ${shards}`, () => {
    test("large events and binary come back gzipped", T, async () => {
      const { proxy } = await serverAndProxy(startTestbed, shards);
      const clients = await Promise.all(
        [0, 1, 2].map(async () =>
          waitConnected(createSioClient(proxy.url, { version: 4, mode: "polling", extra: { transports: [Fetch] } })),
        ),
      );
      let sent = 0;
      for (const [i, client] of clients.entries()) {
        const payload = { items: JSON.parse(jsonText(40_000, `sio${i}`)), bin: patternBytes(20_000, i + 1).map((b) => b & 7) };
        client.socket.emit("message", payload, "tail");
        const [back, tail] = await client.inbox.next("message-back", 10_000);
        assert.deepEqual(back.items, payload.items);
        assert.deepEqual(Buffer.from(back.bin), Buffer.from(payload.bin));
        assert.equal(tail, "tail");
        sent += JSON.stringify(payload.items).length + payload.bin.length;
      }
      for (const client of clients) client.close();
      assert.ok(proxy.stats.coded.gzip >= 3, JSON.stringify(proxy.stats));
      assert.ok(proxy.stats.down < sent / 2, `${proxy.stats.down} bytes down for ${sent} echoed`);
    });
  });
}

describe("socket.io-client 4.8, polling only: compress(false)", () => {
  for (const shards of [1, 2]) {
    test(`an answer holding only compress(false) packets goes plain, --shards ${shards}`, { ...T, skip: REFERENCE_SERVER }, async () => {
      const { proxy } = await serverAndProxy(startServer, shards);
      const socket = ioV4(proxy.url, { transports: [Fetch], forceNew: true, reconnection: false });
      try {
        await sioConnected(socket);
        const echo = (event, ...args) => sioEcho(socket, event, ...args);
        const text = jsonText(20_000, "plain");
        const bin = patternBytes(20_000, 3).map((b) => b & 7);
        // The conformance server answers `message-uncompressed` with compress(false):
        // the text and its attachment go plain although the client asks for gzip.
        assert.deepEqual(await echo("message-uncompressed", text), [text]);
        const [back] = await echo("message-uncompressed", bin);
        assert.deepEqual(Buffer.from(back), Buffer.from(bin));
        assert.deepEqual(proxy.stats.coded, { gzip: 0, deflate: 0 }, "nothing coded for compress(false)");
        // The same echo with the default flag is coded.
        assert.deepEqual(await echo("message", text), [text]);
        assert.ok(proxy.stats.coded.gzip >= 1, JSON.stringify(proxy.stats));
      } finally {
        socket.disconnect();
      }
    });
  }
});
