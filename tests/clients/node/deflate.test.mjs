// permessage-deflate (RFC 7692) with real Node clients, which offer it by
// default: `ws` (perMessageDeflate with threshold 0, so it compresses even
// tiny messages), engine.io-client 6 and socket.io-client 4 against the
// conformance server (shards 1 and 2), messages of every size class, text
// and binary, both ways. That the server really compressed is read on the
// wire: the bytes the client's TCP socket received for an echo, against the
// message's length (the messages are compressible JSON-like text or
// patterned bytes). Socket.IO's compress(false) is checked the same way.
// Last, the hub binary: a broadcast to several WebSocket clients is
// compressed once per shard (its metrics), not once per recipient.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { io as ioV4 } from "socket.io-client";
import WebSocket from "ws";

import { ENGINE_PATH, closeClient, freePort, metricSum, openClient, sioConnected, sioEcho, startServer, withTimeout } from "./helpers.mjs";
import { againstReference, relayClient, startRelay, waitConnected } from "./relay-helpers.mjs";

// The reference servers are not hub's peers here: reference-server.mjs runs
// engine.io with perMessageDeflate off (socket.io's default since v3) and has
// no Socket.IO part; reference-relay.mjs has no metrics.
const REFERENCE_SERVER =
  (process.env.HUB_CONFORMANCE_CMD ?? "").includes("reference-server") &&
  "reference-server.mjs has permessage-deflate off and no Socket.IO part";
const REFERENCE_RELAY = againstReference() && "reference-relay.mjs has no metrics to count compressions";

/** Sizes of the Engine.IO packet (`4` + data): tiny, around the 1024 threshold, 64 KiB, near the 1 MB limit. */
const SIZES = [8, 1023, 1024, 1025, 65_536, 990_000];
const THRESHOLD = 1024;

/** Compressible text of `n` characters (JSON-ish records, without quotes: JSON.stringify keeps its length). */
function jsonText(n) {
  let s = "";
  for (let i = 0; s.length < n; i++) s += `{id:${i},name:user${i % 53},ok:true},`;
  return s.slice(0, n);
}

/** Compressible bytes: a short repeating pattern with a counter. */
function patterned(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i % 17) + ((i >> 10) & 3);
  return b;
}

/** The net.Socket under a `ws` WebSocket. */
function tcpOf(ws) {
  assert.ok(ws?._socket, "the WebSocket's TCP socket");
  return ws._socket;
}

/**
 * Runs `exchange` (which must resolve once the echo of a `len`-byte packet
 * arrived) and checks what came over the wire: compressed (much less than
 * `len`) when `compressed`, else at least `len` bytes.
 */
async function expectWire(ws, len, compressed, what, exchange) {
  const tcp = tcpOf(ws);
  const before = tcp.bytesRead;
  await exchange();
  const got = tcp.bytesRead - before;
  if (compressed) {
    assert.ok(got < len / 3, `${what}: ${got} bytes on the wire for a ${len}-byte packet, expected it compressed`);
  } else {
    assert.ok(got >= len, `${what}: ${got} bytes on the wire for a ${len}-byte packet, expected it plain`);
  }
}

/** A `ws` client on the raw Engine.IO endpoint; resolves after the open packet. */
async function rawWs(url, perMessageDeflate) {
  const ws = new WebSocket(`${url.replace("http", "ws")}${ENGINE_PATH}?EIO=4&transport=websocket`, { perMessageDeflate });
  const queue = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const item = isBinary ? data : data.toString();
    if (item === "2") return ws.send("3"); // heartbeat
    if (waiters.length > 0) waiters.shift()(item);
    else queue.push(item);
  });
  const next = () =>
    withTimeout(
      queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve)),
      10_000,
      "a message from the server",
    );
  await withTimeout(new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)), 10_000, "ws open");
  const open = await next();
  assert.ok(typeof open === "string" && open.startsWith("0{"), `open packet: ${open}`);
  return { ws, next };
}

for (const shards of [1, 2]) {
  describe(`permessage-deflate, conformance server, --shards ${shards}`, { skip: REFERENCE_SERVER }, () => {
    let server;
    before(async () => {
      server = await startServer([], { shards });
    });
    after(async () => {
      await server?.stop();
    });

    test("ws (threshold 0): negotiated, every size both ways, text and binary", async () => {
      const { ws, next } = await rawWs(server.url, { threshold: 0 });
      try {
        assert.equal(ws.extensions, "permessage-deflate", "negotiated");
        const { params } = ws._extensions["permessage-deflate"];
        assert.equal(params.server_no_context_takeover, true, "server_no_context_takeover agreed");
        assert.equal(params.client_no_context_takeover, true, "client_no_context_takeover agreed");
        for (const len of SIZES) {
          const text = "4" + jsonText(len - 1);
          const sent = tcpOf(ws).bytesWritten;
          await expectWire(ws, len, len >= THRESHOLD, `text ${len}`, async () => {
            ws.send(text);
            assert.equal(await next(), text, `text echo of ${len}`);
          });
          // The client compressed what it sent, even the small ones (threshold 0).
          if (len >= 64) assert.ok(tcpOf(ws).bytesWritten - sent < len / 2, `client compressed ${len}`);
          const bin = patterned(len);
          await expectWire(ws, len, len >= THRESHOLD, `binary ${len}`, async () => {
            ws.send(bin);
            const echo = await next();
            assert.ok(Buffer.isBuffer(echo) && echo.equals(bin), `binary echo of ${len}`);
          });
        }
      } finally {
        ws.terminate();
      }
    });

    test("ws without perMessageDeflate: nothing negotiated, nothing compressed", async () => {
      const { ws, next } = await rawWs(server.url, false);
      try {
        assert.equal(ws.extensions, "");
        const text = "4" + jsonText(65_535);
        await expectWire(ws, text.length, false, "plain", async () => {
          ws.send(text);
          assert.equal(await next(), text);
        });
      } finally {
        ws.terminate();
      }
    });

    test("engine.io-client 6 (deflate by default): every size both ways", async () => {
      const client = await openClient(4, server.url, { transports: ["websocket"] });
      try {
        const ws = client.socket.transport.ws;
        assert.match(ws.extensions, /permessage-deflate/);
        for (const len of SIZES) {
          const text = jsonText(len - 1);
          await expectWire(ws, len, len >= THRESHOLD, `text ${len}`, async () => {
            client.socket.send(text);
            assert.equal(await client.messages.next(10_000), text);
          });
          const bin = patterned(len);
          await expectWire(ws, len, len >= THRESHOLD, `binary ${len}`, async () => {
            client.socket.send(bin);
            const echo = Buffer.from(await client.messages.next(10_000));
            assert.ok(echo.equals(bin), `binary echo of ${len}`);
          });
        }
      } finally {
        await closeClient(client);
      }
    });

    test("socket.io-client 4: events of every size both ways; compress(false) respected", async () => {
      const socket = ioV4(server.url, { transports: ["websocket"], forceNew: true, reconnection: false });
      try {
        await sioConnected(socket);
        const ws = socket.io.engine.transport.ws;
        assert.match(ws.extensions, /permessage-deflate/);
        const echo = (event, ...args) => sioEcho(socket, event, ...args);
        for (const len of SIZES) {
          const text = jsonText(len);
          // `42["message-back","..."]`: the packet is 20 bytes longer than the text.
          const packet = len + 20;
          await expectWire(ws, len, packet >= THRESHOLD, `event ${len}`, async () => {
            assert.deepEqual(await echo("message", text), [text]);
          });
          if (len >= THRESHOLD) {
            await expectWire(ws, len, false, `compress(false) ${len}`, async () => {
              assert.deepEqual(await echo("message-uncompressed", text), [text]);
            });
          }
          if (len < 100_000) {
            // Binary as an attachment: its own WebSocket message.
            const bin = patterned(len);
            await expectWire(ws, len, len >= THRESHOLD, `binary event ${len}`, async () => {
              const [got] = await echo("message", bin);
              assert.ok(Buffer.from(got).equals(bin), `binary echo of ${len}`);
            });
            if (len >= THRESHOLD) {
              // compress(false) covers the packet's attachments too.
              await expectWire(ws, len, false, `compress(false) binary ${len}`, async () => {
                const [got] = await echo("message-uncompressed", bin);
                assert.ok(Buffer.from(got).equals(bin), `binary echo of ${len}`);
              });
            }
          }
        }
      } finally {
        socket.disconnect();
      }
    });
  });
}

for (const shards of [1, 2]) {
  test(`hub --shards ${shards}: a broadcast is compressed once for all its WebSocket recipients`, { skip: REFERENCE_RELAY }, async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    const hub = await startRelay(["--admin-bind", admin], { shards });
    const adminUrl = `http://${admin}`;
    const clients = [];
    try {
      for (let i = 0; i < 6; i++) {
        const c = relayClient(hub.url, { version: 4, mode: "websocket" });
        clients.push(c);
        await waitConnected(c);
        assert.deepEqual(await c.request("join", "deflated"), { ok: true });
      }
      const [publisher, ...receivers] = clients;
      const before = {
        compressions: await metricSum(adminUrl, "hub_ws_deflate_compressions_total"),
        messages: await metricSum(adminUrl, "hub_ws_deflated_messages_total"),
      };
      const data = jsonText(4096);
      assert.deepEqual(await publisher.request("publish", { to: "deflated", event: "news", data }), { ok: true });
      await Promise.all(receivers.map((c) => c.inbox.waitCount("news", 1, 10_000)));
      for (const c of receivers) assert.deepEqual(c.inbox.list("news"), [[data]]);
      const compressions = (await metricSum(adminUrl, "hub_ws_deflate_compressions_total")) - before.compressions;
      const messages = (await metricSum(adminUrl, "hub_ws_deflated_messages_total")) - before.messages;
      assert.equal(messages, receivers.length, "every recipient got the compressed frame");
      // Once per shard that has recipients (each shard keeps the frames it compressed).
      assert.ok(compressions >= 1 && compressions <= shards, `${compressions} compressions for one broadcast`);
      assert.ok((await metricSum(adminUrl, "hub_ws_deflated_bytes_after_total")) < (await metricSum(adminUrl, "hub_ws_deflated_bytes_before_total")) / 3);
    } finally {
      for (const c of clients) c.close();
      await hub.stop();
    }
  });
}
