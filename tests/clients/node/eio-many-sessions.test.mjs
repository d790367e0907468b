// Many concurrent sessions against --shards 2: sessions are spread over both
// shards, so requests that land on the other shard must be forwarded. Each
// session echoes its own messages, and only its own.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  assertBinary,
  assertText,
  closeAll,
  closeClient,
  openClient,
  patternBytes,
  startServer,
  waitForSessionGone,
  waitForUpgrade,
} from "./helpers.mjs";

let server;
const clients = new Set();
before(async () => {
  server = await startServer();
});
after(async () => {
  await closeAll(clients);
  await server?.stop();
});

/** Opens `n` clients at once, has each echo a few private messages, closes them. */
async function exercise(n, version, transports, { upgrade = false } = {}) {
  const opened = await Promise.all(
    Array.from({ length: n }, async () => {
      const c = await openClient(version, server.url, { transports }, 15_000);
      clients.add(c);
      return c;
    }),
  );
  const sids = opened.map((c) => c.socket.id);
  assert.equal(new Set(sids).size, n, "every session has a distinct sid");
  if (upgrade) await Promise.all(opened.map((c) => waitForUpgrade(c, 15_000)));

  await Promise.all(
    opened.map(async (c, i) => {
      const sent = [`client ${i} text ${sids[i]}`, patternBytes(50 + i, 1000 + i), `client ${i} 🎉 second`];
      for (const m of sent) c.socket.send(m);
      const got = await c.messages.take(sent.length, 15_000);
      assertText(got[0], sent[0], `client ${i} message 0`);
      assertBinary(got[1], sent[1], `client ${i} message 1`);
      assertText(got[2], sent[2], `client ${i} message 2`);
      assert.equal(c.messages.pending(), 0, `client ${i} received nothing extra`);
      if (upgrade) assert.equal(c.socket.transport.name, "websocket");
    }),
  );
  await Promise.all(opened.map((c) => closeClient(c)));
  await Promise.all(sids.map((sid) => waitForSessionGone(server.url, sid, version)));
}

test("20 concurrent v4 polling sessions each echo correctly", { timeout: 60_000 }, async () => {
  await exercise(20, 4, ["polling"]);
});

test("20 concurrent v3 polling sessions each echo correctly", { timeout: 60_000 }, async () => {
  await exercise(20, 3, ["polling"]);
});

test("20 concurrent v4 sessions upgrading to websocket each echo correctly", { timeout: 60_000 }, async () => {
  await exercise(20, 4, ["polling", "websocket"], { upgrade: true });
});

test("mixed: 10 v4 websocket + 10 v3 polling sessions at once", { timeout: 60_000 }, async () => {
  await Promise.all([exercise(10, 4, ["websocket"]), exercise(10, 3, ["polling"])]);
});
