// Emitting events (TESTBED.md "Events a client may emit"): without ack
// (`message` -> `message-back`, `echo` -> `echo-back`), with ack
// (`message-with-ack`, `echo`), several arguments, binary at the top level
// and nested in objects and arrays in both directions, large payloads,
// bursts in order, and server-to-client emits with ack (`ask`), including
// the ack timeout. socket.io-client 4.x and 2.x, each over polling,
// websocket and polling upgraded to websocket, --shards 2.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { patternBytes } from "./helpers.mjs";
import { MATRIX, clientPool, sleep, startTestbed } from "./sio-helpers.mjs";

const T = { timeout: 20_000 };

let server;
const pool = clientPool(() => server.url);
before(async () => {
  server = await startTestbed();
});
after(async () => {
  await pool.closeAll();
  await server?.stop();
});

const JSON_ARGS = [
  "text",
  42,
  -1.5,
  true,
  false,
  null,
  { a: 1, b: [1, 2, { c: "d" }], e: { f: null } },
  [1, "two", [3]],
  "héllo 日本語 🎉 a€𝄞b",
  'quotes " \' backslash \\ newline \n',
  "",
  {},
  [],
];

/** Compares received arguments with sent ones; Buffers compare by bytes. */
function assertArgs(got, want, what) {
  assert.deepEqual(normalize(got), normalize(want), what);
}

/** Uint8Array/ArrayBuffer/Buffer -> {bin: hex}, so deepEqual compares bytes and type. */
function normalize(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return { bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex") };
  }
  if (value instanceof ArrayBuffer) return { bin: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

function binaryArgs(seed) {
  const a = patternBytes(300, seed); // every byte value
  const b = Buffer.from([0, 0xff, 0x1e, 0x3a, 0x62, 0x34]); // separators, "b4"
  const c = patternBytes(1000, seed + 1);
  return [
    a,
    { name: "nested", data: b, list: [c, "text", { deeper: [b, 1] }] },
    [b, { x: a }, null],
    "plain text after binary",
    Buffer.alloc(0),
  ];
}

for (const { version, mode } of MATRIX) {
  describe(`socket.io-client v${version}: ${mode}`, { concurrency: true }, () => {
    const connect = (extra = {}) => pool.connect({ version, mode, ...extra });

    test("message -> message-back with the same JSON arguments", T, async () => {
      const client = await connect();
      client.emit("message", ...JSON_ARGS);
      assertArgs(await client.inbox.next("message-back"), JSON_ARGS, "message-back args");
      client.emit("message", "single");
      assertArgs(await client.inbox.next("message-back"), ["single"], "single argument");
      client.emit("message");
      assertArgs(await client.inbox.next("message-back"), [], "no arguments");
      client.close();
    });

    test("echo without ack -> echo-back, on /custom too", T, async () => {
      const client = await connect({ nsp: "/custom" });
      client.emit("echo", "a", { b: 2 }, [3]);
      assertArgs(await client.inbox.next("echo-back"), ["a", { b: 2 }, [3]], "echo-back args");
      client.emit("message", "m");
      assertArgs(await client.inbox.next("message-back"), ["m"], "message-back on /custom");
      client.close();
    });

    test("message-with-ack and echo with ack acknowledge with the same arguments", T, async () => {
      const client = await connect();
      assertArgs(await client.ack("message-with-ack", ...JSON_ARGS), JSON_ARGS, "message-with-ack");
      assertArgs(await client.ack("echo", ...JSON_ARGS), JSON_ARGS, "echo with ack");
      assertArgs(await client.ack("echo", 1, 2, 3), [1, 2, 3], "several numbers");
      assertArgs(await client.ack("echo"), [], "no arguments: an empty ack");
      assert.equal(client.inbox.count("echo-back"), 0, "no echo-back when acked");
      client.close();
    });

    test("acks come back to the right callback when many are in flight", T, async () => {
      const client = await connect();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => client.ack("echo", i, `n${i}`)));
      results.forEach((r, i) => assert.deepEqual(r, [i, `n${i}`], `ack ${i}`));
      client.close();
    });

    test("a burst of 100 messages comes back in order", T, async () => {
      const client = await connect();
      for (let i = 0; i < 100; i++) client.emit("message", i, `payload ${i}`);
      await client.inbox.waitCount("message-back", 100, 10_000);
      const got = client.inbox.list("message-back");
      assert.deepEqual(
        got.map((args) => args[0]),
        Array.from({ length: 100 }, (_, i) => i),
        "in order",
      );
      client.close();
    });

    test("binary top-level and nested, client -> server -> client (event and ack)", T, async () => {
      const client = await connect();
      const args = binaryArgs(11);
      client.emit("message", ...args);
      const back = await client.inbox.next("message-back");
      assertArgs(back, args, "message-back with binary");
      assert.ok(Buffer.isBuffer(back[0]) || back[0] instanceof ArrayBuffer, "top-level binary is binary");
      assert.ok(!Buffer.isBuffer(back[3]), "text stays text");
      assertArgs(await client.ack("message-with-ack", ...args), args, "binary ack");
      client.emit("echo", Buffer.from("only binary"));
      assertArgs(await client.inbox.next("echo-back"), [Buffer.from("only binary")], "echo-back binary");
      client.close();
    });

    test("large payloads: 300 KB text and 400 KB binary", T, async () => {
      const client = await connect();
      const text = "x".repeat(100_000) + "é".repeat(100_000) + "🎉".repeat(25_000);
      const bin = patternBytes(400_000, 5);
      assertArgs(await client.ack("echo", text), [text], "large text ack");
      client.emit("message", { bin, text: "small" });
      assertArgs(await client.inbox.next("message-back", 10_000), [{ bin, text: "small" }], "large binary");
      client.close();
    });

    test("ask: the server emits with an ack and gets the client's answer", T, async () => {
      const client = await connect();
      const seen = [];
      client.socket.on("question", (...args) => {
        const ack = args.pop();
        seen.push(args);
        ack("answer", { got: args.length }, Buffer.from([7, 8, 9]));
      });
      const question = { event: "question", args: [1, "two", { three: Buffer.from([3]) }], timeout: 5000 };
      const [result] = await client.ack("ask", question);
      assertArgs(seen, [[1, "two", { three: Buffer.from([3]) }]], "the client got the question with binary");
      assertArgs(result, { ok: true, args: ["answer", { got: 3 }, Buffer.from([7, 8, 9])] }, "ask result");
      // Without arguments either way.
      client.socket.on("empty", (ack) => ack());
      const [empty] = await client.ack("ask", { event: "empty", args: [], timeout: 5000 });
      assertArgs(empty, { ok: true, args: [] }, "empty question, empty answer");
      client.close();
    });

    test("ask: no ack within the timeout -> {ok:false, error:'timeout'}; a late ack is ignored", T, async () => {
      const client = await connect();
      const asked = [];
      client.socket.on("never", (...args) => asked.push(args)); // never acks
      let lateAck;
      client.socket.on("late", (...args) => {
        lateAck = args.pop();
      });
      const t0 = Date.now();
      const [never, late] = await Promise.all([
        client.ack("ask", { event: "never", args: ["q"], timeout: 300 }),
        client.ack("ask", { event: "late", args: [], timeout: 300 }),
      ]);
      const elapsed = Date.now() - t0;
      assert.deepEqual(never, [{ ok: false, error: "timeout" }]);
      assert.deepEqual(late, [{ ok: false, error: "timeout" }]);
      assert.ok(elapsed >= 250, `timed out after the timeout (${elapsed} ms)`);
      assert.ok(elapsed < 3000, `timed out soon after the timeout (${elapsed} ms)`);
      assert.equal(asked.length, 1, "the question was delivered (with an ack id)");
      assert.equal(typeof lateAck, "function", "the client got an ack callback");
      // The ack after the timeout: dropped by the server, the socket stays fine.
      lateAck("too late");
      await sleep(100);
      assert.equal(client.socket.connected, true, "still connected after a late ack");
      client.socket.on("quick", (ack) => ack("quick"));
      const [quick] = await client.ack("ask", { event: "quick", args: [], timeout: 2000 });
      assert.deepEqual(quick, { ok: true, args: ["quick"] });
      client.close();
    });
  });
}
