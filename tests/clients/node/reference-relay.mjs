#!/usr/bin/env node
// Reference implementation of the hub relay protocol (docs/relay-protocol.md)
// on the official npm `socket.io` 4.8 server. The relay-*.test.mjs suites and
// ../python/test_relay_client.py were validated against it, so they assert
// reference behaviour; the `hub` binary must pass them too.
//
//   node reference-relay.mjs --port P [--bind H] [--shards N]
//        [--auth-secret S] [--namespace GLOB ...]
//        [--ping-interval MS] [--ping-timeout MS] [--connect-timeout MS]
//        [--max-payload BYTES] [--no-eio3] [--api-key K] [--admin-bind A]
//        [--redis-url URL [--redis-prefix P] [--redis-mode classic|sharded]
//         [--redis-subscription-mode static|dynamic]] [--cluster-test]
//
// Prints `listening on <host>:<port>` on stdout once ready. `--shards`,
// `--api-key` and `--admin-bind` are accepted and ignored (one Node process;
// no admin API here). SIGTERM: every socket gets a DISCONNECT (clients see
// `io server disconnect`), then the server closes and exits 0.
//
// A cluster (issue 12): with `--redis-url` the server joins the other
// servers on that Redis through the official @socket.io/redis-adapter 8.3
// and the `redis` 4.x client (both pinned in package.json), so a publish
// reaches the room's sockets on every node. `--redis-prefix` (default
// `socket.io`) is the adapter's `key` (classic) or `channelPrefix`
// (sharded); `--redis-mode classic` (default) is `createAdapter`,
// `sharded` is `createShardedAdapter` (SPUBLISH/SSUBSCRIBE, Redis 7) with
// `subscriptionMode` from `--redis-subscription-mode` (default `dynamic`).
// The ready line comes once Redis has confirmed the subscriptions of `/`
// (the subscriber connection's counts in CLIENT LIST); a Redis that cannot
// be reached means no ready line. Other namespaces subscribe when created,
// at their first connection. Redis errors are logged, the client reconnects.
//
// `--cluster-test` adds events to test a cluster's server-side operations
// from a client. Each acts on the namespace of the socket that emits it;
// `to` is a room name or an array of them (absent: every socket); every
// event is answered through its ack, `{ok: false, error}` when it throws:
// - `fetch_sockets` {to?}: `nsp.in(to).fetchSockets()` on every node,
//   answered `[{id, rooms}]` (rooms as an array);
// - `sockets_join` {to?, room} / `sockets_leave` {to?, room}:
//   `nsp.in(to).socketsJoin(room)` / `socketsLeave(room)` (`room` a name
//   or an array), answered `{ok: true}`;
// - `disconnect_sockets` {to?, close}: `nsp.in(to).disconnectSockets(close)`,
//   answered `{ok: true}` (when `to` holds the asking socket it goes too);
// - `server_side_emit` {event, args, ack}: `nsp.serverSideEmit(event,
//   ...args)`; answered `{ok: true}` without `ack`; with `ack: true`, the
//   other nodes' answers from `nsp.serverSideEmitWithAck(event, ...args)`
//   (the adapter's request timeout, 5 s): `{ok: true, responses}`, or
//   `{ok: false, error, responses}` when it timed out;
// - `broadcast_with_ack` {to?, event, data, timeout}: `nsp.to(to)
//   .timeout(timeout).emit(event, data, cb)` (clients answer with their
//   ack), answered `{ok: true, responses}` or `{ok: false, error, responses}`;
// - `all_rooms`: `[...await nsp.adapter.allRooms()]`, socket id rooms
//   included (the classic adapter's request; the sharded adapter has no
//   `allRooms`, so there it is answered `{ok: false, error}`);
// - `server_side_seen`: the server-side emits this node received in the
//   namespace (from other nodes or the emitter), in order: `[{event, args}]`.
//   A server-side emit with an ack is answered `{node, event, args}`,
//   `node` being this server's `<host>:<port>` (its ready line).
// Without `--cluster-test` these events are ignored like any other.
//
// Readings of the spec made here (the suites pin them):
// - a room list (`join`, `leave`, publish `to`) is a non-empty string or a
//   non-empty array of 1..64 non-empty strings of at most 256 UTF-8 bytes;
//   anything else is `bad request` (so `join []` and `to: []` are refused);
// - `publish`: the first argument must be an object with `to` (as above)
//   and `event` (a non-empty string); `volatile`, when present and not null,
//   must be a boolean; no `data` is relayed as `null`; reserved events are
//   socket.io's own: connect, connect_error, disconnect, disconnecting,
//   newListener, removeListener. Shape is checked before the reserved name,
//   then the token's patterns (`forbidden`);
// - the token: `auth.token` (v3/v4 clients; for v2 clients socket.io turns
//   the namespace's CONNECT query into `auth`), else the Engine.IO handshake
//   query's `token` (what a v2 client on `/` sends: it has no CONNECT
//   packet). HS256 only, `typ` if present must be "JWT", no `crit`, `exp` a
//   number with now < exp; `sub` a string, `rooms`/`publish` arrays of
//   strings when present. Any failure: `unauthorized`, with no data (v2
//   clients get the bare string "unauthorized" as their `error` event);
// - namespaces outside the patterns: `Invalid namespace`. socket.io always
//   has `/`, so when `/` is not served it is refused by a middleware that
//   mimics an unknown namespace: v3/v4 `{"message":"Invalid namespace"}`,
//   v2 the object `{"message":"Invalid namespace"}` as well;
// - token expiry: at `exp` (floored to whole seconds) a socket gets
//   `auth_error` {"error":"token expired"} and is disconnected from its
//   namespace (the client sees `io server disconnect`); a `join`,
//   `publish` or `refresh` arriving after `exp` is answered
//   {"ok":false,"error":"token expired"} and ends the session the same way;
// - `refresh` {"token"}: after the expiry check, `bad request` unless an object with a string
//   `token`; on an open hub `{"ok":true}`; a token that does not verify:
//   `unauthorized`, nothing changes; another `sub` (or a `sub` on one side
//   only): `user mismatch`, then `auth_error` and the disconnect; else the
//   new claims replace the old, the rooms they do not allow are left (not
//   the socket's own id nor `user:<sub>`) and the expiry moves to the new
//   `exp`.

import crypto from "node:crypto";
import http from "node:http";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

import { parseServerArgs } from "./reference-cli.mjs";

const USAGE =
  "usage: reference-relay.mjs --port P [--bind H] [--shards N] [--auth-secret S] [--namespace GLOB]... " +
  "[--ping-interval MS] [--ping-timeout MS] [--connect-timeout MS] [--max-payload BYTES] [--no-eio3] " +
  "[--api-key K] [--admin-bind ADDR] [--redis-url URL [--redis-prefix P] [--redis-mode classic|sharded] " +
  "[--redis-subscription-mode static|dynamic]] [--cluster-test]";

// --------------------------------------------------------------- arguments
// The string options are taken out here; the rest goes to parseServerArgs.
let authSecret;
const namespacePatterns = [];
const redis = { url: undefined, prefix: "socket.io", mode: "classic", subscriptionMode: "dynamic" };
let clusterTest = false;
// Connection-state recovery (issue 13): `--recovery-window MS` (0 = off) is
// socket.io's connectionStateRecovery.maxDisconnectionDuration;
// `--recovery-buffer-bytes` is accepted and ignored (socket.io's in-memory
// adapter keeps every packet of the window, with no byte budget).
let recoveryWindow = 0;
const rest = [];
{
  const argv = process.argv.slice(2);
  const value = (i, flag) => {
    if (i + 1 >= argv.length) {
      process.stderr.write(`${flag} needs a value\n${USAGE}\n`);
      process.exit(2);
    }
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--bind") {
      rest.push("--host", value(i, arg));
      i++;
    } else if (arg === "--auth-secret") {
      authSecret = value(i, arg);
      i++;
    } else if (arg === "--namespace") {
      namespacePatterns.push(value(i, arg));
      i++;
    } else if (arg === "--api-key" || arg === "--admin-bind") {
      value(i, arg);
      i++;
    } else if (arg === "--redis-url") {
      redis.url = value(i, arg);
      i++;
    } else if (arg === "--redis-prefix") {
      redis.prefix = value(i, arg);
      i++;
    } else if (arg === "--redis-mode") {
      redis.mode = value(i, arg);
      i++;
    } else if (arg === "--redis-subscription-mode") {
      redis.subscriptionMode = value(i, arg);
      i++;
    } else if (arg === "--recovery-window") {
      recoveryWindow = Number(value(i, arg));
      i++;
    } else if (arg === "--recovery-buffer-bytes") {
      value(i, arg);
      i++;
    } else if (arg === "--cluster-test") {
      clusterTest = true;
    } else {
      rest.push(arg);
    }
  }
}
const opts = parseServerArgs(
  rest,
  {
    "--ping-interval": ["pingInterval", 25000],
    "--ping-timeout": ["pingTimeout", 20000],
    "--connect-timeout": ["connectTimeout", 45000],
    "--max-payload": ["maxPayload", 1000000],
  },
  USAGE,
);
if (authSecret === "") {
  process.stderr.write(`--auth-secret must not be empty\n${USAGE}\n`);
  process.exit(2);
}
const patterns = namespacePatterns.length > 0 ? namespacePatterns : ["*"];
for (const [flag, v, allowed] of [
  ["--redis-mode", redis.mode, ["classic", "sharded"]],
  ["--redis-subscription-mode", redis.subscriptionMode, ["static", "dynamic"]],
]) {
  if (!allowed.includes(v)) {
    process.stderr.write(`${flag} must be one of ${allowed.join(", ")}\n${USAGE}\n`);
    process.exit(2);
  }
}
if (redis.prefix === "") {
  process.stderr.write(`--redis-prefix must not be empty\n${USAGE}\n`);
  process.exit(2);
}

// ------------------------------------------------------------------- globs

/** `*`: any run of characters (`/` included), `?`: one character (code point). */
export function globMatch(pattern, text) {
  const p = Array.from(pattern);
  const t = Array.from(text);
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    if (pi < p.length && p[pi] === "*") {
      starP = ++pi;
      starT = ti;
    } else if (pi < p.length && (p[pi] === "?" || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (starP >= 0) {
      pi = starP;
      ti = ++starT;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === "*") pi++;
  return pi === p.length;
}

const served = (name) => patterns.some((pattern) => globMatch(pattern, name));

// -------------------------------------------------------------------- JWT

const B64URL = /^[A-Za-z0-9_-]*$/;
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isStringArray = (v) => Array.isArray(v) && v.every((x) => typeof x === "string");

function decodeJson(segment) {
  if (!B64URL.test(segment) || segment.length % 4 === 1) return undefined;
  try {
    return JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
}

/** The claims of a valid HS256 token, or `undefined`. */
function verifyToken(token, secret, nowSeconds) {
  if (typeof token !== "string") return undefined;
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts;
  const header = decodeJson(h);
  if (!isObject(header) || header.alg !== "HS256") return undefined;
  if (header.typ !== undefined && (typeof header.typ !== "string" || header.typ.toUpperCase() !== "JWT")) {
    return undefined;
  }
  if ("crit" in header) return undefined;
  if (!B64URL.test(s) || s.length % 4 === 1) return undefined;
  const signature = Buffer.from(s, "base64url");
  const expected = crypto.createHmac("sha256", secret).update(`${h}.${p}`).digest();
  if (signature.length !== expected.length || !crypto.timingSafeEqual(signature, expected)) return undefined;
  const claims = decodeJson(p);
  if (!isObject(claims)) return undefined;
  if (typeof claims.exp !== "number" || !Number.isFinite(claims.exp) || claims.exp < 0) return undefined;
  if (nowSeconds >= claims.exp) return undefined;
  if (claims.sub !== undefined && typeof claims.sub !== "string") return undefined;
  for (const key of ["rooms", "publish"]) {
    if (claims[key] !== undefined && !isStringArray(claims[key])) return undefined;
  }
  return claims;
}

// ----------------------------------------------------------------- server

const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  allowEIO3: opts.eio3,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  connectTimeout: opts.connectTimeout,
  maxHttpBufferSize: opts.maxPayload,
  cors: { origin: true, credentials: true },
  serveClient: false,
  httpCompression: false,
  perMessageDeflate: false,
  ...(recoveryWindow > 0
    ? { connectionStateRecovery: { maxDisconnectionDuration: recoveryWindow, skipMiddlewares: true } }
    : {}),
});

const MAX_ROOM_BYTES = 256;
const MAX_ROOMS = 64;
const RESERVED_EVENTS = new Set([
  "connect",
  "connect_error",
  "disconnect",
  "disconnecting",
  "newListener",
  "removeListener",
]);

class Refusal extends Error {
  /** `end`: the session ends after the answer (auth_error + disconnect). */
  constructor(message, { end = false } = {}) {
    super(message);
    this.end = end;
  }
}
const BAD_REQUEST = "bad request";
const FORBIDDEN = "forbidden";
const RESERVED = "reserved event";
const UNAUTHORIZED = "unauthorized";
const TOKEN_EXPIRED = "token expired";
const USER_MISMATCH = "user mismatch";

/** A room name or a non-empty list of at most 64 names, each 1..256 bytes. */
function roomList(value) {
  const names = typeof value === "string" ? [value] : value;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_ROOMS) throw new Refusal(BAD_REQUEST);
  for (const name of names) {
    if (typeof name !== "string" || name === "" || Buffer.byteLength(name, "utf8") > MAX_ROOM_BYTES) {
      throw new Refusal(BAD_REQUEST);
    }
  }
  return names;
}

function authenticate(socket, next) {
  socket.data.claims = undefined;
  if (authSecret === undefined) return next();
  const auth = isObject(socket.handshake.auth) ? socket.handshake.auth : {};
  const query = socket.handshake.query || {};
  const token = typeof auth.token === "string" ? auth.token : typeof query.token === "string" ? query.token : undefined;
  const claims = verifyToken(token, authSecret, Math.floor(Date.now() / 1000));
  if (claims === undefined) return next(new Error("unauthorized"));
  socket.data.claims = claims;
  next();
}

function mayJoin(socket, room) {
  const claims = socket.data.claims;
  return claims === undefined || (claims.rooms ?? []).some((pattern) => globMatch(pattern, room));
}

function mayPublish(socket, room) {
  const claims = socket.data.claims;
  return claims === undefined || (claims.publish ?? []).some((pattern) => globMatch(pattern, room));
}

// ------------------------------------------------------------ token expiry

/** When the socket's token expires, in ms since the epoch (exp floored). */
const expiresAt = (claims) => Math.floor(claims.exp) * 1000;
const expired = (socket) => socket.data.claims !== undefined && Date.now() >= expiresAt(socket.data.claims);
/** setTimeout holds at most 2^31 - 1 ms: longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Tells the client why, then disconnects the socket from its namespace. */
function endSession(socket, reason) {
  if (!socket.connected) return;
  process.stderr.write(
    `reference-relay: disconnecting a socket whose token no longer holds socket=${socket.id} nsp=${socket.nsp.name} reason="${reason}"\n`,
  );
  socket.emit("auth_error", { error: reason });
  socket.disconnect();
}

/** (Re)arms the socket's expiry timer for its current claims. */
function armExpiry(socket) {
  clearTimeout(socket.data.expiryTimer);
  const claims = socket.data.claims;
  if (claims === undefined) return;
  const wait = expiresAt(claims) - Date.now();
  socket.data.expiryTimer = setTimeout(
    () => (expired(socket) ? endSession(socket, TOKEN_EXPIRED) : armExpiry(socket)),
    Math.max(0, Math.min(wait, MAX_TIMER_MS)),
  );
}

/** Registers a relay request: `fn(socket, args)` runs; the ack gets `{ok}`. */
function request(socket, event, fn) {
  socket.on(event, (...all) => {
    const ack = all.length > 0 && typeof all[all.length - 1] === "function" ? all.pop() : undefined;
    let answer = { ok: true };
    let end;
    try {
      fn(all);
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      answer = { ok: false, error: err.message };
      if (err.end) end = err.message;
    }
    if (ack) ack(answer);
    if (end !== undefined) endSession(socket, end);
  });
}

function refuseIfExpired(socket) {
  if (expired(socket)) throw new Refusal(TOKEN_EXPIRED, { end: true });
}

/** `refresh` {"token"}: the new token's claims replace the socket's. */
function refresh(socket, spec) {
  refuseIfExpired(socket);
  if (!isObject(spec) || typeof spec.token !== "string") throw new Refusal(BAD_REQUEST);
  const current = socket.data.claims;
  if (current === undefined) return; // an open hub: nothing to refresh
  const claims = verifyToken(spec.token, authSecret, Math.floor(Date.now() / 1000));
  if (claims === undefined) throw new Refusal(UNAUTHORIZED);
  if (claims.sub !== current.sub) throw new Refusal(USER_MISMATCH, { end: true });
  socket.data.claims = claims;
  const userRoom = claims.sub === undefined ? undefined : `user:${claims.sub}`;
  for (const room of [...socket.rooms]) {
    if (room !== socket.id && room !== userRoom && !mayJoin(socket, room)) socket.leave(room);
  }
  armExpiry(socket);
}

function onConnection(socket) {
  const claims = socket.data.claims;
  if (claims !== undefined && claims.sub !== undefined) socket.join(`user:${claims.sub}`);
  armExpiry(socket);
  socket.on("disconnect", (reason) => {
    clearTimeout(socket.data.expiryTimer);
    // Said so that a test can wait until the server has seen a transport
    // go (recovery.test.mjs: a client back before that gets a fresh
    // session; the hub says it through its metrics).
    process.stderr.write(`reference-relay: socket gone socket=${socket.id} reason="${reason}"\n`);
  });

  request(socket, "join", ([rooms]) => {
    refuseIfExpired(socket);
    const names = roomList(rooms);
    if (!names.every((room) => mayJoin(socket, room))) throw new Refusal(FORBIDDEN);
    socket.join(names);
  });
  request(socket, "leave", ([rooms]) => {
    for (const room of roomList(rooms)) socket.leave(room);
  });
  request(socket, "publish", ([spec]) => {
    refuseIfExpired(socket);
    if (!isObject(spec)) throw new Refusal(BAD_REQUEST);
    const to = roomList(spec.to);
    if (typeof spec.event !== "string" || spec.event === "") throw new Refusal(BAD_REQUEST);
    if (spec.volatile !== undefined && spec.volatile !== null && typeof spec.volatile !== "boolean") {
      throw new Refusal(BAD_REQUEST);
    }
    if (RESERVED_EVENTS.has(spec.event)) throw new Refusal(RESERVED);
    if (!to.every((room) => mayPublish(socket, room))) throw new Refusal(FORBIDDEN);
    let op = socket.to(to); // every socket in those rooms once, the sender excluded
    if (spec.volatile === true) op = op.volatile;
    op.emit(spec.event, spec.data === undefined ? null : spec.data);
  });
  request(socket, "refresh", ([spec]) => refresh(socket, spec));
  socket.on("echo", (...all) => {
    if (all.length > 0 && typeof all[all.length - 1] === "function") {
      const ack = all.pop();
      ack(...all);
    }
  });
  // `session`: who the socket is, as the server sees it (recovery tests).
  socket.on("session", (...all) => {
    if (all.length > 0 && typeof all[all.length - 1] === "function") {
      all.pop()({ id: socket.id, recovered: socket.recovered, rooms: [...socket.rooms] });
    }
  });
  if (clusterTest) clusterTestEvents(socket);
}

// ----------------------------------------------------------- cluster tests

/** This server as the acks of server-side emits name it: `<host>:<port>`. */
let nodeName;
/** Per namespace name, the server-side emits received: `[{event, args}]`. */
const serverSideSeen = new Map();

/**
 * Records the server-side emits `nsp` receives (other nodes' and the
 * emitter's), answering those that want an ack with `{node, event, args}`.
 * socket.io hands them to `nsp._onServerSideEmit(args)`, which emits them
 * on the namespace; the relay has no listeners of its own there, so taking
 * that method's place loses nothing and sees every event name.
 */
function recordServerSideEmits(nsp) {
  if (!clusterTest || serverSideSeen.has(nsp.name)) return;
  const seen = [];
  serverSideSeen.set(nsp.name, seen);
  nsp._onServerSideEmit = (packet) => {
    const all = [...packet];
    const ack = typeof all.at(-1) === "function" ? all.pop() : undefined;
    const [event, ...args] = all;
    seen.push({ event, args });
    if (ack) ack({ node: nodeName, event, args });
  };
}

/** The `--cluster-test` events (see the header), on `socket`'s namespace. */
function clusterTestEvents(socket) {
  const nsp = socket.nsp;
  recordServerSideEmits(nsp);
  const target = (to) => (to === undefined || to === null ? nsp : nsp.in(to));
  const answer = (event, fn) =>
    socket.on(event, async (...all) => {
      const ack = typeof all.at(-1) === "function" ? all.pop() : () => {};
      const spec = isObject(all[0]) ? all[0] : {};
      try {
        ack(await fn(spec));
      } catch (err) {
        ack({ ok: false, error: String(err?.message ?? err) });
      }
    });

  answer("fetch_sockets", async ({ to }) =>
    (await target(to).fetchSockets()).map((s) => ({ id: s.id, rooms: [...s.rooms] })),
  );
  answer("sockets_join", ({ to, room }) => {
    target(to).socketsJoin(room);
    return { ok: true };
  });
  answer("sockets_leave", ({ to, room }) => {
    target(to).socketsLeave(room);
    return { ok: true };
  });
  answer("disconnect_sockets", ({ to, close }) => {
    target(to).disconnectSockets(close === true);
    return { ok: true };
  });
  answer("server_side_emit", async ({ event, args, ack }) => {
    const list = Array.isArray(args) ? args : [];
    if (ack !== true) {
      nsp.serverSideEmit(event, ...list);
      return { ok: true };
    }
    try {
      return { ok: true, responses: await nsp.serverSideEmitWithAck(event, ...list) };
    } catch (err) {
      return { ok: false, error: String(err?.message ?? err), responses: err?.responses ?? [] };
    }
  });
  answer(
    "broadcast_with_ack",
    ({ to, event, data, timeout }) =>
      new Promise((resolve) => {
        target(to)
          .timeout(Number.isInteger(timeout) ? timeout : 3000)
          .emit(event, data, (err, responses) =>
            resolve(err ? { ok: false, error: String(err.message), responses } : { ok: true, responses }),
          );
      }),
  );
  answer("all_rooms", async () => [...(await nsp.adapter.allRooms())]);
  answer("server_side_seen", () => serverSideSeen.get(nsp.name) ?? []);
}

// Namespaces: `/` always exists in socket.io; every other name is created
// on demand when it matches a pattern.
const root = io.of("/");
if (served("/")) {
  root.use(authenticate);
  root.on("connection", onConnection);
} else {
  root.use((socket, next) => {
    const err = new Error("Invalid namespace");
    // What socket.io sends for an unknown namespace, to every generation.
    if (socket.conn.protocol === 3) err.data = { message: "Invalid namespace" };
    next(err);
  });
}
const dynamic = io.of((name, _auth, next) => next(null, name !== "/" && served(name)));
dynamic.use(authenticate);
dynamic.on("connection", onConnection);
recordServerSideEmits(root);
io.on("new_namespace", recordServerSideEmits);

// ---------------------------------------------------------------- cluster

/**
 * With `--redis-url`: connects the publishing and subscribing clients,
 * gives every namespace the Redis adapter and waits until Redis has
 * confirmed the subscriptions of `/`. Returns the clients (to close them).
 */
async function joinCluster() {
  const subName = `reference-relay-${process.pid}-sub`;
  const pub = createClient({ url: redis.url, name: `reference-relay-${process.pid}-pub` });
  const sub = pub.duplicate({ name: subName });
  for (const [client, role] of [
    [pub, "publisher"],
    [sub, "subscriber"],
  ]) {
    client.on("error", (err) => process.stderr.write(`reference-relay: redis ${role}: ${err.message}\n`));
    client.on("reconnecting", () => process.stderr.write(`reference-relay: redis ${role}: reconnecting\n`));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  let wanted;
  if (redis.mode === "classic") {
    io.adapter(createAdapter(pub, sub, { key: redis.prefix }));
    // The request, response and own response channels; the broadcast pattern.
    wanted = { sub: 3, psub: 1 };
  } else {
    io.adapter(createShardedAdapter(pub, sub, { channelPrefix: redis.prefix, subscriptionMode: redis.subscriptionMode }));
    // The namespace's channel and this node's response channel.
    wanted = { ssub: 2 };
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    const list = String(await pub.sendCommand(["CLIENT", "LIST"]));
    const line = list.split("\n").find((l) => l.includes(` name=${subName} `)) ?? "";
    const count = (field) => Number(new RegExp(` ${field}=(\\d+)`).exec(line)?.[1] ?? 0);
    if (Object.entries(wanted).every(([field, n]) => count(field) >= n)) break;
    if (Date.now() > deadline) throw new Error(`redis did not confirm the subscriptions within 10 s: ${line}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  process.stderr.write(
    `reference-relay: in a cluster on ${redis.url} (${redis.mode}${redis.mode === "sharded" ? `, ${redis.subscriptionMode}` : ""}, prefix "${redis.prefix}")\n`,
  );
  return [pub, sub];
}

// ---------------------------------------------------------------- process
httpServer.on("error", (err) => {
  process.stderr.write(`reference-relay: ${err.stack || err}\n`);
  process.exit(1);
});

let redisClients = [];
if (redis.url !== undefined) {
  try {
    redisClients = await joinCluster();
  } catch (err) {
    process.stderr.write(`reference-relay: cannot join the cluster on ${redis.url}: ${err.stack || err}\n`);
    process.exit(1);
  }
}

httpServer.listen(opts.port, opts.host, () => {
  const { port } = httpServer.address();
  nodeName = `${opts.host}:${port}`;
  if (authSecret === undefined) {
    process.stderr.write("reference-relay: warning: no --auth-secret: anyone may connect, join and publish\n");
  }
  process.stdout.write(`listening on ${opts.host}:${port}\n`);
});

let shuttingDown = false;
async function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  setTimeout(() => process.exit(0), 3000).unref();
  // A DISCONNECT to every socket (clients see "io server disconnect" and
  // close their connection), then give the packets a moment to leave
  // (polling clients fetch them with their next GET) before closing.
  for (const nsp of io._nsps.values()) nsp.disconnectSockets(false);
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
