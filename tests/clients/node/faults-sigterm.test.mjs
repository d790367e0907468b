// Faults on purpose: SIGTERM under load, with loss accounting. The hub
// (HUB_RELAY_CMD, default the built binary) runs `--shards 2`; subscribers
// of both generations over every transport are in rooms; publishers of
// both generations publish with acks at a steady rate; SIGTERM comes
// mid-stream.
//
// For every publish acknowledged to its publisher, each subscriber of its
// room that had joined (its join acknowledged) before the publish was sent
// either received it, or was disconnected before it could: it never
// received a later publish of the same publisher (publishes of one socket
// reach each recipient in order, so a later one means this one was dropped
// while the subscriber was connected: a silent loss). Nothing is received
// twice. Every client sees `io server disconnect`; the process exits 0
// within --shutdown-timeout and prints no panic.
//
// Moreover, every publish acknowledged before the SIGTERM was sent reached
// every subscriber joined before it (the shards wait for each other's
// marker, which travels behind what they posted, before disconnecting).

import assert from "node:assert/strict";
import { test } from "node:test";

import { relayPool, startRelay, withTimeout } from "./relay-helpers.mjs";

const SHUTDOWN_TIMEOUT_MS = 5000;
const ROOMS = ["load-a", "load-b", "load-c"];
// [version, mode, count]
const SUBSCRIBERS = [
  [4, "websocket", 8],
  [2, "websocket", 6],
  [4, "polling", 4],
  [2, "polling", 4],
  [4, "upgrade", 3],
  [2, "upgrade", 3],
];
const PUBLISHERS = [
  [4, "websocket"],
  [2, "websocket"],
  [4, "polling"],
  [2, "polling"],
];
/** Each publisher publishes every this many ms, to the next room in turn. */
const PERIOD_MS = 4;
/** Publishing before the SIGTERM. */
const STREAM_MS = 600;

test("SIGTERM under load: no acknowledged publish is lost for a connected subscriber", { timeout: 60_000 }, async () => {
  const server = await startRelay(["--shutdown-timeout", String(SHUTDOWN_TIMEOUT_MS)], { shards: 2 });
  const pool = relayPool(server.url);
  try {
    // Subscribers: each joins one room; `joinedAt` is when its join was acknowledged.
    const subs = [];
    for (const [version, mode, n] of SUBSCRIBERS) {
      for (let i = 0; i < n; i++) subs.push({ version, mode, room: ROOMS[subs.length % ROOMS.length] });
    }
    await Promise.all(
      subs.map(async (s) => {
        s.client = await pool.connect({ version: s.version, mode: s.mode });
        s.got = new Map(); // "p:seq" -> count
        s.last = new Map(); // p -> highest seq received
        s.client.socket.on("m", (data) => {
          const key = `${data.p}:${data.seq}`;
          s.got.set(key, (s.got.get(key) ?? 0) + 1);
          s.last.set(data.p, Math.max(s.last.get(data.p) ?? -1, data.seq));
        });
        assert.deepEqual(await s.client.request("join", s.room), { ok: true });
        s.joinedAt = performance.now();
      }),
    );

    // Publishers: each publishes every PERIOD_MS until it is disconnected.
    const pubs = await Promise.all(
      PUBLISHERS.map(async ([version, mode], p) => ({ p, version, mode, client: await pool.connect({ version, mode }), sent: [] })),
    );
    let running = true;
    for (const pub of pubs) {
      pub.done = new Promise((resolve) => {
        let seq = 0;
        const timer = setInterval(() => {
          if (!running || !pub.client.socket.connected) {
            clearInterval(timer);
            resolve();
            return;
          }
          const record = { seq, room: ROOMS[seq % ROOMS.length], sentAt: performance.now(), ackedAt: undefined };
          pub.sent.push(record);
          pub.client.socket.emit("publish", { to: record.room, event: "m", data: { p: pub.p, seq } }, (answer) => {
            assert.deepEqual(answer, { ok: true }, `publisher ${pub.p} #${record.seq} answer`);
            record.ackedAt = performance.now();
          });
          seq += 1;
        }, PERIOD_MS);
      });
    }

    await new Promise((resolve) => setTimeout(resolve, STREAM_MS));
    const acksBefore = pubs.reduce((n, pub) => n + pub.sent.filter((r) => r.ackedAt !== undefined).length, 0);
    assert.ok(acksBefore > 20, `the stream is flowing before the SIGTERM (${acksBefore} acks)`);
    const termAt = performance.now();
    server.terminate();

    const clients = [...subs.map((s) => s.client), ...pubs.map((p) => p.client)];
    const reasons = await withTimeout(
      Promise.all(clients.map((c) => c.disconnected)),
      SHUTDOWN_TIMEOUT_MS,
      "every client disconnected after SIGTERM",
    );
    running = false;
    await Promise.all(pubs.map((p) => p.done));
    for (const [i, reason] of reasons.entries()) {
      const c = clients[i];
      assert.equal(reason, "io server disconnect", `client ${i} (v${c.version} ${c.mode}) reason`);
    }
    const { code, signal } = await withTimeout(
      server.exited,
      Math.max(1, SHUTDOWN_TIMEOUT_MS - (performance.now() - termAt)),
      `exit within --shutdown-timeout ${SHUTDOWN_TIMEOUT_MS} ms`,
    );
    const exitMs = Math.round(performance.now() - termAt);
    assert.equal(signal, null, "exited by itself");
    assert.equal(code, 0, `exit code (stderr:\n${server.stderr()})`);
    assert.doesNotMatch(server.stderr(), /panicked/, "no panic");

    // The accounting.
    let acked = 0;
    let expected = 0;
    let delivered = 0;
    let lostDisconnected = 0;
    let lostBeforeTerm = 0;
    const silent = [];
    const duplicates = [];
    const earlyLosses = [];
    for (const pub of pubs) {
      for (const r of pub.sent) {
        if (r.ackedAt === undefined) continue;
        acked += 1;
        for (const s of subs) {
          if (s.room !== r.room || s.joinedAt >= r.sentAt) continue;
          expected += 1;
          const n = s.got.get(`${pub.p}:${r.seq}`) ?? 0;
          if (n > 1) duplicates.push(`v${s.version} ${s.mode} got ${pub.p}:${r.seq} ${n} times`);
          if (n >= 1) {
            delivered += 1;
          } else if ((s.last.get(pub.p) ?? -1) > r.seq) {
            silent.push(`v${s.version} ${s.mode} (${s.room}) missed ${pub.p}:${r.seq} but got ${pub.p}:${s.last.get(pub.p)}`);
          } else {
            lostDisconnected += 1;
            if (r.ackedAt < termAt) {
              lostBeforeTerm += 1;
              earlyLosses.push(
                `v${s.version} ${s.mode} (${s.room}, last got ${pub.p}:${s.last.get(pub.p)}) missed ${pub.p}:${r.seq} ` +
                  `acked ${Math.round(termAt - r.ackedAt)} ms before the SIGTERM`,
              );
            }
          }
        }
      }
    }
    const sent = pubs.reduce((n, pub) => n + pub.sent.length, 0);
    console.log(
      `SIGTERM under load: ${sent} publishes sent, ${acked} acknowledged (${acksBefore} before the SIGTERM); ` +
        `${expected} deliveries owed to subscribers joined before, ${delivered} made, ` +
        `${lostDisconnected} not made to a subscriber disconnected first ` +
        `(${lostBeforeTerm} of them acknowledged before the SIGTERM was sent); ` +
        `silent losses ${silent.length}, duplicates ${duplicates.length}; exit 0 after ${exitMs} ms`,
    );
    assert.deepEqual(silent, [], "no acknowledged publish dropped for a subscriber that was still connected");
    assert.deepEqual(earlyLosses, [], "every publish acknowledged before the SIGTERM was sent reached every subscriber");
    assert.deepEqual(duplicates, [], "nothing delivered twice");
    assert.ok(delivered > 0, "publishes were delivered");
  } finally {
    await pool.closeAll();
    await server.stop();
  }
});
