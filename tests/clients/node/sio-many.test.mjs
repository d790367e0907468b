// Many clients against --shards 2: 240 sockets (socket.io-client 4.x and
// 2.x, mostly websocket, some polling and upgraded), spread over the shards,
// in overlapping rooms. Broadcasts of every kind (`to` one and several rooms,
// `except`, broadcast, `server-to`, to a socket id) from senders of both
// generations must reach every intended socket exactly once and no one else.
// Quiescence: after its broadcasts each sender emits a `server-to` barrier
// to everyone; one socket's emissions reach each recipient in order, so once
// every client has every sender's barrier, all counts are final.
// Then the server-level room operations across shards (`room-sockets`,
// `room-join`, `room-leave`, `room-disconnect`), and rooms empty at the end.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { patternBytes } from "./helpers.mjs";
import { clientPool, openMonitor, startTestbed, withTimeout } from "./sio-helpers.mjs";

let server;
let monitor;
const pool = clientPool(() => server.url);
before(async () => {
  server = await startTestbed();
  monitor = await openMonitor(server.url);
});
after(async () => {
  await pool.closeAll();
  monitor?.close();
  await server?.stop();
});

// 240 clients: [version, mode, how many].
const MIX = [
  [4, "websocket", 140],
  [2, "websocket", 50],
  [4, "polling", 12],
  [2, "polling", 12],
  [4, "upgrade", 13],
  [2, "upgrade", 13],
];
const GROUPS = 4; // rooms g0..g3 by i % 4
const MODS = 6; // rooms m0..m5 by i % 6

test("240 mixed clients: every broadcast reaches each intended socket exactly once", { timeout: 90_000 }, async () => {
  // Round-robin over the kinds, so that every room mixes generations and transports.
  const queues = MIX.map(([version, mode, n]) => Array.from({ length: n }, () => ({ version, mode })));
  const specs = [];
  while (queues.some((q) => q.length > 0)) for (const q of queues) if (q.length > 0) specs.push(q.shift());
  const clients = [];
  const BATCH = 40;
  for (let i = 0; i < specs.length; i += BATCH) {
    const batch = await Promise.all(specs.slice(i, i + BATCH).map((s) => pool.connect(s)));
    clients.push(...batch);
  }
  assert.equal(clients.length, 240);
  assert.equal(new Set(clients.map((c) => c.id)).size, 240, "distinct socket ids");

  // Rooms: g<i%4>, m<i%6>; every 10th client also in "tens".
  const roomsOf = clients.map((_, i) => {
    const rooms = [`g${i % GROUPS}`, `m${i % MODS}`];
    if (i % 10 === 0) rooms.push("tens");
    return rooms;
  });
  await Promise.all(
    clients.map(async (c, i) => {
      const [got] = await c.ack("join", roomsOf[i]);
      assert.deepEqual(got, [...roomsOf[i], c.id].sort(), `client ${i} rooms`);
    }),
  );
  const inRoom = (i, room) => roomsOf[i].includes(room) || clients[i].id === room;

  // Senders: one of each (version, mode) pair, plus a few more websocket ones.
  const senderIdx = [];
  for (const [version, mode] of MIX.map(([v, m]) => [v, m])) {
    senderIdx.push(clients.findIndex((c, i) => c.version === version && c.mode === mode && !senderIdx.includes(i)));
  }
  for (let i = 0; senderIdx.length < 10; i += 17) if (!senderIdx.includes(i)) senderIdx.push(i);

  // Operations per sender: [kind ("to" | "server-to"), rooms, except].
  const opsFor = (si, sender) => [
    ["to", ["g0"], []],
    ["to", ["g1", "m2"], []],
    ["to", ["g2"], ["m0"]],
    ["to", [], ["g3"]],
    ["to", [], []],
    ["server-to", ["m1"], []],
    ["server-to", [], ["tens"]],
    ["to", [clients[(si * 31 + 5) % 240].id], []],
    ["server-to", [sender.id, "tens"], []],
    ["to", ["tens", "g0", "m3"], ["g1"]],
  ];
  const expected = new Map(); // event -> Set of client indexes
  const payload = patternBytes(32, 77);
  await Promise.all(
    senderIdx.map(async (si) => {
      const sender = clients[si];
      const ops = opsFor(si, sender);
      for (const [k, [kind, rooms, except]] of ops.entries()) {
        const event = `op-${si}-${k}`;
        const want = new Set();
        clients.forEach((_, i) => {
          if (kind === "to" && i === si) return;
          const targeted = rooms.length === 0 || rooms.some((r) => inRoom(i, r));
          const excepted = except.some((r) => inRoom(i, r));
          if (targeted && !excepted) want.add(i);
        });
        expected.set(event, want);
        const [ok] = await sender.ack(kind, { rooms, except, event, args: [si, k, { bin: payload }] });
        assert.equal(ok, true, `${event} acked`);
      }
      const [ok] = await sender.ack("server-to", { rooms: [], except: [], event: "barrier", args: [si] });
      assert.equal(ok, true, "barrier acked");
    }),
  );

  await withTimeout(
    Promise.all(clients.map((c) => c.inbox.waitCount("barrier", senderIdx.length, 60_000))),
    60_000,
    "every client gets every sender's barrier",
  );
  let checked = 0;
  for (const [i, c] of clients.entries()) {
    const barriers = c.inbox.list("barrier").map(([si]) => si).sort((x, y) => x - y);
    assert.deepEqual(barriers, [...senderIdx].sort((x, y) => x - y), `client ${i}: one barrier per sender`);
    for (const [event, want] of expected) {
      const got = c.inbox.count(event);
      assert.equal(got, want.has(i) ? 1 : 0, `client ${i} (v${c.version} ${c.mode}) got ${event} ${got} times`);
      checked += want.has(i) ? 1 : 0;
    }
    const all = c.inbox.seq.filter((e) => e.startsWith("op-"));
    assert.equal(all.length, [...expected.values()].filter((w) => w.has(i)).length, `client ${i}: nothing else`);
  }
  assert.ok(checked > 5000, `a meaningful number of deliveries checked (${checked})`);
  const sample = clients.find((c) => c.inbox.seq.some((e) => e.startsWith("op-")));
  const ev = sample.inbox.seq.find((e) => e.startsWith("op-"));
  const [args] = sample.inbox.list(ev);
  assert.ok(Buffer.from(args[2].bin).equals(payload), "binary payload intact");

  // ---- server-level room operations over every shard
  const ids = (pred) => clients.filter((_, i) => pred(i)).map((c) => c.id).sort();
  const asker = clients[3];
  const [g0] = await asker.ack("room-sockets", "g0");
  assert.deepEqual(g0, ids((i) => inRoom(i, "g0")), "room-sockets g0");
  assert.equal(g0.length, 60);

  assert.deepEqual(await asker.ack("room-join", { room: "m4", join: "joined" }), [true]);
  assert.deepEqual((await asker.ack("room-sockets", "joined"))[0], ids((i) => inRoom(i, "m4")), "room-join m4 -> joined");
  assert.deepEqual(await clients[1].ack("room-join", { room: "tens", join: "joined" }), [true]);
  const joined = ids((i) => inRoom(i, "m4") || inRoom(i, "tens"));
  assert.deepEqual((await asker.ack("room-sockets", "joined"))[0], joined, "room-join tens -> joined");
  assert.deepEqual(await clients[2].ack("room-leave", { room: "g1", leave: "joined" }), [true]);
  assert.deepEqual(
    (await asker.ack("room-sockets", "joined"))[0],
    ids((i) => (inRoom(i, "m4") || inRoom(i, "tens")) && !inRoom(i, "g1")),
    "room-leave g1 from joined",
  );
  const m4member = clients.findIndex((_, i) => inRoom(i, "m4") && !inRoom(i, "g1"));
  assert.deepEqual((await clients[m4member].ack("rooms"))[0], [...roomsOf[m4member], clients[m4member].id, "joined"].sort());

  // room-disconnect m5 (close: false), seen by the clients and the monitor.
  const m5 = clients.filter((_, i) => inRoom(i, "m5"));
  const m5ids = m5.map((c) => c.id);
  assert.deepEqual(await asker.ack("room-disconnect", { room: "m5", close: false }), [true]);
  await withTimeout(Promise.all(m5.map((c) => c.disconnected)), 15_000, "m5 disconnected");
  for (const c of m5) assert.deepEqual(c.disconnects, ["io server disconnect"]);
  await Promise.all(
    m5ids.map((id) =>
      monitor.waitFor((e) => e.type === "disconnect" && e.id === id, 10_000, `monitor disconnect of ${id}`),
    ),
  );
  for (const id of m5ids) {
    const d = monitor.forId(id).find((e) => e.type === "disconnect");
    assert.equal(d.reason, "server namespace disconnect");
  }
  assert.deepEqual((await asker.ack("room-sockets", "m5"))[0], [], "m5 empty after room-disconnect");
  assert.deepEqual(
    (await asker.ack("room-sockets", "g0"))[0],
    ids((i) => inRoom(i, "g0") && !inRoom(i, "m5")),
    "g0 without the m5 sockets",
  );

  // Everyone leaves g2 (their own request), then everyone disconnects.
  await Promise.all(clients.filter((c) => c.socket.connected).map((c) => c.ack("leave", "g2")));
  assert.deepEqual((await asker.ack("room-sockets", "g2"))[0], [], "g2 empty after everyone left");
  const remaining = clients.filter((c) => c.socket.connected && c !== asker);
  const remainingIds = remaining.map((c) => c.id);
  for (const c of remaining) c.close();
  await Promise.all(
    remainingIds.map((id) => monitor.waitFor((e) => e.type === "disconnect" && e.id === id, 15_000, `disconnect of ${id}`)),
  );
  for (const room of ["g0", "g1", "g3", "m0", "m3", "m4", "tens", "joined"]) {
    // Only the asker (clients[3]: g3, m3) is left.
    const want = inRoom(3, room) ? [asker.id] : [];
    assert.deepEqual((await asker.ack("room-sockets", room))[0], want, `${room} after everyone else disconnected`);
  }
  const askerRooms = [...roomsOf[3].filter((r) => r !== "g2"), asker.id, ...(inRoom(3, "m4") ? ["joined"] : [])];
  assert.deepEqual((await asker.ack("rooms"))[0], askerRooms.sort(), "the asker's rooms");
  asker.close();
});
