// SIGTERM (the hub's graceful shutdown) with 100 connected clients of both
// generations over every transport, on several namespaces, in rooms, on a
// hub with --shards 2: every client sees `disconnect` with reason
// `io server disconnect` (a DISCONNECT packet, not a dropped connection),
// and the process exits 0 within 5 s.

import assert from "node:assert/strict";
import { test } from "node:test";

import { relayPool, startRelay, withTimeout } from "./relay-helpers.mjs";

const MIX = [
  [4, "websocket", 40],
  [2, "websocket", 24],
  [4, "polling", 9],
  [2, "polling", 9],
  [4, "upgrade", 9],
  [2, "upgrade", 9],
];

test("SIGTERM with 100 clients: each sees `io server disconnect`, exit 0 within 5 s", { timeout: 40_000 }, async () => {
  const server = await startRelay();
  const pool = relayPool(server.url);
  try {
    const queues = MIX.map(([version, mode, n]) => Array.from({ length: n }, () => ({ version, mode })));
    const specs = [];
    while (queues.some((q) => q.length > 0)) for (const q of queues) if (q.length > 0) specs.push(q.shift());
    const nsps = ["/", "/shutdown-a", "/shutdown-b"];
    const clients = await Promise.all(specs.map((s, i) => pool.connect({ ...s, nsp: nsps[i % nsps.length] })));
    assert.equal(clients.length, 100);
    await Promise.all(clients.map(async (c, i) => assert.deepEqual(await c.request("join", `room-${i % 5}`), { ok: true })));

    const t0 = Date.now();
    server.terminate();
    const reasons = await withTimeout(
      Promise.all(clients.map((c) => c.disconnected)),
      5000,
      "every client disconnected after SIGTERM",
    );
    for (const [i, reason] of reasons.entries()) {
      const c = clients[i];
      assert.equal(reason, "io server disconnect", `client ${i} (v${c.version} ${c.mode} ${c.nsp}) reason`);
      assert.deepEqual(c.disconnects, ["io server disconnect"], `client ${i}: one disconnect`);
    }
    const { code, signal } = await withTimeout(server.exited, Math.max(1, 5000 - (Date.now() - t0)), "exit within 5 s of SIGTERM");
    assert.equal(signal, null, "exited by itself, not killed by the signal");
    assert.equal(code, 0, "exit code");
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`).catch((err) => err);
    assert.ok(res instanceof Error, "nothing listens any more");
  } finally {
    await pool.closeAll();
    await server.stop();
  }
});
