// Faults on purpose: application code that panics. The server is
// hub/examples/fault_server.rs (HUB_FAULT_SERVER_CMD, default the built
// example), whose handlers panic on demand: an event listener, a namespace
// middleware (for a given auth), the connection handler (for a given
// handshake query), a `disconnect` handler, the code awaiting a client's
// ack, and a task spawned with `hub::server::spawn_local`.
//
// For each, with socket.io-client v4 over polling and over WebSocket, on
// `--shards 1` and `--shards 2`: the client whose code panicked loses its
// connection (`disconnect` with `transport close`; a socket multiplexed on
// the same connection too), every other client (one per shard and
// transport, so one on the victim's shard) echoes before and after and is
// never disconnected, the server logs an error line naming the socket, its
// session and the panic message, counts it in `hub_panics_total` (one per
// fault), and is still running.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";

import { REPO_ROOT, commandFromEnv, eventually, metricSum, shardOf, startCommand, withTimeout } from "./helpers.mjs";
import { alsoOn, relayClient, waitConnected } from "./relay-helpers.mjs";

const DEFAULT_FAULT_SERVER = path.join(REPO_ROOT, "target", "debug", "examples", "fault_server");

function faultServerCommand() {
  return commandFromEnv(
    "HUB_FAULT_SERVER_CMD",
    DEFAULT_FAULT_SERVER,
    "build it with `cargo build -p hub --example fault_server` (cargo test --workspace builds it)",
  );
}

async function startFaultServer(shards) {
  const server = await startCommand(faultServerCommand(), ["--ping-interval", "1000", "--ping-timeout", "1000"], {
    shards,
  });
  const line = server.stdoutLines.find((l) => l.startsWith("admin listening on "));
  assert.ok(line, `the fault server prints its admin address: ${JSON.stringify(server.stdoutLines)}`);
  server.admin = `http://${line.slice("admin listening on ".length)}`;
  return server;
}

/** The sum over shards of one metric. */
const metric = (server, name) => metricSum(server.admin, name);

async function echo(client, what) {
  const token = `${what}-${Math.random().toString(36).slice(2)}`;
  assert.deepEqual(await client.ack("echo", { token }), [{ token }], `${what}: echo round trip`);
}

/**
 * Each fault: how to make the victim (options, extra sockets) and how to
 * trigger it. `connects`: false when the victim never connects, "briefly"
 * when it connects and loses the connection at once; `other`, a second
 * socket on the victim's connection, is the one whose code panics.
 */
const FAULTS = {
  "event listener": {
    make: (url, mode) => ({ main: relayClient(url, { version: 4, mode }) }),
    trigger: async (v, tag) => v.main.emit("panic", tag),
  },
  "namespace middleware": {
    make: (url, mode, tag) => ({ main: relayClient(url, { version: 4, mode, auth: { panic: tag } }) }),
    connects: false,
    trigger: async () => {},
  },
  "connection handler": {
    // The client is told it is connected (the CONNECT reply leaves before
    // the handler runs), then loses the connection.
    make: (url, mode, tag) => ({ main: relayClient(url, { version: 4, mode, query: { panic: tag } }) }),
    connects: "briefly",
    trigger: async () => {},
  },
  "disconnect handler": {
    // The panic is in `/other`'s handler, as that socket leaves; `/`, on the
    // same connection, loses it too.
    make: (url, mode) => {
      const main = relayClient(url, { version: 4, mode });
      return { main, other: alsoOn(main, "/other") };
    },
    trigger: async (v, tag) => {
      assert.deepEqual(await v.other.ack("panic-on-disconnect", tag), [true]);
      v.other.socket.disconnect();
    },
  },
  "ack callback": {
    make: (url, mode) => {
      const main = relayClient(url, { version: 4, mode });
      main.socket.on("ask", (answer) => answer("here"));
      return { main };
    },
    trigger: async (v, tag) => assert.deepEqual(await v.main.ack("panic-in-ack", tag), [true]),
  },
  "spawned task": {
    make: (url, mode) => ({ main: relayClient(url, { version: 4, mode }) }),
    trigger: async (v, tag) => assert.deepEqual(await v.main.ack("panic-in-task", tag), [true]),
  },
};

async function bystanders(url, shards) {
  // One client per (transport, shard): connect until each place is taken.
  const found = new Map();
  const spare = [];
  for (const mode of ["polling", "websocket"]) {
    for (let tries = 0; tries < 40 && [...found.keys()].filter((k) => k.startsWith(mode)).length < shards; tries++) {
      const c = await waitConnected(relayClient(url, { version: 4, mode }));
      const key = `${mode}/${shardOf(c.socket.io.engine.id)}`;
      if (found.has(key)) spare.push(c);
      else found.set(key, c);
    }
  }
  for (const c of spare) c.close();
  assert.equal(found.size, 2 * shards, `a bystander on every shard and transport: ${[...found.keys()]}`);
  return found;
}

for (const shards of [1, 2]) {
  test(`panics in application code cost one connection (--shards ${shards}, v4 polling and websocket)`, { timeout: 60_000 }, async () => {
    const server = await startFaultServer(shards);
    const opened = [];
    try {
      const others = await bystanders(server.url, shards);
      opened.push(...others.values());
      let panics = await metric(server, "hub_panics_total");
      assert.equal(panics, 0, "no panic before the first fault");
      for (const mode of ["polling", "websocket"]) {
        for (const [name, fault] of Object.entries(FAULTS)) {
          const what = `${name} (${mode}, --shards ${shards})`;
          const tag = `${name.replace(/ /g, "-")}-${mode}-${shards}-${Math.random().toString(36).slice(2, 8)}`;
          for (const [key, c] of others) await echo(c, `${what}: bystander ${key} before`);

          const victim = fault.make(server.url, mode, tag);
          opened.push(...Object.values(victim));
          const connects = [];
          victim.main.socket.on("connect", () => connects.push(victim.main.socket.id));
          const engine = victim.main.socket.io.engine;
          if (fault.connects === undefined) {
            await waitConnected(victim.main);
            await echo(victim.main, `${what}: victim before`);
          }
          if (victim.other) {
            await waitConnected(victim.other);
            victim.other.connectedId = victim.other.socket.id;
          }
          const sid = engine.id ?? (await withTimeout(new Promise((r) => engine.once("open", () => r(engine.id))), 5000, "open"));
          await fault.trigger(victim, tag);

          // The victim loses its connection: `transport close`, never a
          // namespace refusal or a server-side namespace disconnect.
          const reason = await withTimeout(victim.main.disconnected, 5000, `${what}: the victim is disconnected`);
          assert.equal(reason, "transport close", `${what}: what the victim sees`);
          assert.deepEqual(victim.main.connectErrors, [], `${what}: no connect_error`);
          assert.equal(victim.main.socket.connected, false);
          if (fault.connects === false) assert.deepEqual(connects, [], `${what}: never connected`);
          else assert.equal(connects.length, 1, `${what}: connected once`);
          // The socket whose code panicked (unknown to a client never connected).
          const socketId = victim.other ? victim.other.connectedId : connects[0];

          // The log names the session (and the socket, when the client knew it) and the panic.
          await eventually(
            () => server.stderr().includes(tag),
            5000,
            `${what}: the panic is logged`,
          );
          const line = server
            .stderr()
            .split("\n")
            .find((l) => l.includes(tag) && l.includes("ERROR"));
          assert.ok(line, `${what}: an error line with the panic message`);
          assert.match(line, new RegExp(`sid="?${sid}`), `${what}: the line names the session: ${line}`);
          if (socketId) assert.match(line, new RegExp(`socket="?${socketId}`), `${what}: the line names the socket: ${line}`);
          assert.match(line, /panicked at hub\/examples\/fault_server\.rs:\d+:\d+: injected fault: /, `${what}: and where: ${line}`);

          await eventually(async () => (await metric(server, "hub_panics_total")) === panics + 1, 5000, `${what}: one more panic counted`);
          panics += 1;
          assert.ok(server.alive(), `${what}: the server is still running`);

          const victimShard = shardOf(sid);
          assert.ok(others.has(`${mode}/${victimShard}`), `a bystander shares the victim's shard ${victimShard}`);
          for (const [key, c] of others) {
            await echo(c, `${what}: bystander ${key} after`);
            assert.deepEqual(c.disconnects, [], `${what}: bystander ${key} was never disconnected`);
          }
          for (const c of Object.values(victim)) c.close();
        }
      }
      assert.equal(await metric(server, "hub_panics_total"), 12, "12 faults, 12 panics counted");
      assert.equal(
        server.stderr().split("\n").filter((l) => l.includes("injected fault:")).length,
        12,
        "one log line per panic, no more",
      );
      assert.doesNotMatch(server.stderr(), /thread '.*' panicked/, "no panic escaped to the default hook");
    } finally {
      for (const c of opened) c.close();
      await server.stop();
    }
  });
}
