// A cluster on Redis (issue 12): relays of both kinds on one redis-server,
// their clients on every node, and what crosses between nodes.
//
// Each suite is a topology (a list of node specs, `{kind: "node"}` for
// reference-relay.mjs on the official @socket.io/redis-adapter, `{kind:
// "hub", shards}` for the hub) in one adapter mode (classic; sharded with
// dynamic and with static subscriptions), all nodes on a redis-server of
// the suite's own (redis-helpers.mjs) with the same prefix. Cases:
//
// - relay `publish` from every node, over WebSocket and over polling, to
//   one room and to two: every member on every node gets it exactly once
//   (once when in both rooms), the publishing socket never, non-members
//   never; the data, binary included, arrives intact;
// - @socket.io/redis-emitter (classic only: the emitter speaks PUBLISH on
//   the classic channels, which a sharded cluster does not listen to) by
//   room, room with `except`, `except` alone and namespace;
// - server-side operations through reference-relay's `--cluster-test`
//   events (see its header): fetchSockets, socketsJoin, socketsLeave,
//   disconnectSockets, serverSideEmit without and with acks, broadcasts
//   with acks, allRooms (classic: the sharded adapter has none).
//
// Every count is waited for with a deadline, then made final by a barrier
// (a last publish on the same path, which reaches each client after
// everything sent before it) and compared exactly. A subscription may lag a
// join or a namespace's first connection (sharded dynamic mode subscribes a
// room's channel when the room appears on a node), so each case first
// publishes probes until every receiver got one.
//
// The hub: `HUB_RELAY_CMD` (default target/debug/hub) for `kind: "hub"`,
// or `HUB_CLUSTER_CMD` when set (a hub server that also answers the
// `--cluster-test` events). The hub topologies need it to accept
// `--redis-url` (and `--redis-subscription-mode`, and `--cluster-test` for
// the cases asking from every node): a hub command that lacks them fails
// those tests, saying what is missing.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, describe, it } from "node:test";

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

import { REPO_ROOT, commandFromEnv, eventually, sleep, withTimeout } from "./helpers.mjs";
import { alsoOn, relayClient, relayCommand, startRelay, unique, waitConnected } from "./relay-helpers.mjs";
import { startRedis } from "./redis-helpers.mjs";

const NODE_RELAY = ["node", "tests/clients/node/reference-relay.mjs"];
const DELIVERY_MS = 10_000;
const T = { timeout: 90_000 };

// ------------------------------------------------------------ capabilities

/** The hub-side command: HUB_CLUSTER_CMD when set, else the relay (HUB_RELAY_CMD / target/debug/hub). */
function hubCommand() {
  if ((process.env.HUB_CLUSTER_CMD ?? "").trim() !== "") {
    return commandFromEnv("HUB_CLUSTER_CMD", undefined, "set HUB_CLUSTER_CMD to an existing program");
  }
  return relayCommand();
}

/** What a command's usage text (`--help`, or the usage printed on a bad argument) offers. */
function capabilities(command) {
  const [program, ...args] = command;
  const run = spawnSync(program, [...args, "--help"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 20_000 });
  const text = `${run.stdout ?? ""}${run.stderr ?? ""}`;
  return {
    command: command.join(" "),
    error: run.error?.message,
    redis: text.includes("--redis-url"),
    subscriptionMode: text.includes("--redis-subscription-mode"),
    clusterTest: text.includes("--cluster-test"),
  };
}

const KINDS = {
  node: { command: NODE_RELAY, caps: capabilities(NODE_RELAY) },
};
let hubKind;
/** The hub kind, looked at once (only when a hub topology runs). */
function hub() {
  if (hubKind === undefined) {
    let command;
    try {
      command = hubCommand();
      hubKind = { command, caps: capabilities(command) };
    } catch (err) {
      const caps = { error: err.message, redis: false, clusterTest: false, subscriptionMode: false };
      hubKind = { command: undefined, caps };
    }
  }
  return hubKind;
}
const kindOf = (spec) => (spec.kind === "hub" ? hub() : KINDS[spec.kind]);

/** What the hub command lacks for a test of `topology` in `mode`, or undefined. */
function missing(topology, mode, { clusterTestEverywhere = false } = {}) {
  if (!topology.specs.some((s) => s.kind === "hub")) return undefined;
  const caps = hub().caps;
  if (!caps.redis) return `the hub command \`${caps.command}\` does not accept --redis-url`;
  if (mode.subscription === "static" && !caps.subscriptionMode) return `the hub command \`${caps.command}\` does not accept --redis-subscription-mode`;
  if (clusterTestEverywhere && !caps.clusterTest) return `the hub command \`${caps.command}\` has no --cluster-test events (set HUB_CLUSTER_CMD)`;
  return undefined;
}

// ----------------------------------------------------------------- cluster

/**
 * The suite's cluster, started on first use: a redis-server and one relay
 * per spec, all on one prefix. Fails with a clear message when a command
 * lacks what the mode needs.
 */
function lazyCluster(topology, mode) {
  let started;
  const state = { redis: undefined, nodes: [] };
  const start = async () => {
    for (const spec of topology.specs) {
      const { caps } = kindOf(spec);
      if (caps.error !== undefined) throw new Error(`${spec.kind}: ${caps.error}`);
      if (!caps.redis) {
        throw new Error(
          `the ${spec.kind} command \`${caps.command}\` does not accept --redis-url (its --help does not list it): ` +
            "the cluster tests need the hub's Redis cluster flags (issue 12)",
        );
      }
      if (mode.subscription === "static" && !caps.subscriptionMode) {
        throw new Error(`the ${spec.kind} command \`${caps.command}\` does not accept --redis-subscription-mode`);
      }
    }
    state.redis = await startRedis();
    for (const [i, spec] of topology.specs.entries()) {
      const { command, caps } = kindOf(spec);
      const args = ["--redis-url", state.redis.url, "--redis-mode", mode.mode];
      if (mode.prefix !== undefined) args.push("--redis-prefix", mode.prefix);
      if (mode.subscription !== undefined && caps.subscriptionMode) {
        args.push("--redis-subscription-mode", mode.subscription);
      }
      if (caps.clusterTest) args.push("--cluster-test");
      const server = await startRelay(args, { shards: spec.shards ?? 1, command });
      state.nodes.push({
        index: i,
        kind: spec.kind,
        label: `${spec.kind}#${i}${spec.shards ? `(${spec.shards} shards)` : ""}`,
        name: `${server.host}:${server.port}`,
        clusterTest: caps.clusterTest,
        server,
      });
    }
    return state;
  };
  return {
    get: () => (started ??= start()),
    async stop() {
      if (started === undefined) return;
      await started.catch(() => {});
      await Promise.allSettled(state.nodes.map((n) => n.server.stop()));
      await state.redis?.stop();
    },
    /** What each node logged (for failure messages). */
    logs: () => state.nodes.map((n) => `--- ${n.label} stderr ---\n${n.server.stderr().slice(-3000)}`).join("\n"),
  };
}

// ----------------------------------------------------------------- clients

/** Clients made through it are closed together. */
function clientSet() {
  const all = new Set();
  return {
    /** A connected v4 client of `node` in `nsp`, joined to `rooms`, tagged. */
    async connect(node, { tag, rooms = [], mode = "websocket", nsp = "/" }) {
      const client = relayClient(node.server.url, { version: 4, mode, nsp });
      all.add(client);
      client.tag = tag;
      client.node = node;
      // Answers broadcasts with acks with who it is.
      client.socket.on("ask", (data, ack) => ack?.({ tag, data }));
      await waitConnected(client);
      if (rooms.length > 0) assert.deepEqual(await client.request("join", rooms), { ok: true }, `${tag} joins ${rooms}`);
      return client;
    },
    /** Closes `client` with the others. */
    track(client) {
      all.add(client);
      return client;
    },
    close() {
      for (const c of all) c.close();
      all.clear();
    },
  };
}

/**
 * Publishes probes (`publish(event)`) until each of `receivers` got at
 * least one, again every 100 ms, within DELIVERY_MS: the paths are live.
 */
async function converge(publish, receivers, what) {
  const event = unique("probe");
  const deadline = Date.now() + DELIVERY_MS;
  for (;;) {
    await publish(event);
    const pending = () => receivers.filter((c) => c.inbox.count(event) === 0);
    const until = Math.min(Date.now() + 100, deadline);
    while (pending().length > 0 && Date.now() < until) await sleep(10);
    if (pending().length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `${what}: no probe reached ${pending()
          .map((c) => `${c.tag}@${c.node.label}`)
          .join(", ")} within ${DELIVERY_MS} ms`,
      );
    }
  }
}

/** Waits until each client has `want(c)` of `event`, then asserts exact counts for every client. */
async function expectCounts(clients, event, want, what) {
  await eventually(
    () => clients.every((c) => c.inbox.count(event) >= want(c)),
    DELIVERY_MS,
    () =>
      `${what}: ${clients
        .filter((c) => c.inbox.count(event) < want(c))
        .map((c) => `${c.tag}@${c.node.label} has ${c.inbox.count(event)}/${want(c)}`)
        .join(", ")}`,
  );
}

function assertExact(clients, event, want, what) {
  for (const c of clients) {
    const got = c.inbox.count(event);
    assert.equal(got, want(c), `${what}: ${c.tag}@${c.node.label} got "${event}" ${got} times`);
  }
}

const bytesOf = (value) => {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  assert.fail(`expected binary, got ${JSON.stringify(value)}`);
};

// ------------------------------------------------------------------- suites

const TOPOLOGIES = [
  { name: "node + node", specs: [{ kind: "node" }, { kind: "node" }] },
  {
    name: "hub (1 shard) + hub (2 shards) + node",
    specs: [{ kind: "hub", shards: 1 }, { kind: "hub", shards: 2 }, { kind: "node" }],
  },
];
const ADAPTER_MODES = [
  { name: "classic", mode: "classic", prefix: "hubtest", emitter: true, allRooms: true },
  { name: "sharded, dynamic", mode: "sharded", subscription: "dynamic" },
  { name: "sharded, static", mode: "sharded", subscription: "static", prefix: "static-io" },
];

for (const topology of TOPOLOGIES) {
  for (const mode of ADAPTER_MODES) {
    describe(`cluster: ${topology.name}, ${mode.name}`, () => {
      const cluster = lazyCluster(topology, mode);
      const clients = clientSet();
      after(async () => {
        clients.close();
        await cluster.stop();
      });
      const opts = () => T;
      /** Runs `body(state)`, adding the nodes' logs to a failure. */
      /** A hub command that lacks what a test needs fails it, saying so (never a skip). */
      const run = (body, needs = {}) => async () => {
        const lacking = missing(topology, mode, needs);
        if (lacking !== undefined) throw new Error(lacking);
        const state = await cluster.get();
        try {
          await body(state);
        } catch (err) {
          err.message += `\n${cluster.logs()}`;
          throw err;
        } finally {
          clients.close();
        }
      };

      const runNeedingClusterTest = (body) => run(body, { clusterTestEverywhere: true });

      for (const transport of ["websocket", "polling"]) {
        it(
          `${transport}: a publish from every node reaches each member on every node once, never the sender nor non-members`,
          opts(),
          run(async ({ nodes }) => {
            const [r1, r2, other] = [unique("r1"), unique("r2"), unique("x")];
            const senders = [];
            const all = [];
            for (const node of nodes) {
              const c = (tag, rooms) => clients.connect(node, { tag: `${tag}${node.index}`, rooms, mode: transport });
              const [sender, both, onlyR2, outsider] = await Promise.all([
                c("sender", [r1]),
                c("both", [r1, r2]),
                c("r2only", [r2]),
                c("outsider", [other]),
              ]);
              senders.push(sender);
              all.push(sender, both, onlyR2, outsider);
            }
            const inR1 = (c) => c.tag.startsWith("sender") || c.tag.startsWith("both");
            const inR2 = (c) => c.tag.startsWith("both") || c.tag.startsWith("r2only");
            for (const sender of senders) {
              await converge(
                (event) => sender.request("publish", { to: [r1, r2], event }),
                all.filter((c) => c !== sender && (inR1(c) || inR2(c))),
                `probes from ${sender.tag}`,
              );
              await converge(
                (event) => sender.request("publish", { to: r1, event }),
                all.filter((c) => c !== sender && inR1(c)),
                `probes to one room from ${sender.tag}`,
              );
            }

            const payload = (i) => ({ from: i, bytes: Buffer.from([i, 0, 255, 0x7b]), nested: [{ n: 300 + i }] });
            for (const [i, sender] of senders.entries()) {
              const publish = (to, event) => sender.request("publish", { to, event, data: payload(i) });
              assert.deepEqual(await publish(r1, `one-${i}`), { ok: true });
              assert.deepEqual(await publish([r1, r2], `two-${i}`), { ok: true });
            }
            for (const [i, sender] of senders.entries()) {
              const wantOne = (c) => (c !== sender && inR1(c) ? 1 : 0);
              const wantTwo = (c) => (c !== sender && (inR1(c) || inR2(c)) ? 1 : 0);
              await expectCounts(all, `one-${i}`, wantOne, `publish to one room from node ${i}`);
              await expectCounts(all, `two-${i}`, wantTwo, `publish to two rooms from node ${i}`);
              // The barrier: after it, nothing more of sender i can come.
              const barrier = `barrier-${i}`;
              await sender.request("publish", { to: [r1, r2], event: barrier });
              await expectCounts(all, barrier, wantTwo, `barrier from node ${i}`);
              assertExact(all, `one-${i}`, wantOne, `publish to one room from node ${i}`);
              assertExact(all, `two-${i}`, wantTwo, `publish to two rooms from node ${i}`);
              for (const c of all) {
                for (const event of [`one-${i}`, `two-${i}`]) {
                  for (const [data] of c.inbox.list(event)) {
                    assert.equal(data.from, i);
                    assert.deepEqual(data.nested, [{ n: 300 + i }]);
                    assert.ok(bytesOf(data.bytes).equals(payload(i).bytes), `${event} bytes at ${c.tag}`);
                  }
                }
              }
            }
          }),
        );
      }

      if (mode.emitter) {
        it(
          "the emitter reaches sockets on every node by room, except and namespace",
          opts(),
          run(async ({ nodes, redis }) => {
            const redisClient = createClient({ url: redis.url });
            await redisClient.connect();
            try {
              const emitter = new Emitter(redisClient, mode.prefix !== undefined ? { key: mode.prefix } : {});
              const [room, excluded] = [unique("room"), unique("except")];
              const nsp = `/${unique("other")}`;
              const all = [];
              for (const node of nodes) {
                const c = (tag, rooms, n = "/") => clients.connect(node, { tag: `${tag}${node.index}`, rooms, nsp: n });
                all.push(
                  ...(await Promise.all([
                    c("member", [room]),
                    c("excluded", [room, excluded]),
                    c("loner", []),
                    c("nsp", [room], nsp),
                  ])),
                );
              }
              const kind = (c) => c.tag.replace(/\d+$/, "");
              const rootOnes = all.filter((c) => kind(c) !== "nsp");
              const inRoom = all.filter((c) => kind(c) === "member" || kind(c) === "excluded");
              const inNsp = all.filter((c) => kind(c) === "nsp");
              await converge((event) => emitter.to(room).emit(event), inRoom, "emitter probes to the room");
              await converge((event) => emitter.emit(event), rootOnes, "emitter probes to all");
              await converge((event) => emitter.of(nsp).to(room).emit(event), inNsp, "emitter probes to the namespace");

              const bytes = Buffer.from([1, 2, 3, 0, 0xff]);
              emitter.to(room).emit("em-room", { bytes });
              emitter.to(room).except(excluded).emit("em-room-except", 1);
              emitter.except(excluded).emit("em-except", 2);
              emitter.of(nsp).to(room).emit("em-nsp", 3);
              const wants = {
                "em-room": (c) => (kind(c) === "member" || kind(c) === "excluded" ? 1 : 0),
                "em-room-except": (c) => (kind(c) === "member" ? 1 : 0),
                "em-except": (c) => (kind(c) === "member" || kind(c) === "loner" ? 1 : 0),
                "em-nsp": (c) => (kind(c) === "nsp" ? 1 : 0),
              };
              for (const [event, want] of Object.entries(wants)) await expectCounts(all, event, want, `emitter ${event}`);
              // Barriers on both namespaces, after which nothing more can come.
              emitter.emit("em-barrier");
              emitter.of(nsp).emit("em-barrier");
              await expectCounts(all, "em-barrier", () => 1, "emitter barrier");
              for (const [event, want] of Object.entries(wants)) assertExact(all, event, want, `emitter ${event}`);
              for (const c of all) {
                for (const [data] of c.inbox.list("em-room")) {
                  assert.ok(bytesOf(data.bytes).equals(bytes), `em-room bytes at ${c.tag}`);
                }
              }
            } finally {
              await redisClient.quit();
            }
          }),
        );
      }

      // ------------------------------------------- server-side operations

      /** The nodes whose clients can ask for `--cluster-test` operations. */
      const askers = (nodes) => {
        const list = nodes.filter((n) => n.clusterTest);
        assert.ok(list.length > 0, "no node answers the --cluster-test events");
        return list;
      };
      /** One client per node in `room` (plus `extra` rooms), tagged `<tag><node>`. */
      const onEveryNode = (nodes, tag, rooms) =>
        Promise.all(nodes.map((node) => clients.connect(node, { tag: `${tag}${node.index}`, rooms })));
      const idsOf = (list) => list.map((c) => c.id).sort();

      it(
        "fetch_sockets from each node lists the room's sockets of every node, with their rooms",
        opts(),
        run(async ({ nodes }) => {
          const [room, side] = [unique("fetch"), unique("side")];
          const members = await onEveryNode(nodes, "member", [room, side]);
          const others = await onEveryNode(nodes, "other", [side]);
          for (const node of askers(nodes)) {
            const asker = await clients.connect(node, { tag: `asker${node.index}` });
            const found = await asker.request("fetch_sockets", { to: room });
            assert.ok(Array.isArray(found), `fetch_sockets answered ${JSON.stringify(found)}`);
            assert.deepEqual(found.map((s) => s.id).sort(), idsOf(members), `fetch_sockets {to} asked on ${node.label}`);
            for (const s of found) assert.deepEqual([...s.rooms].sort(), [s.id, room, side].sort(), `rooms of ${s.id}`);
            const everyone = (await asker.request("fetch_sockets", {})).map((s) => s.id);
            for (const c of [...members, ...others, asker]) {
              assert.ok(everyone.includes(c.id), `fetch_sockets {} lists ${c.tag}`);
            }
          }
        }),
      );

      it(
        "sockets_join and sockets_leave from one node move the room's sockets on every node",
        opts(),
        run(async ({ nodes }) => {
          const [room, joined] = [unique("src"), unique("joined")];
          const members = await onEveryNode(nodes, "member", [room]);
          const others = await onEveryNode(nodes, "other", []);
          const node = askers(nodes).at(-1);
          const asker = await clients.connect(node, { tag: "asker" });
          let last;
          const fetchIds = async (to) => {
            last = (await asker.request("fetch_sockets", { to })).map((s) => s.id).sort();
            return last;
          };
          assert.deepEqual(await asker.request("sockets_join", { to: room, room: joined }), { ok: true });
          const want = JSON.stringify(idsOf(members));
          await eventually(
            async () => JSON.stringify(await fetchIds(joined)) === want,
            DELIVERY_MS,
            () => `sockets in ${joined}: ${JSON.stringify(last)}, want ${want}`,
          );
          // The membership is real on every node: a publish to the new room reaches exactly them.
          const all = [...members, ...others];
          await converge((event) => asker.request("publish", { to: joined, event }), members, "probes to the joined room");
          await asker.request("publish", { to: joined, event: "to-joined" });
          await expectCounts(all, "to-joined", (c) => (members.includes(c) ? 1 : 0), "publish to the joined room");
          assertExact(all, "to-joined", (c) => (members.includes(c) ? 1 : 0), "publish to the joined room");

          assert.deepEqual(await asker.request("sockets_leave", { to: room, room: joined }), { ok: true });
          await eventually(
            async () => (await fetchIds(joined)).length === 0,
            DELIVERY_MS,
            () => `${joined} after sockets_leave: ${JSON.stringify(last)}`,
          );
          // Still in their first room.
          assert.deepEqual(await fetchIds(room), idsOf(members));
        }),
      );

      for (const close of [false, true]) {
        it(
          `disconnect_sockets (close: ${close}) from one node disconnects the room's sockets on every node, only them`,
          opts(),
          run(async ({ nodes }) => {
            const doomed = unique("doomed");
            const victims = await onEveryNode(nodes, "victim", [doomed]);
            const survivors = await onEveryNode(nodes, "survivor", []);
            // Each victim's connection also carries a socket of another
            // namespace: `close` ends the connection, so that one goes too
            // (socket.io sends each of the connection's sockets a
            // DISCONNECT first, hence the same reason).
            const sides = await Promise.all(
              victims.map(async (c) => {
                const side = clients.track(alsoOn(c, "/side"));
                side.tag = `side-of-${c.tag}`;
                side.node = c.node;
                return waitConnected(side);
              }),
            );
            const asker = await clients.connect(askers(nodes)[0], { tag: "asker" });
            assert.deepEqual(await asker.request("disconnect_sockets", { to: doomed, close }), { ok: true });
            await withTimeout(Promise.all(victims.map((c) => c.disconnected)), DELIVERY_MS, "every victim disconnected");
            for (const c of victims) {
              assert.deepEqual(c.disconnects, ["io server disconnect"], `${c.tag}'s disconnect reason`);
            }
            if (close) {
              await withTimeout(Promise.all(sides.map((c) => c.disconnected)), DELIVERY_MS, "the connections closed");
              for (const c of sides) {
                assert.deepEqual(c.disconnects, ["io server disconnect"], `${c.tag}'s disconnect reason`);
              }
            }
            // The others are still served: an echo comes back on each.
            const alive = [...survivors, asker, ...(close ? [] : sides)];
            for (const c of alive) assert.deepEqual(await c.ack("echo", c.tag), [c.tag], `${c.tag} still connected`);
          }),
        );
      }

      it(
        "server_side_emit without ack reaches every other node once, not the sender",
        opts(),
        runNeedingClusterTest(async ({ nodes }) => {
          const watchers = await Promise.all(
            askers(nodes).map((node) => clients.connect(node, { tag: `watcher${node.index}` })),
          );
          for (const [i, sender] of watchers.entries()) {
            const event = unique("sse");
            const args = [i, { nested: ["x", null] }];
            assert.deepEqual(await sender.request("server_side_emit", { event, args, ack: false }), { ok: true });
            const seen = async (c) => (await c.request("server_side_seen")).filter((e) => e.event === event);
            const others = watchers.filter((w) => w !== sender);
            await eventually(
              async () => (await Promise.all(others.map(seen))).every((list) => list.length >= 1),
              DELIVERY_MS,
              `every other node saw ${event}`,
            );
            // Made final by a second emit, which comes after on every path.
            const marker = unique("sse-marker");
            await sender.request("server_side_emit", { event: marker, args: [], ack: false });
            await eventually(
              async () =>
                (await Promise.all(others.map((c) => c.request("server_side_seen")))).every((list) =>
                  list.some((e) => e.event === marker),
                ),
              DELIVERY_MS,
              `every other node saw ${marker}`,
            );
            for (const c of others) assert.deepEqual(await seen(c), [{ event, args }], `${c.node.label} saw it once`);
            assert.deepEqual(await seen(sender), [], "the sender's node does not get its own");
          }
        }),
      );

      it(
        "server_side_emit with ack from each node gathers one answer from every other node",
        opts(),
        runNeedingClusterTest(async ({ nodes }) => {
          for (const node of askers(nodes)) {
            const asker = await clients.connect(node, { tag: `asker${node.index}` });
            const event = unique("sse-ack");
            const answer = await asker.request("server_side_emit", { event, args: ["q", 7], ack: true });
            assert.equal(answer.ok, true, `server_side_emit with ack: ${JSON.stringify(answer)}`);
            const want = nodes.filter((n) => n !== node).map((n) => ({ node: n.name, event, args: ["q", 7] }));
            const byNode = (a, b) => a.node.localeCompare(b.node);
            assert.deepEqual([...answer.responses].sort(byNode), want.sort(byNode), `answers to ${node.label}`);
          }
        }),
      );

      it(
        "broadcast_with_ack from each node gets one ack from each member on every node",
        opts(),
        run(async ({ nodes }) => {
          const room = unique("acks");
          const members = await onEveryNode(nodes, "member", [room]);
          const outsiders = await onEveryNode(nodes, "outsider", []);
          for (const node of askers(nodes)) {
            const asker = await clients.connect(node, { tag: `asker${node.index}` });
            // Probes until every member's node is listening (sharded dynamic subscribes per room).
            await converge((event) => asker.request("publish", { to: room, event }), members, "probes to the ack room");
            const data = { n: node.index };
            const answer = await asker.request("broadcast_with_ack", { to: room, event: "ask", data, timeout: 5000 });
            assert.equal(answer.ok, true, `broadcast_with_ack: ${JSON.stringify(answer)}`);
            const byTag = (a, b) => a.tag.localeCompare(b.tag);
            assert.deepEqual(
              [...answer.responses].sort(byTag),
              members.map((c) => ({ tag: c.tag, data })).sort(byTag),
              `acks gathered on ${node.label}`,
            );
            for (const c of outsiders) assert.equal(c.inbox.count("ask"), 0, `${c.tag} was not asked`);
          }
        }),
      );

      if (mode.allRooms) {
        it(
          "all_rooms from each node lists the rooms of every node",
          opts(),
          run(async ({ nodes }) => {
            const rooms = nodes.map(() => unique("room"));
            const members = await Promise.all(
              nodes.map((node, i) => clients.connect(node, { tag: `member${i}`, rooms: [rooms[i]] })),
            );
            for (const node of askers(nodes)) {
              const asker = await clients.connect(node, { tag: `asker${node.index}` });
              const all = await asker.request("all_rooms");
              assert.ok(Array.isArray(all), `all_rooms answered ${JSON.stringify(all)}`);
              for (const room of rooms) assert.ok(all.includes(room), `all_rooms on ${node.label} lists ${room}`);
              for (const c of members) assert.ok(all.includes(c.id), `all_rooms on ${node.label} lists ${c.tag}'s own room`);
            }
          }),
        );
      }
    });
  }
}
