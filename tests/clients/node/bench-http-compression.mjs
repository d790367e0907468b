#!/usr/bin/env node
// Bytes on the wire and server CPU for long-polling subscribers fetching
// 4 KB JSON messages, with httpCompression on and off (docs/benchmarks.md).
//
//   cargo build --release -p hub
//   node tests/clients/node/bench-http-compression.mjs [--hub target/release/hub]
//        [--clients 50] [--messages 400] [--size 4096] [--shards 1]
//
// For each setting the hub is started afresh. `--clients` socket.io-client
// 4.8 subscribers over polling only, with engine.io-client's fetch transport
// (which sends `Accept-Encoding: gzip, deflate`, as browsers do), join one
// room through a counting proxy; one publisher over WebSocket (not through
// the proxy) publishes `--messages` messages of about `--size` bytes of JSON
// to the room, one at a time, each once every subscriber has the previous
// one: so every GET answer carries one message, the case compression helps
// least. Measured over the publishing phase: the bytes the hub sent the
// subscribers (HTTP heads included) and the hub's CPU time (utime + stime
// from /proc, 10 ms ticks).

import { readFileSync } from "node:fs";
import path from "node:path";

import { Fetch } from "engine.io-client";

import { REPO_ROOT, startCountingProxy } from "./helpers.mjs";
import { relayClient, startRelay, waitConnected } from "./relay-helpers.mjs";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const HUB = path.resolve(REPO_ROOT, opt("hub", "target/release/hub"));
const CLIENTS = Number(opt("clients", 50));
const MESSAGES = Number(opt("messages", 400));
const SIZE = Number(opt("size", 4096));
const SHARDS = Number(opt("shards", 1));
const ROOM = "bench";

/** CPU seconds (user + system) of process `pid` so far. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** About `n` bytes of JSON like a feed of chat or live updates (words vary, keys repeat). */
function message(n, seq) {
  const words = ["alpha", "beta", "gamma", "delta", "update", "price", "user", "room", "status", "ok", "eu-west", "order"];
  let x = (seq + 1) * 2654435761;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const items = [];
  let size = 20;
  while (size < n) {
    const item = {
      id: rnd() % 100000,
      user: `user${rnd() % 500}`,
      text: Array.from({ length: 3 + (rnd() % 6) }, () => words[rnd() % words.length]).join(" "),
      price: (rnd() % 100000) / 100,
      ts: 1764600000000 + (rnd() % 1000000),
    };
    items.push(item);
    size += JSON.stringify(item).length + 1;
  }
  return { seq, items };
}

async function run(compression) {
  const hub = await startRelay(compression ? [] : ["--no-http-compression"], {
    shards: SHARDS,
    command: [HUB],
  });
  const proxy = await startCountingProxy(hub);
  const subscribers = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const c = relayClient(proxy.url, { version: 4, mode: "polling", extra: { transports: [Fetch] } });
      subscribers.push(c);
    }
    await Promise.all(subscribers.map((c) => waitConnected(c)));
    await Promise.all(subscribers.map((c) => c.request("join", ROOM)));
    const publisher = relayClient(hub.url, { version: 4, mode: "websocket" });
    await waitConnected(publisher);
    const sample = message(SIZE, 0);
    const messageBytes = JSON.stringify(sample).length;

    const down0 = proxy.stats.down;
    const cpu0 = cpuSeconds(hub.pid);
    const t0 = performance.now();
    for (let seq = 1; seq <= MESSAGES; seq++) {
      const res = await publisher.request("publish", { to: ROOM, event: "m", data: message(SIZE, seq) });
      if (!res.ok) throw new Error(`publish: ${JSON.stringify(res)}`);
      await Promise.all(subscribers.map((c) => c.inbox.waitCount("m", seq, 20_000)));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(hub.pid) - cpu0;
    const down = proxy.stats.down - down0;
    const deliveries = CLIENTS * MESSAGES;
    publisher.close();
    return {
      compression: compression ? "on" : "off",
      messageBytes,
      deliveries,
      bytesPerDelivery: down / deliveries,
      cpuMicrosPerDelivery: (cpu * 1e6) / deliveries,
      cpuSeconds: cpu,
      seconds,
      coded: { ...proxy.stats.coded },
    };
  } finally {
    for (const c of subscribers) c.close();
    await proxy.stop();
    await hub.stop();
  }
}

const results = [];
for (const compression of [false, true]) results.push(await run(compression));
console.log(
  `hub ${HUB} --shards ${SHARDS}: ${CLIENTS} polling subscribers (fetch), ${MESSAGES} messages of ${results[0].messageBytes} bytes of JSON`,
);
console.log("compression | bytes down per delivery | hub CPU per delivery | hub CPU total | wall | answers gzip");
for (const r of results) {
  console.log(
    `${r.compression.padEnd(11)} | ${r.bytesPerDelivery.toFixed(0).padStart(23)} | ${r.cpuMicrosPerDelivery
      .toFixed(1)
      .padStart(17)} µs | ${r.cpuSeconds.toFixed(2).padStart(11)} s | ${r.seconds.toFixed(1)} s | ${r.coded.gzip}`,
  );
}
process.exit(0);
