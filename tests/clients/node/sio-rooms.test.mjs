// Rooms (TESTBED.md `join`, `leave`, `rooms`, `to`, `server-to`,
// `room-sockets`, `room-join`, `room-leave`, `room-disconnect`): each test
// uses a group of clients on its own dynamic namespace (so broadcasts reach
// exactly the group), the first of the version under test and the others
// alternating v4/v2, all in the mode under test, against --shards 2.
// Every broadcast is counted per client after a barrier: the sender finally
// emits `server-to` to every member's id room, and since one socket's
// emissions reach each recipient in order, a member that got the barrier has
// got everything the sender broadcast before it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { patternBytes } from "./helpers.mjs";
import {
  MATRIX,
  clientPool,
  dynNamespace,
  openMonitor,
  sleep,
  startTestbed,
  uniqueRoom,
} from "./sio-helpers.mjs";

const T = { timeout: 20_000 };

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

/** `n` clients on a fresh dynamic namespace: versions alternate from `first`. */
async function group(n, { version, mode }) {
  const nsp = dynNamespace(`r${version}${mode}`);
  const clients = await Promise.all(
    Array.from({ length: n }, (_, i) => pool.connect({ version: i % 2 === 0 ? version : 6 - version, mode, nsp })),
  );
  return { nsp, clients };
}

let barrierCount = 0;
/** Waits until every client of `clients` got a barrier from `sender` (see the header). */
async function settle(sender, clients) {
  barrierCount += 1;
  const event = `barrier-${barrierCount}`;
  const [ok] = await sender.ack("server-to", { rooms: clients.map((c) => c.id), except: [], event, args: [] });
  assert.equal(ok, true, "server-to acks true");
  await Promise.all(clients.map((c) => c.inbox.waitCount(event, 1, 10_000)));
  for (const c of clients) assert.equal(c.inbox.count(event), 1, `barrier reached ${c.id} once`);
}

/** Asserts who got `event` and how often: exactly once for `want`, never for the rest. */
function assertReceivers(clients, event, want, what) {
  const wanted = new Set(want);
  for (const [i, c] of clients.entries()) {
    const expected = wanted.has(c) ? 1 : 0;
    const got = c.inbox.count(event);
    assert.equal(got, expected, `${what}: client ${i} (v${c.version} ${c.id}) got "${event}" ${got} times, want ${expected}`);
  }
}

async function join(client, rooms) {
  const [got] = await client.ack("join", rooms);
  return got;
}

for (const { version, mode } of MATRIX) {
  describe(`rooms, first client v${version}: ${mode}`, { concurrency: true }, () => {
    test("join one, join many, rooms, leave: acks list the sorted rooms with the own id", T, async () => {
      const { clients: [c] } = await group(1, { version, mode });
      const id = c.id;
      assert.deepEqual(await join(c, "zeta"), ["zeta", id].sort(), "join one");
      assert.deepEqual(await join(c, ["beta", "alpha", "zeta"]), ["alpha", "beta", "zeta", id].sort(), "join many");
      assert.deepEqual((await c.ack("rooms"))[0], ["alpha", "beta", "zeta", id].sort(), "rooms");
      assert.deepEqual((await c.ack("leave", "beta"))[0], ["alpha", "zeta", id].sort(), "leave");
      assert.deepEqual((await c.ack("leave", "not-joined"))[0], ["alpha", "zeta", id].sort(), "leave a room not joined");
      assert.deepEqual((await c.ack("rooms"))[0], ["alpha", "zeta", id].sort(), "rooms after leave");
      c.close();
    });

    test("to a room: each member once, the sender excluded (even when in the room)", T, async () => {
      const { clients } = await group(5, { version, mode });
      const [s, a, b, c, d] = clients;
      const room = uniqueRoom();
      await Promise.all([s, a, b, c].map((x) => join(x, room)));
      const args = ["to-room", { n: 1 }, patternBytes(64, 3)];
      assert.deepEqual(await s.ack("to", { rooms: [room], except: [], event: "ev1", args }), [true]);
      // From a sender outside the room too.
      assert.deepEqual(await d.ack("to", { rooms: [room], except: [], event: "ev2", args: [] }), [true]);
      await settle(s, clients);
      await settle(d, clients);
      assertReceivers(clients, "ev1", [a, b, c], "to room from a member");
      assertReceivers(clients, "ev2", [s, a, b, c], "to room from outside");
      const got = a.inbox.list("ev1")[0];
      assert.equal(got[0], "to-room");
      assert.deepEqual(got[1], { n: 1 });
      assert.ok(Buffer.from(got[2]).equals(patternBytes(64, 3)), "binary argument intact");
      for (const x of clients) x.close();
    });

    test("to several rooms: a socket in two of them gets it once", T, async () => {
      const { clients } = await group(5, { version, mode });
      const [s, both, onlyA, onlyB, none] = clients;
      const [ra, rb] = [uniqueRoom("a"), uniqueRoom("b")];
      await Promise.all([join(s, [ra]), join(both, [ra, rb]), join(onlyA, ra), join(onlyB, [rb]), join(none, uniqueRoom("c"))]);
      await s.ack("to", { rooms: [ra, rb], except: [], event: "multi", args: [1] });
      await settle(s, clients);
      assertReceivers(clients, "multi", [both, onlyA, onlyB], "to two rooms");
      for (const x of clients) x.close();
    });

    test("except: members of the excepted rooms are skipped", T, async () => {
      const { clients } = await group(5, { version, mode });
      const [s, a, b, c, d] = clients;
      const [room, vip] = [uniqueRoom("room"), uniqueRoom("vip")];
      await Promise.all([join(a, room), join(b, [room, vip]), join(c, [room]), join(d, [vip])]);
      await s.ack("to", { rooms: [room], except: [vip], event: "ex1", args: [] });
      await s.ack("to", { rooms: [room], except: [c.id], event: "ex2", args: [] });
      await settle(s, clients);
      assertReceivers(clients, "ex1", [a, c], "to room except vip");
      assertReceivers(clients, "ex2", [a, b], "to room except one socket id");
      for (const x of clients) x.close();
    });

    test("broadcast (rooms empty): everyone in the namespace but the sender; with except", T, async () => {
      const { clients } = await group(5, { version, mode });
      const [s, a, b, c, d] = clients;
      const quiet = uniqueRoom("quiet");
      await join(b, quiet);
      await join(s, quiet);
      await s.ack("to", { rooms: [], except: [], event: "all", args: ["everyone"] });
      await s.ack("to", { rooms: [], except: [quiet], event: "most", args: [] });
      await settle(s, clients);
      assertReceivers(clients, "all", [a, b, c, d], "broadcast");
      assertReceivers(clients, "most", [a, c, d], "broadcast except");
      assert.deepEqual(a.inbox.list("all")[0], ["everyone"]);
      for (const x of clients) x.close();
    });

    test("server-to: the sender is included when in the room; empty rooms reach everyone", T, async () => {
      const { clients } = await group(4, { version, mode });
      const [s, a, b, c] = clients;
      const room = uniqueRoom();
      await Promise.all([join(s, room), join(a, room)]);
      await s.ack("server-to", { rooms: [room], except: [], event: "st1", args: [] });
      await b.ack("server-to", { rooms: [room], except: [], event: "st2", args: [] });
      await c.ack("server-to", { rooms: [], except: [], event: "st3", args: [] });
      await c.ack("server-to", { rooms: [], except: [room], event: "st4", args: [] });
      await s.ack("server-to", { rooms: [room], except: [s.id], event: "st5", args: [] });
      await settle(s, clients);
      await settle(b, clients);
      await settle(c, clients);
      assertReceivers(clients, "st1", [s, a], "server-to own room");
      assertReceivers(clients, "st2", [s, a], "server-to from outside");
      assertReceivers(clients, "st3", [s, a, b, c], "server-to everyone");
      assertReceivers(clients, "st4", [b, c], "server-to everyone except room");
      assertReceivers(clients, "st5", [a], "server-to room except own id");
      for (const x of clients) x.close();
    });

    test("to a socket id reaches only that socket", T, async () => {
      const { clients } = await group(4, { version, mode });
      const [s, a, b, c] = clients;
      await s.ack("to", { rooms: [b.id], except: [], event: "direct", args: ["for b", patternBytes(10, 9)] });
      await c.ack("to", { rooms: [s.id, a.id], except: [], event: "two", args: [] });
      // The sender's own id: `to` excludes the sender, `server-to` does not.
      await s.ack("to", { rooms: [s.id], except: [], event: "self-to", args: [] });
      await s.ack("server-to", { rooms: [s.id], except: [], event: "self-server-to", args: [] });
      await settle(s, clients);
      await settle(c, clients);
      assertReceivers(clients, "direct", [b], "to b's id");
      assertReceivers(clients, "two", [s, a], "to two ids");
      assertReceivers(clients, "self-to", [], "to the own id");
      assertReceivers(clients, "self-server-to", [s], "server-to the own id");
      for (const x of clients) x.close();
    });

    test("volatile: at most once, and the socket keeps working", T, async () => {
      const { clients } = await group(3, { version, mode });
      const [s, a, b] = clients;
      const room = uniqueRoom();
      await join(a, room);
      assert.deepEqual(await s.ack("to", { rooms: [room], except: [], event: "vol", args: [1], volatile: true }), [true]);
      assert.deepEqual(await s.ack("server-to", { rooms: [], except: [], event: "vol2", args: [], volatile: true }), [true]);
      await settle(s, clients);
      assert.ok(a.inbox.count("vol") <= 1, "volatile: at most once");
      assert.equal(b.inbox.count("vol"), 0, "not a member");
      for (const c of clients) assert.ok(c.inbox.count("vol2") <= 1, "volatile broadcast: at most once");
      for (const x of clients) x.close();
    });

    test("after leave, a room broadcast no longer reaches the socket", T, async () => {
      const { clients } = await group(3, { version, mode });
      const [s, a, b] = clients;
      const room = uniqueRoom();
      await Promise.all([join(a, room), join(b, room)]);
      await a.ack("leave", room);
      await s.ack("to", { rooms: [room], except: [], event: "after-leave", args: [] });
      await settle(s, clients);
      assertReceivers(clients, "after-leave", [b], "after leave");
      for (const x of clients) x.close();
    });

    test("room-sockets, room-join, room-leave; rooms empty after everyone leaves", T, async () => {
      const { clients } = await group(5, { version, mode });
      const [s, a, b, c, d] = clients;
      const [room, other, target] = [uniqueRoom("r"), uniqueRoom("o"), uniqueRoom("t")];
      await Promise.all([join(a, room), join(b, room), join(c, [room, other]), join(d, other)]);
      const ids = (xs) => xs.map((x) => x.id).sort();
      assert.deepEqual((await s.ack("room-sockets", room))[0], ids([a, b, c]), "room-sockets");
      assert.deepEqual((await s.ack("room-sockets", a.id))[0], [a.id], "room-sockets of a socket id");
      assert.deepEqual((await s.ack("room-sockets", uniqueRoom("none")))[0], [], "room-sockets of an unknown room");

      assert.deepEqual(await s.ack("room-join", { room, join: target }), [true]);
      assert.deepEqual((await s.ack("room-sockets", target))[0], ids([a, b, c]), "room-join");
      assert.deepEqual((await b.ack("rooms"))[0], [b.id, room, target].sort(), "b's rooms after room-join");
      await s.ack("to", { rooms: [target], except: [], event: "joined", args: [] });

      assert.deepEqual(await s.ack("room-leave", { room: other, leave: target }), [true]);
      assert.deepEqual((await s.ack("room-sockets", target))[0], ids([a, b]), "room-leave");
      assert.deepEqual((await c.ack("rooms"))[0], [c.id, room, other].sort(), "c's rooms after room-leave");
      // room-join of a socket id room: just that socket.
      assert.deepEqual(await s.ack("room-join", { room: d.id, join: target }), [true]);
      assert.deepEqual((await s.ack("room-sockets", target))[0], ids([a, b, d]), "room-join by id");

      await settle(s, clients);
      assertReceivers(clients, "joined", [a, b, c], "to the room joined server-side");

      await Promise.all([a, b, c].map((x) => x.ack("leave", room)));
      assert.deepEqual((await s.ack("room-sockets", room))[0], [], "empty after everyone left");
      assert.deepEqual(await s.ack("room-leave", { room: target, leave: target }), [true]);
      assert.deepEqual((await s.ack("room-sockets", target))[0], [], "empty after room-leave of itself");
      for (const x of clients) x.close();
    });

    test("room-disconnect: acks first, then disconnects every member; rooms empty afterwards", T, async () => {
      const { nsp, clients } = await group(5, { version, mode });
      const [s, a, b, c, d] = clients;
      const [room, room2] = [uniqueRoom("bye"), uniqueRoom("bye2")];
      await Promise.all([join(a, room), join(b, room), join(s, room2), join(c, room2)]);
      const aId = a.id;
      assert.deepEqual(await s.ack("room-disconnect", { room, close: false }), [true]);
      assert.equal(await a.disconnected, "io server disconnect", "a's reason");
      assert.equal(await b.disconnected, "io server disconnect", "b's reason");
      await expectServerDisconnect(aId, nsp, [aId, room]);
      assert.deepEqual((await s.ack("room-sockets", room))[0], [], "room empty after room-disconnect");
      assert.equal(c.socket.connected, true, "others stay connected");
      assert.equal(d.socket.connected, true, "others stay connected");

      // The sender in the room, close: true: its ack still arrives first.
      const sId = s.id;
      const acked = await s.ack("room-disconnect", { room: room2, close: true });
      assert.deepEqual(acked, [true], "ack before the disconnect");
      assert.equal(await s.disconnected, "io server disconnect", "sender's reason (close: true)");
      assert.equal(await c.disconnected, "io server disconnect", "c's reason (close: true)");
      await expectServerDisconnect(sId, nsp, [sId, room2]);
      assert.deepEqual((await d.ack("room-sockets", room2))[0], [], "room2 empty");
      for (const x of clients) x.close();
    });
  });
}

/** The monitor saw `id` disconnected by the server, with `rooms` at disconnecting. */
async function expectServerDisconnect(id, nsp, rooms) {
  const disconnect = await monitor.waitFor((e) => e.type === "disconnect" && e.id === id, 5000, `disconnect of ${id}`);
  assert.equal(disconnect.reason, "server namespace disconnect");
  const disconnecting = monitor.forId(id).find((e) => e.type === "disconnecting");
  assert.ok(disconnecting, "disconnecting reported");
  assert.equal(disconnecting.nsp, nsp);
  assert.deepEqual(disconnecting.rooms, [...rooms].sort());
  assert.deepEqual(disconnect.rooms, []);
  await sleep(0);
}
