// The Admin UI namespace under hostile use (`hub --admin-ui`), with
// socket.io-client 4.8: commands with arguments the UI's own form would
// not send (binary), logins that try to wear the password check out.
// Each test here failed before the fix it came with.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { io as ioV4 } from "socket.io-client";

import { eventually, freePort, metricSum, startRelay, withTimeout } from "./relay-helpers.mjs";

// bcrypt of "changeit" (the upstream tests' hash).
const HASH = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";
const TIMEOUT = 10_000;

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

async function hub(args, { shards = 1 } = {}) {
  const relay = await startRelay(["--admin-ui", ...args], { shards });
  cleanup.push(() => relay.stop());
  return relay;
}

function socketTo(url, opts = {}) {
  const socket = ioV4(url, { transports: ["websocket"], forceNew: true, reconnection: false, ...opts });
  cleanup.push(() => socket.close());
  const got = [];
  socket.onAny((event, ...args) => got.push({ event, args }));
  socket.got = got;
  return socket;
}

/** "connected", or the message of the connect_error. */
const outcome = (s) =>
  withTimeout(
    new Promise((resolve) => {
      s.once("connect", () => resolve("connected"));
      s.once("connect_error", (e) => resolve(e.message));
    }),
    TIMEOUT,
    "connect outcome",
  );

test("emit with binary arguments reaches the sockets as binary", async () => {
  const relay = await hub([], { shards: 2 });
  const admin = socketTo(relay.url + "/admin");
  assert.equal(await outcome(admin), "connected");
  const clients = [];
  for (let i = 0; i < 4; i++) {
    const c = socketTo(relay.url);
    assert.equal(await outcome(c), "connected");
    clients.push(c);
  }
  admin.emit("emit", "/", null, "bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) }, "text");
  await eventually(() => clients.every((c) => c.got.some((g) => g.event === "bin")), TIMEOUT, "every client got it");
  for (const c of clients) {
    const [first, second, third] = c.got.find((g) => g.event === "bin").args;
    assert.ok(Buffer.isBuffer(first), `a buffer, not ${JSON.stringify(first)}`);
    assert.deepEqual([...first], [1, 2, 3]);
    assert.ok(Buffer.isBuffer(second.nested), `a nested buffer, not ${JSON.stringify(second)}`);
    assert.deepEqual([...second.nested], [4]);
    assert.equal(third, "text");
  }
});

test("a flood of wrong logins from one address does not keep an admin on another out", async () => {
  const adminPort = await freePort();
  const relay = await hub(["--admin-ui-password-hash", HASH, "--admin-bind", `127.0.0.1:${adminPort}`], { shards: 1 });
  // The flood: more wrong logins at once than the shard checks at once (4).
  const flood = [];
  for (let i = 0; i < 8; i++) {
    const s = socketTo(relay.url + "/admin", { auth: { username: "admin", password: `wrong${i}` }, localAddress: "127.0.0.1" });
    flood.push(outcome(s));
  }
  // Once some were refused without a check the server has read all eight;
  // the checks it took are still running (each takes tens of ms, in turn).
  const refused = [];
  for (const f of flood) f.then((r) => refused.push(r));
  await eventually(() => refused.length >= 4, TIMEOUT, "the refusals past the bound");
  const good = socketTo(relay.url + "/admin", { auth: { username: "admin", password: "changeit" }, localAddress: "127.0.0.2" });
  assert.equal(await outcome(good), "connected", "the admin from another address is checked, not refused");
  const results = await Promise.all(flood);
  assert.ok(results.every((r) => r === "invalid credentials"), JSON.stringify(results));
  assert.equal(await metricSum(`http://127.0.0.1:${adminPort}`, "hub_admin_ui_failed_logins_total"), 8, "every refusal counted");
});
