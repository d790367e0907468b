// Shared helpers for the real-client tests: spawning the server under test,
// opening engine.io clients (v6 and v3), collecting messages, checking bytes.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Socket as SocketV4 } from "engine.io-client";

const require = createRequire(import.meta.url);
/** engine.io-client 3.x (npm alias `engine.io-client-v3`), a CommonJS module. */
export const eioV3 = require("engine.io-client-v3");

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (tests/clients/node/../../..). */
export const REPO_ROOT = path.resolve(HERE, "..", "..", "..");
export const DEFAULT_SERVER = path.join(REPO_ROOT, "target", "debug", "examples", "conformance");
export const READY_TIMEOUT_MS = 10_000;
export const ENGINE_PATH = "/engine.io/";

/**
 * A server command line: environment variable `envName` split on spaces, or
 * `fallback` (a built binary). Relative paths are resolved from the repo
 * root (servers are spawned there). Throws (fails the test, never skips)
 * when the program is missing, with `hint` on how to build or choose one.
 */
export function commandFromEnv(envName, fallback, hint) {
  const env = process.env[envName];
  const cmd = env !== undefined && env.trim() !== "" ? env.split(" ").filter((part) => part !== "") : [fallback];
  const program = cmd[0];
  if (program.includes("/") && !existsSync(path.resolve(REPO_ROOT, program))) {
    throw new Error(`server not found at ${path.resolve(REPO_ROOT, program)}: ${hint}`);
  }
  return cmd;
}

/** The Engine.IO conformance server: `HUB_CONFORMANCE_CMD` or the built example. */
export function serverCommand() {
  return commandFromEnv(
    "HUB_CONFORMANCE_CMD",
    DEFAULT_SERVER,
    "build it with `cargo build --examples` (or `cargo test --workspace`), or set HUB_CONFORMANCE_CMD " +
      '(e.g. HUB_CONFORMANCE_CMD="node tests/clients/node/reference-server.mjs")',
  );
}

const liveServers = new Set();
process.on("exit", () => {
  // Last resort if a test file dies without running its `after` hooks.
  for (const child of liveServers) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Spawns the server with `--port 0 --shards 2` plus `extraArgs`, waits for
 * its `listening on HOST:PORT` line and returns a handle. Always pair with
 * `await server.stop()` in an `after`/`finally`.
 */
export async function startServer(extraArgs = [], { shards = 2 } = {}) {
  return startCommand(serverCommand(), extraArgs, { shards });
}

/**
 * Like `startServer`, for any server command line (`[program, ...args]`)
 * that follows the same CLI conventions (`--port 0 --shards N`, the
 * `listening on HOST:PORT` ready line, exit on SIGTERM).
 */
export async function startCommand(command, extraArgs = [], { shards = 2 } = {}) {
  const [cmd, ...baseArgs] = command;
  const args = [...baseArgs, "--port", "0", "--shards", String(shards), ...extraArgs];
  const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  liveServers.add(child);

  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      liveServers.delete(child);
      resolve({ code, signal });
    });
  });

  const describeCmd = [cmd, ...args].join(" ");
  let stdoutLines = [];
  let ready;
  try {
    ready = await new Promise((resolve, reject) => {
      let buffered = "";
      const timer = setTimeout(() => {
        reject(
          new Error(
            `server did not print its ready line within ${READY_TIMEOUT_MS} ms: ${describeCmd}\n` +
              `stdout so far: ${JSON.stringify(stdoutLines)}\nstderr:\n${stderr}`,
          ),
        );
      }, READY_TIMEOUT_MS);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot spawn server ${describeCmd}: ${err.message}`));
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(
          new Error(
            `server exited before it was ready (code ${code}, signal ${signal}): ${describeCmd}\n` +
              `stderr:\n${stderr}`,
          ),
        );
      });
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk) => {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).replace(/\r$/, "");
          buffered = buffered.slice(nl + 1);
          stdoutLines.push(line);
          const m = /^listening on (\S+):(\d+)$/.exec(line);
          if (m) {
            clearTimeout(timer);
            resolve({ host: m[1], port: Number(m[2]) });
          }
        }
      });
    });
  } catch (err) {
    await killChild(child, exited);
    throw err;
  }
  // Keep draining stdout so the server never blocks on a full pipe.
  child.stdout.removeAllListeners("data");
  child.stdout.resume();

  assert.ok(ready.port > 0, `server reported port ${ready.port}`);
  const url = `http://${ready.host}:${ready.port}`;
  return {
    ...ready,
    url,
    pid: child.pid,
    /** What the server printed on stdout up to its ready line. */
    stdoutLines,
    stderr: () => stderr,
    /** True while the process is running. */
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: () => killChild(child, exited),
  };
}

async function killChild(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 3000).unref());
  if ((await Promise.race([exited, timeout])) === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const SID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** The shard an Engine.IO sid of hub's names (its first two characters). */
export const shardOf = (sid) => SID_ALPHABET.indexOf(sid[0]) * 64 + SID_ALPHABET.indexOf(sid[1]);

/** Resolves once a socket.io-client socket connected (rejects on connect_error or after 10 s). */
export function sioConnected(socket) {
  return withTimeout(
    new Promise((resolve, reject) => socket.once("connect", resolve).once("connect_error", reject)),
    10_000,
    "connect",
  );
}

/**
 * Emits `event` with `args` on a socket.io-client socket connected to the
 * conformance server and resolves with the arguments of its `message-back`.
 */
export function sioEcho(socket, event, ...args) {
  return withTimeout(
    new Promise((resolve) => {
      socket.once("message-back", (...got) => resolve(got));
      socket.emit(event, ...args);
    }),
    10_000,
    `${event} echo`,
  );
}

/**
 * Resolves once `check()` is true (asked every 20 ms), failing after `ms`
 * with `what` (a string, or a function that says what was left undone).
 */
export async function eventually(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${typeof what === "function" ? what() : what}`);
    }
    await sleep(20);
  }
}

/** A free loopback port (for a listener whose ready line may not be kept, say). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** The sum over shards of one metric of a hub's admin API at `adminUrl` (`http://host:port`). */
export async function metricSum(adminUrl, name) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** Transport sets for the three modes every suite covers. */
export const MODES = {
  polling: ["polling"],
  websocket: ["websocket"],
  upgrade: ["polling", "websocket"],
};

/**
 * Creates (does not wait for) a client. `version` is 4 (engine.io-client 6.x)
 * or 3 (engine.io-client 3.x). A message queue and the handshake are attached
 * before anything can arrive.
 */
export function createClient(version, url, opts = {}) {
  const options = { path: ENGINE_PATH, ...opts };
  let socket;
  if (version === 4) {
    socket = new SocketV4(url, options);
  } else if (version === 3) {
    socket = eioV3(url, options);
  } else {
    throw new Error(`unknown engine.io client version ${version}`);
  }
  const client = {
    version,
    socket,
    handshake: undefined,
    messages: messageQueue(socket),
    closeReason: undefined,
    closed: undefined,
    upgraded: undefined,
  };
  client.upgraded = new Promise((resolve) => socket.once("upgrade", resolve));
  socket.on("handshake", (data) => {
    client.handshake = data;
  });
  client.closed = new Promise((resolve) => {
    socket.on("close", (reason, description) => {
      client.closeReason = reason;
      resolve({ reason, description });
    });
  });
  return client;
}

/** Creates a client and waits for `open` (rejecting on error/close first). */
export async function openClient(version, url, opts = {}, timeoutMs = 10_000) {
  const client = createClient(version, url, opts);
  const { socket } = client;
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", (err) => reject(new Error(`client error before open: ${describeError(err)}`)));
      socket.once("close", (reason, desc) =>
        reject(new Error(`client closed before open: ${reason} ${describeError(desc)}`)),
      );
    }),
    timeoutMs,
    `v${version} client open (${JSON.stringify(opts.transports)})`,
  ).catch((err) => {
    socket.close();
    throw err;
  });
  return client;
}

export function describeError(err) {
  if (err === undefined || err === null) return "";
  if (err instanceof Error) {
    const extra = err.description !== undefined ? ` (${describeError(err.description)})` : "";
    return `${err.message}${extra}`;
  }
  if (typeof err === "object") {
    try {
      return JSON.stringify(err);
    } catch {
      return String(err);
    }
  }
  return String(err);
}

/** Waits for the client's `upgrade` event (the transport switch). */
export function waitForUpgrade(client, timeoutMs = 10_000) {
  return withTimeout(
    client.upgraded,
    timeoutMs,
    `v${client.version} client upgrade to websocket`,
  );
}

/** Closes the client and waits for its `close` event. */
export async function closeClient(client, timeoutMs = 5000) {
  if (client.closeReason === undefined) client.socket.close();
  return withTimeout(client.closed, timeoutMs, `v${client.version} client close`);
}

/** Collects `message` events in arrival order. */
export function messageQueue(socket) {
  const items = [];
  const waiters = [];
  socket.on("message", (data) => {
    if (waiters.length > 0) waiters.shift()(data);
    else items.push(data);
  });
  const next = (timeoutMs = 5000) => {
    if (items.length > 0) return Promise.resolve(items.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      waiters.push(resolve);
    });
    return withTimeout(p, timeoutMs, "next message").catch((err) => {
      const i = waiters.indexOf(waiter);
      if (i >= 0) waiters.splice(i, 1);
      throw err;
    });
  };
  return {
    next,
    async take(n, timeoutMs = 5000) {
      const out = [];
      const deadline = Date.now() + timeoutMs;
      while (out.length < n) {
        const left = deadline - Date.now();
        try {
          out.push(await next(Math.max(left, 1)));
        } catch {
          throw new Error(`timed out: received ${out.length} of ${n} messages in ${timeoutMs} ms`);
        }
      }
      return out;
    },
    pending: () => items.length,
  };
}

/** Asserts that `data` is binary (not a string) and returns it as a Buffer. */
export function asBytes(data, what = "message") {
  assert.notEqual(typeof data, "string", `${what}: expected binary, got text ${JSON.stringify(data)}`);
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  assert.fail(`${what}: unexpected binary type ${Object.prototype.toString.call(data)}`);
}

/** Asserts `data` is text equal to `expected`. */
export function assertText(data, expected, what = "message") {
  assert.equal(typeof data, "string", `${what}: expected text, got ${Object.prototype.toString.call(data)}`);
  assert.equal(data, expected, `${what}: text differs`);
}

/** Asserts `data` is binary with exactly the bytes of `expected`. */
export function assertBinary(data, expected, what = "message") {
  const got = asBytes(data, what);
  const want = Buffer.isBuffer(expected)
    ? expected
    : expected instanceof ArrayBuffer
      ? Buffer.from(expected)
      : Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  assert.equal(got.length, want.length, `${what}: byte length`);
  assert.ok(got.equals(want), `${what}: bytes differ: got ${got.toString("hex")} want ${want.toString("hex")}`);
}

/** Deterministic pseudo-random bytes (all 256 values appear for n >= 256). */
export function patternBytes(n, seed = 1) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = i < 256 ? i : x & 0xff;
  }
  return out;
}

/**
 * Waits until the server no longer knows `sid`: a polling GET with it answers
 * HTTP 400 `{"code":1,"message":"Session ID unknown"}`. Retries briefly, since
 * the close travels asynchronously. Returns the last response body.
 */
export async function waitForSessionGone(url, sid, eio, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  let last = "(no response)";
  while (Date.now() < deadline) {
    const target = `${url}${ENGINE_PATH}?EIO=${eio}&transport=polling&sid=${encodeURIComponent(sid)}&t=${Date.now()}`;
    try {
      const res = await fetch(target, { signal: AbortSignal.timeout(1000) });
      const body = await res.text();
      last = `${res.status} ${body}`;
      if (res.status === 400) {
        const json = JSON.parse(body);
        if (json.code === 1) {
          assert.deepEqual(json, { code: 1, message: "Session ID unknown" });
          return json;
        }
      }
    } catch (err) {
      last = `error ${err.message}`;
    }
    await sleep(100);
  }
  assert.fail(`session ${sid} still known to the server after ${timeoutMs} ms (last: ${last})`);
}

/** Closes every client in `clients` that is still open (for `after` hooks). */
export async function closeAll(clients) {
  await Promise.allSettled(
    [...clients].map((c) => (c.closeReason === undefined ? closeClient(c, 2000) : undefined)),
  );
  clients.clear?.();
}

/**
 * A TCP proxy to `target` (`{host, port}`): `url` to connect to, `down` the
 * bytes the server sent, `coded` how many answers came with each
 * Content-Encoding.
 */
export async function startCountingProxy(target) {
  const stats = { down: 0, coded: { gzip: 0, deflate: 0 } };
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    // The last bytes of the previous chunk, so that a header split between
    // two chunks is seen; a match wholly inside them was counted already.
    let tail = "";
    upstream.on("data", (chunk) => {
      stats.down += chunk.length;
      const text = tail + chunk.toString("latin1");
      for (const m of text.matchAll(/\r\ncontent-encoding: *(gzip|deflate)\r\n/gi)) {
        if (m.index + m[0].length > tail.length) stats.coded[m[1].toLowerCase()] += 1;
      }
      tail = text.slice(-40);
      client.write(chunk);
    });
    client.on("data", (chunk) => upstream.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("end", end);
      s.on("error", end);
      s.on("close", end);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
