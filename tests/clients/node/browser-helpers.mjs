// Headless Chromium for the browser tests (browser.test.mjs,
// browser-deflate.test.mjs): Debian's chromium driven by playwright-core,
// and the socket.io-client bundle the pages load.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.HUB_CHROMIUM || "/usr/bin/chromium";
// What the machine's closed network needs (docs: machines/rust.md). Playwright
// adds --headless itself and starts every launch with a fresh temporary
// --user-data-dir (it refuses one in `args`).
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const CLIENT_JS = path.join(HERE, "node_modules", "socket.io-client", "dist", "socket.io.min.js");

/** The socket.io-client browser bundle (from the pinned npm package). */
export function clientBundle() {
  assert.ok(existsSync(CLIENT_JS), `${CLIENT_JS} is missing: run \`npm ci\` in tests/clients/node`);
  return readFileSync(CLIENT_JS);
}

/** Checks that Chromium is there (an error, never a skip, when it is not). */
export function assertChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: the browser tests need Debian's chromium package ` +
        "(`apt-get install -y --no-install-recommends chromium`, which scripts/test runs), " +
        "or HUB_CHROMIUM set to a Chromium binary",
    );
  }
}

/** A headless Chromium. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 20_000 });
}

/**
 * A static server on 127.0.0.1 (a free port) for a browser test: `page` at
 * `/` and the client bundle at `/socket.io.min.js`. `{server, origin, close}`.
 */
export async function servePage(page) {
  const clientJs = clientBundle();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(page);
    } else if (url.pathname === "/socket.io.min.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" });
      res.end(clientJs);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const close = () => new Promise((resolve) => server.close(resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}`, close };
}
