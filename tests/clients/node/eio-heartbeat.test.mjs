// Heartbeat with --ping-interval 300 --ping-timeout 200: clients of both
// generations stay connected for ~1.5 s because pings are answered (v4: the
// server pings and the client pongs; v3: the client pings and the server
// pongs). A session that never answers is dropped.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ENGINE_PATH,
  assertText,
  closeAll,
  closeClient,
  openClient,
  sleep,
  startServer,
  waitForUpgrade,
} from "./helpers.mjs";

let server;
const clients = new Set();
before(async () => {
  server = await startServer(["--ping-interval", "300", "--ping-timeout", "200"]);
});
after(async () => {
  await closeAll(clients);
  await server?.stop();
});

const STAY_MS = 1500;

// The cases only wait on timers, so they run concurrently (each has its own session).
describe("heartbeat", { concurrency: true }, () => {
  for (const version of [4, 3]) {
    for (const [mode, transports] of [
      ["polling", ["polling"]],
      ["websocket", ["websocket"]],
      ["upgrade", ["polling", "websocket"]],
    ]) {
      test(`v${version} ${mode} client stays connected for ${STAY_MS} ms with pings answered`, { timeout: 15_000 }, async () => {
        const client = await openClient(version, server.url, { transports });
        clients.add(client);
        assert.equal(client.handshake.pingInterval, 300, "handshake pingInterval");
        assert.equal(client.handshake.pingTimeout, 200, "handshake pingTimeout");
        if (mode === "upgrade") await waitForUpgrade(client);

        // v4: "ping" = a server ping arrived (the client answers with a pong).
        // v3: "ping" = the client sent a ping, "pong" = the server answered.
        let pings = 0;
        let pongs = 0;
        client.socket.on("ping", () => pings++);
        client.socket.on("pong", () => pongs++);
        await sleep(STAY_MS);

        assert.equal(client.closeReason, undefined, `still connected (closed: ${client.closeReason})`);
        assert.equal(client.socket.readyState, "open");
        if (version === 4) {
          assert.ok(pings >= 3, `server pinged at least 3 times in ${STAY_MS} ms (got ${pings})`);
        } else {
          assert.ok(pongs >= 3, `server answered at least 3 client pings in ${STAY_MS} ms (got ${pongs})`);
        }
        client.socket.send("still here");
        assertText(await client.messages.next(), "still here", "echo after the wait");
        if (mode !== "polling") assert.equal(client.socket.transport.name, "websocket");
        const { reason } = await closeClient(client);
        assert.equal(reason, "forced close", "closed by us, not by a timeout");
      });
    }
  }

  for (const eio of [4, 3]) {
    test(`EIO=${eio}: a session that never answers is dropped after the ping timeout`, { timeout: 15_000 }, async () => {
      const base = `${server.url}${ENGINE_PATH}?EIO=${eio}&transport=polling`;
      const res = await fetch(`${base}&t=a`);
      assert.equal(res.status, 200);
      const body = await res.text();
      const json = JSON.parse(body.slice(body.indexOf("{")));
      assert.equal(typeof json.sid, "string");
      assert.equal(json.pingInterval, 300);
      // v4: no pong within 300 + 200 ms; v3: no ping within 300 + 200 ms.
      await sleep(1200);
      const poll = await fetch(`${base}&sid=${encodeURIComponent(json.sid)}&t=b`, { signal: AbortSignal.timeout(3000) });
      assert.equal(poll.status, 400, "the silent session is gone");
      assert.deepEqual(await poll.json(), { code: 1, message: "Session ID unknown" });
    });
  }
});
