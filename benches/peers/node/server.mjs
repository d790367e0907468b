#!/usr/bin/env node
// Comparison peer for hub's benchmarks: the relay protocol
// (docs/relay-protocol.md: join / leave / publish / echo, open, no auth, no
// admin API) on the official npm `socket.io` 4.8 server with its default
// `ws` WebSocket engine. Stands alone: only `socket.io` from ./node_modules.
//
//   node server.mjs [--port P] [--bind IP] [--ping-interval MS] [--ping-timeout MS]
//
// --port 0 (the default) takes a free port; --bind defaults to 127.0.0.1.
// `--shards N` is accepted and ignored (one Node process). Prints
// `listening on <host>:<port>` on stdout once ready. SIGTERM / SIGINT: every
// socket gets a DISCONNECT (clients see `io server disconnect`), then the
// server closes and the process exits 0.
//
// Every namespace is served (a dynamic namespace matching every name); rooms
// are per namespace. Socket.IO v2 clients are served too (allowEIO3).
//
// A cluster (scripts/bench-cluster): with `--redis-url URL` the server joins
// the other servers on that Redis through the official
// @socket.io/redis-adapter 8.3 (classic mode: `createAdapter`, PUBLISH /
// PSUBSCRIBE) and the `redis` 4.x client, both pinned in package.json, so a
// publish reaches the room's sockets on every node. `--redis-prefix`
// (default `socket.io`) is the adapter's `key`. The ready line comes once
// Redis has confirmed the subscriptions of `/`; a Redis not reached within
// 10 s at start exits 1. Without `--redis-url` neither package is loaded
// and the server is the single-process peer that bench-compare measures.

import http from "node:http";
import { Server } from "socket.io";

const USAGE =
  "usage: server.mjs [--port P] [--bind IP] [--ping-interval MS] [--ping-timeout MS] [--shards N] " +
  "[--redis-url URL [--redis-prefix P]]";

// --------------------------------------------------------------- arguments

function parseArgs(argv) {
  const opts = {
    port: 0,
    bind: "127.0.0.1",
    pingInterval: 25000,
    pingTimeout: 20000,
    redisUrl: undefined,
    redisPrefix: "socket.io",
  };
  const strings = { "--bind": "bind", "--redis-url": "redisUrl", "--redis-prefix": "redisPrefix" };
  const numeric = {
    "--port": "port",
    "--ping-interval": "pingInterval",
    "--ping-timeout": "pingTimeout",
    "--shards": null, // accepted, ignored
  };
  const fail = (message) => {
    process.stderr.write(`${message}\n${USAGE}\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (!(arg in strings) && !(arg in numeric)) fail(`unknown argument: ${arg}`);
    if (i + 1 >= argv.length) fail(`${arg} needs a value`);
    const value = argv[++i];
    if (arg in strings) {
      if (value === "") fail(`${arg} must not be empty`);
      opts[strings[arg]] = value;
      continue;
    }
    const n = Number(value);
    if (value === "" || !Number.isInteger(n) || n < 0) fail(`${arg}: not a non-negative integer: ${value}`);
    if (arg === "--port" && n > 65535) fail(`--port: out of range: ${value}`);
    if (numeric[arg]) opts[numeric[arg]] = n;
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------ server

const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  allowEIO3: true, // Socket.IO v2 clients, as hub serves them
  serveClient: false,
});

// ---------------------------------------------------------------- protocol

const MAX_ROOM_BYTES = 256;
const MAX_ROOMS = 64;
// socket.io's own event names: emitting one throws, so they are refused.
const RESERVED_EVENTS = new Set([
  "connect",
  "connect_error",
  "disconnect",
  "disconnecting",
  "newListener",
  "removeListener",
]);
const OK = Object.freeze({ ok: true });
const BAD_REQUEST = Object.freeze({ ok: false, error: "bad request" });
const RESERVED = Object.freeze({ ok: false, error: "reserved event" });

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);

/** A room name or a list of 1..64 names, each 1..256 UTF-8 bytes: the list, or `undefined`. */
function roomList(value) {
  const names = typeof value === "string" ? [value] : value;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_ROOMS) return undefined;
  for (const name of names) {
    if (typeof name !== "string" || name === "" || Buffer.byteLength(name, "utf8") > MAX_ROOM_BYTES) return undefined;
  }
  return names;
}

/** Splits a handler's arguments into (arguments, ack or undefined). */
function split(all) {
  if (all.length > 0 && typeof all[all.length - 1] === "function") {
    return [all.slice(0, -1), all[all.length - 1]];
  }
  return [all, undefined];
}

const namespaces = new Set(); // every namespace that had a client, for the shutdown

function onConnection(socket) {
  namespaces.add(socket.nsp);
  socket.on("join", (...all) => {
    const [args, ack] = split(all);
    const names = roomList(args[0]);
    if (names !== undefined) socket.join(names);
    if (ack) ack(names !== undefined ? OK : BAD_REQUEST);
  });

  socket.on("leave", (...all) => {
    const [args, ack] = split(all);
    const names = roomList(args[0]);
    if (names !== undefined) for (const name of names) socket.leave(name);
    if (ack) ack(names !== undefined ? OK : BAD_REQUEST);
  });

  socket.on("publish", (...all) => {
    const [args, ack] = split(all);
    const spec = args[0];
    let answer = BAD_REQUEST;
    if (isObject(spec)) {
      const to = roomList(spec.to);
      const { event, volatile } = spec;
      const volatileOk = volatile === undefined || volatile === null || typeof volatile === "boolean";
      if (to !== undefined && typeof event === "string" && event !== "" && volatileOk) {
        if (RESERVED_EVENTS.has(event)) {
          answer = RESERVED;
        } else {
          // Every socket in those rooms once, the sender excluded.
          const op = volatile === true ? socket.to(to).volatile : socket.to(to);
          op.emit(event, spec.data === undefined ? null : spec.data);
          answer = OK;
        }
      }
    }
    if (ack) ack(answer);
  });

  socket.on("echo", (...all) => {
    const [args, ack] = split(all);
    if (ack) ack(...args);
  });
  // Anything else is ignored: no listener, no answer.
}

io.on("connection", onConnection); // `/`, which socket.io always has
io.of(/^\/.*/).on("connection", onConnection); // every other namespace, created on demand

// ----------------------------------------------------------------- cluster

/**
 * With `--redis-url`: loads the adapter and the client (only then), connects
 * a publishing and a subscribing client, gives every namespace the Redis
 * adapter and waits until Redis has confirmed the subscriptions of `/` (the
 * subscriber's counts in CLIENT LIST: the request, response and own response
 * channels, and the broadcast pattern). Returns the clients, to close them.
 */
async function joinCluster(url, prefix) {
  const [{ createAdapter }, { createClient }] = await Promise.all([
    import("@socket.io/redis-adapter"),
    import("redis"),
  ]);
  const subName = `peer-node-${process.pid}-sub`;
  const pub = createClient({ url, name: `peer-node-${process.pid}-pub` });
  const sub = pub.duplicate({ name: subName });
  for (const [client, role] of [
    [pub, "publisher"],
    [sub, "subscriber"],
  ]) {
    client.on("error", (err) => process.stderr.write(`peer-node: redis ${role}: ${err.message}\n`));
    client.on("reconnecting", () => process.stderr.write(`peer-node: redis ${role}: reconnecting\n`));
  }
  // The client retries a refused connection for ever: give up after 10 s.
  const deadline = Date.now() + 10_000;
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("redis not reached within 10 s")), 10_000);
  });
  await Promise.race([Promise.all([pub.connect(), sub.connect()]), late]).finally(() => clearTimeout(timer));
  io.adapter(createAdapter(pub, sub, { key: prefix }));
  for (;;) {
    const list = String(await pub.sendCommand(["CLIENT", "LIST"]));
    const line = list.split("\n").find((l) => l.includes(` name=${subName} `)) ?? "";
    const count = (field) => Number(new RegExp(` ${field}=(\\d+)`).exec(line)?.[1] ?? 0);
    if (count("sub") >= 3 && count("psub") >= 1) break;
    if (Date.now() > deadline) throw new Error(`redis did not confirm the subscriptions within 10 s: ${line}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  process.stderr.write(`peer-node: in a cluster on ${url} (classic, prefix "${prefix}")\n`);
  return [pub, sub];
}

let redisClients = [];
if (opts.redisUrl !== undefined) {
  try {
    redisClients = await joinCluster(opts.redisUrl, opts.redisPrefix);
  } catch (err) {
    process.stderr.write(`peer-node: cannot join the cluster on ${opts.redisUrl}: ${err.stack || err}\n`);
    process.exit(1);
  }
}

// ----------------------------------------------------------------- process

httpServer.on("error", (err) => {
  process.stderr.write(`peer-node: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(opts.port, opts.bind, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening on ${opts.bind}:${port}\n`);
});

let shuttingDown = false;
async function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  setTimeout(() => process.exit(0), 3000).unref();
  // A DISCONNECT to every socket of every namespace, a moment for the
  // packets to leave (polling clients fetch them with their next GET), then
  // close the server.
  for (const nsp of namespaces) nsp.disconnectSockets(false);
  const deadline = Date.now() + 1000;
  while (io.engine.clientsCount > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  io.close(async () => {
    await Promise.allSettled(redisClients.map((client) => client.quit()));
    process.exit(0);
  });
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
