// Helpers for the Socket.IO suites (sio-*.test.mjs): starting the testbed
// server (tests/clients/TESTBED.md), connecting socket.io-client v4 and v2
// clients that record every event they receive, the /monitor feed, and raw
// Engine.IO clients for the cases no real client produces.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

import { io as ioV4 } from "socket.io-client";
import WebSocket from "ws";

import { MODES, REPO_ROOT, commandFromEnv, describeError, sleep, startCommand, withTimeout } from "./helpers.mjs";

export { MODES, sleep, withTimeout };

const require = createRequire(import.meta.url);
/** socket.io-client 2.x (npm alias `socket.io-client-v2`), a CommonJS module. */
export const ioV2 = require("socket.io-client-v2");

export const DEFAULT_TESTBED = path.join(REPO_ROOT, "target", "debug", "examples", "sio_testbed");
export const SIO_PATH = "/socket.io/";
export const CONNECT_TIMEOUT_MS = 10_000;

/** Client generations: socket.io-client 4.x (EIO=4) and 2.x (EIO=3). */
export const VERSIONS = [4, 2];
/** Every (version, mode) pair. */
export const MATRIX = VERSIONS.flatMap((version) => Object.keys(MODES).map((mode) => ({ version, mode })));

/**
 * True when the suites run against the reference testbed (npm socket.io),
 * for the few places where hub follows the Socket.IO v2 server docs instead.
 */
export function againstReference() {
  return (process.env.HUB_TESTBED_CMD ?? "").includes("reference-testbed");
}

/** The Socket.IO testbed: `HUB_TESTBED_CMD` or the built `sio_testbed` example. */
export function testbedCommand() {
  return commandFromEnv(
    "HUB_TESTBED_CMD",
    DEFAULT_TESTBED,
    "build it with `cargo build -p hub --example sio_testbed`, or set HUB_TESTBED_CMD " +
      '(e.g. HUB_TESTBED_CMD="node tests/clients/node/reference-testbed.mjs")',
  );
}

/** Starts the testbed with `--port 0 --shards N` plus `extraArgs`. */
export function startTestbed(extraArgs = [], { shards = 2 } = {}) {
  return startCommand(testbedCommand(), extraArgs, { shards });
}

/** A unique dynamic namespace (`/dyn-...`), to isolate a test's broadcasts. */
let dynCounter = 0;
export function dynNamespace(tag = "t") {
  dynCounter += 1;
  return `/dyn-${tag.toLowerCase().replace(/[^a-z0-9]/g, "")}${process.pid}x${dynCounter}`;
}

/** A unique room name. */
let roomCounter = 0;
export function uniqueRoom(tag = "room") {
  roomCounter += 1;
  return `${tag}-${roomCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

// ------------------------------------------------------------------- inbox

/**
 * Records received events: `seq` is the arrival order of every event,
 * `next(event)` consumes the events of one name in order, `list(event)` and
 * `count(event)` look without consuming, `waitCount(event, n)` waits until
 * at least `n` arrived.
 */
export function createInbox() {
  const byEvent = new Map();
  const cursors = new Map();
  const seq = [];
  const listeners = new Set();
  const list = (event) => byEvent.get(event) ?? [];

  function push(event, args) {
    if (!byEvent.has(event)) byEvent.set(event, []);
    byEvent.get(event).push(args);
    seq.push(event);
    for (const listener of [...listeners]) listener();
  }

  /** Resolves once `pred()` holds (checked on every new event). */
  function waitUntil(pred, timeoutMs, what) {
    if (pred()) return Promise.resolve();
    let listener;
    const p = new Promise((resolve) => {
      listener = () => {
        if (pred()) resolve();
      };
      listeners.add(listener);
    });
    return withTimeout(p, timeoutMs, what).finally(() => listeners.delete(listener));
  }

  return {
    push,
    seq,
    list,
    count: (event) => list(event).length,
    waitUntil,
    async next(event, timeoutMs = 5000) {
      const i = cursors.get(event) ?? 0;
      await waitUntil(() => list(event).length > i, timeoutMs, `event "${event}" #${i + 1}`);
      cursors.set(event, i + 1);
      return list(event)[i];
    },
    waitCount(event, n, timeoutMs = 5000) {
      return waitUntil(
        () => list(event).length >= n,
        timeoutMs,
        `${n} "${event}" events (got ${list(event).length})`,
      );
    },
  };
}

// ----------------------------------------------------------------- clients

function stripAck(args) {
  return args.length > 0 && typeof args[args.length - 1] === "function" ? args.slice(0, -1) : args;
}

/**
 * Wraps a socket.io-client socket (v4 or v2): records received events in
 * `inbox` and lifecycle events in `connectErrors` (v4 `connect_error`),
 * `errors` (v2 `error`), `disconnects` (reasons).
 */
function wrap(socket, version, mode, nsp) {
  const inbox = createInbox();
  if (version === 4) {
    socket.onAny((event, ...args) => inbox.push(event, stripAck(args)));
  } else {
    // 2.x has no onAny: record at the packet level (before the ack callback
    // is appended and before the connected/receiveBuffer logic).
    const onevent = socket.onevent;
    socket.onevent = function (packet) {
      const data = packet.data || [];
      inbox.push(data[0], data.slice(1));
      return onevent.call(this, packet);
    };
  }
  const client = {
    version,
    mode,
    nsp,
    socket,
    inbox,
    connectErrors: [],
    errors: [],
    disconnects: [],
    connected: undefined,
    disconnected: undefined,
    upgraded: undefined,
    /** The id the server knows the socket by (v2 on a namespace: `<nsp>#<engine id>`). */
    get id() {
      return socket.id;
    },
    /** The Engine.IO session id. */
    get engineId() {
      return socket.io.engine?.id;
    },
    get transport() {
      return socket.io.engine?.transport?.name;
    },
    /** Emits with an ack; resolves with the ack's arguments (an array). */
    ack(event, ...args) {
      return withTimeout(
        new Promise((resolve) => socket.emit(event, ...args, (...res) => resolve(res))),
        10_000,
        `ack of "${event}" (v${version} ${mode} ${nsp})`,
      );
    },
    emit(event, ...args) {
      socket.emit(event, ...args);
    },
    /** Disconnects (client namespace disconnect) and closes its connection. */
    close() {
      try {
        socket.disconnect();
      } catch {
        // already closed
      }
      try {
        socket.io.engine?.close();
      } catch {
        // already closed
      }
    },
  };
  client.connected = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.on("connect_error", (err) => {
      client.connectErrors.push(err);
      reject(new Error(`connect_error: ${describeError(err)} ${JSON.stringify(err?.data)}`));
    });
    socket.on("error", (err) => {
      client.errors.push(err);
      if (version === 2) reject(new Error(`error before connect: ${describeError(err)}`));
    });
  });
  client.connected.catch(() => {});
  client.disconnected = new Promise((resolve) => {
    socket.on("disconnect", (reason) => {
      client.disconnects.push(reason);
      resolve(reason);
    });
  });
  const engine = socket.io.engine;
  client.upgraded = engine
    ? new Promise((resolve) => engine.once("upgrade", () => resolve(engine.transport.name)))
    : Promise.resolve(undefined);
  return client;
}

/**
 * Creates (does not wait for) a client on `url + nsp`: a new connection
 * (forceNew), no reconnection. v4 takes `auth`; v2 takes `query` (sent in
 * the CONNECT packet for namespaces other than `/`).
 */
export function createSioClient(url, { version, mode, nsp = "/", auth, query, extra = {} }) {
  const transports = MODES[mode];
  assert.ok(transports, `unknown mode ${mode}`);
  const common = { transports, forceNew: true, reconnection: false, timeout: CONNECT_TIMEOUT_MS, ...extra };
  let socket;
  if (version === 4) {
    socket = ioV4(url + nsp, { ...common, ...(auth !== undefined ? { auth } : {}), ...(query ? { query } : {}) });
  } else if (version === 2) {
    socket = ioV2(url + nsp, { ...common, ...(query ? { query } : {}) });
  } else {
    throw new Error(`unknown socket.io client version ${version}`);
  }
  return wrap(socket, version, mode, nsp);
}

/** Waits for `connect` (and, in upgrade mode, for the upgrade to websocket). */
export async function waitConnected(client, { waitUpgrade = true } = {}) {
  await withTimeout(
    client.connected,
    CONNECT_TIMEOUT_MS,
    `v${client.version} ${client.mode} client connect to ${client.nsp}`,
  );
  if (client.mode === "upgrade" && waitUpgrade) {
    const name = await withTimeout(client.upgraded, CONNECT_TIMEOUT_MS, `v${client.version} upgrade`);
    assert.equal(name, "websocket", "transport after upgrade");
  }
  return client;
}

/**
 * A set of clients closed together (`closeAll` in an `after` hook).
 * `connect(opts)` creates a client, waits for it to connect (and upgrade)
 * and for its `hello`, and returns it.
 */
export function clientPool(getUrl) {
  const clients = new Set();
  return {
    clients,
    create(opts) {
      const client = createSioClient(getUrl(), opts);
      clients.add(client);
      return client;
    },
    async connect(opts) {
      const client = this.create(opts);
      await waitConnected(client, opts);
      await client.inbox.waitCount("hello", 1);
      return client;
    },
    /** Socket `nsp` over the same connection as `client` (multiplexing). */
    async also(client, nsp, { auth, query } = {}) {
      // Both generations' Manager.socket() connect the new socket themselves
      // (autoConnect): connecting it again would send a second CONNECT.
      const socket = client.socket.io.socket(
        nsp,
        client.version === 4 ? (auth !== undefined ? { auth } : {}) : query ? { query } : {},
      );
      const other = wrap(socket, client.version, client.mode, nsp);
      clients.add(other);
      return other;
    },
    async closeAll() {
      for (const c of clients) c.close();
      clients.clear();
      await sleep(20);
    },
  };
}

// ----------------------------------------------------------------- monitor

/**
 * Connects a v4 client to `/monitor` and records every `server-event`.
 * `waitFor(pred)` resolves with the first matching event (already received
 * or future); `forId(id)` lists the events of one socket in arrival order.
 */
export async function openMonitor(url, mode = "websocket") {
  const client = createSioClient(url, { version: 4, mode, nsp: "/monitor" });
  await waitConnected(client);
  const events = [];
  const listeners = new Set();
  client.socket.on("server-event", (e) => {
    events.push(e);
    for (const l of [...listeners]) l();
  });
  return {
    client,
    events,
    forId: (id) => events.filter((e) => e.id === id),
    waitFor(pred, timeoutMs = 5000, what = "monitor event") {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      let listener;
      const p = new Promise((resolve) => {
        listener = () => {
          const hit = events.find(pred);
          if (hit) resolve(hit);
        };
        listeners.add(listener);
      });
      return withTimeout(p, timeoutMs, what).finally(() => listeners.delete(listener));
    },
    close: () => client.close(),
  };
}

/**
 * Waits for the `disconnecting` and `disconnect` monitor events of socket
 * `id` and checks them: `reason` (a string or a list of allowed strings),
 * `disconnecting` first and listing `rooms` (sorted), `disconnect` with no
 * rooms. Returns the reason.
 */
export async function expectDisconnect(monitor, id, { nsp, reason, rooms, timeoutMs = 5000 }) {
  const disconnect = await monitor.waitFor(
    (e) => e.type === "disconnect" && e.id === id,
    timeoutMs,
    `monitor "disconnect" for ${id} (expected reason ${JSON.stringify(reason)}; saw ${JSON.stringify(monitor.forId(id))})`,
  );
  const seen = monitor.forId(id);
  const types = seen.map((e) => e.type);
  const di = types.indexOf("disconnecting");
  const dd = types.indexOf("disconnect");
  assert.ok(di >= 0, `a "disconnecting" event for ${id}: ${JSON.stringify(seen)}`);
  assert.ok(di < dd, `"disconnecting" before "disconnect": ${JSON.stringify(types)}`);
  assert.equal(types.filter((t) => t === "disconnect").length, 1, `one "disconnect": ${JSON.stringify(types)}`);
  const disconnecting = seen[di];
  const allowed = Array.isArray(reason) ? reason : [reason];
  assert.ok(allowed.includes(disconnecting.reason), `disconnecting reason ${disconnecting.reason}, want ${allowed}`);
  assert.equal(disconnect.reason, disconnecting.reason, "same reason in disconnecting and disconnect");
  if (nsp !== undefined) {
    assert.equal(disconnecting.nsp, nsp);
    assert.equal(disconnect.nsp, nsp);
  }
  if (rooms !== undefined) assert.deepEqual(disconnecting.rooms, [...rooms].sort(), "rooms in disconnecting");
  assert.deepEqual(disconnect.rooms, [], "no rooms left in disconnect");
  return disconnecting.reason;
}

// --------------------------------------------------------- raw Engine.IO

/**
 * A raw Engine.IO WebSocket connection (`EIO=4` or `3`): `frames` holds the
 * text frames received (binary frames as Buffers), `next()` waits for the
 * next one, `closed` resolves with `{code, ms}` (ms since open).
 */
export async function rawWebSocket(url, { eio = 4 } = {}) {
  const wsUrl = `${url.replace(/^http/, "ws")}${SIO_PATH}?EIO=${eio}&transport=websocket`;
  const ws = new WebSocket(wsUrl);
  const frames = [];
  const waiters = [];
  let openedAt;
  const closed = new Promise((resolve) => {
    ws.on("close", (code) => resolve({ code, ms: Date.now() - openedAt }));
  });
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    const frame = isBinary ? data : data.toString();
    if (waiters.length > 0) waiters.shift()(frame);
    else frames.push(frame);
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    }),
    5000,
    "raw websocket open",
  );
  openedAt = Date.now();
  return {
    ws,
    closed,
    isOpen: () => ws.readyState === WebSocket.OPEN,
    send: (data) => ws.send(data),
    next(timeoutMs = 5000) {
      if (frames.length > 0) return Promise.resolve(frames.shift());
      let waiter;
      const p = new Promise((resolve) => {
        waiter = resolve;
        waiters.push(resolve);
      });
      return withTimeout(p, timeoutMs, "raw websocket frame").catch((err) => {
        const i = waiters.indexOf(waiter);
        if (i >= 0) waiters.splice(i, 1);
        throw err;
      });
    },
    /** Reads frames until one matches `pred` (skipping others); returns it. */
    async until(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const frame = await this.next(Math.max(1, deadline - Date.now()));
        if (pred(frame)) return frame;
      }
    },
    close: () => ws.terminate(),
  };
}

/**
 * A raw Engine.IO v4 WebSocket client connected to `/` (it sent `40` and got
 * the CONNECT reply, `auth` and `hello`): returns it with its socket id.
 */
export async function rawSocketIoClient(url) {
  const raw = await rawWebSocket(url, { eio: 4 });
  const open = await raw.next();
  assert.match(open, /^0\{/, "Engine.IO open packet");
  raw.send("40");
  const connect = await raw.until((f) => typeof f === "string" && f.startsWith("40"));
  const { sid } = JSON.parse(connect.slice(2));
  assert.equal(typeof sid, "string", `CONNECT reply ${connect}`);
  await raw.until((f) => typeof f === "string" && f.startsWith('42["hello"'));
  return { raw, id: sid };
}

/** Raw polling requests on one Engine.IO v4 session. */
export async function rawPolling(url) {
  const base = `${url}${SIO_PATH}?EIO=4&transport=polling`;
  let n = 0;
  const t = () => `&t=${Date.now().toString(36)}${(n += 1)}`;
  const res = await fetch(base + t());
  assert.equal(res.status, 200, "polling handshake");
  const body = await res.text();
  const { sid } = JSON.parse(body.slice(1));
  const q = `${base}&sid=${encodeURIComponent(sid)}`;
  return {
    sid,
    async post(body) {
      const r = await fetch(q + t(), { method: "POST", body, signal: AbortSignal.timeout(5000) });
      return { status: r.status, body: await r.text() };
    },
    async get(timeoutMs = 5000) {
      const r = await fetch(q + t(), { signal: AbortSignal.timeout(timeoutMs) });
      return { status: r.status, body: await r.text() };
    },
  };
}
