// Disconnect reasons as the server sees them, through the /monitor feed
// (TESTBED.md "Monitor"): `disconnecting` (still listing the rooms) before
// `disconnect` (no rooms), with the socket.io server's reason strings, and
// what the client sees. Real clients (socket.io-client 4.x and 2.x over
// polling, websocket and upgrade) cause client namespace disconnect, server
// namespace disconnect (disconnect-me false / true) and transport close; raw
// Engine.IO clients cause transport error, parse error and forced close.
// Also the socket middleware (`use-fail`). --shards 2.
// (ping timeout, connect timeout and server shutting down need servers with
// other settings: sio-lifecycle.test.mjs.)

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  MATRIX,
  againstReference,
  clientPool,
  expectDisconnect,
  openMonitor,
  rawPolling,
  rawSocketIoClient,
  sleep,
  startTestbed,
  uniqueRoom,
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

/** Connects and joins a room; returns the client, its id and its rooms. */
async function connectInRoom(opts) {
  const client = await pool.connect(opts);
  const room = uniqueRoom("d");
  const [rooms] = await client.ack("join", room);
  await monitor.waitFor((e) => e.type === "connection" && e.id === client.id);
  return { client, id: client.id, rooms };
}

for (const { version, mode } of MATRIX) {
  describe(`disconnect reasons, socket.io-client v${version}: ${mode}`, { concurrency: true }, () => {
    const opts = { version, mode };

    test("socket.disconnect() -> client namespace disconnect", T, async () => {
      const { client, id, rooms } = await connectInRoom({ ...opts, nsp: "/custom" });
      client.socket.disconnect();
      assert.deepEqual(client.disconnects, ["io client disconnect"], "client-side reason");
      await expectDisconnect(monitor, id, { nsp: "/custom", reason: "client namespace disconnect", rooms });
      client.close();
    });

    test("disconnect-me false -> server namespace disconnect; the connection stays for other namespaces", T, async () => {
      const { client, id, rooms } = await connectInRoom(opts);
      const other = await pool.also(client, "/custom");
      await waitConnected(other, { waitUpgrade: false });
      client.emit("disconnect-me", false);
      assert.equal(await withTimeout(client.disconnected, 5000, "client disconnect"), "io server disconnect");
      await expectDisconnect(monitor, id, { nsp: "/", reason: "server namespace disconnect", rooms });
      await sleep(50);
      assert.equal(other.socket.connected, true, "/custom still connected");
      assert.deepEqual(await other.ack("echo", "alive"), ["alive"], "/custom still works");
      other.close();
      client.close();
    });

    test("disconnect-me true -> server namespace disconnect for every socket of the connection", T, async () => {
      const { client, id, rooms } = await connectInRoom({ ...opts, nsp: "/custom" });
      const other = await pool.also(client, "/dyn-closeall");
      await waitConnected(other, { waitUpgrade: false });
      const otherId = other.id;
      const engine = client.socket.io.engine;
      const engineClosed = new Promise((resolve) => engine.once("close", (reason) => resolve(reason)));
      client.emit("disconnect-me", true);
      assert.equal(await withTimeout(client.disconnected, 5000, "client disconnect"), "io server disconnect");
      assert.equal(await withTimeout(other.disconnected, 5000, "other disconnect"), "io server disconnect");
      await expectDisconnect(monitor, id, { nsp: "/custom", reason: "server namespace disconnect", rooms });
      await expectDisconnect(monitor, otherId, {
        nsp: "/dyn-closeall",
        reason: "server namespace disconnect",
        rooms: [otherId],
      });
      // The Engine.IO connection is closed by the server.
      const reason = await withTimeout(engineClosed, 5000, "engine close");
      assert.ok(["transport close", "forced close"].includes(reason), `engine close reason ${reason}`);
      client.close();
    });

    test("the client's engine closes -> transport close", T, async () => {
      const { client, id, rooms } = await connectInRoom(opts);
      client.socket.io.engine.close();
      const seen = await withTimeout(client.disconnected, 5000, "client disconnect");
      assert.equal(seen, "forced close", "client-side reason");
      await expectDisconnect(monitor, id, { nsp: "/", reason: "transport close", rooms });
      client.close();
    });

    if (mode !== "polling") {
      test("the WebSocket is closed under the engine (close frame) -> transport close", T, async () => {
        const { client, id, rooms } = await connectInRoom(opts);
        client.socket.io.engine.transport.ws.close();
        assert.equal(await withTimeout(client.disconnected, 5000, "client disconnect"), "transport close");
        await expectDisconnect(monitor, id, { nsp: "/", reason: "transport close", rooms });
        client.close();
      });

      test("the TCP connection drops -> transport close (or transport error)", T, async () => {
        const { client, id, rooms } = await connectInRoom(opts);
        client.socket.io.engine.transport.ws.terminate();
        assert.equal(await withTimeout(client.disconnected, 5000, "client disconnect"), "transport close");
        // The reference reports either, depending on how the drop is noticed.
        await expectDisconnect(monitor, id, { nsp: "/", reason: ["transport close", "transport error"], rooms });
        client.close();
      });
    }

    test("use-fail: refused by the socket middleware; the server socket's error reaches the monitor", T, async () => {
      const client = await pool.connect({ ...opts, nsp: "/custom" });
      const id = client.id;
      client.emit("use-fail", { any: "thing" });
      const err = await monitor.waitFor((e) => e.type === "error" && e.id === id, 5000, "monitor error");
      assert.deepEqual(err, { type: "error", nsp: "/custom", id, message: "use-fail refused" });
      // The socket stays connected. A v2 client receives the error as an
      // error packet, as the Socket.IO v2 server docs describe (hub does
      // this; socket.io 4 only emits `error` on the server socket).
      assert.deepEqual(await client.ack("echo", "after"), ["after"]);
      assert.equal(client.socket.connected, true);
      const v2GetsError = opts.version === 2 && !againstReference();
      assert.deepEqual(client.errors, v2GetsError ? ["use-fail refused"] : [], "error events on the client");
      assert.deepEqual(client.connectErrors, []);
      assert.deepEqual(client.inbox.seq, ["auth", "hello"], "no event but auth and hello");
      // With an ack: the ack is never called.
      let acked = false;
      client.socket.emit("use-fail", () => {
        acked = true;
      });
      const errors = () => monitor.forId(id).filter((x) => x.type === "error").length;
      await monitor.waitFor((e) => e.type === "error" && e.id === id && errors() === 2);
      await client.ack("echo", "sync");
      assert.equal(acked, false, "a refused event is not acknowledged");
      client.close();
    });
  });
}

describe("disconnect reasons from raw Engine.IO clients", { concurrency: true }, () => {
  test("two concurrent polling GETs -> transport error", T, async () => {
    const session = await rawPolling(server.url);
    assert.deepEqual(await session.post("40"), { status: 200, body: "ok" });
    const first = await session.get();
    const m = /^40(\{[^\x1e]*\})/.exec(first.body);
    assert.ok(m, `CONNECT reply: ${first.body}`);
    const { sid: id } = JSON.parse(m[1]);
    const pending = session.get();
    await sleep(100);
    const second = await session.get();
    const firstResult = await pending;
    assert.equal(second.status, 400, "the overlapping GET: 400");
    assert.deepEqual(firstResult, { status: 200, body: "1" }, "the pending GET: close packet");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "transport error", rooms: [id] });
  });

  test("an invalid Engine.IO packet (websocket) -> parse error", T, async () => {
    const { raw, id } = await rawSocketIoClient(server.url);
    raw.send("x");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "parse error", rooms: [id] });
    await withTimeout(raw.closed, 5000, "connection closed");
    assert.equal(monitor.forId(id).filter((e) => e.type === "error").length, 0, "no error event");
  });

  test("an invalid Engine.IO packet (polling) -> parse error", T, async () => {
    const session = await rawPolling(server.url);
    await session.post("40");
    const first = await session.get();
    const { sid: id } = JSON.parse(/^40(\{[^\x1e]*\})/.exec(first.body)[1]);
    await session.post("x");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "parse error", rooms: [id] });
  });

  for (const [packet, message] of [
    ["42{bad", "invalid payload"],
    ['42["disconnect"]', "invalid payload"],
    ["49", "unknown packet type 9"],
  ]) {
    test(`an invalid Socket.IO packet ${packet} -> error event, then forced close`, T, async () => {
      const { raw, id } = await rawSocketIoClient(server.url);
      raw.send(packet);
      await expectDisconnect(monitor, id, { nsp: "/", reason: "forced close", rooms: [id] });
      const events = monitor.forId(id).map((e) => e.type);
      assert.deepEqual(events, ["connection", "error", "disconnecting", "disconnect"]);
      const err = monitor.forId(id).find((e) => e.type === "error");
      if (againstReference()) {
        assert.deepEqual(err, { type: "error", nsp: "/", id, message });
      } else {
        // hub names the decoding error more precisely than the reference.
        assert.deepEqual({ ...err, message: undefined }, { type: "error", nsp: "/", id, message: undefined });
        assert.ok(typeof err.message === "string" && err.message.length > 0, `an error message: ${err.message}`);
      }
      await withTimeout(raw.closed, 5000, "connection closed");
    });
  }

  test("a second CONNECT to a connected namespace (websocket) -> forced close", T, async () => {
    const { raw, id } = await rawSocketIoClient(server.url);
    raw.send("40");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "forced close", rooms: [id] });
    await withTimeout(raw.closed, 5000, "connection closed");
  });

  test("an event for a namespace not connected (websocket) -> forced close", T, async () => {
    const { raw, id } = await rawSocketIoClient(server.url);
    raw.send('42/custom,["message","x"]');
    await expectDisconnect(monitor, id, { nsp: "/", reason: "forced close", rooms: [id] });
    await withTimeout(raw.closed, 5000, "connection closed");
  });

  test("a second CONNECT over polling with no GET pending -> forced server close", T, async () => {
    const session = await rawPolling(server.url);
    await session.post("40");
    const first = await session.get();
    const { sid: id } = JSON.parse(/^40(\{[^\x1e]*\})/.exec(first.body)[1]);
    await session.post("40");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "forced server close", rooms: [id] });
    // The close packet waits for the next GET.
    const next = await session.get();
    assert.equal(next.status, 200);
    assert.match(next.body, /(^|\x1e)1$/, `the next GET ends with a close packet: ${JSON.stringify(next.body)}`);
  });
});
