// The Socket.IO Admin UI (issue 14) on a hub cluster: two `hub --admin-ui
// --redis-url` nodes (A on 1 shard, B on 2) on a redis-server of the
// file's own, real socket.io-client 4 sockets on both, one admin socket
// on node A. What the admin on A must see and do on B, as with Node's
// @socket.io/admin-ui on the redis adapter (where the admin namespace's
// emits and the commands' operators go through the adapter):
//
// - `server_stats` from both nodes, each with its own `serverId`
//   (`<hostname>#<pid>` in a cluster: the UI keys servers by it) and its
//   own counts;
// - `all_sockets` lists the sockets of both nodes;
// - `join`, `leave`, `emit` and `_disconnect`, with a socket id filter
//   and with a room filter, act on the sockets of node B (the clients see
//   it);
// - the development notices (`socket_connected`, `room_joined`,
//   `room_left`, `event_received`, `socket_disconnected`) of node B's
//   sockets reach the admin on A.
//
// The hub: `HUB_RELAY_CMD` (default target/debug/hub).

import assert from "node:assert/strict";
import os from "node:os";
import { after, before, test } from "node:test";

import { recordingClients } from "./admin-ui-helpers.mjs";
import { eventually, startRelay, withTimeout } from "./relay-helpers.mjs";
import { startRedis } from "./redis-helpers.mjs";

const TIMEOUT = 10_000;

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

let redis;
let nodeA;
let nodeB;
before(async () => {
  redis = await startRedis();
  cleanup.push(() => redis.stop());
  const args = ["--admin-ui", "--redis-url", redis.url];
  nodeA = await startRelay(args, { shards: 1 });
  cleanup.push(() => nodeA.stop());
  nodeB = await startRelay(args, { shards: 2 });
  cleanup.push(() => nodeB.stop());
});

/** What the nodes logged, for failure messages. */
const logs = () => `--- node A ---\n${nodeA.stderr().slice(-3000)}\n--- node B ---\n${nodeB.stderr().slice(-3000)}`;

const { client, connectedOf, ack, roomsOf, spread } = recordingClients(cleanup, TIMEOUT);

/** The admin socket on `url`: every event it gets, in order. */
async function admin(url) {
  const socket = client(url, { nsp: "/admin" });
  await connectedOf(socket);
  const of = (name) => socket.got.filter((e) => e.event === name);
  return { socket, of };
}

/**
 * The admin's room join reaches B through Redis while the room's channel
 * may not be subscribed yet on B: an emit to a room is repeated until
 * every member got one (the paths are live), as cluster.test.mjs does.
 */
async function emitUntil(a, room, receivers, event) {
  const deadline = Date.now() + TIMEOUT;
  while (!receivers.every((r) => r.got.some((g) => g.event === event))) {
    assert.ok(Date.now() < deadline, `${event} to ${room} never reached every member\n${logs()}`);
    a.socket.emit("emit", "/", room, event);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("server_stats from both nodes, each its own serverId and counts; all_sockets of both", async () => {
  const onA = [await connectedOf(client(nodeA.url))];
  const onB = await spread(nodeB.url, 2, { min: 3 });
  const chatB = await connectedOf(client(nodeB.url, { nsp: "/chat" }));
  const pollerB = await connectedOf(client(nodeB.url, { transports: ["polling"] }));
  const a = await admin(nodeA.url);

  // Every 2 s each node emits its server_stats to the admin namespace.
  const byServer = () => {
    const map = new Map();
    for (const e of a.of("server_stats")) map.set(e.args[0].serverId, e.args[0]);
    return map;
  };
  await eventually(() => byServer().size >= 2, TIMEOUT, () => `server_stats of two servers: ${[...byServer().keys()]}\n${logs()}`);
  const host = os.hostname();
  const stats = byServer();
  assert.deepEqual(new Set(stats.keys()), new Set([`${host}#${nodeA.pid}`, `${host}#${nodeB.pid}`]), "serverId is hostname#pid");
  const statsA = stats.get(`${host}#${nodeA.pid}`);
  const statsB = stats.get(`${host}#${nodeB.pid}`);
  assert.equal(statsA.pid, nodeA.pid);
  assert.equal(statsB.pid, nodeB.pid);
  assert.equal(statsA.hostname, host);
  // Each node counts its own connections only.
  assert.equal(statsA.clientsCount, onA.length + 1 /* the admin */);
  assert.equal(statsB.clientsCount, onB.length + 2 /* chat, the poller */);
  assert.equal(statsA.pollingClientsCount, 0);
  assert.equal(statsB.pollingClientsCount, 1);
  const nsps = (s) => Object.fromEntries(s.namespaces.map((n) => [n.name, n.socketsCount]));
  assert.equal(nsps(statsA)["/"], onA.length);
  assert.equal(nsps(statsA)["/admin"], 1);
  assert.equal(nsps(statsB)["/"], onB.length + 1);
  assert.equal(nsps(statsB)["/chat"], 1);
  assert.equal(nsps(statsB)["/admin"] ?? 0, 0);

  // all_sockets: the sockets of every node, in the namespaces node A has.
  await eventually(() => a.of("all_sockets").length === 1, TIMEOUT, "all_sockets");
  const all = a.of("all_sockets")[0].args[0];
  const ids = new Set(all.map((s) => s.id));
  for (const c of [...onA, ...onB, pollerB]) assert.ok(ids.has(c.id), `all_sockets lists ${c.id} (${onA.includes(c) ? "A" : "B"})`);
  assert.ok(ids.has(a.socket.id), "and the admin itself");
  const fromB = all.find((s) => s.id === onB[0].id);
  assert.equal(fromB.nsp, "/");
  assert.equal(fromB.clientId, onB[0].io.engine.id.slice(0, 12));
  assert.equal(fromB.transport, "websocket");
  assert.deepEqual(fromB.rooms, [onB[0].id]);
  const pollingB = all.find((s) => s.id === pollerB.id);
  assert.equal(pollingB.clientId, pollerB.io.engine.id.slice(0, 12));
  assert.equal(pollingB.transport, "polling", "the transport of a socket of another node");
  // `/chat` exists only on B: as Node (fetchSockets of the namespaces this
  // node has), its socket is not listed.
  assert.ok(!ids.has(chatB.id), "a namespace that only node B has is not listed");
});

test("join, leave, emit and _disconnect from node A act on the sockets of node B", async () => {
  const onB = await spread(nodeB.url, 2, { min: 3 });
  const other = await connectedOf(client(nodeB.url));
  const onA = await connectedOf(client(nodeA.url));
  const a = await admin(nodeA.url);

  // join with a socket id filter, one socket on each shard of B.
  for (const c of onB) a.socket.emit("join", "/", "club", c.id);
  await eventually(async () => (await Promise.all(onB.map(roomsOf))).every((r) => r.includes("club")), TIMEOUT, () => `joined on B\n${logs()}`);
  assert.ok(!(await roomsOf(other)).includes("club"), "only the sockets named");
  assert.ok(!(await roomsOf(onA)).includes("club"));

  // emit to the room, then to one socket id, then to the namespace.
  a.socket.emit("emit", "/", "club", "hello", "world", 1);
  await eventually(() => onB.every((c) => c.got.some((g) => g.event === "hello")), TIMEOUT, "emit to the room on B");
  assert.deepEqual(onB[0].got.find((g) => g.event === "hello").args, ["world", 1]);
  assert.ok(!other.got.some((g) => g.event === "hello") && !onA.got.some((g) => g.event === "hello"), "non-members get nothing");
  a.socket.emit("emit", "/", other.id, "direct", { to: "you" });
  await eventually(() => other.got.some((g) => g.event === "direct"), TIMEOUT, "emit to a socket id on B");
  assert.deepEqual(other.got.find((g) => g.event === "direct").args, [{ to: "you" }]);
  a.socket.emit("emit", "/", null, "all");
  await eventually(() => [...onB, other, onA].every((c) => c.got.some((g) => g.event === "all")), TIMEOUT, "emit to the namespace on both nodes");

  // join with a room filter, then leave with a room filter and with an id.
  a.socket.emit("join", "/", "vip", "club");
  await eventually(async () => (await Promise.all(onB.map(roomsOf))).every((r) => r.includes("vip")), TIMEOUT, "club joined vip");
  assert.ok(!(await roomsOf(other)).includes("vip"));
  await emitUntil(a, "vip", onB, "to-vip");
  a.socket.emit("leave", "/", "vip", onB[0].id);
  await eventually(async () => !(await roomsOf(onB[0])).includes("vip"), TIMEOUT, "one left vip");
  assert.ok((await roomsOf(onB[1])).includes("vip"), "the others stay in vip");
  a.socket.emit("leave", "/", "club", "vip");
  await eventually(async () => (await Promise.all(onB.slice(1).map(roomsOf))).every((r) => !r.includes("club")), TIMEOUT, "vip left club");
  assert.ok((await roomsOf(onB[0])).includes("club"), "not in vip: stays in club");

  // _disconnect with a socket id filter (namespace only), then with a room filter (close).
  const reason = (s) => new Promise((resolve) => s.once("disconnect", resolve));
  const gone = reason(other);
  a.socket.emit("_disconnect", "/", false, other.id);
  assert.equal(await withTimeout(gone, TIMEOUT, "disconnect by id"), "io server disconnect");
  const vips = onB.slice(1);
  const closed = vips.map(reason);
  a.socket.emit("_disconnect", "/", true, "vip");
  assert.deepEqual(await withTimeout(Promise.all(closed), TIMEOUT, "disconnect by room"), vips.map(() => "io server disconnect"));
  await eventually(() => vips.every((c) => c.io.engine.readyState === "closed"), TIMEOUT, "their connections closed");
  assert.ok(onB[0].connected && onA.connected, "the others stay");
});

test("development notices of node B's sockets reach the admin on node A", async () => {
  const a = await admin(nodeA.url);
  await eventually(() => a.of("all_sockets").length === 1, TIMEOUT, "all_sockets");
  // B counts the admin sockets of its own node only (it has none): its
  // notices must still go out, to the admin sockets of the cluster.
  const c = await connectedOf(client(nodeB.url));
  const seen = (name, match) => a.of(name).some((e) => match(e.args));
  await eventually(() => seen("socket_connected", ([s]) => s.id === c.id), TIMEOUT, () => `socket_connected of a socket on B\n${logs()}`);
  const [serialized, date] = a.of("socket_connected").find((e) => e.args[0].id === c.id).args;
  assert.equal(serialized.clientId, c.io.engine.id.slice(0, 12));
  assert.match(date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(seen("room_joined", ([nsp, room, id]) => nsp === "/" && room === c.id && id === c.id), "room_joined of its own room");

  await ack(c, "join", "club");
  await eventually(() => seen("room_joined", ([, room, id]) => room === "club" && id === c.id), TIMEOUT, "room_joined");
  await ack(c, "leave", "club");
  await eventually(() => seen("room_left", ([, room, id]) => room === "club" && id === c.id), TIMEOUT, "room_left");
  await ack(c, "echo", "ping", 1);
  await eventually(() => seen("event_received", ([, id, args]) => id === c.id && args[0] === "echo"), TIMEOUT, "event_received");
  const echo = a.of("event_received").find((e) => e.args[1] === c.id && e.args[2][0] === "echo");
  assert.deepEqual(echo.args.slice(0, 3), ["/", c.id, ["echo", "ping", 1]]);

  // An emit from the admin: event_sent from B for its recipient.
  a.socket.emit("emit", "/", c.id, "news", 7);
  await eventually(() => c.got.some((g) => g.event === "news"), TIMEOUT, "the emit");
  await eventually(() => seen("event_sent", ([, id, args]) => id === c.id && args[0] === "news"), TIMEOUT, "event_sent");

  const id = c.id;
  c.close();
  await eventually(() => seen("socket_disconnected", ([, sid]) => sid === id), TIMEOUT, "socket_disconnected");
  assert.deepEqual(a.of("socket_disconnected").find((e) => e.args[1] === id).args.slice(0, 3), ["/", id, "client namespace disconnect"]);
});
