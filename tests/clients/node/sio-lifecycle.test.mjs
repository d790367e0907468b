// Connection lifecycle cases that need servers with their own settings
// (each started with --shards 2): `ping timeout` (--ping-interval 300
// --ping-timeout 200, raw Engine.IO clients that never answer), the connect
// timeout (--connect-timeout 500, a raw Engine.IO v4 client that never sends
// CONNECT), and `server shutting down` (SIGTERM), all observed through the
// /monitor feed and the clients.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  againstReference,
  SIO_PATH,
  clientPool,
  expectDisconnect,
  openMonitor,
  rawPolling,
  rawSocketIoClient,
  rawWebSocket,
  sleep,
  startTestbed,
  withTimeout,
} from "./sio-helpers.mjs";

const T = { timeout: 20_000 };

describe("ping timeout (--ping-interval 300 --ping-timeout 200)", { concurrency: true }, () => {
  let server;
  let monitor;
  const pool = clientPool(() => server.url);
  before(async () => {
    server = await startTestbed(["--ping-interval", "300", "--ping-timeout", "200"]);
    monitor = await openMonitor(server.url);
  });
  after(async () => {
    await pool.closeAll();
    monitor?.close();
    await server?.stop();
  });

  test("EIO=4 websocket client that never answers pings -> ping timeout", T, async () => {
    const { raw, id } = await rawSocketIoClient(server.url);
    const t0 = Date.now();
    assert.equal(await raw.until((f) => f === "2", 2000), "2", "the server pings");
    await expectDisconnect(monitor, id, { nsp: "/", reason: "ping timeout", rooms: [id], timeoutMs: 3000 });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 2500, `dropped soon after the ping timeout (${elapsed} ms)`);
    await withTimeout(raw.closed, 3000, "connection closed");
  });

  test("EIO=4 polling client that never answers pings -> ping timeout", T, async () => {
    const session = await rawPolling(server.url);
    await session.post("40");
    const first = await session.get();
    const { sid: id } = JSON.parse(/^40(\{[^\x1e]*\})/.exec(first.body)[1]);
    await expectDisconnect(monitor, id, { nsp: "/", reason: "ping timeout", rooms: [id], timeoutMs: 3000 });
  });

  test("EIO=3 websocket client that never pings -> ping timeout", T, async () => {
    // Protocol 3: the server connects `/` by itself (no CONNECT packet) and
    // names the socket after the Engine.IO session.
    const raw = await rawWebSocket(server.url, { eio: 3 });
    const open = await raw.next();
    const { sid } = JSON.parse(open.slice(1));
    assert.equal(await raw.next(), "40", "implicit CONNECT to /");
    await expectDisconnect(monitor, sid, { nsp: "/", reason: "ping timeout", rooms: [sid], timeoutMs: 3000 });
  });

  test("real clients answering pings stay connected", T, async () => {
    const clients = await Promise.all([
      pool.connect({ version: 4, mode: "websocket" }),
      pool.connect({ version: 2, mode: "websocket" }),
      pool.connect({ version: 4, mode: "polling" }),
      pool.connect({ version: 2, mode: "polling" }),
    ]);
    await sleep(1500);
    for (const c of clients) {
      assert.equal(c.socket.connected, true, `v${c.version} ${c.mode} still connected`);
      assert.deepEqual(monitor.forId(c.id).map((e) => e.type), ["connection"]);
      assert.deepEqual(await c.ack("echo", 1), [1]);
      c.close();
    }
  });
});

describe("connect timeout (--connect-timeout 500)", { concurrency: true }, () => {
  let server;
  before(async () => {
    server = await startTestbed(["--connect-timeout", "500"]);
  });
  after(async () => {
    await server?.stop();
  });

  test("an EIO=4 websocket client that never sends CONNECT is closed after ~0.5 s", T, async () => {
    const raw = await rawWebSocket(server.url, { eio: 4 });
    assert.match(await raw.next(), /^0\{/, "open packet");
    const { ms } = await withTimeout(raw.closed, 5000, "closed by the connect timeout");
    assert.ok(ms >= 350 && ms < 2500, `closed after ${ms} ms`);
  });

  test("an EIO=4 polling session that never sends CONNECT is closed after ~0.5 s", T, async () => {
    const session = await rawPolling(server.url);
    const t0 = Date.now();
    const res = await session.get(5000); // parked until the server closes the session
    const ms = Date.now() - t0;
    assert.deepEqual(res, { status: 200, body: "1" }, "the pending GET gets the close packet");
    assert.ok(ms >= 350 && ms < 2500, `closed after ${ms} ms`);
    const after = await session.get(2000);
    assert.equal(after.status, 400, "the session is gone");
  });

  test("a client that sends CONNECT in time stays connected", T, async () => {
    const { raw } = await rawSocketIoClient(server.url);
    await sleep(1000);
    assert.equal(raw.isOpen(), true, "still open after 1 s");
    raw.send('42["echo","still"]');
    assert.equal(await raw.until((f) => f.startsWith("42")), '42["echo-back","still"]');
    raw.close();
  });

  test("an EIO=3 client is connected to / implicitly, so the timeout does not apply", T, async () => {
    const raw = await rawWebSocket(server.url, { eio: 3 });
    await raw.next(); // open
    assert.equal(await raw.next(), "40");
    await sleep(1000);
    assert.equal(raw.isOpen(), true, "still open after 1 s");
    raw.close();
  });
});

describe("server shutting down (SIGTERM)", () => {
  test("every socket is reported disconnected with `server shutting down`, then the server exits", T, async () => {
    const server = await startTestbed();
    const pool = clientPool(() => server.url);
    try {
      const monitor = await openMonitor(server.url);
      const specs = [
        { version: 4, mode: "websocket", nsp: "/" },
        { version: 4, mode: "polling", nsp: "/dyn-bye" },
        { version: 2, mode: "websocket", nsp: "/custom" },
        { version: 2, mode: "polling", nsp: "/" },
      ];
      const clients = await Promise.all(specs.map((s) => pool.connect(s)));
      const roomsOf = await Promise.all(clients.map(async (c) => (await c.ack("join", "staying"))[0]));
      for (const c of clients) await monitor.waitFor((e) => e.type === "connection" && e.id === c.id);
      const stopped = server.stop(); // SIGTERM, then waits for the exit
      await Promise.all(
        clients.map((c, i) =>
          expectDisconnect(monitor, c.id, { nsp: specs[i].nsp, reason: "server shutting down", rooms: roomsOf[i] }),
        ),
      );
      const reasons = await Promise.all(clients.map((c) => withTimeout(c.disconnected, 5000, "client disconnect")));
      for (const [i, reason] of reasons.entries()) {
        // hub sends each socket a DISCONNECT first, so clients see "io server
        // disconnect" and know not to retry at once. The reference sends none:
        // the connection just ends (a polling client may see its pending
        // request fail first).
        const allowed = !againstReference()
          ? ["io server disconnect"]
          : specs[i].mode === "websocket"
            ? ["transport close"]
            : ["transport close", "transport error"];
        assert.ok(allowed.includes(reason), `v${specs[i].version} ${specs[i].mode} client-side reason: ${reason}`);
      }
      await withTimeout(stopped, 5000, "server exit");
      assert.equal(server.alive(), false, "the server exited");
      const res = await fetch(`${server.url}${SIO_PATH}?EIO=4&transport=polling`).catch((err) => err);
      assert.ok(res instanceof Error, "nothing listens any more");
    } finally {
      await pool.closeAll();
      await server.stop();
    }
  });
});
