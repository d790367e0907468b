// Connection-state recovery (issue 13) with socket.io-client 4.8, against
// the hub binary and against reference-relay.mjs (socket.io 4.8 with
// connectionStateRecovery), so that both are seen to behave alike.
//
// The client reaches the server through a small TCP proxy in this file,
// which loses the transport abruptly: it resets both sides of every
// connection it carries (not a clean `socket.disconnect()`), and refuses
// new connections until told otherwise, so that publishes are missed for
// certain. Then:
// - within the window: the same `socket.id`, `socket.recovered` true on
//   both sides (the relay's `session` request), still in the room, and the
//   missed publishes exactly once and in order;
// - after the window (a server with a 1.5 s window): a fresh session;
// - past the byte budget (hub only: socket.io keeps every packet of the
//   window, it has no budget): a fresh session;
// - on a hub with --shards 2, the drop is repeated until the client has
//   come back on the shard its socket id does not name (each return
//   checked the same), so the restore goes through the shard holding the
//   session.
// Both transports (polling, websocket).

import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";

import { shardOf } from "./helpers.mjs";
import {
  againstReference,
  eventually,
  freePort,
  metricSum,
  mintToken,
  relayClient,
  startRelay,
  unique,
  waitConnected,
  withTimeout,
} from "./relay-helpers.mjs";

const NODE_RELAY = ["node", "tests/clients/node/reference-relay.mjs"];
// "hub" is HUB_RELAY_CMD (the built hub unless set): with the reference
// there, the hub-only tests below say so and are skipped.
const SERVERS = [
  ["hub", undefined],
  ["node", NODE_RELAY],
];
const HUB_ONLY = againstReference() && "HUB_RELAY_CMD is the reference relay: hub's shards and budget";
const MODES = ["polling", "websocket"];
const WINDOW_MS = 60_000;
const SHORT_WINDOW_MS = 1_500;

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** A TCP proxy to `port` that can reset every connection it carries and refuse new ones. */
async function startProxy(port) {
  const pairs = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(port, "127.0.0.1");
    // A long-polling GET forwarded and not answered yet: since when.
    const pair = { client, upstream, getSince: null };
    client.on("data", (chunk) => {
      if (chunk.subarray(0, 4).toString() === "GET ") pair.getSince = Date.now();
    });
    upstream.on("data", () => {
      pair.getSince = null;
    });
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Reset both sides of every connection, and refuse new ones. */
    cut() {
      refusing = true;
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    open() {
      refusing = false;
    },
    /**
     * Resolves once a GET has waited upstream for `ms`: a long-polling
     * server notices a client's loss through its parked GET; without one
     * it would wait for its heartbeat. (A wait for the network, bounded:
     * the server reads a loopback request within `ms`.)
     */
    parkedGet(ms = 100) {
      return withTimeout(
        new Promise((resolve) => {
          const check = () =>
            [...pairs].some((p) => p.getSince !== null && Date.now() - p.getSince >= ms) ? resolve() : setTimeout(check, 10);
          check();
        }),
        10_000,
        "a long-polling GET parked at the server",
      );
    },
    close: () =>
      new Promise((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(resolve);
      }),
  };
}

async function startServer(command, { shards = 1, window = WINDOW_MS, budget, extra = [] } = {}) {
  const admin = `127.0.0.1:${await freePort()}`;
  const args = ["--recovery-window", String(window), "--admin-bind", admin, ...extra];
  if (budget !== undefined) args.push("--recovery-buffer-bytes", String(budget));
  const server = await startRelay(args, { shards, command });
  // The hub's metrics say when it keeps a session (the reference has none).
  const hub = command === undefined && !againstReference();
  server.keptSessions = hub ? () => metricSum(`http://${admin}`, "hub_recovery_sessions") : undefined;
  // The reference says on stderr when a socket is gone (and its session kept).
  server.sawGone = (id) => server.stderr().includes(`reference-relay: socket gone socket=${id} `);
  cleanup.push(() => server.stop());
  const proxy = await startProxy(server.port);
  cleanup.push(() => proxy.close());
  return { server, proxy };
}

/** A client through the proxy that reconnects at once; `returns` counts its connects. */
async function subject(proxy, mode, token) {
  const client = relayClient(proxy.url, {
    version: 4,
    mode,
    token,
    extra: { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 },
  });
  client.connects = 0;
  client.socket.on("connect", () => {
    client.connects += 1;
  });
  cleanup.push(async () => client.close());
  return waitConnected(client);
}

async function publisher(server, token) {
  const client = relayClient(server.url, { version: 4, mode: "websocket", token });
  cleanup.push(async () => client.close());
  return waitConnected(client);
}

async function publish(from, room, event, data) {
  assert.deepEqual(await from.request("publish", { to: room, event, data }), { ok: true }, `publish ${event}`);
}

/** The events of `client` named `prefix-*`, in arrival order, with their data and offset. */
function received(client, prefix) {
  return client.inbox.seq
    .filter((e) => e.startsWith(prefix))
    .map((event, i, all) => {
      const k = all.slice(0, i).filter((x) => x === event).length;
      return { event, args: client.inbox.list(event)[k] };
    });
}

/**
 * Drop the transport, publish `missed` while the client is away, let it
 * back once the server keeps its session (on a hub, from its metrics; on
 * the reference, from its stderr: a client that comes back before the
 * server has seen it go gets a fresh session, with socket.io too; under
 * load a reconnect could beat the reference's own look at the parked GET);
 * resolves once it is connected again.
 */
async function dropAndMiss(server, proxy, client, from, room, missed) {
  if (client.mode === "polling") await proxy.parkedGet();
  const id = client.socket.id;
  const kept = server.keptSessions ? await server.keptSessions() : 0;
  const before = client.connects;
  const gone = new Promise((resolve) => client.socket.once("disconnect", resolve));
  proxy.cut();
  const reason = await withTimeout(gone, 10_000, "the client sees its transport go");
  assert.match(reason, /^transport (close|error)$/, "an abrupt loss, not a clean disconnect");
  for (const [event, data] of missed) await publish(from, room, event, data);
  if (server.keptSessions) {
    await eventually(async () => (await server.keptSessions()) > kept, 10_000, "the hub keeps the session");
  } else {
    await eventually(() => server.sawGone(id), 10_000, `the reference sees socket ${id} go`);
  }
  proxy.open();
  await reconnected(client, before);
}

/** Resolves once `client` has connected more than `before` times. */
function reconnected(client, before) {
  return withTimeout(
    new Promise((resolve) => {
      const check = () => (client.connects > before ? resolve() : setTimeout(check, 20));
      check();
    }),
    10_000,
    "the client reconnects",
  );
}

for (const [name, command] of SERVERS) {
  for (const mode of MODES) {
    test(`${name} ${mode}: a client back within the window keeps its id and rooms and gets what it missed, once, in order`, { timeout: 60_000 }, async () => {
      const { server, proxy } = await startServer(command);
      const from = await publisher(server);
      const client = await subject(proxy, mode);
      const room = unique("rec");
      assert.deepEqual(await client.request("join", room), { ok: true });
      const first = await client.request("session");
      assert.equal(first.recovered, false, "a new session is not recovered");
      assert.equal(client.socket.recovered, false);

      await publish(from, room, "m-0", { n: 0 });
      const m0 = await client.inbox.next("m-0");
      assert.deepEqual(m0[0], { n: 0 });
      assert.equal(typeof m0[1], "string", "with recovery on, an offset follows the data");

      const id = client.socket.id;
      const missed = [1, 2, 3, 4, 5].map((n) => [`m-${n}`, { n }]);
      await dropAndMiss(server, proxy, client, from, room, missed);
      assert.equal(client.socket.id, id, "the same socket id");
      assert.equal(client.socket.recovered, true, "socket.recovered on the client");
      const again = await client.request("session");
      assert.equal(again.id, id);
      assert.equal(again.recovered, true, "socket.recovered on the server");
      assert.ok(again.rooms.includes(room), `still in ${room}: ${JSON.stringify(again.rooms)}`);

      await publish(from, room, "m-6", { n: 6 });
      await client.inbox.waitCount("m-6", 1, 10_000);
      const got = received(client, "m-");
      assert.deepEqual(
        got.map((g) => g.event),
        ["m-0", "m-1", "m-2", "m-3", "m-4", "m-5", "m-6"],
        "every publish exactly once, in order",
      );
      for (const g of got) assert.deepEqual(g.args[0], { n: Number(g.event.slice(2)) });
      const offsets = got.map((g) => g.args[1]);
      assert.equal(new Set(offsets).size, offsets.length, `distinct offsets: ${offsets}`);
    });

    test(`${name} ${mode}: after the window, a fresh session`, { timeout: 60_000 }, async () => {
      const { server, proxy } = await startServer(command, { window: SHORT_WINDOW_MS });
      const from = await publisher(server);
      const client = await subject(proxy, mode);
      const room = unique("late");
      assert.deepEqual(await client.request("join", room), { ok: true });
      await publish(from, room, "w-0", 0);
      await client.inbox.next("w-0");
      const id = client.socket.id;
      if (mode === "polling") await proxy.parkedGet();
      const before = client.connects;
      const gone = new Promise((resolve) => client.socket.once("disconnect", resolve));
      proxy.cut();
      await withTimeout(gone, 10_000, "the client sees its transport go");
      await publish(from, room, "w-1", 1);
      // Away for longer than the window (the one wait of this suite that is
      // a time: the window is what is tested).
      await new Promise((resolve) => setTimeout(resolve, SHORT_WINDOW_MS + 300));
      proxy.open();
      await reconnected(client, before);
      assert.notEqual(client.socket.id, id, "a new socket id");
      assert.equal(client.socket.recovered, false, "not recovered");
      const session = await client.request("session");
      assert.equal(session.recovered, false);
      assert.ok(!session.rooms.includes(room), "not in the old room");
      assert.equal(client.inbox.count("w-1"), 0, "nothing replayed");
    });

    test(
      `${name} ${mode}: past the byte budget, a fresh session`,
      {
        timeout: 60_000,
        skip: (name === "node" && "socket.io keeps every packet of the window: it has no byte budget") || HUB_ONLY,
      },
      async () => {
        const { server, proxy } = await startServer(command, { budget: 8192 });
        const from = await publisher(server);
        const client = await subject(proxy, mode);
        const room = unique("budget");
        assert.deepEqual(await client.request("join", room), { ok: true });
        await publish(from, room, "b-0", 0);
        await client.inbox.next("b-0");
        const id = client.socket.id;
        // 16 KB while away: the client's offset is evicted.
        const missed = Array.from({ length: 16 }, (_, i) => [`b-${i + 1}`, "x".repeat(1024)]);
        await dropAndMiss(server, proxy, client, from, room, missed);
        assert.notEqual(client.socket.id, id, "a new socket id");
        assert.equal(client.socket.recovered, false, "not recovered");
        assert.equal((await client.request("session")).recovered, false);
        assert.equal(received(client, "b-").length, 1, "no partial replay");
      },
    );
  }
}

for (const mode of MODES) {
  test(`hub --shards 2 ${mode}: the client comes back on the other shard and recovers there`, { timeout: 90_000, skip: HUB_ONLY }, async () => {
    const { server, proxy } = await startServer(undefined, { shards: 2 });
    const from = await publisher(server);
    const client = await subject(proxy, mode);
    const room = unique("cross");
    assert.deepEqual(await client.request("join", room), { ok: true });
    await publish(from, room, "c-0", 0);
    await client.inbox.next("c-0");
    const id = client.socket.id;
    const home = shardOf(id);
    let n = 0;
    const places = [];
    // Each return is checked; stop once one landed on the other shard and
    // one more came back after it (a session kept where it was restored).
    let crossed = 0;
    for (let round = 0; round < 16 && crossed < 2; round++) {
      const missed = [1, 2, 3].map(() => {
        n += 1;
        return [`c-${n}`, n];
      });
      await dropAndMiss(server, proxy, client, from, room, missed);
      const shard = shardOf(client.socket.io.engine.id);
      places.push(shard);
      if (shard !== home || crossed > 0) crossed += 1;
      assert.equal(client.socket.id, id, `round ${round}: the same socket id`);
      assert.equal(client.socket.recovered, true, `round ${round}: recovered (on shard ${shard})`);
      const session = await client.request("session");
      assert.equal(session.recovered, true);
      assert.ok(session.rooms.includes(room), `round ${round}: still in the room`);
      await client.inbox.waitCount(`c-${n}`, 1, 10_000);
    }
    assert.ok(crossed >= 1, `the client came back on shard ${1 - home} at least once (returns on shards ${places})`);
    n += 1;
    await publish(from, room, `c-${n}`, n);
    await client.inbox.waitCount(`c-${n}`, 1, 10_000);
    const got = received(client, "c-").map((g) => g.event);
    assert.deepEqual(
      got,
      Array.from({ length: n + 1 }, (_, i) => `c-${i}`),
      `every publish once, in order (returns on shards ${places}, socket id on shard ${home})`,
    );
  });
}

for (const [name, command, shards] of [
  ["hub --shards 2", undefined, 2],
  ["node", NODE_RELAY, 1],
]) {
  test(`${name}: a recovered socket keeps its token grant (middlewares skipped)`, { timeout: 90_000, skip: shards > 1 && HUB_ONLY }, async () => {
    const secret = "recovery-secret";
    const { server, proxy } = await startServer(command, { shards, extra: ["--auth-secret", secret] });
    const from = await publisher(server, mintToken(secret, { sub: "pub", rooms: ["*"], publish: ["*"] }));
    const client = await subject(proxy, "websocket", mintToken(secret, { sub: "u1", rooms: ["t-*"], publish: ["t-*"] }));
    const room = unique("t-grant");
    assert.deepEqual(await client.request("join", room), { ok: true });
    await publish(from, room, "g-0", 0);
    await client.inbox.next("g-0");
    const id = client.socket.id;
    // On a hub with two shards, until a return lands on the other shard.
    let n = 0;
    for (let round = 0; round < 16; round++) {
      n += 1;
      await dropAndMiss(server, proxy, client, from, room, [[`g-${n}`, n]]);
      assert.equal(client.socket.id, id, "the same socket id");
      assert.equal(client.socket.recovered, true, "recovered");
      if (shards === 1 || shardOf(client.socket.io.engine.id) !== shardOf(id)) break;
    }
    if (shards > 1) assert.notEqual(shardOf(client.socket.io.engine.id), shardOf(id), "came back on the other shard");
    const session = await client.request("session");
    assert.ok(session.rooms.includes("user:u1"), `the user's room kept: ${JSON.stringify(session.rooms)}`);
    // What the token allows, and only that, still holds.
    assert.deepEqual(await client.request("join", unique("t-more")), { ok: true });
    assert.deepEqual(await client.request("join", unique("other")), { ok: false, error: "forbidden" });
    assert.deepEqual(await client.request("publish", { to: unique("other"), event: "x", data: 1 }), { ok: false, error: "forbidden" });
    await client.inbox.waitCount(`g-${n}`, 1, 10_000);
    assert.deepEqual(
      received(client, "g-").map((g) => g.event),
      Array.from({ length: n + 1 }, (_, i) => `g-${i}`),
      "every publish once, in order",
    );
  });
}
