// Issue 14: socket.io-client 4 and headless Chromium over TLS. The hub
// (HUB_RELAY_CMD, default target/debug/hub) runs with `--tls-cert` and
// `--tls-key`, a self-signed certificate for localhost and 127.0.0.1 that the
// test makes with Debian's `openssl`; clients trust it through the `ca`
// option (Node) or `ignoreHTTPSErrors` (Chromium). Polling, WebSocket and
// the polling->WebSocket upgrade, on one and two shards: a socket joins a
// room, another publishes to it through the relay's `publish` request.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { io } from "socket.io-client";

import { assertChromium, launchChromium, servePage } from "./browser-helpers.mjs";
import { startRelay, withTimeout } from "./relay-helpers.mjs";

const WAIT_MS = 10_000;
const T = { timeout: 30_000 };

/** A self-signed certificate for localhost and 127.0.0.1 in a temporary directory. */
function makeCert() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "hub-tls-node-"));
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-days", "2", "-keyout", key, "-out", cert,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return { dir, cert, key, pem: readFileSync(cert, "utf8") };
}

const cert = makeCert();
after(() => rmSync(cert.dir, { recursive: true, force: true }));

/** A connected socket.io-client 4 socket over `transports`, trusting the test's certificate. */
async function connect(url, transports) {
  const socket = io(url, { transports, ca: cert.pem, forceNew: true, reconnection: false, timeout: 8000 });
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    WAIT_MS,
    `connect over ${transports}`,
  );
  return socket;
}

const ack = (socket, event, ...args) =>
  withTimeout(new Promise((resolve) => socket.emit(event, ...args, resolve)), WAIT_MS, `${event} ack`);

/** `subscriber` joins a room; `publisher` publishes to it; the subscriber receives it. */
async function roundTrip(subscriber, publisher, tag) {
  const room = `tls-${tag}`;
  assert.deepEqual(await ack(subscriber, "join", room), { ok: true });
  const received = new Promise((resolve) => subscriber.once("news", resolve));
  assert.deepEqual(await ack(publisher, "publish", { to: room, event: "news", data: { tag } }), { ok: true });
  assert.deepEqual(await withTimeout(received, WAIT_MS, `news on ${tag}`), { tag });
}

for (const shards of [1, 2]) {
  describe(`socket.io-client 4 over TLS, --shards ${shards}`, () => {
    let hub;
    before(async () => {
      hub = await startRelay([], { shards, tls: cert });
    });
    after(async () => {
      await hub?.stop();
    });

    test("polling", T, async () => {
      const a = await connect(hub.url, ["polling"]);
      const b = await connect(hub.url, ["polling"]);
      try {
        assert.equal(a.io.engine.transport.name, "polling");
        await roundTrip(a, b, `polling-${shards}`);
      } finally {
        a.close();
        b.close();
      }
    });

    test("websocket", T, async () => {
      const a = await connect(hub.url, ["websocket"]);
      const b = await connect(hub.url, ["websocket"]);
      try {
        assert.equal(a.io.engine.transport.name, "websocket");
        await roundTrip(a, b, `websocket-${shards}`);
      } finally {
        a.close();
        b.close();
      }
    });

    test("polling upgraded to websocket (on two shards, often handed to the other)", T, async () => {
      const sockets = [];
      try {
        // Several: with two shards, some upgrades land on the shard that
        // does not own the session and are handed over, TLS session and all.
        for (let i = 0; i < 6; i++) {
          const socket = await connect(hub.url, ["polling", "websocket"]);
          sockets.push(socket);
          if (socket.io.engine.transport.name !== "websocket") {
            await withTimeout(
              new Promise((resolve) => socket.io.engine.once("upgrade", resolve)),
              WAIT_MS,
              "upgrade",
            );
          }
          assert.equal(socket.io.engine.transport.name, "websocket");
        }
        for (let i = 1; i < sockets.length; i++) {
          await roundTrip(sockets[i], sockets[i - 1], `upgrade-${shards}-${i}`);
        }
      } finally {
        for (const socket of sockets) socket.close();
      }
    });

    test("a plain-HTTP client is refused with a 400", T, async () => {
      const res = await fetch(hub.url.replace("https:", "http:") + "/socket.io/?EIO=4&transport=polling");
      assert.equal(res.status, 400);
      assert.match(await res.text(), /HTTPS/);
    });
  });
}

// The page: `?hub=<url>&transports=a,b`, from a plain-HTTP static server on
// another port; it joins a room and records what it receives.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>hub TLS test</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const state = (window.hubTest = { connected: false, transport: null, joinAck: null, received: [], errors: [] });
  const socket = io(params.get("hub"), { transports: params.get("transports").split(","), forceNew: true, reconnection: false, timeout: 8000 });
  socket.on("connect", () => {
    state.connected = true;
    socket.emit("join", "browser-tls", (res) => { state.joinAck = res; });
  });
  socket.on("news", (data) => state.received.push({ data, transport: socket.io.engine.transport.name }));
  socket.on("connect_error", (err) => state.errors.push(String(err && err.message)));
</script>
</body></html>`;

describe("headless Chromium over TLS", () => {
  let hub;
  let server;
  let browser;
  let pageUrl;
  before(async () => {
    assertChromium();
    hub = await startRelay([], { shards: 2, tls: cert });
    server = await servePage(PAGE);
    pageUrl = `${server.origin}/`;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await hub?.stop();
  });

  for (const transports of ["polling,websocket", "websocket"]) {
    test(`the page connects over ${transports} and receives a publish`, T, async () => {
      // The certificate is self-signed: the browser context accepts it.
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const publisher = await connect(hub.url, ["websocket"]);
      try {
        const page = await context.newPage();
        await page.goto(`${pageUrl}?hub=${encodeURIComponent(hub.url)}&transports=${transports}`);
        await page.waitForFunction(() => window.hubTest.joinAck !== null || window.hubTest.errors.length > 0, null, {
          timeout: WAIT_MS,
        });
        const joined = await page.evaluate(() => window.hubTest);
        assert.deepEqual(joined.errors, []);
        assert.deepEqual(joined.joinAck, { ok: true });
        const answer = await ack(publisher, "publish", { to: "browser-tls", event: "news", data: { over: "tls" } });
        assert.deepEqual(answer, { ok: true });
        await page.waitForFunction(() => window.hubTest.received.length > 0, null, { timeout: WAIT_MS });
        const state = await page.evaluate(() => window.hubTest);
        assert.deepEqual(state.received[0].data, { over: "tls" });
      } finally {
        publisher.close();
        await context.close();
      }
    });
  }
});
