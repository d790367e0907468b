// permessage-deflate with a real browser: headless Chromium (as in
// browser.test.mjs: Debian's chromium or HUB_CHROMIUM, driven by
// playwright-core) loads socket.io-client from npm on a page of another
// origin, connects to the hub (`--shards 2`) over WebSocket, and the test
// reads the extension Chromium agreed (`WebSocket.extensions` in the page).
// Large compressible messages then go both ways: the page publishes 200 KB
// to a room a Node client is in, and the admin API publishes 200 KB to a
// room the page is in; the hub's metrics show what it sent compressed.
//
// A missing Chromium fails the suite (never skips).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { assertChromium, launchChromium, servePage } from "./browser-helpers.mjs";

import { againstReference, freePort, metricSum, relayClient, startRelay, waitConnected } from "./relay-helpers.mjs";

const WAIT_MS = 10_000;
const ROOM_PAGE = "deflate-page";
const ROOM_NODE = "deflate-node";
const SKIP = againstReference() && "reference-relay.mjs has no admin API and no metrics";

/** 200 KB of compressible JSON-like records, the same in the page and here. */
const BIG_SOURCE = `(n) => { let s = ""; for (let i = 0; s.length < n; i++) s += "{id:" + i + ",name:user" + (i % 53) + ",ok:true},"; return s.slice(0, n); }`;
const big = eval(BIG_SOURCE);
const BIG_LEN = 200_000;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>hub deflate</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const big = ${BIG_SOURCE};
  const state = (window.hubTest = { connected: false, extensions: null, joinAck: null, publishAck: null, received: [], errors: [] });
  const socket = io(params.get("hub"), { transports: ["websocket"], forceNew: true, reconnection: false, timeout: 8000 });
  window.hubSocket = socket;
  socket.on("connect", () => {
    state.connected = true;
    state.extensions = socket.io.engine.transport.ws.extensions;
    socket.emit("join", ${JSON.stringify(ROOM_PAGE)}, (res) => { state.joinAck = res; });
  });
  socket.on("big", (data) => state.received.push(data));
  socket.on("connect_error", (err) => state.errors.push("connect_error: " + err.message));
  socket.on("disconnect", (reason) => state.errors.push("disconnect: " + reason));
  window.publishBig = () =>
    socket.emit("publish", { to: ${JSON.stringify(ROOM_NODE)}, event: "big", data: big(${BIG_LEN}) }, (res) => { state.publishAck = res; });
</script>
</body></html>
`;

let browser;
let site;
let hub;
let admin;

before(async () => {
  if (SKIP) return;
  assertChromium();
  site = await servePage(PAGE);
  admin = `127.0.0.1:${await freePort()}`;
  hub = await startRelay(["--admin-bind", admin], { shards: 2 });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await hub?.stop();
  await site?.close();
});

async function waitFor(page, what, fn) {
  try {
    await page.waitForFunction(fn, undefined, { timeout: WAIT_MS, polling: 50 });
  } catch (err) {
    const state = await page.evaluate(() => window.hubTest).catch(() => "unreadable");
    assert.fail(`${what}: ${err.message.split("\n")[0]}\npage state: ${JSON.stringify(state)?.slice(0, 2000)}`);
  }
}

test("Chromium negotiates permessage-deflate and exchanges large messages compressed", { timeout: 60_000, skip: SKIP }, async () => {
  const node = relayClient(hub.url, { version: 4, mode: "websocket" });
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await waitConnected(node);
    assert.deepEqual(await node.request("join", ROOM_NODE), { ok: true });
    await page.goto(`${site.origin}/?${new URLSearchParams({ hub: hub.url })}`, { waitUntil: "load" });
    await waitFor(page, "connect and join", () => window.hubTest.joinAck !== null || window.hubTest.errors.length > 0);
    const state = await page.evaluate(() => window.hubTest);
    assert.deepEqual(state.errors, []);
    assert.deepEqual(state.joinAck, { ok: true });
    // What Chromium agreed, as the page sees it.
    assert.match(state.extensions, /^permessage-deflate/, `extensions: ${state.extensions}`);
    assert.match(state.extensions, /server_no_context_takeover/);
    assert.match(state.extensions, /client_no_context_takeover/);

    // Page -> hub -> Node client (the hub inflates what Chromium compressed).
    await page.evaluate(() => window.publishBig());
    await waitFor(page, "publish ack", () => window.hubTest.publishAck !== null);
    assert.deepEqual(await page.evaluate(() => window.hubTest.publishAck), { ok: true });
    await node.inbox.waitCount("big", 1, WAIT_MS);
    assert.equal(node.inbox.list("big")[0][0], big(BIG_LEN), "the page's message reached the Node client whole");

    // Admin API -> hub -> page, compressed on the way.
    const adminUrl = `http://${admin}`;
    const before = await metricSum(adminUrl, "hub_ws_deflated_messages_total");
    const beforeBytes = await metricSum(adminUrl, "hub_ws_deflated_bytes_after_total");
    const res = await fetch(`${adminUrl}/api/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: [ROOM_PAGE], event: "big", data: big(BIG_LEN) }),
    });
    assert.equal(res.status, 200, await res.text());
    await waitFor(page, "the admin publish in the page", () => window.hubTest.received.length > 0);
    const received = await page.evaluate(() => window.hubTest.received);
    assert.equal(received.length, 1);
    assert.equal(received[0], big(BIG_LEN), "the page got the message whole");
    assert.equal((await metricSum(adminUrl, "hub_ws_deflated_messages_total")) - before, 1, "sent compressed");
    const sent = (await metricSum(adminUrl, "hub_ws_deflated_bytes_after_total")) - beforeBytes;
    assert.ok(sent < BIG_LEN / 5, `${sent} bytes on the wire for ${BIG_LEN}`);
  } finally {
    await page.evaluate(() => window.hubSocket?.disconnect()).catch(() => {});
    await context.close();
    node.close();
  }
});
