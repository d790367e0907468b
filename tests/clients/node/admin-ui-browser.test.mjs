// Issue 14's acceptance test: the real Socket.IO Admin UI (the pinned
// @socket.io/admin-ui 0.5.1's `ui/dist`, served from another local port)
// in headless Chromium against `hub --admin-ui` with a password, on
// `--shards 2` with socket.io-client sockets on both shards. The test logs
// in through the UI's form (over polling then WebSocket, the UI's default,
// and with its "WebSocket only?" option), reads the dashboard (clients per
// transport, the namespaces and their socket counts) and the Sockets page,
// joins a room and disconnects a socket from a socket's page and checks on
// the server side (the relay's `session` request gives a socket's rooms;
// the client sees its disconnection) that both took effect. A wrong
// password shows "Invalid credentials"; a reload logs in again with the
// saved session id. The page's external stylesheets (Google Fonts,
// jsdelivr's icon font) are aborted: the machine is offline, and the test
// finds buttons by their place and tooltip, not by their icons.
//
// A missing Chromium fails the suite (never skips), as in browser.test.mjs.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { io as ioV4 } from "socket.io-client";

import { assertChromium, launchChromium } from "./browser-helpers.mjs";
import { shardOf } from "./helpers.mjs";
import { againstReference, eventually, freePort, startRelay, withTimeout } from "./relay-helpers.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(HERE, "node_modules", "@socket.io", "admin-ui", "ui", "dist");
// bcrypt of "changeit" (the upstream tests' hash).
const HASH = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";
const PASSWORD = "changeit";
const SKIP = againstReference() && "reference-relay.mjs has no --admin-ui";
const WAIT_MS = 10_000;
// server_stats come every 2 s: the dashboard may lag by that much.
const STATS_WAIT_MS = 15_000;
// The stylesheets index.html loads from CDNs (the machine is offline).
const OFFLINE = /^https:\/\/(fonts\.googleapis\.com|cdn\.jsdelivr\.net)\//;
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "application/javascript",
  ".css": "text/css",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".map": "application/json",
};

/** A static server for `ui/dist` on 127.0.0.1:<free port>. */
async function startUiServer() {
  const server = http.createServer(async (req, res) => {
    const rel = path.normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "");
    const file = path.join(DIST, rel === "" ? "index.html" : rel);
    if (!file.startsWith(DIST)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

let browser;
let ui;
let hub;
const cleanup = [];

before(async () => {
  if (SKIP) return;
  assertChromium();
  await readFile(path.join(DIST, "index.html")).catch(() => {
    throw new Error(`${DIST} is missing: run \`npm ci\` in tests/clients/node`);
  });
  ui = await startUiServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (ui) await new Promise((resolve) => ui.server.close(resolve));
});

/**
 * A hub of its own for test `t` (`--shards 2`, the Admin UI with a
 * password; `--cors-origin` because the UI polls from its own origin, with
 * credentials), stopped after the test with everything the test opened.
 */
async function startHub(t) {
  const admin = `127.0.0.1:${await freePort()}`;
  hub = await startRelay(
    ["--admin-bind", admin, "--admin-ui", "--admin-ui-username", "admin", "--admin-ui-password-hash", HASH, "--cors-origin", ui.origin],
    { shards: 2 },
  );
  const stop = hub.stop;
  t.after(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
    await stop();
  });
}

function client(transports = ["websocket"]) {
  const socket = ioV4(hub.url, { transports, forceNew: true, reconnection: false });
  cleanup.push(() => socket.close());
  socket.disconnects = [];
  socket.on("disconnect", (reason) => socket.disconnects.push(reason));
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", reject);
    }),
    WAIT_MS,
    "client connect",
  );
}

/** At least `n` clients on `/`, some on each of the 2 shards. */
async function spread(n) {
  const clients = [];
  const seen = new Set();
  while (seen.size < 2 || clients.length < n) {
    assert.ok(clients.length < 40, "could not get a client on every shard");
    const c = await client();
    seen.add(shardOf(c.io.engine.id));
    clients.push(c);
  }
  return clients;
}

/** A socket's rooms as hub sees them (the relay's `session` request). */
async function roomsOf(socket) {
  return (await withTimeout(socket.emitWithAck("session"), WAIT_MS, "session ack")).rooms;
}

/** A fresh browser context on the UI, offline for the CDN stylesheets, logging what went wrong. */
async function openUi() {
  const context = await browser.newContext();
  cleanup.push(() => context.close());
  const page = await context.newPage();
  const log = [];
  const polls = [];
  page.on("request", (req) => {
    if (req.url().startsWith(hub.url) && req.url().includes("transport=polling")) polls.push(req.url());
  });
  await page.route(OFFLINE, (route) => route.abort());
  page.on("pageerror", (err) => log.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    // (The aborted stylesheets log a "Failed to load resource" each.)
    if (msg.type() === "error" && !OFFLINE.test(msg.location().url ?? "")) log.push(`console: ${msg.text()}`);
  });
  await page.goto(`${ui.origin}/`, { waitUntil: "load" });
  return { page, log, polls };
}

/** Fills the connection form and submits it. */
async function login(page, { username = "admin", password = PASSWORD, wsOnly = false } = {}) {
  await page.getByLabel("Server URL").fill(hub.url);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  if (wsOnly) {
    // Vuetify switches: click their labels (the inputs are hidden, and the
    // advanced options slide in).
    for (const label of ["Advanced options", "WebSocket only?"]) {
      await page.locator("label", { hasText: label }).click();
      await until(() => page.getByLabel(label).isChecked(), (on) => on, `switch "${label}" on`);
    }
  }
  await page.locator("form button[type=submit]").click();
}

/** The app bar's connection status ("connected"/"disconnected"), lowercased. */
const status = (page) =>
  page.evaluate(() => {
    const bar = document.querySelector("header");
    const chip = bar && [...bar.querySelectorAll(".v-chip__content")].map((c) => c.textContent.trim().toLowerCase());
    return chip ? chip.join(",") : "";
  });

/** The rows (cell texts) of the tables in the card titled `title`. */
const cardRows = (page, title) =>
  page.evaluate((title) => {
    const card = [...document.querySelectorAll(".v-card")].find(
      (c) => c.querySelector(".v-card__title")?.textContent.trim() === title,
    );
    if (!card) return null;
    return [...card.querySelectorAll("tbody tr")].map((tr) => [...tr.querySelectorAll("td")].map((td) => td.innerText.trim()));
  }, title);

/** Waits until `check(value)` for `value = await read()`, saying what it saw last. */
async function until(read, check, what, ms = WAIT_MS) {
  let last;
  await eventually(
    async () => {
      last = await read();
      return check(last);
    },
    ms,
    () => `${what}; last seen: ${JSON.stringify(last)}`,
  );
  return last;
}

const namespaces = async (page) => Object.fromEntries((await cardRows(page, "Namespaces")) ?? []);
// Rows of "Clients": the transport, then its count above its share.
const transports = async (page) =>
  Object.fromEntries(((await cardRows(page, "Clients")) ?? []).filter((r) => r.length >= 2).map(([t, n]) => [t, parseInt(n, 10)]));

for (const wsOnly of [false, true]) {
  const how = wsOnly ? "WebSocket only" : "polling then WebSocket";
  test(`the UI logs in (${how}), shows the sockets of both shards and the namespaces, keeps its session over a reload`, { skip: SKIP }, async (t) => {
    await startHub(t);
    const clients = await spread(4);
    const polling = await client(["polling"]);
    const { page, log, polls } = await openUi();
    await login(page, { wsOnly });
    await until(() => status(page), (s) => s.includes("connected") && !s.includes("disconnected"), `connected (${log})`);

    if (wsOnly) assert.deepEqual(polls, [], "no polling request with WebSocket only");
    else assert.ok(polls.length > 0, "the UI polled first (cross-origin, with credentials)");

    // The dashboard: every `/` socket, the UI's own on /admin; clients
    // per transport (the UI's own connection counted, on WebSocket once
    // upgraded), from server_stats summed over both shards.
    const total = clients.length + 1;
    await until(() => namespaces(page), (ns) => ns["/"] === String(total) && ns["/admin"] === "1", "namespaces card", STATS_WAIT_MS);
    await until(
      () => transports(page),
      (t) => t.WebSocket === clients.length + 1 && t["HTTP long-polling"] === 1,
      "clients card: WebSocket and polling",
      STATS_WAIT_MS,
    );

    // The Sockets page (development mode): every socket of `/` by id.
    await page.goto(`${ui.origin}/#/sockets/`);
    const ids = [...clients, polling].map((c) => c.id).sort();
    await until(
      () => page.evaluate(() => [...document.querySelectorAll("main tbody tr td:first-child")].map((td) => td.innerText.trim()).sort()),
      (shown) => JSON.stringify(shown) === JSON.stringify(ids),
      "sockets page lists every socket",
    );

    // The login saved a session id; a reload connects with it alone.
    const session = await page.evaluate(() => localStorage.getItem("session_id"));
    assert.match(session ?? "", /^[0-9a-f]{16}$/, "localStorage session_id after the login");
    await page.reload({ waitUntil: "load" });
    await until(() => status(page), (s) => s.includes("connected") && !s.includes("disconnected"), "connected again after a reload");
    assert.equal(await page.getByLabel("Password").isVisible(), false, "no login form after the reload");
    await page.goto(`${ui.origin}/#/`);
    await until(() => namespaces(page), (ns) => ns["/"] === String(total), "namespaces card after the reload", STATS_WAIT_MS);
    assert.deepEqual(log, [], "no page errors");

  });
}

test("from a socket's page the UI joins a room and disconnects the socket, on either shard", { skip: SKIP }, async (t) => {
  await startHub(t);
  const clients = await spread(2);
  const targets = [0, 1].map((shard) => clients.find((c) => shardOf(c.io.engine.id) === shard));
  const { page, log } = await openUi();
  await login(page);
  await until(() => status(page), (s) => s.includes("connected") && !s.includes("disconnected"), `connected (${log})`);

  for (const [shard, target] of targets.entries()) {
    const room = `ui-room-${shard}`;
    // As a user would: the Sockets page, then the socket's row.
    await page.goto(`${ui.origin}/#/sockets/`);
    await page.locator("main tbody tr", { hasText: target.id }).click({ timeout: WAIT_MS });
    await page.waitForURL(`${ui.origin}/#/n/%2F/sockets/${target.id}`, { timeout: WAIT_MS });
    const roomsCard = page.locator(".v-card", { has: page.locator(".v-card__title", { hasText: /^Rooms$/ }) });
    await roomsCard.getByLabel("Join a room").waitFor({ timeout: WAIT_MS });
    await roomsCard.getByLabel("Join a room").fill(room);
    await roomsCard.getByLabel("Join a room").press("Escape");
    await roomsCard.locator("button[type=submit]").click();

    // hub did it: the socket itself says it is in the room.
    await until(() => roomsOf(target), (rooms) => rooms.includes(room), `shard ${shard}: ${target.id} joined ${room} on hub`);
    // And the page shows it (room_joined in development mode).
    await until(
      () => cardRows(page, "Rooms"),
      (rows) => rows?.some(([name]) => name === room),
      `shard ${shard}: the Rooms card lists ${room}`,
    );

    // The "Socket" table's disconnect button (the Status row of the second
    // table in the Details card): `_disconnect("/", false, id)`.
    const details = page.locator(".v-card", { has: page.locator(".v-card__title", { hasText: /^Details$/ }) });
    await details.locator("table").nth(1).locator("button").click();
    await until(() => target.disconnects, (d) => d.length === 1, `shard ${shard}: the client is disconnected`);
    assert.deepEqual(target.disconnects, ["io server disconnect"], "a namespace disconnect from the server");
    await until(
      () => page.evaluate(() => document.querySelector("main")?.innerText.toLowerCase() ?? ""),
      (text) => text.includes("disconnected"),
      `shard ${shard}: the page shows the socket disconnected`,
    );
  }
  // The others are still there.
  for (const c of clients.filter((c) => !targets.includes(c))) assert.equal(c.connected, true, `${c.id} still connected`);
  assert.deepEqual(log, [], "no page errors");
});

test('a wrong password shows "Invalid credentials" and saves no session', { skip: SKIP }, async (t) => {
  await startHub(t);
  const { page } = await openUi();
  await login(page, { password: "not-the-password" });
  await page.locator(".red--text", { hasText: "Invalid credentials" }).waitFor({ timeout: WAIT_MS });
  assert.equal(await page.evaluate(() => localStorage.getItem("session_id")), null, "no session_id");
  assert.equal(await page.getByLabel("Password").isVisible(), true, "the login form stays open");
});
