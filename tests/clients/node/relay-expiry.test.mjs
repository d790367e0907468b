// Token expiry and `refresh` (docs/relay-protocol.md, "Token expiry and
// refresh") against hubs with --auth-secret and --shards 1 and 2, with
// socket.io-client 4.x (token in `auth`) and 2.x (token in the query) over
// polling, websocket and upgrade:
// - a socket whose token expires gets `auth_error` {"error":"token expired"}
//   and a server-side disconnect (`io server disconnect`) at `exp`, and the
//   hub logs it; requests before `exp` succeed;
// - `refresh` with a longer token before `exp` keeps the socket connected
//   past the first `exp`, and the new `rooms`/`publish` patterns apply (rooms
//   the new token does not allow are left);
// - a bad `refresh` is refused and the old expiry still holds;
// - a `refresh` token of another user is refused and the socket disconnected;
// - on an open hub, `refresh` is answered `{"ok":true}`.
// Tokens expire 2 s ahead at most (JWT `exp` counts whole seconds), so the
// tests wait about 1 to 2 s each, all at once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  MATRIX,
  assertReceivers,
  barrier,
  eventually,
  mintExpiredToken,
  mintToken,
  mintWrongSecretToken,
  nowSeconds,
  relayPool,
  signToken,
  sleep,
  startRelay,
  unique,
  withTimeout,
} from "./relay-helpers.mjs";

const T = { timeout: 20_000 };
const OK = { ok: true };
const FORBIDDEN = { ok: false, error: "forbidden" };
const SECRET = `expiry-secret-${process.pid}`;
/** How late after `exp` the disconnect may come (a loaded 2-core machine). */
const LATE_MS = 2500;

/**
 * A token expiring 2 s ahead. `exp` is whole seconds, so this waits (at
 * most 0.7 s) for a time early in a second: the token then lives 1.7 to
 * 2 s, time enough to connect and ask something first on a loaded machine.
 */
async function shortToken(claims) {
  const into = Date.now() % 1000;
  if (into > 300) await sleep(1005 - into);
  const exp = nowSeconds() + 2;
  return { exp, token: signToken({ ...claims, exp }, SECRET) };
}

/**
 * Records, with their arrival time, the `auth_error` events and the
 * disconnect of `client`, in order.
 */
function watchEnd(client) {
  const log = [];
  client.socket.on("auth_error", (data) => log.push({ what: "auth_error", data, at: Date.now() }));
  const ended = new Promise((resolve) => {
    client.socket.on("disconnect", (reason) => {
      log.push({ what: "disconnect", reason, at: Date.now() });
      resolve();
    });
  });
  return { log, ended };
}

/**
 * Asserts the end of a session: one `auth_error` with `error`, then the
 * server-side disconnect; the socket is gone.
 */
async function assertEnded(client, watch, error, what) {
  await withTimeout(watch.ended, 10_000, `${what}: disconnect`);
  const kinds = watch.log.map((e) => e.what);
  assert.deepEqual(kinds, ["auth_error", "disconnect"], `${what}: auth_error, then the disconnect`);
  assert.deepEqual(watch.log[0].data, { error }, `${what}: auth_error data`);
  assert.equal(watch.log[1].reason, "io server disconnect", `${what}: disconnect reason`);
  assert.equal(client.socket.connected, false, `${what}: not connected`);
}

/** Waits for the hub's log line about `socketId` with `reason`. */
async function assertLogged(server, socketId, reason) {
  const found = () =>
    server
      .stderr()
      .split("\n")
      .some((line) => line.includes("token no longer holds") && line.includes(socketId) && line.includes(reason));
  await eventually(
    found,
    2000,
    () => `the hub logs the disconnect of ${socketId} (${reason}); stderr:\n${server.stderr().slice(-3000)}`,
  );
}

for (const shards of [1, 2]) {
  describe(`--shards ${shards}`, { concurrency: true }, () => {
    let server;
    const pool = relayPool(() => server.url);
    before(async () => {
      server = await startRelay(["--auth-secret", SECRET], { shards });
    });
    after(async () => {
      await pool.closeAll();
      await server?.stop();
    });

    for (const { version, mode } of MATRIX) {
      const other = 6 - version;
      describe(`v${version} ${mode}`, { concurrency: true }, () => {
        test("at exp: auth_error, then io server disconnect; requests before succeed", T, async () => {
          const tag = unique("exp");
          const { exp, token } = await shortToken({ rooms: [`${tag}:*`], publish: [`${tag}:*`] });
          const c = await pool.connect({ version, mode, token });
          const watch = watchEnd(c);
          const id = c.id;
          assert.deepEqual(await c.request("join", `${tag}:a`), OK, "join before exp");
          assert.deepEqual(await c.request("publish", { to: `${tag}:a`, event: "e", data: 1 }), OK, "publish before exp");
          assert.deepEqual(await c.request("leave", `${tag}:a`), OK);
          assert.ok(Date.now() < exp * 1000, "all that before exp");

          await assertEnded(c, watch, "token expired", "expired");
          const at = watch.log[0].at;
          assert.ok(at >= exp * 1000, `not before exp (${at - exp * 1000} ms)`);
          assert.ok(at <= exp * 1000 + LATE_MS, `at about exp (${at - exp * 1000} ms after)`);
          await assertLogged(server, id, "token expired");
          c.close();
        });

        test("refresh before exp: still connected past it, the new patterns apply", T, async () => {
          const tag = unique("ref");
          const { exp, token } = await shortToken({ rooms: [`${tag}old:*`, `${tag}both`], publish: [`${tag}old:*`] });
          const c = await pool.connect({ version, mode, token });
          const watch = watchEnd(c);
          const peer = await pool.connect({ version: other, mode, token: mintToken(SECRET, { rooms: ["*"], publish: ["*"] }) });
          assert.deepEqual(await c.request("join", [`${tag}old:1`, `${tag}both`]), OK);
          assert.deepEqual(await peer.request("join", `${tag}all`), OK);

          const fresh = mintToken(SECRET, { rooms: [`${tag}new:*`, `${tag}both`, `${tag}all`], publish: [`${tag}new:*`] });
          assert.deepEqual(await c.request("refresh", { token: fresh }), OK, "refresh");
          assert.ok(Date.now() < exp * 1000, "refreshed before exp");
          // The new patterns: rooms only the new token allows can be
          // joined, rooms only the old one allowed cannot; publish alike.
          assert.deepEqual(await c.request("join", `${tag}new:1`), OK, "a room of the new token");
          assert.deepEqual(await c.request("join", `${tag}old:2`), FORBIDDEN, "a room of the old token only");
          assert.deepEqual(await c.request("publish", { to: `${tag}old:1`, event: "x" }), FORBIDDEN);
          assert.deepEqual(await c.request("join", `${tag}all`), OK);
          // Rooms the new token does not allow were left; the others kept.
          for (const room of [`${tag}old:1`, `${tag}both`, `${tag}new:1`]) {
            assert.deepEqual(await peer.request("publish", { to: room, event: `to-${room}`, data: 1 }), OK);
          }
          await barrier(peer, `${tag}all`, [c]);
          assertReceivers([c], `to-${tag}old:1`, [], "a room the new token does not allow was left");
          assertReceivers([c], `to-${tag}both`, [c], "a room both allow is kept");
          assertReceivers([c], `to-${tag}new:1`, [c], "the room joined after the refresh");

          // Past the first exp: still there.
          const wait = exp * 1000 + 400 - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          assert.deepEqual(await c.ack("echo", "still"), ["still"], "connected past the first exp");
          assert.deepEqual(await c.request("publish", { to: `${tag}new:1`, event: "late", data: 2 }), OK);
          assert.deepEqual(watch.log, [], "no auth_error, no disconnect");
          assert.equal(c.socket.connected, true);
          c.close();
          peer.close();
        });

        test("a bad refresh is refused, changes nothing, and the old expiry holds", T, async () => {
          const tag = unique("bad");
          const { exp, token } = await shortToken({ rooms: [`${tag}:*`] });
          const c = await pool.connect({ version, mode, token });
          const watch = watchEnd(c);
          const refused = { ok: false, error: "unauthorized" };
          const cases = [
            ["other secret", { token: mintWrongSecretToken({ rooms: ["*"] }) }, refused],
            ["expired", { token: mintExpiredToken(SECRET, { rooms: ["*"] }) }, refused],
            ["not a JWT", { token: "nope" }, refused],
            ["no exp", { token: signToken({ rooms: ["*"] }, SECRET) }, refused],
            ["no token", {}, { ok: false, error: "bad request" }],
            ["token not a string", { token: 7 }, { ok: false, error: "bad request" }],
            ["a bare string", mintToken(SECRET, { rooms: ["*"] }), { ok: false, error: "bad request" }],
          ];
          for (const [what, arg, want] of cases) {
            assert.deepEqual(await c.request("refresh", arg), want, what);
          }
          // The old claims still apply.
          assert.deepEqual(await c.request("join", `${tag}:1`), OK);
          assert.deepEqual(await c.request("join", `elsewhere-${tag}`), FORBIDDEN);
          assert.ok(Date.now() < exp * 1000, "all that before exp");
          await assertEnded(c, watch, "token expired", "the old expiry holds");
          assert.ok(watch.log[0].at >= exp * 1000 && watch.log[0].at <= exp * 1000 + LATE_MS, "at about the old exp");
          c.close();
        });

        test("after the expiry, the client reconnects with a fresh token (docs: function auth / v2 query)", T, async () => {
          const tag = unique("again");
          const first = await shortToken({ rooms: [`${tag}:*`] });
          let current = first.token;
          // v4: `auth` as a function is read at every connect; v2: the
          // query is read when the connection is opened again.
          const c =
            version === 4
              ? pool.create({ version, mode, auth: (cb) => cb({ token: current }) })
              : pool.create({ version, mode, token: current });
          await withTimeout(c.connected, 10_000, "first connect");
          const watch = watchEnd(c);
          await assertEnded(c, watch, "token expired", "first token");
          current = mintToken(SECRET, { rooms: [`${tag}:*`] });
          if (version === 2) c.socket.io.opts.query = { token: current };
          const reconnected = new Promise((resolve) => c.socket.once("connect", resolve));
          if (version === 4) c.socket.connect();
          else c.socket.open();
          await withTimeout(reconnected, 10_000, "reconnect with a fresh token");
          assert.deepEqual(await c.request("join", `${tag}:1`), OK, "the fresh token's rooms");
          c.close();
        });

        test("a refresh token of another user: refused, then disconnected", T, async () => {
          const sub = unique("ann");
          const c = await pool.connect({ version, mode, token: mintToken(SECRET, { sub, rooms: ["*"] }) });
          const watch = watchEnd(c);
          const id = c.id;
          const res = await c.request("refresh", { token: mintToken(SECRET, { sub: unique("bob"), rooms: ["*"] }) });
          assert.deepEqual(res, { ok: false, error: "user mismatch" });
          await assertEnded(c, watch, "user mismatch", "user mismatch");
          await assertLogged(server, id, "user mismatch");
          c.close();
        });
      });
    }
  });
}

describe("open hub", () => {
  let server;
  const pool = relayPool(() => server.url);
  before(async () => {
    server = await startRelay([], { shards: 1 });
  });
  after(async () => {
    await pool.closeAll();
    await server?.stop();
  });

  for (const version of [4, 2]) {
    test(`v${version}: refresh is answered ok and changes nothing; a malformed one is a bad request`, T, async () => {
      const c = await pool.connect({ version, mode: "websocket" });
      assert.deepEqual(await c.request("refresh", { token: "anything" }), OK);
      assert.deepEqual(await c.request("refresh", { token: mintExpiredToken("whatever") }), OK);
      assert.deepEqual(await c.request("refresh", {}), { ok: false, error: "bad request" });
      assert.deepEqual(await c.request("join", unique("any")), OK, "still open");
      c.close();
    });
  }
});
