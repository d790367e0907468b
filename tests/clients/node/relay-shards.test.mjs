// Across shards: 100 clients (socket.io-client 4.x and 2.x, mostly
// websocket, some polling and upgraded) on a hub with --shards 2, in
// overlapping rooms. Ten publishers of every kind publish to one room and
// to several: every member gets every publish exactly once, the publisher
// never its own, non-members nothing. Quiescence: each publisher finally
// publishes a barrier to the room everyone joined; one socket's publishes
// reach each recipient in order, so once every client has every other
// publisher's barrier, all counts are final.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { patternBytes } from "./helpers.mjs";
import { relayPool, startRelay, withTimeout } from "./relay-helpers.mjs";

let server;
const pool = relayPool(() => server.url);
before(async () => {
  server = await startRelay();
});
after(async () => {
  await pool.closeAll();
  await server?.stop();
});

// [version, mode, how many]
const MIX = [
  [4, "websocket", 45],
  [2, "websocket", 25],
  [4, "polling", 8],
  [2, "polling", 8],
  [4, "upgrade", 7],
  [2, "upgrade", 7],
];

test("100 mixed clients: every publish reaches each member exactly once, the publisher excluded", { timeout: 60_000 }, async () => {
  // Round-robin over the kinds, so that every room mixes generations and transports.
  const queues = MIX.map(([version, mode, n]) => Array.from({ length: n }, () => ({ version, mode })));
  const specs = [];
  while (queues.some((q) => q.length > 0)) for (const q of queues) if (q.length > 0) specs.push(q.shift());
  const clients = [];
  for (let i = 0; i < specs.length; i += 50) {
    clients.push(...(await Promise.all(specs.slice(i, i + 50).map((s) => pool.connect(s)))));
  }
  assert.equal(clients.length, 100);

  // Rooms: everyone in "all"; g<i%4>, m<i%3>; every 7th client also in "sevens".
  const roomsOf = clients.map((_, i) => {
    const rooms = ["all", `g${i % 4}`, `m${i % 3}`];
    if (i % 7 === 0) rooms.push("sevens");
    return rooms;
  });
  await Promise.all(
    clients.map(async (c, i) => {
      // Half join with one array, half room by room.
      if (i % 2 === 0) {
        assert.deepEqual(await c.request("join", roomsOf[i]), { ok: true });
      } else {
        for (const room of roomsOf[i]) assert.deepEqual(await c.request("join", room), { ok: true });
      }
    }),
  );

  // Publishers: one of each (version, mode) pair, then four more.
  const pubIdx = [];
  for (const [version, mode] of MIX) {
    pubIdx.push(clients.findIndex((c) => c.version === version && c.mode === mode));
  }
  for (let i = 3; pubIdx.length < 10; i += 11) if (!pubIdx.includes(i)) pubIdx.push(i);

  const OPS = [["g0"], ["g1", "m1"], ["g2", "g3"], ["m0", "m2", "g0"], ["sevens"], ["sevens", "g1"], "m2"];
  const expected = new Map(); // event -> Set of client indexes
  const payload = patternBytes(48, 21);
  await Promise.all(
    pubIdx.map(async (pi) => {
      const publisher = clients[pi];
      for (const [k, to] of OPS.entries()) {
        const event = `op-${pi}-${k}`;
        const targets = Array.isArray(to) ? to : [to];
        const want = new Set();
        clients.forEach((_, i) => {
          if (i !== pi && targets.some((r) => roomsOf[i].includes(r))) want.add(i);
        });
        expected.set(event, want);
        const res = await publisher.request("publish", { to, event, data: { pi, k, bin: payload } });
        assert.deepEqual(res, { ok: true }, `${event} acked`);
      }
      const res = await publisher.request("publish", { to: "all", event: "barrier", data: pi });
      assert.deepEqual(res, { ok: true }, "barrier acked");
    }),
  );

  await withTimeout(
    Promise.all(
      clients.map((c, i) => c.inbox.waitCount("barrier", pubIdx.filter((p) => p !== i).length, 30_000)),
    ),
    30_000,
    "every client gets every other publisher's barrier",
  );
  let checked = 0;
  for (const [i, c] of clients.entries()) {
    const barriers = c.inbox.list("barrier").map(([pi]) => pi).sort((x, y) => x - y);
    assert.deepEqual(barriers, pubIdx.filter((p) => p !== i).sort((x, y) => x - y), `client ${i}: one barrier per other publisher`);
    for (const [event, want] of expected) {
      const got = c.inbox.count(event);
      assert.equal(got, want.has(i) ? 1 : 0, `client ${i} (v${c.version} ${c.mode}) got ${event} ${got} times`);
      checked += got;
    }
    const ops = c.inbox.seq.filter((e) => e.startsWith("op-"));
    assert.equal(ops.length, [...expected.values()].filter((w) => w.has(i)).length, `client ${i}: nothing else`);
    // One publisher's events arrive in publishing order.
    for (const pi of pubIdx) {
      const ks = ops.filter((e) => e.startsWith(`op-${pi}-`)).map((e) => Number(e.split("-")[2]));
      assert.deepEqual(ks, [...ks].sort((x, y) => x - y), `client ${i}: publisher ${pi}'s events in order`);
    }
  }
  assert.ok(checked > 1500, `a meaningful number of deliveries checked (${checked})`);
  for (const c of clients.filter((_, i) => i % 9 === 0)) {
    const event = c.inbox.seq.find((e) => e.startsWith("op-"));
    const [data] = c.inbox.list(event)[0];
    assert.ok(Buffer.from(data.bin).equals(payload), `binary payload intact at v${c.version} ${c.mode}`);
  }
  for (const c of clients) c.close();
});
