// Connecting to namespaces (TESTBED.md "Namespaces", "Middleware", "On
// connection") with socket.io-client 4.x and 2.x over polling, websocket and
// polling upgraded to websocket, against the testbed with --shards 2:
// the `auth` and `hello` events, `/custom` with auth, dynamic namespaces,
// unknown namespaces, middleware refusals, several namespaces on one
// connection.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  MATRIX,
  clientPool,
  openMonitor,
  sleep,
  startTestbed,
  waitConnected,
  withTimeout,
} from "./sio-helpers.mjs";

const T = { timeout: 20_000 };

let server;
let monitor;
const pool = clientPool(() => server.url);
before(async () => {
  server = await startTestbed();
  monitor = await openMonitor(server.url);
});
after(async () => {
  await pool.closeAll();
  monitor?.close();
  await server?.stop();
});

/** Checks `auth` then `hello`, in that order and nothing before them. */
async function checkGreeting(client, { auth, nsp }) {
  const [gotAuth] = await client.inbox.next("auth");
  const [hello] = await client.inbox.next("hello");
  assert.deepEqual(client.inbox.seq.slice(0, 2), ["auth", "hello"], "auth first, then hello");
  assert.deepEqual(gotAuth, auth, "auth event: the handshake auth");
  assert.deepEqual(Object.keys(hello), ["id", "nsp"], "hello keys");
  assert.equal(hello.nsp, nsp, "hello.nsp");
  assert.equal(hello.id, client.id, "hello.id is the client's socket id");
  if (client.version === 2) {
    // socket.io 4 names a v2 (protocol 3) socket after the Engine.IO session:
    // the session id on `/`, `<nsp>#<session id>` elsewhere.
    assert.equal(hello.id, nsp === "/" ? client.engineId : `${nsp}#${client.engineId}`, "v2 socket id");
  } else {
    assert.notEqual(hello.id, client.engineId, "v4 socket id is not the Engine.IO id");
  }
  return hello;
}

/** Expects a refusal: v4 `connect_error`, v2 an `error` event. Returns what the client got. */
async function expectRefused(client) {
  await assert.rejects(
    withTimeout(client.connected, 5000, `refusal of v${client.version} ${client.nsp}`),
    /connect_error|error before connect/,
  );
  assert.equal(client.socket.connected, false, "not connected");
  return client.version === 4 ? client.connectErrors[0] : client.errors[0];
}

for (const { version, mode } of MATRIX) {
  describe(`socket.io-client v${version}: ${mode}`, { concurrency: true }, () => {
    const opts = { version, mode };

    test("connects to / and gets auth then hello", T, async () => {
      // v4: the auth option; v2: a query, which on `/` only reaches the
      // Engine.IO handshake (v2 clients join `/` without a CONNECT packet).
      const client = await pool.connect(
        version === 4 ? { ...opts, auth: { token: "abc", n: 1, nested: { ok: true } } } : { ...opts, query: { token: "abc" } },
      );
      const hello = await checkGreeting(client, {
        nsp: "/",
        auth: version === 4 ? { token: "abc", n: 1, nested: { ok: true } } : {},
      });
      if (mode !== "polling") assert.equal(client.transport, "websocket");
      await monitor.waitFor((e) => e.type === "connection" && e.id === hello.id && e.nsp === "/");
      client.close();
    });

    test("connects to / without auth: auth is {}", T, async () => {
      const client = await pool.connect(opts);
      await checkGreeting(client, { nsp: "/", auth: {} });
      client.close();
    });

    test("connects to /custom with auth", T, async () => {
      const client = await pool.connect(
        version === 4
          ? { ...opts, nsp: "/custom", auth: { token: "xyz" } }
          : { ...opts, nsp: "/custom", query: { token: "xyz" } },
      );
      // v2: the CONNECT query (`40/custom?token=xyz,`) is the auth, as strings.
      const hello = await checkGreeting(client, { nsp: "/custom", auth: { token: "xyz" } });
      await monitor.waitFor((e) => e.type === "connection" && e.id === hello.id && e.nsp === "/custom");
      client.close();
    });

    if (version === 2) {
      test("v2: the namespace query in the URL is the auth", T, async () => {
        const client = await pool.connect({ ...opts, nsp: "/custom?token=in-url&x=1" });
        await checkGreeting(client, { nsp: "/custom", auth: { token: "in-url", x: "1" } });
        client.close();
      });
    }

    test("connects to a dynamic namespace /dyn-abc", T, async () => {
      const client = await pool.connect({ ...opts, nsp: "/dyn-abc" });
      await checkGreeting(client, { nsp: "/dyn-abc", auth: {} });
      const [echo] = await client.ack("echo", "in dyn");
      assert.equal(echo, "in dyn");
      client.close();
    });

    for (const nsp of ["/nope", "/dyn-ABC", "/dyn-", "/monitorx"]) {
      test(`an unknown namespace ${nsp} is refused with "Invalid namespace"`, T, async () => {
        const client = pool.create({ ...opts, nsp });
        const err = await expectRefused(client);
        if (version === 4) {
          assert.equal(err.message, "Invalid namespace");
          assert.equal(err.data, undefined, "no data");
        } else {
          // socket.io 4 sends {"message":"Invalid namespace"} to every client
          // generation; the 2.x client emits `error` with that object.
          assert.deepEqual(err, { message: "Invalid namespace" });
        }
        client.close();
      });
    }

    test("an unknown namespace leaves the connection open for the others", T, async () => {
      const main = await pool.connect(opts);
      const bad = await pool.also(main, "/unknown");
      const err = await expectRefused(bad);
      assert.ok(err, "refused");
      await sleep(50);
      assert.equal(main.socket.connected, true, "/ still connected");
      const [echo] = await main.ack("echo", "still here");
      assert.equal(echo, "still here");
      const custom = await pool.also(main, "/custom", version === 4 ? { auth: { k: "v" } } : { query: { k: "v" } });
      await waitConnected(custom, { waitUpgrade: false });
      await checkGreeting(custom, { nsp: "/custom", auth: { k: "v" } });
      assert.equal(custom.engineId, main.engineId, "same Engine.IO session");
      main.close();
    });

    if (version === 4) {
      test("middleware refusal: connect_error with message and data", T, async () => {
        for (const nsp of ["/", "/custom", "/dyn-refuse1"]) {
          const client = pool.create({ ...opts, nsp, auth: { refuse: true } });
          const err = await expectRefused(client);
          assert.equal(err.message, "refused by middleware", `${nsp}: message`);
          assert.deepEqual(err.data, { reason: "test" }, `${nsp}: data`);
          client.close();
        }
      });

      test("middleware: refuse false is accepted", T, async () => {
        const client = await pool.connect({ ...opts, nsp: "/custom", auth: { refuse: false } });
        await checkGreeting(client, { nsp: "/custom", auth: { refuse: false } });
        client.close();
      });
    } else {
      test("middleware refusal: the 2.x client gets an `error` event with the error's data", T, async () => {
        // socket.io 4 sends `err.data || err.message` to protocol-3 clients:
        // `44/custom,{"reason":"test"}`.
        for (const [nsp, query] of [
          ["/custom?refuse=1", undefined],
          ["/custom", { refuse: 1 }],
          ["/dyn-refuse2", { refuse: "1" }],
        ]) {
          const client = pool.create({ ...opts, nsp, query });
          const err = await expectRefused(client);
          assert.deepEqual(err, { reason: "test" }, `${nsp} ${JSON.stringify(query)}`);
          assert.equal(client.errors.length, 1, "one error");
          client.close();
        }
      });

      test("middleware: v2 clients on / are never refused (no CONNECT packet, auth {})", T, async () => {
        const client = await pool.connect({ ...opts, query: { refuse: 1 } });
        await checkGreeting(client, { nsp: "/", auth: {} });
        client.close();
      });
    }
  });
}

describe("several namespaces over one connection", { concurrency: true }, () => {
  for (const { version, mode } of MATRIX) {
    test(`v${version} ${mode}: /, /custom and /dyn-multi share one Engine.IO session`, T, async () => {
      const main = await pool.connect({ version, mode });
      const others = [];
      for (const nsp of ["/custom", "/dyn-multi"]) {
        const other = await pool.also(main, nsp, version === 4 ? { auth: { nsp } } : { query: { nsp } });
        await waitConnected(other, { waitUpgrade: false });
        await checkGreeting(other, { nsp, auth: { nsp } });
        assert.equal(other.engineId, main.engineId, "same Engine.IO session");
        others.push(other);
      }
      const ids = new Set([main.id, ...others.map((o) => o.id)]);
      assert.equal(ids.size, 3, "three distinct socket ids");
      const results = await Promise.all([main, ...others].map((c) => c.ack("echo", c.nsp)));
      assert.deepEqual(results, [["/"], ["/custom"], ["/dyn-multi"]]);
      main.close();
      for (const o of others) o.close();
    });
  }
});
