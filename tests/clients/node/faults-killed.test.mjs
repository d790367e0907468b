// Faults on purpose: real clients killed while they publish. Node child
// processes (faults-killed-child.mjs), each with socket.io-client v4 and
// v2 sockets over WebSocket and polling, join a room and publish to it
// with acks as fast as the acks come; they are SIGKILLed mid-stream, twice
// over. The hub (`--shards 2`, short heartbeats) must stay up, reap their
// sessions (the `hub_connections` gauge from its admin API back to the two
// clients of the test within ping interval + ping timeout and a margin),
// and an observer in the same room must be undisturbed throughout: never
// disconnected, its echoes answered, and every publish of a steady
// publisher received once, in order.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  againstReference,
  eventually,
  freePort,
  metricSum,
  relayPool,
  sleep,
  startRelay,
  withTimeout,
} from "./relay-helpers.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PING_INTERVAL = 1000;
const PING_TIMEOUT = 1000;
const MARGIN = 2000;
const CHILDREN = 3;
const ROUNDS = 2;

/** Engine.IO sessions open, from the hub's admin API at `admin` (`host:port`). */
const sessions = (admin) => metricSum(`http://${admin}`, "hub_connections");

/** A child that publishes until killed; resolves once all its sockets publish. */
const childErrors = [];

function startChild(url, room) {
  const child = spawn(process.execPath, [path.join(HERE, "faults-killed-child.mjs"), url, room], {
    cwd: HERE,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    childErrors.push(String(chunk).trim());
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const ready = withTimeout(
    new Promise((resolve, reject) => {
      child.stdout.on("data", (chunk) => {
        if (String(chunk).includes("ready")) resolve();
      });
      exited.then(({ code, signal }) => reject(new Error(`child exited (${code}, ${signal}) before it was ready: ${stderr}`)));
    }),
    10_000,
    "a child's sockets publishing",
  );
  return { child, ready, exited };
}

test(
  "clients SIGKILLed while publishing are reaped; an observer is undisturbed",
  { timeout: 60_000, skip: againstReference() && "the reference relay has no admin API to read sessions from" },
  async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    const server = await startRelay(
      ["--admin-bind", admin, "--ping-interval", String(PING_INTERVAL), "--ping-timeout", String(PING_TIMEOUT)],
      { shards: 2 },
    );
    const pool = relayPool(server.url);
    const children = [];
    try {
      const room = "killed";
      const observer = await pool.connect({ version: 4, mode: "websocket" });
      const steady = await pool.connect({ version: 2, mode: "polling" });
      assert.deepEqual(await observer.request("join", room), { ok: true });
      const steadySeen = [];
      let childSeen = 0;
      observer.socket.on("steady", (n) => steadySeen.push(n));
      observer.socket.on("child", () => (childSeen += 1));
      assert.equal(await sessions(admin), 2, "the observer and the steady publisher");

      // The steady publisher and the observer's echoes run through every round.
      let running = true;
      let published = 0;
      let echoes = 0;
      const steadyLoop = (async () => {
        while (running) {
          assert.deepEqual(await steady.request("publish", { to: room, event: "steady", data: published }), { ok: true });
          published += 1;
          await sleep(5);
        }
      })();
      const echoLoop = (async () => {
        while (running) {
          assert.deepEqual(await observer.ack("echo", { n: echoes }), [{ n: echoes }]);
          echoes += 1;
          await sleep(5);
        }
      })();

      for (let round = 0; round < ROUNDS; round++) {
        const batch = Array.from({ length: CHILDREN }, () => startChild(server.url, room));
        children.push(...batch);
        await Promise.all(batch.map((c) => c.ready));
        const during = childSeen;
        await withTimeout(
          (async () => {
            while (childSeen < during + 50) await sleep(5);
          })(),
          5000,
          "the observer receives the children's publishes",
        );
        const open = await sessions(admin);
        assert.equal(open, 2 + CHILDREN * 4, `round ${round}: every child socket has a session; children said ${JSON.stringify(childErrors)}`);
        for (const c of batch) c.child.kill("SIGKILL");
        await Promise.all(batch.map((c) => c.exited));
        const killedAt = performance.now();
        const echoesThen = echoes;
        // WebSocket sessions end with their TCP connection; polling ones at
        // their heartbeat's timeout.
        let left;
        await eventually(
          async () => (left = (await sessions(admin)) - 2) === 0,
          PING_INTERVAL + PING_TIMEOUT + MARGIN,
          () => `round ${round}: ${left} sessions of killed clients left`,
        );
        const reapedMs = Math.round(performance.now() - killedAt);
        assert.ok(server.alive(), "the hub is running");
        await withTimeout(
          (async () => {
            while (echoes < echoesThen + 3) await sleep(5);
          })(),
          5000,
          "the observer's echoes go on",
        );
        console.log(`round ${round}: ${CHILDREN * 4} sockets killed mid-publish, sessions reaped after ${reapedMs} ms`);
      }
      running = false;
      await Promise.all([steadyLoop, echoLoop]);
      // Every steady publish, once, in order: a barrier-like last one first.
      await withTimeout(
        (async () => {
          while (steadySeen.length < published) await sleep(5);
        })(),
        5000,
        `the observer gets all ${published} steady publishes (has ${steadySeen.length})`,
      );
      assert.deepEqual(
        steadySeen,
        Array.from({ length: published }, (_, i) => i),
        "every steady publish once, in order",
      );
      assert.deepEqual(observer.disconnects, [], "the observer was never disconnected");
      assert.deepEqual(steady.disconnects, [], "the steady publisher was never disconnected");
      assert.doesNotMatch(server.stderr(), /panicked/, "no panic");
      console.log(`observer: ${echoes} echoes, ${published} steady publishes, ${childSeen} from the children`);
    } finally {
      for (const c of children) c.child.kill("SIGKILL");
      await pool.closeAll();
      await server.stop();
    }
  },
);
