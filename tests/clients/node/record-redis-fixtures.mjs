#!/usr/bin/env node
// Records what Node's Redis cluster puts on Redis, byte for byte, for the
// hub's codec tests (issue 12): every message the pinned
// @socket.io/redis-adapter 8.3 (classic `createAdapter` and sharded
// `createShardedAdapter`) and @socket.io/redis-emitter 5.1 publish for a
// list of cases, each written as one file of payload bytes plus an index.
//
//   node tests/clients/node/record-redis-fixtures.mjs [--out DIR]
//
// DIR (default hub/src/redis/fixtures) gets `<case>.bin` per message
// (the exact PUBLISH/SPUBLISH payload) and `index.json`: one entry per
// message, `{file, case, description, channel, command, encoding,
// decoded}`, `command` "publish" or "spublish", `encoding` "json" or
// "msgpack" (the receiving adapter's rule: JSON when the first byte is
// `{`), `decoded` the payload as JSON with the adapter's own notepack.io
// decoding msgpack; a binary leaf (msgpack bin) is shown as
// `{"$bin": "<hex>"}`. Old .bin files in DIR are removed first.
//
// How: a redis-server of its own (redis-helpers.mjs), two socket.io 4.8
// servers (A and B) on it with the adapter, so that requests are answered,
// and socket.io-client v4 sockets in rooms on both. Each case runs one
// operation on A (or through the emitter) and waits until it took effect
// (the clients got the event, the promise resolved); the messages of the
// case are then the ones Redis carried between the previous case's marker
// and this case's (an ECHO on another connection: Redis runs commands one
// at a time, so everything published before it was sent before it). Their
// number must be the case's, or the script fails.
//
// Where the bytes come from: a MONITOR connection, which shows every
// command with its arguments (PUBLISH and SPUBLISH alike, which no
// subscription can: a sharded subscriber would also change the server
// count the adapter reads with PUBSUB SHARDNUMSUB). MONITOR quotes
// arguments (`\xHH` for bytes outside printable ASCII, `\"`, `\\`, `\n`,
// `\r`, `\t`, `\a`, `\b`); in the classic run, a PSUBSCRIBE `socket.io*`
// connection receives the same payloads raw and the script checks that
// both agree byte for byte.
//
// The ids in the payloads (adapter uids, request ids, socket ids) are
// random: running the script again rewrites every file.

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";

import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io as ioClient } from "socket.io-client";

import { REPO_ROOT, eventually, withTimeout } from "./helpers.mjs";
import { startRedis } from "./redis-helpers.mjs";

const require = createRequire(import.meta.url);
/** The adapter's own notepack.io (the version it encodes with). */
const notepack = createRequire(require.resolve("@socket.io/redis-adapter"))("notepack.io");

const argv = process.argv.slice(2);
let outDir = path.join(REPO_ROOT, "hub", "src", "redis", "fixtures");
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--out" && i + 1 < argv.length) outDir = path.resolve(argv[++i]);
  else {
    process.stderr.write("usage: record-redis-fixtures.mjs [--out DIR]\n");
    process.exit(2);
  }
}

const WAIT_MS = 5000;
const PREFIX = "socket.io";

// ------------------------------------------------------------------ MONITOR

/** Undoes redis' sdscatrepr quoting of one MONITOR argument. */
function unquote(text, start) {
  assert.equal(text[start], '"', `MONITOR argument at ${start} is not quoted: ${text}`);
  const bytes = [];
  let i = start + 1;
  for (;;) {
    const c = text[i];
    if (c === undefined) throw new Error(`unterminated MONITOR argument: ${text}`);
    if (c === '"') return { value: Buffer.from(bytes), next: i + 1 };
    if (c === "\\") {
      const e = text[i + 1];
      const simple = { n: 0x0a, r: 0x0d, t: 0x09, a: 0x07, b: 0x08, '"': 0x22, "\\": 0x5c };
      if (e in simple) {
        bytes.push(simple[e]);
        i += 2;
      } else if (e === "x") {
        bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
        i += 4;
      } else {
        throw new Error(`unknown MONITOR escape \\${e}: ${text}`);
      }
    } else {
      bytes.push(text.charCodeAt(i));
      i += 1;
    }
  }
}

/**
 * A MONITOR connection to `port`: `commands` fills with `{name, args}` (args
 * as Buffers) of every command Redis runs, in its order.
 */
async function monitor(port) {
  const socket = net.connect({ host: "127.0.0.1", port });
  const commands = [];
  let buffered = "";
  socket.setEncoding("latin1"); // MONITOR output is ASCII; keep bytes as they come
  await new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.write("MONITOR\r\n");
      resolve();
    });
  });
  await new Promise((resolve) => {
    socket.on("data", (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\r\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        if (line === "+OK") {
          resolve();
          continue;
        }
        const bracket = line.indexOf("] ");
        if (!line.startsWith("+") || bracket < 0) continue;
        const args = [];
        let i = bracket + 2;
        while (i < line.length) {
          const { value, next } = unquote(line, i);
          args.push(value);
          i = next + 1; // the space between arguments
        }
        commands.push({ name: args[0].toString().toLowerCase(), args: args.slice(1) });
      }
    });
  });
  return { commands, close: () => socket.destroy() };
}

// ------------------------------------------------------------------ cluster

/** A socket.io server on a free port with `adapterFor(pub, sub)` as its adapter. */
async function startNode(redisUrl, name, adapterFor) {
  const pub = createClient({ url: redisUrl, name: `${name}-pub` });
  const sub = pub.duplicate({ name: `${name}-sub` });
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: adapterFor(pub, sub), serveClient: false });
  const serverSockets = new Map(); // client-chosen tag -> server-side socket
  const seen = []; // server-side emits received
  for (const nsp of [io.of("/"), io.of("/chat")]) {
    nsp.on("connection", (socket) => {
      const { rooms = [], tag } = socket.handshake.auth;
      socket.join(rooms);
      serverSockets.set(tag, socket);
    });
  }
  io.on("note", (...args) => seen.push(["note", ...args]));
  io.on("question", (a, b, ack) => ack({ answer: `${a}:${b}`, from: name }));
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${httpServer.address().port}`;
  return {
    name,
    io,
    url,
    serverSockets,
    seen,
    uid: io.of("/").adapter.uid,
    async close() {
      io.close();
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

/** A client of `node` (namespace `nsp`) in `rooms`, recording what it receives. */
async function connectClient(node, tag, rooms, nsp = "/") {
  const socket = ioClient(node.url + nsp, { transports: ["websocket"], forceNew: true, auth: { tag, rooms } });
  const got = [];
  socket.onAny((event, ...args) => got.push({ event, args }));
  socket.on("ask", (data, ack) => ack({ tag, echo: data }));
  await withTimeout(new Promise((resolve) => socket.once("connect", resolve)), WAIT_MS, `${tag} connect`);
  await eventually(() => node.serverSockets.has(tag), WAIT_MS, `${tag} known to ${node.name}`);
  return { tag, socket, got, count: (event) => got.filter((g) => g.event === event).length };
}

// ------------------------------------------------------------------ recorder

/** `{"$bin": hex}` for binary leaves; everything else as JSON has it. */
function jsonView(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { $bin: Buffer.from(value).toString("hex") };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(jsonView);
  if (value === undefined) return { $undefined: true };
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonView(v)]));
  }
  return value;
}

function decodePayload(payload) {
  if (payload[0] === 0x7b) return { encoding: "json", decoded: JSON.parse(payload.toString("utf8")) };
  return { encoding: "msgpack", decoded: jsonView(notepack.decode(payload)) };
}

/**
 * Runs cases against one cluster: `mon` the MONITOR connection, `marker`
 * a client for the ECHO markers, `raw` (classic only) the PSUBSCRIBE copy.
 */
function recorder({ mon, marker, raw, command, records }) {
  let markerCount = 0;
  let from = 0; // index in mon.commands after the last marker
  let rawFrom = 0;
  return async function runCase({ messages, description, run }) {
    await run();
    markerCount += 1;
    const token = `fixture-marker-${markerCount}`;
    await marker.sendCommand(["ECHO", token]);
    await eventually(
      () => mon.commands.slice(from).some((c) => c.name === "echo" && c.args[0].toString() === token),
      WAIT_MS,
      `the MONITOR line of ${token}`,
    );
    const end = mon.commands.findIndex((c, i) => i >= from && c.name === "echo" && c.args[0].toString() === token);
    const published = mon.commands.slice(from, end).filter((c) => c.name === "publish" || c.name === "spublish");
    from = end + 1;
    const names = messages.map((m) => m.case).join(", ");
    assert.equal(
      published.length,
      messages.length,
      `case [${names}]: ${published.length} messages, want ${messages.length}: ` +
        JSON.stringify(published.map((p) => [p.name, p.args[0].toString()])),
    );
    let rawMessages = [];
    if (raw) {
      // Everything PSUBSCRIBE got before the marker (it arrives on another
      // connection, so wait for the count).
      await eventually(() => raw.length - rawFrom >= published.length, WAIT_MS, `raw copies of [${names}]`);
      rawMessages = raw.slice(rawFrom, rawFrom + published.length);
      rawFrom += published.length;
    }
    published.forEach((p, i) => {
      const [channel, payload] = p.args;
      assert.equal(p.name, command, `${messages[i].case}: sent with ${p.name}, want ${command}`);
      if (raw) {
        assert.equal(rawMessages[i].channel, channel.toString(), `${messages[i].case}: PSUBSCRIBE channel`);
        assert.ok(rawMessages[i].payload.equals(payload), `${messages[i].case}: MONITOR and PSUBSCRIBE bytes differ`);
      }
      if (messages[i].channel !== undefined) {
        assert.equal(channel.toString(), messages[i].channel, `${messages[i].case}: channel`);
      }
      records.push({
        file: `${messages[i].case}.bin`,
        case: messages[i].case,
        description: `${description}: ${messages[i].what}`,
        channel: channel.toString(),
        command: p.name,
        ...decodePayload(payload),
        payload,
      });
    });
  };
}

// -------------------------------------------------------------------- cases

/** The classic adapter and the emitter. */
async function recordClassic(records) {
  const redis = await startRedis();
  const nodes = [];
  const clients = [];
  const extra = [];
  try {
    const adapter = (pub, sub) => createAdapter(pub, sub, { key: PREFIX });
    const A = await startNode(redis.url, "A", adapter);
    const B = await startNode(redis.url, "B", adapter);
    nodes.push(A, B);
    const admin = createClient({ url: redis.url, name: "recorder-admin" });
    await admin.connect();
    extra.push(admin);
    for (const nsp of ["/", "/chat"]) {
      await eventually(
        async () => (await admin.sendCommand(["PUBSUB", "NUMSUB", `${PREFIX}-request#${nsp}#`]))[1] === 2,
        WAIT_MS,
        `both nodes subscribed for ${nsp}`,
      );
    }
    const raw = [];
    const rawSub = admin.duplicate({ name: "recorder-psubscribe" });
    await rawSub.connect();
    extra.push(rawSub);
    await rawSub.pSubscribe(
      `${PREFIX}*`,
      (payload, channel) => raw.push({ channel: channel.toString(), payload: Buffer.from(payload) }),
      true,
    );
    const mon = await monitor(redis.port);
    extra.push({ quit: async () => mon.close() });

    const a1 = await connectClient(A, "a1", ["room1", "room2"]);
    const a2 = await connectClient(A, "a2", ["room3"]);
    const b1 = await connectClient(B, "b1", ["room1"]);
    const b2 = await connectClient(B, "b2", ["room2", "room3"]);
    const bAck = await connectClient(B, "b-ack", ["acks"]);
    const bDoomed = await connectClient(B, "b-doomed", ["doomed"]);
    const bDoomed2 = await connectClient(B, "b-doomed-2", ["doomed-2"]);
    const bChat = await connectClient(B, "b-chat", ["lobby"], "/chat");
    const bUtf8 = await connectClient(B, "b-utf8", ["café ☃"]);
    clients.push(a1, a2, b1, b2, bAck, bDoomed, bDoomed2, bChat, bUtf8);
    const emitterClient = admin.duplicate({ name: "recorder-emitter" });
    await emitterClient.connect();
    extra.push(emitterClient);
    const emitter = new Emitter(emitterClient, { key: PREFIX });

    const runCase = recorder({ mon, marker: admin, raw, command: "publish", records });
    const arrived = (client, event, n = 1) =>
      eventually(() => client.count(event) >= n, WAIT_MS, `${client.tag} got ${event}`);
    const inRoom = (node, tag, room, want = true) =>
      eventually(
        () => node.serverSockets.get(tag).rooms.has(room) === want,
        WAIT_MS,
        `${tag} ${want ? "in" : "out of"} ${room}`,
      );
    const bcast = `${PREFIX}#/#`;
    const request = `${PREFIX}-request#/#`;
    const response = `${PREFIX}-response#/#`;

    // Broadcasts from the adapter (node A).
    await runCase({
      description: "io.emit(\"hello\", \"world\", 1) on node A: a broadcast to every socket",
      messages: [{ case: "classic-broadcast-all", channel: bcast, what: "the broadcast" }],
      run: async () => {
        A.io.emit("hello", "world", 1);
        await arrived(b1, "hello");
      },
    });
    await runCase({
      description: "io.to(\"room1\").emit(\"news\", {headline: \"hi\", n: 300}) on node A: one room, so the room's channel",
      messages: [{ case: "classic-broadcast-room", channel: `${bcast}room1#`, what: "the broadcast" }],
      run: async () => {
        A.io.to("room1").emit("news", { headline: "hi", n: 300 });
        await arrived(b1, "news");
      },
    });
    await runCase({
      description:
        "io.to([\"room1\", \"room2\"]).except(\"room3\").emit(\"multi\", [1, -1, 1.5, null]) on node A: two rooms, so the namespace's channel",
      messages: [{ case: "classic-broadcast-rooms-except", channel: bcast, what: "the broadcast" }],
      run: async () => {
        A.io.to(["room1", "room2"]).except("room3").emit("multi", [1, -1, 1.5, null]);
        await arrived(b1, "multi");
      },
    });
    await runCase({
      description:
        "socket.to(\"room1\").emit(\"relay\", {from: \"a1\"}) by a1's socket on node A (what the relay's publish does): the sender's id in except",
      messages: [{ case: "classic-broadcast-from-socket", channel: `${bcast}room1#`, what: "the broadcast" }],
      run: async () => {
        A.serverSockets.get("a1").to("room1").emit("relay", { from: "a1" });
        await arrived(b1, "relay");
      },
    });
    await runCase({
      description:
        "io.emit(\"bin\", {nested: [1, Buffer<00 01 02 ff>]}, \"text\", Buffer<>) on node A: Buffers as msgpack bin inside the packet's data",
      messages: [{ case: "classic-broadcast-binary", channel: bcast, what: "the broadcast" }],
      run: async () => {
        A.io.emit("bin", { nested: [1, Buffer.from([0, 1, 2, 255])] }, "text", Buffer.alloc(0));
        await arrived(b1, "bin");
      },
    });
    await runCase({
      description:
        "io.to(\"café ☃\").emit(\"types\", ...) on node A: a UTF-8 room name in the channel; integers at each msgpack " +
        "width's edges, floats, -0, a 40-byte string (str 8), UTF-8 text, an array of 17 (array 16), a map of 16 " +
        "(map 16), booleans, null, undefined (dropped as a map value, nil in an array), empty containers",
      messages: [{ case: "classic-broadcast-types", channel: `${bcast}café ☃#`, what: "the broadcast" }],
      run: async () => {
        const ints = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53];
        const negatives = [-1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53)];
        const wide = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
        A.io.to("café ☃").emit("types", {
          ints,
          negatives,
          floats: [1.5, -0.25, 0.1, -0],
          long: "x".repeat(40),
          text: "héllo ☃ 😀",
          seventeen: Array.from({ length: 17 }, (_, i) => i),
          wide,
          t: true,
          f: false,
          n: null,
          gone: undefined,
          holes: [undefined, 1],
          empty: [[], {}, ""],
        });
        await arrived(bUtf8, "types");
      },
    });
    await runCase({
      description: "io.volatile.emit(\"vol\", 2 ** 40) on node A: flags {volatile: true}",
      messages: [{ case: "classic-broadcast-volatile", channel: bcast, what: "the broadcast" }],
      run: async () => {
        A.io.volatile.emit("vol", 2 ** 40);
        await arrived(b1, "vol");
      },
    });
    await runCase({
      description: "io.compress(false).emit(\"cmp\", true) on node A: flags {compress: false}",
      messages: [{ case: "classic-broadcast-compress", channel: bcast, what: "the broadcast" }],
      run: async () => {
        A.io.compress(false).emit("cmp", true);
        await arrived(b1, "cmp");
      },
    });
    await runCase({
      description: "io.of(\"/chat\").to(\"lobby\").emit(\"chat\", \"hi\") on node A: the /chat namespace's room channel",
      messages: [{ case: "classic-broadcast-namespace", channel: `${PREFIX}#/chat#lobby#`, what: "the broadcast" }],
      run: async () => {
        A.io.of("/chat").to("lobby").emit("chat", "hi");
        await arrived(bChat, "chat");
      },
    });

    // The emitter.
    await runCase({
      description: "emitter.emit(\"hello\", \"from emitter\")",
      messages: [{ case: "emitter-emit", channel: bcast, what: "the broadcast (uid \"emitter\")" }],
      run: async () => {
        emitter.emit("hello", "from emitter");
        await arrived(b1, "hello", 2);
      },
    });
    await runCase({
      description: "emitter.to(\"room1\").emit(\"news\", {n: 1})",
      messages: [{ case: "emitter-to-room", channel: `${bcast}room1#`, what: "the broadcast" }],
      run: async () => {
        emitter.to("room1").emit("news", { n: 1 });
        await arrived(b1, "news", 2);
      },
    });
    await runCase({
      description: "emitter.except(\"room3\").emit(\"not3\", 1)",
      messages: [{ case: "emitter-except", channel: bcast, what: "the broadcast" }],
      run: async () => {
        emitter.except("room3").emit("not3", 1);
        await arrived(b1, "not3");
      },
    });
    await runCase({
      description: "emitter.emit(\"bin\", Buffer<de ad be ef>)",
      messages: [{ case: "emitter-binary", channel: bcast, what: "the broadcast" }],
      run: async () => {
        emitter.emit("bin", Buffer.from("deadbeef", "hex"));
        await arrived(b1, "bin", 2);
      },
    });
    await runCase({
      description: "emitter.volatile.compress(false).emit(\"flags\", null)",
      messages: [{ case: "emitter-flags", channel: bcast, what: "the broadcast" }],
      run: async () => {
        emitter.volatile.compress(false).emit("flags", null);
        await arrived(b1, "flags");
      },
    });
    await runCase({
      description: "emitter.of(\"/chat\").emit(\"chat\", \"from emitter\")",
      messages: [{ case: "emitter-namespace", channel: `${PREFIX}#/chat#`, what: "the broadcast" }],
      run: async () => {
        emitter.of("/chat").emit("chat", "from emitter");
        await arrived(bChat, "chat", 2);
      },
    });
    await runCase({
      description: "emitter.in(\"room1\").socketsJoin(\"joined-by-emitter\")",
      messages: [{ case: "emitter-sockets-join", channel: request, what: "the REMOTE_JOIN request (JSON, no uid)" }],
      run: async () => {
        emitter.in("room1").socketsJoin("joined-by-emitter");
        await inRoom(B, "b1", "joined-by-emitter");
      },
    });
    await runCase({
      description: "emitter.in(\"room1\").socketsLeave(\"joined-by-emitter\")",
      messages: [{ case: "emitter-sockets-leave", channel: request, what: "the REMOTE_LEAVE request" }],
      run: async () => {
        emitter.in("room1").socketsLeave("joined-by-emitter");
        await inRoom(B, "b1", "joined-by-emitter", false);
      },
    });
    await runCase({
      description: "emitter.in(\"doomed-2\").disconnectSockets(true)",
      messages: [{ case: "emitter-disconnect-sockets", channel: request, what: "the REMOTE_DISCONNECT request" }],
      run: async () => {
        emitter.in("doomed-2").disconnectSockets(true);
        await eventually(() => !bDoomed2.socket.connected, WAIT_MS, "b-doomed-2 disconnected");
      },
    });
    await runCase({
      description: "emitter.serverSideEmit(\"note\", \"from emitter\", 2)",
      messages: [{ case: "emitter-server-side-emit", channel: request, what: "the SERVER_SIDE_EMIT request" }],
      run: async () => {
        emitter.serverSideEmit("note", "from emitter", 2);
        await eventually(() => B.seen.length >= 1, WAIT_MS, "B got the server-side emit");
      },
    });

    // Requests from node A, answered by node B.
    await runCase({
      description: "io.in(\"room1\").fetchSockets() on node A",
      messages: [
        { case: "classic-fetch-sockets-request", channel: request, what: "the REMOTE_FETCH request" },
        { case: "classic-fetch-sockets-response", channel: response, what: "node B's answer" },
      ],
      run: async () => {
        const sockets = await A.io.in("room1").fetchSockets();
        assert.equal(sockets.length, 2);
      },
    });
    await runCase({
      description:
        "io.in(\"room1\").fetchSockets() on node A, node B with publishOnSpecificResponseChannel: the answer on A's own response channel",
      messages: [
        { case: "classic-fetch-sockets-specific-request", channel: request, what: "the REMOTE_FETCH request" },
        {
          case: "classic-fetch-sockets-specific-response",
          channel: `${response}${A.uid}#`,
          what: "node B's answer on A's channel",
        },
      ],
      run: async () => {
        const adapterB = B.io.of("/").adapter;
        adapterB.publishOnSpecificResponseChannel = true;
        try {
          assert.equal((await A.io.in("room1").fetchSockets()).length, 2);
        } finally {
          adapterB.publishOnSpecificResponseChannel = false;
        }
      },
    });
    await runCase({
      description: "io.of(\"/\").adapter.allRooms() on node A",
      messages: [
        { case: "classic-all-rooms-request", channel: request, what: "the ALL_ROOMS request" },
        { case: "classic-all-rooms-response", channel: response, what: "node B's answer" },
      ],
      run: async () => {
        const rooms = await A.io.of("/").adapter.allRooms();
        assert.ok(rooms.has("acks"));
      },
    });
    await runCase({
      description: "io.in(\"room1\").except(\"room2\").socketsJoin([\"joined\", \"also\"]) on node A",
      messages: [{ case: "classic-sockets-join", channel: request, what: "the REMOTE_JOIN request" }],
      run: async () => {
        A.io.in("room1").except("room2").socketsJoin(["joined", "also"]);
        await inRoom(B, "b1", "also");
      },
    });
    await runCase({
      description: "io.in(\"room1\").socketsLeave(\"joined\") on node A",
      messages: [{ case: "classic-sockets-leave", channel: request, what: "the REMOTE_LEAVE request" }],
      run: async () => {
        A.io.in("room1").socketsLeave("joined");
        await inRoom(B, "b1", "joined", false);
      },
    });
    await runCase({
      description: "io.in(\"doomed\").disconnectSockets(false) on node A",
      messages: [{ case: "classic-disconnect-sockets", channel: request, what: "the REMOTE_DISCONNECT request" }],
      run: async () => {
        A.io.in("doomed").disconnectSockets(false);
        await eventually(() => !bDoomed.socket.connected, WAIT_MS, "b-doomed disconnected");
      },
    });
    await runCase({
      description: "io.serverSideEmit(\"note\", {k: \"v\"}, [1, 2]) on node A: no ack",
      messages: [{ case: "classic-server-side-emit", channel: request, what: "the SERVER_SIDE_EMIT request" }],
      run: async () => {
        A.io.serverSideEmit("note", { k: "v" }, [1, 2]);
        await eventually(() => B.seen.length >= 2, WAIT_MS, "B got the server-side emit");
      },
    });
    await runCase({
      description: "io.serverSideEmitWithAck(\"question\", \"q\", 7) on node A: node B answers through its ack",
      messages: [
        { case: "classic-server-side-emit-ack-request", channel: request, what: "the SERVER_SIDE_EMIT request with a requestId" },
        { case: "classic-server-side-emit-ack-response", channel: response, what: "node B's answer" },
      ],
      run: async () => {
        const responses = await A.io.serverSideEmitWithAck("question", "q", 7);
        assert.deepEqual(responses, [{ answer: "q:7", from: "B" }]);
      },
    });
    await runCase({
      description:
        "io.to(\"acks\").timeout(3000).emit(\"ask\", {n: 1}, cb) on node A: node B's one socket in `acks` answers",
      messages: [
        { case: "classic-broadcast-ack-request", channel: request, what: "the BROADCAST request (msgpack)" },
        { case: "classic-broadcast-ack-client-count", channel: response, what: "node B's BROADCAST_CLIENT_COUNT" },
        { case: "classic-broadcast-ack-response", channel: response, what: "node B's BROADCAST_ACK (msgpack)" },
      ],
      run: async () => {
        const responses = await A.io.to("acks").timeout(3000).emitWithAck("ask", { n: 1 });
        assert.deepEqual(responses, [{ tag: "b-ack", echo: { n: 1 } }]);
      },
    });
    assert.equal(raw.length, records.filter((r) => r.command === "publish").length, "PSUBSCRIBE got exactly the recorded messages");
  } finally {
    for (const c of clients) c.socket.disconnect();
    for (const n of nodes) await n.close();
    await Promise.allSettled(extra.map((c) => c.quit()));
    await redis.stop();
  }
}

/** The sharded adapter (dynamic subscription mode). */
async function recordSharded(records) {
  const redis = await startRedis();
  const nodes = [];
  const clients = [];
  const extra = [];
  try {
    const adapter = (pub, sub) => createShardedAdapter(pub, sub, { channelPrefix: PREFIX, subscriptionMode: "dynamic" });
    const A = await startNode(redis.url, "A", adapter);
    const B = await startNode(redis.url, "B", adapter);
    nodes.push(A, B);
    const admin = createClient({ url: redis.url, name: "recorder-admin" });
    await admin.connect();
    extra.push(admin);
    await eventually(
      async () => (await admin.sendCommand(["PUBSUB", "SHARDNUMSUB", `${PREFIX}#/#`]))[1] === 2,
      WAIT_MS,
      "both nodes subscribed",
    );
    const mon = await monitor(redis.port);
    extra.push({ quit: async () => mon.close() });

    const a1 = await connectClient(A, "a1", ["room1"]);
    const b1 = await connectClient(B, "b1", ["room1"]);
    const b2 = await connectClient(B, "b2", ["room2"]);
    const bAck = await connectClient(B, "b-ack", ["acks"]);
    const bDoomed = await connectClient(B, "b-doomed", ["doomed"]);
    clients.push(a1, b1, b2, bAck, bDoomed);
    // Dynamic mode: each node subscribes to a room's channel when the room appears.
    await eventually(
      async () => (await admin.sendCommand(["PUBSUB", "SHARDNUMSUB", `${PREFIX}#/#room1#`]))[1] === 2,
      WAIT_MS,
      "both nodes subscribed to room1's channel",
    );

    const runCase = recorder({ mon, marker: admin, raw: undefined, command: "spublish", records });
    const arrived = (client, event, n = 1) =>
      eventually(() => client.count(event) >= n, WAIT_MS, `${client.tag} got ${event}`);
    const channel = `${PREFIX}#/#`;

    await runCase({
      description: "io.emit(\"hello\", \"world\", 1) on node A (sharded): no binary, so JSON",
      messages: [{ case: "sharded-broadcast-all", channel, what: "the BROADCAST message" }],
      run: async () => {
        A.io.emit("hello", "world", 1);
        await arrived(b1, "hello");
      },
    });
    await runCase({
      description: "io.to(\"room1\").emit(\"news\", {n: 300}) on node A (sharded, dynamic): the room's own channel",
      messages: [{ case: "sharded-broadcast-room", channel: `${channel}room1#`, what: "the BROADCAST message" }],
      run: async () => {
        A.io.to("room1").emit("news", { n: 300 });
        await arrived(b1, "news");
      },
    });
    await runCase({
      description: "socket.to(\"room1\").emit(\"relay\", {from: \"a1\"}) by a1's socket on node A (sharded)",
      messages: [{ case: "sharded-broadcast-from-socket", channel: `${channel}room1#`, what: "the BROADCAST message" }],
      run: async () => {
        A.serverSockets.get("a1").to("room1").emit("relay", { from: "a1" });
        await arrived(b1, "relay");
      },
    });
    await runCase({
      description: "io.to([\"room1\", \"room2\"]).except(\"acks\").emit(\"multi\", 1) on node A (sharded): the namespace's channel",
      messages: [{ case: "sharded-broadcast-rooms-except", channel, what: "the BROADCAST message" }],
      run: async () => {
        A.io.to(["room1", "room2"]).except("acks").emit("multi", 1);
        await arrived(b2, "multi");
      },
    });
    await runCase({
      description: "io.emit(\"bin\", {nested: [1, Buffer<00 01 02 ff>]}) on node A (sharded): binary, so msgpack",
      messages: [{ case: "sharded-broadcast-binary", channel, what: "the BROADCAST message" }],
      run: async () => {
        A.io.emit("bin", { nested: [1, Buffer.from([0, 1, 2, 255])] });
        await arrived(b1, "bin");
      },
    });
    await runCase({
      description: "io.in(\"room1\").fetchSockets() on node A (sharded)",
      messages: [
        { case: "sharded-fetch-sockets-request", channel, what: "the FETCH_SOCKETS message" },
        { case: "sharded-fetch-sockets-response", channel: `${channel}${A.uid}#`, what: "node B's FETCH_SOCKETS_RESPONSE on A's channel" },
      ],
      run: async () => {
        assert.equal((await A.io.in("room1").fetchSockets()).length, 2);
      },
    });
    await runCase({
      description: "io.in(\"room1\").socketsJoin(\"joined\") on node A (sharded)",
      messages: [{ case: "sharded-sockets-join", channel, what: "the SOCKETS_JOIN message" }],
      run: async () => {
        A.io.in("room1").socketsJoin("joined");
        await eventually(() => B.serverSockets.get("b1").rooms.has("joined"), WAIT_MS, "b1 joined");
      },
    });
    await runCase({
      description: "io.in(\"room1\").socketsLeave(\"joined\") on node A (sharded)",
      messages: [{ case: "sharded-sockets-leave", channel, what: "the SOCKETS_LEAVE message" }],
      run: async () => {
        A.io.in("room1").socketsLeave("joined");
        await eventually(() => !B.serverSockets.get("b1").rooms.has("joined"), WAIT_MS, "b1 left");
      },
    });
    await runCase({
      description: "io.in(\"doomed\").disconnectSockets(true) on node A (sharded)",
      messages: [{ case: "sharded-disconnect-sockets", channel, what: "the DISCONNECT_SOCKETS message" }],
      run: async () => {
        A.io.in("doomed").disconnectSockets(true);
        await eventually(() => !bDoomed.socket.connected, WAIT_MS, "b-doomed disconnected");
      },
    });
    await runCase({
      description: "io.serverSideEmit(\"note\", \"x\") on node A (sharded): no ack",
      messages: [{ case: "sharded-server-side-emit", channel, what: "the SERVER_SIDE_EMIT message" }],
      run: async () => {
        A.io.serverSideEmit("note", "x");
        await eventually(() => B.seen.length >= 1, WAIT_MS, "B got the server-side emit");
      },
    });
    await runCase({
      description: "io.serverSideEmitWithAck(\"question\", \"q\", 7) on node A (sharded)",
      messages: [
        { case: "sharded-server-side-emit-ack-request", channel, what: "the SERVER_SIDE_EMIT message with a requestId" },
        {
          case: "sharded-server-side-emit-ack-response",
          channel: `${channel}${A.uid}#`,
          what: "node B's SERVER_SIDE_EMIT_RESPONSE on A's channel",
        },
      ],
      run: async () => {
        assert.deepEqual(await A.io.serverSideEmitWithAck("question", "q", 7), [{ answer: "q:7", from: "B" }]);
      },
    });
    await runCase({
      description: "io.to(\"acks\").timeout(3000).emit(\"ask\", {n: 1}, cb) on node A (sharded): with an ack, never a room channel",
      messages: [
        { case: "sharded-broadcast-ack-request", channel, what: "the BROADCAST message with a requestId" },
        { case: "sharded-broadcast-ack-client-count", channel: `${channel}${A.uid}#`, what: "node B's BROADCAST_CLIENT_COUNT" },
        { case: "sharded-broadcast-ack-response", channel: `${channel}${A.uid}#`, what: "node B's BROADCAST_ACK" },
      ],
      run: async () => {
        const responses = await A.io.to("acks").timeout(3000).emitWithAck("ask", { n: 1 });
        assert.deepEqual(responses, [{ tag: "b-ack", echo: { n: 1 } }]);
      },
    });
  } finally {
    for (const c of clients) c.socket.disconnect();
    for (const n of nodes) await n.close();
    await Promise.allSettled(extra.map((c) => c.quit()));
    await redis.stop();
  }
}

// --------------------------------------------------------------------- main

const records = [];
await recordClassic(records);
await recordSharded(records);

fs.mkdirSync(outDir, { recursive: true });
for (const file of fs.readdirSync(outDir)) {
  if (file.endsWith(".bin")) fs.rmSync(path.join(outDir, file));
}
const seenNames = new Set();
for (const r of records) {
  assert.ok(!seenNames.has(r.file), `two messages named ${r.file}`);
  seenNames.add(r.file);
  fs.writeFileSync(path.join(outDir, r.file), r.payload);
}
const index = records.map(({ payload, ...entry }) => entry);
fs.writeFileSync(path.join(outDir, "index.json"), JSON.stringify(index, null, 2) + "\n");
process.stdout.write(`${records.length} messages written to ${path.relative(REPO_ROOT, outDir)}\n`);
process.exit(0);
