// Issue #14: hub's live dashboard in a real browser. Headless Chromium (as
// in browser.test.mjs) opens the admin listener's `/` with the API key in
// the URL; the page reads `/api/stream` (server-sent events). The test runs
// the bundled load generator (`loadgen fanout`, target/debug/loadgen or
// HUB_LOADGEN) against the hub and checks that the page's numbers move
// (deliveries, bytes and handshakes per second) and that its connection
// count is the number of clients loadgen holds open, then back to 0.
//
// The dashboard is hub's own: against reference-relay.mjs the test is
// skipped, saying so. A missing Chromium or loadgen fails it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { assertChromium, launchChromium } from "./browser-helpers.mjs";
import { REPO_ROOT } from "./helpers.mjs";
import { againstReference, eventually, freePort, startRelay } from "./relay-helpers.mjs";

const LOADGEN = process.env.HUB_LOADGEN || path.join(REPO_ROOT, "target", "debug", "loadgen");
const KEY = "dash/board key";
const SUBSCRIBERS = 12;
const PUBLISHERS = 2;

/** Runs loadgen with `args`; resolves with its exit code and output. */
function runLoadgen(args) {
  const child = spawn(LOADGEN, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  child.stderr.on("data", (chunk) => (out += chunk));
  const done = new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve({ code, signal, out }));
  });
  return { child, done };
}

describe("the dashboard page in Chromium", { skip: againstReference() && "the dashboard is hub's own (reference-relay.mjs has none)" }, () => {
  let hub;
  let admin;
  let browser;

  before(async () => {
    assertChromium();
    assert.ok(existsSync(LOADGEN), `${LOADGEN} is missing: \`cargo build -p loadgen\` (or set HUB_LOADGEN)`);
    admin = `127.0.0.1:${await freePort()}`;
    hub = await startRelay(["--admin-bind", admin, "--api-key", KEY, "--dashboard-interval", "250"], { shards: 2 });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test("shows the connections loadgen holds and its traffic moving", { timeout: 90_000 }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const console_ = [];
    page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
    const explain = () => `page console: ${JSON.stringify(console_)}`;
    try {
      // Without the key: the form that asks for it, not the dashboard.
      const refused = await page.goto(`http://${admin}/`);
      assert.equal(refused.status(), 401);
      assert.equal(await page.locator("input[name=key]").count(), 1, "a key field");
      // With it (the form's GET puts it in the URL).
      await page.fill("input[name=key]", KEY);
      await Promise.all([page.waitForURL(/\?key=/), page.click("button")]);
      const state = () => page.evaluate(() => window.hubDashboard);
      await eventually(async () => (await state())?.open && (await state()).events >= 2, 10_000, () => `the stream open\n${explain()}`);
      assert.equal(await page.locator("#connections").textContent(), "0");
      assert.equal(await page.locator("#state").textContent(), "live");

      const load = runLoadgen([
        "fanout",
        "--url", hub.url,
        "--clients", String(SUBSCRIBERS),
        "--publishers", String(PUBLISHERS),
        "--rooms", "1",
        "--rate", "200",
        "--warmup", "1s",
        "--duration", "6s",
      ]);
      try {
        // Every loadgen client connected, on WebSocket, in the tile and the
        // shards' table.
        const all = SUBSCRIBERS + PUBLISHERS;
        await eventually(
          async () => (await page.locator("#connections").textContent()) === String(all),
          20_000,
          async () => `${all} connections on the page\n${explain()}`,
        );
        assert.equal(await page.locator("#websocket").textContent(), String(all));
        const rows = await page.locator("#shards tr").evaluateAll((trs) =>
          trs.map((tr) => Number(tr.children[1].textContent)),
        );
        assert.equal(rows.length, 2, "a row per shard");
        assert.equal(rows.reduce((a, b) => a + b, 0), all, `per shard: ${rows}`);
        // Traffic: deliveries and bytes out per second move on the page.
        await eventually(
          async () => {
            const latest = (await state()).latest;
            return latest.deliveries_per_s > 0 && latest.bytes_out_per_s > 0;
          },
          15_000,
          () => `deliveries on the page\n${explain()}`,
        );
        const deliveries = await page.locator("#deliveries").textContent();
        assert.notEqual(deliveries, "0", "the deliveries tile moved");
        assert.notEqual(await page.locator("#bytes-out").textContent(), "0 B");
        const seen = await state();
        assert.ok(seen.samples.some((s) => s.handshakes_per_s > 0), "handshakes per second moved");
        assert.ok(seen.samples.length >= 3, `the chart has samples: ${seen.samples.length}`);
        const { code, out } = await load.done;
        assert.equal(code, 0, `loadgen: ${out}`);
      } finally {
        load.child.kill("SIGKILL");
      }
      // loadgen gone: back to 0.
      await eventually(
        async () => (await page.locator("#connections").textContent()) === "0",
        15_000,
        () => `0 connections after loadgen\n${explain()}`,
      );
      // The chart was drawn: some pixels of the canvas are not blank.
      const drawn = await page.evaluate(() => {
        const c = document.getElementById("chart");
        const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let inked = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) inked++;
        return inked;
      });
      assert.ok(drawn > 1000, `inked pixels: ${drawn}`);
      assert.deepEqual(console_.filter((l) => l.startsWith("pageerror")), [], "no page errors");
    } finally {
      await context.close();
    }
  });
});
