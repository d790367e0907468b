// The relay protocol's requests (docs/relay-protocol.md "Events a client
// emits") with socket.io-client 4.x and 2.x over polling, websocket and
// polling upgraded to websocket, against the hub with --shards 2 and no
// auth: join / leave / publish / echo, acks `{ok:true}`, delivery to every
// member once and to no one else (the sender excluded), volatile, binary
// data, the refusals (`bad request`, `reserved event`) and events outside
// the protocol (ignored). Each test has its own rooms; a group's first
// client is of the version under test, the others alternate v4/v2.
// Delivery counts are taken after a barrier (relay-helpers `barrier`).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { patternBytes } from "./helpers.mjs";
import {
  MATRIX,
  assertReceivers,
  assertSameData,
  barrier,
  relayPool,
  sleep,
  startRelay,
  unique,
} from "./relay-helpers.mjs";

const T = { timeout: 20_000 };
const OK = { ok: true };
const BAD = { ok: false, error: "bad request" };
const RESERVED = { ok: false, error: "reserved event" };

let server;
const pool = relayPool(() => server.url);
before(async () => {
  server = await startRelay();
});
after(async () => {
  await pool.closeAll();
  await server?.stop();
});

/** `n` clients on `nsp`: the first of `version`, then alternating; all in `mode`. */
function group(n, { version, mode, nsp = "/" }) {
  return Promise.all(
    Array.from({ length: n }, (_, i) => pool.connect({ version: i % 2 === 0 ? version : 6 - version, mode, nsp })),
  );
}

/** Every client joins a fresh room (the barrier room); returns its name. */
async function joinAll(clients) {
  const all = unique("all");
  for (const c of clients) assert.deepEqual(await c.request("join", all), OK, "join the barrier room");
  return all;
}

const closeAll = (clients) => clients.forEach((c) => c.close());

describe("relay protocol", { concurrency: true }, () => {
  for (const { version, mode } of MATRIX) {
    describe(`first client v${version}: ${mode}`, { concurrency: true }, () => {
      test("join one room and an array, leave: {ok:true}; publishes reach the members only", T, async () => {
        const clients = await group(4, { version, mode });
        const [s, a, b, c] = clients;
        const all = await joinAll(clients);
        const [r1, r2] = [unique("r1"), unique("r2")];
        assert.deepEqual(await a.request("join", r1), OK, "join one room");
        assert.deepEqual(await b.request("join", [r1, r2]), OK, "join an array");
        assert.deepEqual(await c.request("join", [r2]), OK, "join an array of one");
        assert.deepEqual(await b.request("join", r1), OK, "joining again is fine");

        assert.deepEqual(await s.request("publish", { to: r1, event: "e1", data: { n: 1 } }), OK);
        assert.deepEqual(await s.request("publish", { to: [r2], event: "e2", data: "two" }), OK);
        await barrier(s, all, [a, b, c]);
        assertReceivers(clients, "e1", [a, b], "publish to r1");
        assertReceivers(clients, "e2", [b, c], "publish to [r2]");
        assert.deepEqual(a.inbox.list("e1")[0], [{ n: 1 }], "data is the event's one argument");
        assert.deepEqual(c.inbox.list("e2")[0], ["two"]);

        assert.deepEqual(await b.request("leave", r1), OK, "leave one room");
        assert.deepEqual(await b.request("leave", unique("never")), OK, "leaving a room one is not in");
        assert.deepEqual(await c.request("leave", [r2, unique("never")]), OK, "leave an array");
        assert.deepEqual(await s.request("publish", { to: [r1, r2], event: "e3", data: 3 }), OK);
        await barrier(s, all, [a, b, c]);
        assertReceivers(clients, "e3", [a, b], "after the leaves: a in r1, b in r2");
        assert.deepEqual(b.inbox.list("e3")[0], [3]);
        closeAll(clients);
      });

      test("publish to several rooms: each member once, the sender excluded, non-members nothing", T, async () => {
        const clients = await group(5, { version, mode, nsp: `/${unique("multi")}` });
        const [s, both, onlyA, onlyB, none] = clients;
        const all = await joinAll(clients);
        const [ra, rb] = [unique("a"), unique("b")];
        assert.deepEqual(await s.request("join", [ra, rb]), OK);
        assert.deepEqual(await both.request("join", [ra, rb]), OK);
        assert.deepEqual(await onlyA.request("join", ra), OK);
        assert.deepEqual(await onlyB.request("join", [rb]), OK);

        const payload = { text: "héllo 🎉", list: [1, null, true], nested: { deep: [{ x: "y" }] } };
        assert.deepEqual(await s.request("publish", { to: [ra, rb], event: "multi", data: payload }), OK);
        assert.deepEqual(await s.request("publish", { to: ra, event: "one", data: [] }), OK);
        // From a non-member: the members, the first sender included.
        assert.deepEqual(await none.request("publish", { to: [rb, ra], event: "outside", data: null }), OK);
        // The same room twice in `to`: still once.
        assert.deepEqual(await none.request("publish", { to: [ra, ra], event: "twice", data: 0 }), OK);
        // A room nobody is in.
        assert.deepEqual(await s.request("publish", { to: unique("empty"), event: "nobody", data: 1 }), OK);
        await barrier(s, all, [both, onlyA, onlyB, none]);
        await barrier(none, all, [s, both, onlyA, onlyB]);
        assertReceivers(clients, "multi", [both, onlyA, onlyB], "to [ra, rb] from a member of both");
        assertReceivers(clients, "one", [both, onlyA], "to ra from a member");
        assertReceivers(clients, "outside", [s, both, onlyA, onlyB], "to [rb, ra] from a non-member");
        assertReceivers(clients, "twice", [s, both, onlyA], "to [ra, ra]");
        assertReceivers(clients, "nobody", [], "to an empty room");
        assert.deepEqual(both.inbox.list("multi")[0], [payload], "JSON data intact");
        assert.deepEqual(onlyA.inbox.list("one")[0], [[]]);
        assert.deepEqual(onlyB.inbox.list("outside")[0], [null]);
        for (const c of clients) {
          const others = c.inbox.seq.filter((e) => !e.startsWith("barrier-"));
          assert.ok(others.every((e) => ["multi", "one", "outside", "twice"].includes(e)), `nothing else: ${others}`);
        }
        closeAll(clients);
      });

      test("volatile publishes are accepted and never duplicated", T, async () => {
        const clients = await group(4, { version, mode });
        const [s, a, b, outsider] = clients;
        const all = await joinAll(clients);
        const room = unique("vol");
        for (const c of [s, a, b]) assert.deepEqual(await c.request("join", room), OK);
        for (let i = 0; i < 5; i++) {
          assert.deepEqual(await s.request("publish", { to: room, event: "vol", data: i, volatile: true }), OK);
        }
        assert.deepEqual(await s.request("publish", { to: [room], event: "nonvol", data: 1, volatile: false }), OK);
        await barrier(s, all, [a, b, outsider]);
        // Volatile: dropped for sockets that cannot take it now, so at most once each.
        for (const c of [a, b]) {
          const got = c.inbox.list("vol").map(([i]) => i);
          assert.ok(got.length <= 5, `at most 5 volatile events, got ${got}`);
          assert.equal(new Set(got).size, got.length, `no duplicates: ${got}`);
          assert.deepEqual(got, [...got].sort(), "in order");
        }
        assert.equal(s.inbox.count("vol"), 0, "the sender gets no volatile event");
        assert.equal(outsider.inbox.count("vol"), 0, "a non-member gets no volatile event");
        assertReceivers(clients, "nonvol", [a, b], "volatile: false is a normal publish");
        closeAll(clients);
      });

      test("binary data is relayed intact: top level, nested in objects and arrays", T, async () => {
        const clients = await group(3, { version, mode });
        const [s, r1, r2] = clients;
        const all = await joinAll(clients);
        const room = unique("bin");
        for (const c of [s, r1, r2]) assert.deepEqual(await c.request("join", room), OK);
        const small = Buffer.from([0, 0xff, 0x1e, 0x3a, 0x62, 0x34]);
        const big = patternBytes(100_000, 9);
        const payloads = [
          patternBytes(300, 1),
          { file: patternBytes(64, 2), meta: { name: "x.bin", parts: [small, "text", { deep: patternBytes(10, 3) }] } },
          [small, 1, null, { b: Buffer.alloc(0) }, [patternBytes(5, 4)]],
          { big },
        ];
        for (const [i, data] of payloads.entries()) {
          assert.deepEqual(await s.request("publish", { to: room, event: `bin${i}`, data }), OK, `publish bin${i}`);
        }
        await barrier(s, all, [r1, r2]);
        for (const [i, data] of payloads.entries()) {
          assertReceivers(clients, `bin${i}`, [r1, r2], `bin${i}`);
          for (const r of [r1, r2]) {
            const got = r.inbox.list(`bin${i}`)[0];
            assert.equal(got.length, 1, "one argument");
            assertSameData(got[0], data, `bin${i} at v${r.version}`);
          }
        }
        closeAll(clients);
      });

      test("echo: the ack carries the same arguments, binary included", T, async () => {
        const [c] = await group(1, { version, mode });
        const bin = patternBytes(256, 5);
        const args = ["a", 1, { b: bin, list: [true, null, "x"] }, [patternBytes(3, 6)], bin];
        const got = await c.ack("echo", ...args);
        assertSameData(got, args, "echo");
        assert.deepEqual(await c.ack("echo", "only"), ["only"]);
        assert.deepEqual(await c.ack("echo"), [], "no arguments: an empty ack");
        const [only] = await c.ack("echo", patternBytes(1000, 7));
        assertSameData(only, patternBytes(1000, 7), "echo of one binary");
        c.close();
      });

      test("bad request: wrong shapes, empty and over-long names, too many names", T, async () => {
        // Its own namespace: the fixed 256-byte names must not meet other tests' clients.
        const clients = await group(2, { version, mode, nsp: `/${unique("bad")}` });
        const [c, other] = clients;
        const all = await joinAll(clients);
        const names = (n) => Array.from({ length: n }, (_, i) => `n${i}-${unique("m")}`);
        const cases = [
          ["join", 42],
          ["join", []],
          ["join", [1]],
          ["join", ["ok", 2]],
          ["join", null],
          ["join", { room: "x" }],
          ["join", ""],
          ["join", ["fine", ""]],
          ["join", "x".repeat(257)],
          ["join", "é".repeat(128) + "a"], // 257 bytes, 129 characters
          ["join", names(65)],
          ["leave", 42],
          ["leave", []],
          ["leave", ""],
          ["leave", names(65)],
          ["publish", { event: "e", data: 1 }],
          ["publish", { to: "r", data: 1 }],
          ["publish", { to: "r", event: 3 }],
          ["publish", { to: "r", event: "" }],
          ["publish", { to: "", event: "e" }],
          ["publish", { to: [], event: "e" }],
          ["publish", { to: [7], event: "e" }],
          ["publish", { to: "x".repeat(257), event: "e" }],
          ["publish", { to: names(65), event: "e" }],
          ["publish", "room"],
          ["publish", null],
          ["publish", ["r", "e"]],
        ];
        for (const [event, arg] of cases) {
          const label = `${event} ${JSON.stringify(arg).slice(0, 60)}`;
          assert.deepEqual(await c.request(event, arg), BAD, label);
        }
        assert.deepEqual(await c.request("join"), BAD, "join without arguments");
        assert.deepEqual(await c.request("publish"), BAD, "publish without arguments");

        // Limits are inclusive: 256 bytes, 64 names.
        const max = "y".repeat(256);
        const maxUtf8 = "é".repeat(128);
        assert.deepEqual(await c.request("join", max), OK, "a 256-byte name");
        assert.deepEqual(await c.request("join", maxUtf8), OK, "a 256-byte name of 128 characters");
        const sixtyFour = names(64);
        assert.deepEqual(await c.request("join", sixtyFour), OK, "64 names");
        assert.deepEqual(await c.request("leave", sixtyFour), OK, "leave 64 names");
        assert.deepEqual(await other.request("publish", { to: names(63).concat(max), event: "max", data: 1 }), OK);
        assert.deepEqual(await other.request("publish", { to: maxUtf8, event: "maxutf8", data: 1 }), OK);

        // A refused join joins none of its rooms.
        const partial = unique("partial");
        assert.deepEqual(await c.request("join", [partial, ""]), BAD);
        assert.deepEqual(await other.request("publish", { to: partial, event: "partial", data: 1 }), OK);
        assert.deepEqual(await other.request("publish", { to: sixtyFour[0], event: "left", data: 1 }), OK);
        await barrier(other, all, [c]);
        assertReceivers(clients, "max", [c], "to 64 names, one of them 256 bytes");
        assertReceivers(clients, "maxutf8", [c], "to a 256-byte UTF-8 name");
        assertReceivers(clients, "partial", [], "nothing joined by a refused join");
        assertReceivers(clients, "left", [], "left all 64");
        assert.equal(c.socket.connected, true, "still connected");
        closeAll(clients);
      });

      test("reserved event: publishing disconnect, connect, ... is refused and relays nothing", T, async () => {
        const clients = await group(2, { version, mode });
        const [s, r] = clients;
        const all = await joinAll(clients);
        const room = unique("res");
        assert.deepEqual(await r.request("join", room), OK);
        for (const event of ["disconnect", "connect", "connect_error", "disconnecting"]) {
          assert.deepEqual(await s.request("publish", { to: room, event, data: "x" }), RESERVED, event);
          assert.deepEqual(await s.request("publish", { to: [room], event, data: "x", volatile: true }), RESERVED, event);
        }
        assert.deepEqual(await s.request("publish", { to: room, event: "fine", data: "x" }), OK);
        await barrier(s, all, [r]);
        assert.deepEqual(
          r.inbox.seq.filter((e) => !e.startsWith("barrier-")),
          ["fine"],
          "only the accepted publish arrived",
        );
        assert.equal(r.socket.connected, true, "the member is still connected");
        assert.deepEqual(r.disconnects, []);
        closeAll(clients);
      });

      test("events outside the protocol are ignored; requests without an ack are carried out", T, async () => {
        const clients = await group(2, { version, mode });
        const [c, other] = clients;
        const all = await joinAll(clients);
        // No answer, no effect.
        const answers = await Promise.all([
          c.ackWithin(300, "subscribe", "room"),
          c.ackWithin(300, "rooms"),
          c.ackWithin(300, "message", { to: "x" }),
          c.ackWithin(300, "Join", "room"),
          c.ackWithin(300, "unknown", patternBytes(20, 8)),
        ]);
        assert.deepEqual(answers, [undefined, undefined, undefined, undefined, undefined], "no answers");
        c.emit("whatever", 1, 2, 3);
        c.emit("publish-all", { to: "r", event: "e" });
        // Still answered.
        assert.deepEqual(await c.ack("echo", "still here"), ["still here"]);
        // join and publish without an ack: carried out silently.
        const room = unique("silent");
        other.emit("join", room);
        other.emit("join", [unique("silent2")]);
        assert.deepEqual(await other.ack("echo", "sync"), ["sync"], "the join was handled before the echo");
        c.emit("publish", { to: room, event: "silent", data: "s" });
        c.emit("publish", { to: "", event: "bad" }); // refused, silently
        await barrier(c, all, [other]);
        assertReceivers(clients, "silent", [other], "publish without an ack to a room joined without an ack");
        assert.deepEqual(other.inbox.list("silent")[0], ["s"]);
        assert.equal(c.socket.connected, true, "the emitter is still connected");
        assert.deepEqual(c.disconnects, []);
        await sleep(50);
        assert.deepEqual(c.inbox.seq, [], "the emitter received nothing");
        closeAll(clients);
      });
    });
  }
});
