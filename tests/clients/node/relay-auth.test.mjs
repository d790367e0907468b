// Authentication (docs/relay-protocol.md "Authentication") against a hub
// with --auth-secret and --shards 2, with socket.io-client 4.x (token in
// `auth: {token}`) and 2.x (token in the query: the `query` option or
// `/nsp?token=` in the URL) over polling, websocket and upgrade: valid
// tokens connect; missing, malformed, expired, wrongly signed, `alg: none`,
// HS512 and exp-less tokens are refused with `unauthorized`; `rooms` and
// `publish` patterns (`forbidden`); `sub` puts the socket in `user:<sub>`.
// Tokens are minted here with node:crypto.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  MATRIX,
  alsoOn,
  assertReceivers,
  barrier,
  expectRefused,
  mintExpiredToken,
  mintHs512Token,
  mintNoneToken,
  mintToken,
  mintWrongSecretToken,
  nowSeconds,
  relayPool,
  signToken,
  startRelay,
  unique,
  waitConnected,
} from "./relay-helpers.mjs";

const T = { timeout: 20_000 };
const OK = { ok: true };
const FORBIDDEN = { ok: false, error: "forbidden" };
const SECRET = `relay-secret-${process.pid}`;

let server;
const pool = relayPool(() => server.url);
before(async () => {
  server = await startRelay(["--auth-secret", SECRET]);
});
after(async () => {
  await pool.closeAll();
  await server?.stop();
});

/** Tokens the hub must refuse, by name. */
function badTokens() {
  const valid = mintToken(SECRET, { rooms: ["*"] });
  const [h, , s] = valid.split(".");
  const otherPayload = Buffer.from(JSON.stringify({ exp: nowSeconds() + 3600, rooms: ["*"], publish: ["*"] })).toString("base64url");
  return {
    "not a JWT": "not-a-jwt",
    "two segments": valid.split(".").slice(0, 2).join("."),
    "four segments": `${valid}.x`,
    "empty string": "",
    "header not JSON": `${Buffer.from("{nope").toString("base64url")}.${valid.split(".")[1]}.${s}`,
    expired: mintExpiredToken(SECRET, { rooms: ["*"] }),
    "wrong signature (other secret)": mintWrongSecretToken({ rooms: ["*"] }),
    "tampered payload": `${h}.${otherPayload}.${s}`,
    "alg: none": mintNoneToken({ rooms: ["*"] }),
    "alg: none, signed anyway": signToken({ exp: nowSeconds() + 3600 }, SECRET, { alg: "none", hash: "sha256" }),
    "HS512-labelled": mintHs512Token(SECRET, { rooms: ["*"] }),
    "HS512-labelled, HS256 signature": signToken({ exp: nowSeconds() + 3600 }, SECRET, { alg: "HS512", hash: "sha256" }),
    "no exp": signToken({ sub: "x", rooms: ["*"] }, SECRET),
  };
}

/** Asserts the refusal the client got: `unauthorized`. */
function assertUnauthorized(client, err, what) {
  if (client.version === 4) {
    assert.equal(err.message, "unauthorized", `${what}: connect_error message`);
    assert.equal(err.data, undefined, `${what}: no data`);
  } else {
    // The 2.x client gets the bare string as its `error` event's data
    // (socket.io 4 sends protocol-3 clients `err.data || err.message`).
    assert.equal(err, "unauthorized", `${what}: v2 error data`);
    for (const e of client.errors) assert.equal(e, "unauthorized", `${what}: every v2 error event`);
  }
}

describe("auth", { concurrency: true }, () => {
  for (const { version, mode } of MATRIX) {
    const other = 6 - version;
    describe(`v${version} ${mode}`, { concurrency: true }, () => {
      test("a valid token connects, on / and on a custom namespace", T, async () => {
        const token = mintToken(SECRET, { rooms: ["r:*"] });
        for (const nsp of ["/", `/${unique("priv")}`]) {
          const c = await pool.connect({ version, mode, nsp, token });
          assert.deepEqual(c.errors, [], `${nsp}: no error event`);
          assert.deepEqual(await c.ack("echo", "in"), ["in"]);
          assert.deepEqual(await c.request("join", "r:1"), OK);
          c.close();
        }
        if (version === 2) {
          // The namespace's CONNECT query, written in the URL.
          const c = await pool.connect({ version, mode, nsp: `/${unique("url")}?token=${token}` });
          assert.deepEqual(c.errors, [], "no error event");
          assert.deepEqual(await c.request("join", "r:2"), OK);
          c.close();
        }
      });

      test("missing, malformed, expired, wrongly signed, alg none, HS512, no exp: unauthorized", T, async () => {
        const cases = [["no token", undefined], ...Object.entries(badTokens())];
        if (version === 4) cases.push(["token not a string", 42]);
        await Promise.all(
          cases.flatMap(([what, token]) =>
            ["/", "/private"].map(async (nsp) => {
              const opts = { version, mode, nsp };
              if (token === 42) opts.auth = { token: 42 };
              else if (token !== undefined) opts.token = token;
              const client = pool.create(opts);
              const err = await expectRefused(client);
              assertUnauthorized(client, err, `${what} on ${nsp}`);
              client.close();
            }),
          ),
        );
      });

      if (version === 4) {
        test("the token is checked at every namespace connect", T, async () => {
          const token = mintToken(SECRET, {});
          const main = await pool.connect({ version, mode, token });
          const without = alsoOn(main, `/${unique("none")}`);
          assertUnauthorized(without, await expectRefused(without), "second namespace without a token");
          const expired = alsoOn(main, `/${unique("exp")}`, { token: mintExpiredToken(SECRET) });
          assertUnauthorized(expired, await expectRefused(expired), "second namespace with an expired token");
          const valid = alsoOn(main, `/${unique("ok")}`, { token });
          await waitConnected(valid, { waitUpgrade: false });
          assert.equal(main.socket.connected, true, "the first namespace stays connected");
          assert.deepEqual(await main.ack("echo", 1), [1]);
          main.close();
        });
      }

      test("join: inside the `rooms` patterns ok, outside forbidden (and nothing joined)", T, async () => {
        const tag = unique("j");
        const member = await pool.connect({
          version,
          mode,
          token: mintToken(SECRET, { rooms: [`${tag}chat:*`, `${tag}team-?`, `${tag}exact`] }),
        });
        const pub = await pool.connect({ version: other, mode, token: mintToken(SECRET, { rooms: ["*"], publish: ["*"] }) });
        const all = unique("all");
        assert.deepEqual(await pub.request("join", all), OK);
        for (const room of [`${tag}chat:lobby`, `${tag}chat:`, `${tag}chat:a/b`, `${tag}team-1`, `${tag}exact`]) {
          assert.deepEqual(await member.request("join", room), OK, `join ${room}`);
        }
        for (const room of [`${tag}team-12`, `${tag}team-`, `${tag}exactly`, `${tag}other`, all, "chat:lobby"]) {
          assert.deepEqual(await member.request("join", room), FORBIDDEN, `join ${room}`);
        }
        assert.deepEqual(await member.request("join", [`${tag}chat:ok`, `${tag}other`]), FORBIDDEN, "one refused: none joined");
        assert.deepEqual(await member.request("join", 42), { ok: false, error: "bad request" }, "shape first");
        assert.deepEqual(await member.request("join", [`${tag}other`, ""]), { ok: false, error: "bad request" }, "shape first");
        assert.deepEqual(await member.request("leave", `${tag}other`), OK, "leave is never forbidden");

        assert.deepEqual(await pub.request("publish", { to: `${tag}chat:lobby`, event: "in", data: 1 }), OK);
        assert.deepEqual(await pub.request("publish", { to: `${tag}chat:ok`, event: "partial", data: 1 }), OK);
        assert.deepEqual(await pub.request("publish", { to: `${tag}team-12`, event: "out", data: 1 }), OK);
        assert.deepEqual(await pub.request("publish", { to: `${tag}chat:lobby`, event: "end", data: 1 }), OK);
        assert.deepEqual(await member.inbox.next("end"), [1]);
        assertReceivers([member, pub], "in", [member], "joined room");
        assertReceivers([member, pub], "partial", [], "room of a refused join");
        assertReceivers([member, pub], "out", [], "forbidden room");

        // A token without `rooms` may join nothing.
        const none = await pool.connect({ version: other, mode, token: mintToken(SECRET, { publish: ["*"] }) });
        assert.deepEqual(await none.request("join", `${tag}anything`), FORBIDDEN);
        assert.deepEqual(await none.request("join", [`${tag}chat:x`]), FORBIDDEN);
        for (const c of [member, pub, none]) c.close();
      });

      test("publish: inside the `publish` patterns ok, outside forbidden (and nothing relayed)", T, async () => {
        const tag = unique("p");
        const pub = await pool.connect({ version, mode, token: mintToken(SECRET, { publish: [`${tag}chat:*`, `${tag}all`] }) });
        const member = await pool.connect({ version: other, mode, token: mintToken(SECRET, { rooms: [`${tag}*`] }) });
        for (const room of [`${tag}chat:x`, `${tag}other`, `${tag}all`]) assert.deepEqual(await member.request("join", room), OK);
        assert.deepEqual(await pub.request("publish", { to: `${tag}chat:x`, event: "in", data: "i" }), OK);
        assert.deepEqual(await pub.request("publish", { to: `${tag}other`, event: "out", data: "o" }), FORBIDDEN);
        assert.deepEqual(
          await pub.request("publish", { to: [`${tag}chat:x`, `${tag}other`], event: "mixed", data: "m" }),
          FORBIDDEN,
          "one forbidden room: nothing relayed",
        );
        assert.deepEqual(
          await pub.request("publish", { to: `${tag}other`, event: "disconnect" }),
          { ok: false, error: "reserved event" },
          "a reserved event is refused as such",
        );
        assert.deepEqual(await pub.request("publish", { to: 7, event: "e" }), { ok: false, error: "bad request" });
        await barrier(pub, `${tag}all`, [member]);
        assertReceivers([pub, member], "in", [member], "allowed room");
        assertReceivers([pub, member], "out", [], "forbidden room");
        assertReceivers([pub, member], "mixed", [], "mixed rooms");

        // A token without `publish` may publish nowhere.
        const mute = await pool.connect({ version: other, mode, token: mintToken(SECRET, { rooms: ["*"] }) });
        assert.deepEqual(await mute.request("publish", { to: `${tag}chat:x`, event: "e", data: 1 }), FORBIDDEN);
        for (const c of [pub, member, mute]) c.close();
      });

      test("sub: the socket is in user:<sub> at once; others may publish to it", T, async () => {
        const sub = unique("alice");
        // Two sockets of the same user, of both generations; one on a custom namespace.
        const alice = await pool.connect({ version, mode, token: mintToken(SECRET, { sub }) });
        const alice2 = await pool.connect({ version: other, mode, token: mintToken(SECRET, { sub }) });
        const bob = await pool.connect({ version: other, mode, token: mintToken(SECRET, { sub: unique("bob") }) });
        const sender = await pool.connect({ version, mode, token: mintToken(SECRET, { publish: ["user:*"] }) });
        assert.deepEqual(await sender.request("publish", { to: `user:${sub}`, event: "dm", data: { hi: sub } }), OK);
        await Promise.all([alice.inbox.next("dm"), alice2.inbox.next("dm")]);
        // Alice may publish to herself too: her own socket is excluded, her other one gets it.
        const self = await pool.connect({ version: other, mode, token: mintToken(SECRET, { sub, publish: [`user:${sub}`] }) });
        assert.deepEqual(await self.request("publish", { to: `user:${sub}`, event: "note", data: 1 }), OK);
        await Promise.all([alice.inbox.next("note"), alice2.inbox.next("note")]);
        await barrier(sender, `user:${sub}`, [alice, alice2, self]);
        const clients = [alice, alice2, bob, sender, self];
        assertReceivers(clients, "dm", [alice, alice2], "to user:<sub> (self connected later)");
        assertReceivers(clients, "note", [alice, alice2], "to user:<sub> from one of the user's sockets");
        assert.deepEqual(alice.inbox.list("dm")[0], [{ hi: sub }]);
        // The user room is per namespace.
        const nsp = `/${unique("u")}`;
        const aliceThere = await pool.connect({ version, mode, nsp, token: mintToken(SECRET, { sub }) });
        const senderThere = await pool.connect({ version: other, mode, nsp, token: mintToken(SECRET, { publish: ["user:*"] }) });
        assert.deepEqual(await senderThere.request("publish", { to: `user:${sub}`, event: "there", data: nsp }), OK);
        assert.deepEqual(await aliceThere.inbox.next("there"), [nsp]);
        assert.equal(alice.inbox.count("there"), 0, "not on /");
        for (const c of [...clients, aliceThere, senderThere]) c.close();
      });
    });
  }
});
