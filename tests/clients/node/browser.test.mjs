// Issue #4: the relay from a real browser. Headless Chromium (Debian's
// `chromium` package at /usr/bin/chromium, or HUB_CHROMIUM; driven by npm
// `playwright-core` with `executablePath`, no browser download) opens a page
// served by a small static server on another port, so another origin than
// the hub's. The page loads `socket.io-client` from npm
// (node_modules/socket.io-client/dist/socket.io.min.js), connects to the hub
// (HUB_RELAY_CMD, default target/debug/hub, `--shards 2`) over polling and
// over WebSocket, joins "browser-room" with an ack, and the test publishes
// `news` to that room through the hub's admin API (`POST /api/publish`);
// the page must receive it. Polling from another origin is cross-origin
// XHR, so it only works with the hub's CORS headers; the last test shows the
// browser refusing it when the hub allows another origin only.
//
// A missing Chromium fails the suite (never skips): scripts/test installs it
// (`apt-get install -y --no-install-recommends chromium`).
// Against reference-relay.mjs (no admin API) the publish comes from a Node
// socket.io-client through the relay's `publish` request instead.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { assertChromium, launchChromium, servePage } from "./browser-helpers.mjs";

import {
  againstReference,
  freePort,
  metricSum,
  relayClient,
  sleep,
  startRelay,
  waitConnected,
} from "./relay-helpers.mjs";

const ROOM = "browser-room";
const EVENT = "news";
const DATA = { hello: "browser" };
const WAIT_MS = 10_000;
const T = { timeout: 30_000 };


// The page: `?hub=<url>&transports=a,b`. Everything it sees goes to
// `window.hubTest`, which the test polls.
const PAGE = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>hub browser test</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const state = (window.hubTest = {
    origin: location.origin,
    connected: false,
    transport: null,
    upgraded: false,
    joinAck: null,
    received: [],
    errors: [],
  });
  const socket = io(params.get("hub"), {
    transports: params.get("transports").split(","),
    forceNew: true,
    reconnection: false,
    timeout: 8000,
  });
  window.hubSocket = socket;
  socket.io.on("open", () => {
    socket.io.engine.on("upgrade", () => {
      state.upgraded = true;
    });
  });
  socket.on("connect", () => {
    state.connected = true;
    state.transport = socket.io.engine.transport.name;
    socket.emit("join", ${JSON.stringify(ROOM)}, (res) => {
      state.joinAck = res;
    });
  });
  socket.on(${JSON.stringify(EVENT)}, (data) => {
    state.received.push({ event: ${JSON.stringify(EVENT)}, data, transport: socket.io.engine.transport.name });
  });
  socket.on("connect_error", (err) => {
    state.errors.push("connect_error: " + err.message + (err.description ? " (" + String(err.description) + ")" : ""));
  });
  socket.on("disconnect", (reason) => state.errors.push("disconnect: " + reason));
</script>
</body>
</html>
`;

/** Starts the relay with its admin API on a known loopback address. */
async function startHub(extraArgs = []) {
  const admin = `127.0.0.1:${await freePort()}`;
  const hub = await startRelay(["--admin-bind", admin, ...extraArgs], { shards: 2 });
  // The hub prints `admin listening on <addr>` right after its ready line;
  // when startRelay kept it, it must be the address asked for.
  const line = hub.stdoutLines.find((l) => l.startsWith("admin listening on "));
  if (line !== undefined) assert.equal(line.slice("admin listening on ".length), admin, "admin address");
  return { ...hub, admin };
}

/** Publishes `event`/`data` to `room`: the admin API (hub) or a Node client's `publish` (reference). */
async function publish(hub, room, event, data) {
  if (againstReference()) {
    const sender = relayClient(hub.url, { version: 4, mode: "websocket" });
    try {
      await waitConnected(sender);
      assert.deepEqual(await sender.request("publish", { to: room, event, data }), { ok: true }, "publish");
    } finally {
      sender.close();
    }
    return;
  }
  const res = await fetch(`http://${hub.admin}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ to: [room], event, data }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, `POST /api/publish: ${res.status} ${body}`);
  assert.deepEqual(JSON.parse(body), { ok: true }, "POST /api/publish answer");
}

let browser;
let site;
let hub;

before(async () => {
  assertChromium();
  [site, hub] = await Promise.all([servePage(PAGE), startHub()]);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await hub?.stop();
  await site?.close();
});

/**
 * Opens the page in a fresh context, connected to `hubUrl` over
 * `transports`. Returns the page plus what the browser saw: console lines,
 * responses from the hub (with their CORS header) and WebSockets opened.
 */
async function openPage(hubUrl, transports) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { console: [], responses: [], websockets: [] };
  page.on("console", (msg) => seen.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => seen.console.push(`pageerror: ${err.message}`));
  page.on("requestfailed", (req) => seen.console.push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`));
  page.on("response", (res) => {
    if (res.url().startsWith(hubUrl)) {
      const headers = res.headers();
      seen.responses.push({
        url: res.url(),
        status: res.status(),
        acao: headers["access-control-allow-origin"],
        encoding: headers["content-encoding"],
      });
    }
  });
  page.on("websocket", (ws) => seen.websockets.push(ws.url()));
  const query = new URLSearchParams({ hub: hubUrl, transports: transports.join(",") });
  await page.goto(`${site.origin}/?${query}`, { waitUntil: "load" });
  return { context, page, seen };
}

/** The page's state plus what the browser logged, for assertion messages. */
async function explain(page, seen) {
  const state = await page.evaluate(() => window.hubTest).catch((err) => `unreadable: ${err.message}`);
  return `page state: ${JSON.stringify(state)}\nbrowser: ${JSON.stringify(seen, null, 1)}\nhub stderr (tail):\n${hub.stderr().slice(-2000)}`;
}

/** `page.waitForFunction` whose timeout names what it waited for and shows the state. */
async function waitFor(page, seen, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (err) {
    assert.fail(`${what} (waited ${WAIT_MS} ms: ${err.message.split("\n")[0]})\n${await explain(page, seen)}`);
  }
}

describe("browser (headless Chromium, socket.io-client from another origin)", () => {
  for (const transports of [["polling"], ["websocket"]]) {
    const name = transports[0];
    test(`${name}: connect cross-origin, join "${ROOM}", receive an admin publish`, T, async () => {
      const { context, page, seen } = await openPage(hub.url, transports);
      try {
        const pageOrigin = await page.evaluate(() => location.origin);
        assert.equal(pageOrigin, site.origin);
        assert.notEqual(pageOrigin, new URL(hub.url).origin, "the page's origin differs from the hub's");

        await waitFor(page, seen, "connect", () => window.hubTest.connected || window.hubTest.errors.length > 0);
        let state = await page.evaluate(() => window.hubTest);
        assert.deepEqual(state.errors, [], `no connect errors\n${await explain(page, seen)}`);
        assert.equal(state.transport, name, "the engine's transport");

        await waitFor(page, seen, "the join ack", () => window.hubTest.joinAck !== null);
        assert.deepEqual(await page.evaluate(() => window.hubTest.joinAck), { ok: true }, "join ack");

        await publish(hub, ROOM, EVENT, DATA);
        await waitFor(page, seen, `"${EVENT}" in the page`, () => window.hubTest.received.length > 0);
        state = await page.evaluate(() => window.hubTest);
        assert.deepEqual(state.received, [{ event: EVENT, data: DATA, transport: name }], "what the page received");
        assert.equal(state.upgraded, false, "no transport upgrade");
        assert.deepEqual(state.errors, [], "no errors or disconnects");

        if (name === "polling") {
          // Cross-origin XHR: every hub answer carried the CORS header for the page.
          assert.ok(seen.responses.length >= 2, `polling requests reached the hub: ${JSON.stringify(seen.responses)}`);
          for (const r of seen.responses) {
            assert.equal(r.acao, pageOrigin, `Access-Control-Allow-Origin of ${r.url} (status ${r.status})`);
          }
          assert.deepEqual(seen.websockets, [], "no WebSocket opened");
        } else {
          assert.equal(seen.websockets.length, 1, `one WebSocket: ${JSON.stringify(seen.websockets)}`);
          assert.ok(seen.websockets[0].startsWith(hub.url.replace(/^http/, "ws")), `WebSocket to the hub: ${seen.websockets[0]}`);
          assert.ok(seen.websockets[0].includes("transport=websocket"), seen.websockets[0]);
          assert.deepEqual(seen.responses, [], "no polling request");
        }
      } finally {
        await page.evaluate(() => window.hubSocket?.disconnect()).catch(() => {});
        await context.close();
      }
    });
  }

  test(
    "polling: a large publish comes gzip-compressed (Chromium asks for it) and arrives whole",
    { ...T, skip: againstReference() && "reference-relay.mjs turns httpCompression off and has no metrics" },
    async () => {
      const { context, page, seen } = await openPage(hub.url, ["polling"]);
      try {
        await waitFor(page, seen, "the join ack", () => window.hubTest.joinAck !== null);
        const before = await metricSum(`http://${hub.admin}`, "hub_polling_compressed_total");
        const items = Array.from({ length: 400 }, (_, i) => ({ id: i, text: `item ${i} of a large publish` }));
        const big = { items };
        await publish(hub, ROOM, EVENT, big);
        await waitFor(page, seen, `the large "${EVENT}"`, () => window.hubTest.received.length > 0);
        const state = await page.evaluate(() => window.hubTest);
        assert.deepEqual(state.received, [{ event: EVENT, data: big, transport: "polling" }], "what the page received");
        const coded = seen.responses.filter((r) => r.encoding === "gzip");
        assert.ok(coded.length >= 1, `a gzip answer: ${JSON.stringify(seen.responses)}`);
        for (const r of coded) assert.equal(r.status, 200, r.url);
        const after = await metricSum(`http://${hub.admin}`, "hub_polling_compressed_total");
        assert.ok(after > before, `hub_polling_compressed_total ${before} -> ${after}`);
      } finally {
        await page.evaluate(() => window.hubSocket?.disconnect()).catch(() => {});
        await context.close();
      }
    },
  );

  test(
    "polling: the browser refuses the hub's answers when its CORS origin is another one",
    { ...T, skip: againstReference() && "reference-relay.mjs has no --cors-origin" },
    async () => {
      const strict = await startHub(["--cors-origin", "http://allowed.invalid"]);
      const { context, page, seen } = await openPage(strict.url, ["polling"]);
      try {
        await waitFor(page, seen, "connect_error", () => window.hubTest.connected || window.hubTest.errors.length > 0);
        const state = await page.evaluate(() => window.hubTest);
        assert.equal(state.connected, false, `not connected\n${await explain(page, seen)}`);
        assert.match(state.errors[0], /^connect_error: xhr poll error/, "the XHR failed");
        // The hub answers 200 without Access-Control-Allow-Origin for this
        // page, and Chromium blocks the response (it reports it on the console).
        const blocked = (line) => line.includes("blocked by CORS policy") && line.includes(strict.url);
        for (let i = 0; i < 40 && !seen.console.some(blocked); i++) await sleep(50);
        assert.ok(seen.console.some(blocked), `Chromium reported the CORS block: ${JSON.stringify(seen)}`);
        assert.deepEqual(seen.responses, [], "no hub response reached the page");
      } finally {
        await context.close();
        await strict.stop();
      }
    },
  );
});
