// Helpers for the relay suites (relay-*.test.mjs, docs/relay-protocol.md):
// starting the `hub` binary (or the reference, reference-relay.mjs) through
// HUB_RELAY_CMD, minting JSON Web Tokens with node:crypto, and
// socket.io-client v4 / v2 clients that record what they receive.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import path from "node:path";

import { io as ioV4 } from "socket.io-client";

import {
  MODES,
  REPO_ROOT,
  commandFromEnv,
  describeError,
  eventually,
  freePort,
  metricSum,
  sleep,
  withTimeout,
} from "./helpers.mjs";
import { MATRIX, VERSIONS, createInbox, ioV2 } from "./sio-helpers.mjs";

export { MATRIX, MODES, VERSIONS, eventually, freePort, metricSum, sleep, withTimeout };

export const DEFAULT_RELAY = path.join(REPO_ROOT, "target", "debug", "hub");
export const READY_TIMEOUT_MS = 10_000;
export const CONNECT_TIMEOUT_MS = 10_000;

/** True when the suites run against reference-relay.mjs. */
export function againstReference() {
  return (process.env.HUB_RELAY_CMD ?? "").includes("reference-relay");
}

// ------------------------------------------------------------------ process

/** The relay: `HUB_RELAY_CMD` or the built `hub` binary. */
export function relayCommand() {
  return commandFromEnv(
    "HUB_RELAY_CMD",
    DEFAULT_RELAY,
    "build it with `cargo build -p hub`, or set HUB_RELAY_CMD " +
      '(e.g. HUB_RELAY_CMD="node tests/clients/node/reference-relay.mjs")',
  );
}

const liveRelays = new Set();
process.on("exit", () => {
  for (const child of liveRelays) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts the relay with `--port 0 --bind 127.0.0.1 --shards N` plus
 * `extraArgs`, waits for `listening on HOST:PORT` and returns a handle:
 * `url`, `exited` (resolves with `{code, signal}`), `terminate()` (SIGTERM,
 * no wait) and `stop()` (SIGTERM, SIGKILL after 3 s; always call it).
 * `command` (`[program, ...args]`) replaces `relayCommand()`. With `tls`
 * (`{cert, key}`: PEM file paths) the relay serves HTTPS and WSS, and `url`
 * is `https://...`.
 */
export async function startRelay(extraArgs = [], { shards = 2, command, tls } = {}) {
  const [cmd, ...baseArgs] = command ?? relayCommand();
  const tlsArgs = tls ? ["--tls-cert", tls.cert, "--tls-key", tls.key] : [];
  const args = [...baseArgs, "--port", "0", "--bind", "127.0.0.1", "--shards", String(shards), ...tlsArgs, ...extraArgs];
  const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  liveRelays.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      liveRelays.delete(child);
      resolve({ code, signal });
    });
  });
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill("SIGTERM");
    const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 3000).unref());
    if ((await Promise.race([exited, timeout])) === "timeout") child.kill("SIGKILL");
    return exited;
  };

  const describeCmd = [cmd, ...args].join(" ");
  const lines = [];
  let ready;
  try {
    ready = await new Promise((resolve, reject) => {
      let buffered = "";
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `relay did not print its ready line within ${READY_TIMEOUT_MS} ms: ${describeCmd}\n` +
                `stdout so far: ${JSON.stringify(lines)}\nstderr:\n${stderr}`,
            ),
          ),
        READY_TIMEOUT_MS,
      );
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot spawn relay ${describeCmd}: ${err.message}`));
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`relay exited before it was ready (code ${code}, signal ${signal}): ${describeCmd}\nstderr:\n${stderr}`));
      });
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk) => {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).replace(/\r$/, "");
          buffered = buffered.slice(nl + 1);
          lines.push(line);
          const m = /^listening on (\S+):(\d+)$/.exec(line);
          if (m) {
            clearTimeout(timer);
            resolve({ host: m[1], port: Number(m[2]) });
          }
        }
      });
    });
  } catch (err) {
    await kill();
    throw err;
  }
  child.stdout.removeAllListeners("data");
  child.stdout.resume();
  assert.ok(ready.port > 0, `relay reported port ${ready.port}`);
  return {
    ...ready,
    url: `${tls ? "https" : "http"}://${ready.host}:${ready.port}`,
    pid: child.pid,
    exited,
    stdoutLines: lines,
    stderr: () => stderr,
    alive: () => child.exitCode === null && child.signalCode === null,
    terminate: () => child.kill("SIGTERM"),
    stop: kill,
  };
}

// ------------------------------------------------------------------ tokens

const b64url = (data) => Buffer.from(data).toString("base64url");
const HASHES = { HS256: "sha256", HS384: "sha384", HS512: "sha512" };
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * A JWT with `claims` (nothing added). `alg` goes in the header; the
 * signature is HMAC(`hash`, default the alg's) with `secret`, or empty for
 * `alg: "none"`. `header` adds header fields.
 */
export function signToken(claims, secret, { alg = "HS256", hash, header = {} } = {}) {
  const h = b64url(JSON.stringify({ alg, typ: "JWT", ...header }));
  const p = b64url(JSON.stringify(claims));
  const algorithm = hash ?? HASHES[alg];
  const signature = alg === "none" && hash === undefined ? "" : b64url(crypto.createHmac(algorithm, secret).update(`${h}.${p}`).digest());
  return `${h}.${p}.${signature}`;
}

/** A valid HS256 token for `secret`: `claims` plus `exp` an hour ahead (unless given). */
export function mintToken(secret, claims = {}) {
  return signToken({ exp: nowSeconds() + 3600, ...claims }, secret);
}

/** An unsigned `alg: "none"` token (empty signature). */
export function mintNoneToken(claims = {}) {
  return signToken({ exp: nowSeconds() + 3600, ...claims }, "", { alg: "none" });
}

/** An HS256 token signed with another secret. */
export function mintWrongSecretToken(claims = {}) {
  return mintToken(`not-the-secret-${crypto.randomBytes(4).toString("hex")}`, claims);
}

/** A token labelled HS512 (and signed with HMAC-SHA512) with the right secret. */
export function mintHs512Token(secret, claims = {}) {
  return signToken({ exp: nowSeconds() + 3600, ...claims }, secret, { alg: "HS512" });
}

/** A correctly signed token that expired a minute ago. */
export function mintExpiredToken(secret, claims = {}) {
  return signToken({ ...claims, exp: nowSeconds() - 60 }, secret);
}

// ----------------------------------------------------------------- clients

function stripAck(args) {
  return args.length > 0 && typeof args[args.length - 1] === "function" ? args.slice(0, -1) : args;
}

/** A v2 ERROR packet's type (socket.io-parser 3.x: ERROR = 4). */
const V2_ERROR = 4;

/**
 * Creates (does not wait for) a client of `url + nsp`: forceNew, no
 * reconnection. `token` goes where the spec says (v4: `auth: {token}`,
 * v2: `query: {token}`); `auth`/`query` for anything else. Records:
 * `inbox` (received events), `connectErrors` (v4 `connect_error`),
 * `errors` (v2 `error` event data, all), `ownErrors` / `rootErrors` (v2
 * ERROR packets for the client's namespace / for `/`, which the 2.x client
 * also surfaces on every other namespace's socket), `disconnects` (reasons).
 * `connected` resolves on connect and rejects on a refusal of the client's
 * own namespace.
 */
export function relayClient(url, { version, mode, nsp = "/", token, auth, query, extra = {} }) {
  const transports = MODES[mode];
  assert.ok(transports, `unknown mode ${mode}`);
  const common = { transports, forceNew: true, reconnection: false, timeout: CONNECT_TIMEOUT_MS, ...extra };
  let socket;
  if (version === 4) {
    const a = token !== undefined ? { ...(auth ?? {}), token } : auth;
    socket = ioV4(url + nsp, { ...common, ...(a !== undefined ? { auth: a } : {}), ...(query ? { query } : {}) });
  } else if (version === 2) {
    const q = token !== undefined ? { ...(query ?? {}), token } : query;
    socket = ioV2(url + nsp, { ...common, ...(q ? { query: q } : {}) });
  } else {
    throw new Error(`unknown socket.io client version ${version}`);
  }
  return wrap(socket, version, mode, nsp);
}

/**
 * Another namespace over `client`'s connection (multiplexing): `token` and
 * `auth`/`query` as for `relayClient`. Both generations' Manager.socket()
 * connect the new socket themselves.
 */
export function alsoOn(client, nsp, { token, auth, query } = {}) {
  let opts;
  if (client.version === 4) {
    const a = token !== undefined ? { ...(auth ?? {}), token } : auth;
    opts = a !== undefined ? { auth: a } : {};
  } else {
    const q = token !== undefined ? { ...(query ?? {}), token } : query;
    opts = q !== undefined ? { query: q } : {};
  }
  return wrap(client.socket.io.socket(nsp, opts), client.version, client.mode, nsp);
}

function wrap(socket, version, mode, nsp) {
  const inbox = createInbox();
  if (version === 4) {
    socket.onAny((event, ...args) => inbox.push(event, stripAck(args)));
  } else {
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
    ownErrors: [],
    rootErrors: [],
    disconnects: [],
    get id() {
      return socket.id;
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
    /** Emits a relay request with an ack; resolves with the answer (the ack's one argument). */
    async request(event, ...args) {
      const res = await this.ack(event, ...args);
      assert.equal(res.length, 1, `"${event}" is answered with one argument: ${JSON.stringify(res)}`);
      return res[0];
    },
    /** Emits with an ack; resolves with the ack's arguments, or `undefined` if none came within `ms`. */
    async ackWithin(ms, event, ...args) {
      let timer;
      const res = await Promise.race([
        new Promise((resolve) => socket.emit(event, ...args, (...r) => resolve(r))),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(undefined), ms);
        }),
      ]);
      clearTimeout(timer);
      return res;
    },
    emit(event, ...args) {
      socket.emit(event, ...args);
    },
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
    socket.on("error", (err) => client.errors.push(err));
    if (version === 2) {
      socket.io.on("packet", (packet) => {
        if (packet.type !== V2_ERROR) return;
        if (packet.nsp === socket.nsp) {
          client.ownErrors.push(packet.data);
          reject(new Error(`error packet for ${packet.nsp}: ${describeError(packet.data)}`));
        } else if (packet.nsp === "/") {
          client.rootErrors.push(packet.data);
        }
      });
    }
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

/** Waits for `connect` (and, in upgrade mode, for the upgrade to websocket). */
export async function waitConnected(client, { waitUpgrade = true } = {}) {
  await withTimeout(client.connected, CONNECT_TIMEOUT_MS, `v${client.version} ${client.mode} connect to ${client.nsp}`);
  if (client.mode === "upgrade" && waitUpgrade) {
    const name = await withTimeout(client.upgraded, CONNECT_TIMEOUT_MS, `v${client.version} upgrade`);
    assert.equal(name, "websocket", "transport after upgrade");
  }
  return client;
}

/**
 * Waits for the refusal of the client's namespace and returns what the
 * client got: v4 the `connect_error` Error, v2 the ERROR packet's data (also
 * the data of its `error` event).
 */
export async function expectRefused(client, timeoutMs = 5000) {
  await assert.rejects(
    withTimeout(client.connected, timeoutMs, `refusal of v${client.version} ${client.mode} ${client.nsp}`),
    /connect_error|error packet/,
  );
  assert.equal(client.socket.connected, false, "not connected");
  if (client.version === 4) return client.connectErrors[0];
  assert.ok(client.errors.length >= 1, "the 2.x client emitted `error`");
  assert.deepEqual(client.errors.at(-1), client.ownErrors[0], "the `error` event carries the packet's data");
  return client.ownErrors[0];
}

/** Clients created through it are closed together by `closeAll()`. */
export function relayPool(getUrl) {
  const clients = new Set();
  return {
    clients,
    create(opts) {
      const client = relayClient(typeof getUrl === "function" ? getUrl() : getUrl, opts);
      clients.add(client);
      return client;
    },
    async connect(opts) {
      return waitConnected(this.create(opts), opts);
    },
    async closeAll() {
      for (const c of clients) c.close();
      clients.clear();
      await sleep(20);
    },
  };
}

// --------------------------------------------------------------- delivery

let uniqueCounter = 0;
/** A unique name (`tag-<pid>-<n>-<random>`), for rooms and namespaces. */
export function unique(tag = "x") {
  uniqueCounter += 1;
  return `${tag}-${process.pid}-${uniqueCounter}-${Math.random().toString(36).slice(2, 7)}`;
}

let barrierCount = 0;
/**
 * Quiescence: `sender` publishes a barrier to `room` (which every client of
 * `receivers` joined) and waits until each got it. One socket's publishes
 * reach each recipient in order, so a receiver that got the barrier got
 * everything `sender` published before it.
 */
export async function barrier(sender, room, receivers, timeoutMs = 10_000) {
  barrierCount += 1;
  const event = `barrier-${barrierCount}`;
  assert.deepEqual(await sender.request("publish", { to: room, event, data: barrierCount }), { ok: true }, "barrier publish");
  await Promise.all(receivers.map((c) => c.inbox.waitCount(event, 1, timeoutMs)));
  for (const c of receivers) assert.equal(c.inbox.count(event), 1, `barrier ${event} reached v${c.version} ${c.id} once`);
  return event;
}

/** Asserts who got `event`: exactly once for `want`, never for the other `clients`. */
export function assertReceivers(clients, event, want, what) {
  const wanted = new Set(want);
  for (const [i, c] of clients.entries()) {
    const expected = wanted.has(c) ? 1 : 0;
    const got = c.inbox.count(event);
    assert.equal(got, expected, `${what}: client ${i} (v${c.version} ${c.mode}) got "${event}" ${got} times, want ${expected}`);
  }
}

/** `Buffer` of any binary a client hands out (Buffer, ArrayBuffer, view). */
export function bytes(value, what = "value") {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  assert.fail(`${what}: expected binary, got ${Object.prototype.toString.call(value)} ${JSON.stringify(value)}`);
}

/**
 * Deep-compares `got` with `want`, every binary leaf of `want` (a Buffer)
 * matching a binary leaf of `got` with the same bytes.
 */
export function assertSameData(got, want, what = "data") {
  if (Buffer.isBuffer(want)) {
    assert.ok(bytes(got, what).equals(want), `${what}: bytes differ`);
  } else if (Array.isArray(want)) {
    assert.ok(Array.isArray(got), `${what}: expected an array, got ${JSON.stringify(got)}`);
    assert.equal(got.length, want.length, `${what}: array length`);
    want.forEach((w, i) => assertSameData(got[i], w, `${what}[${i}]`));
  } else if (typeof want === "object" && want !== null) {
    assert.ok(typeof got === "object" && got !== null && !Array.isArray(got), `${what}: expected an object`);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `${what}: keys`);
    for (const k of Object.keys(want)) assertSameData(got[k], want[k], `${what}.${k}`);
  } else {
    assert.deepEqual(got, want, what);
  }
}
