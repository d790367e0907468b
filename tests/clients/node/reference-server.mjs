#!/usr/bin/env node
// Reference implementation of the `conformance` example's CLI, built on the
// official npm `engine.io` server (v6). The client tests in this folder and in
// ../python were written and validated against this server, so they assert
// reference behaviour; hub's `hub/examples/conformance.rs` must pass them too.
//
//   node reference-server.mjs --port P [--host 127.0.0.1] [--shards N]
//        [--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES] [--no-eio3]
//        [--request-timeout MS] [--http-compression-threshold BYTES]
//
// It also validates the raw Rust tests (tests/engineio_raw.rs, tests/bad_input.rs):
//   HUB_CONFORMANCE_CMD="node $PWD/tests/clients/node/reference-server.mjs" HUB_CONFORMANCE_REFERENCE=1 \
//     cargo test -p hub --test engineio_raw --test bad_input
//
// Prints exactly one line `listening on <host>:<port>` on stdout once ready.
// Serves a raw Engine.IO endpoint at `/engine.io/` that echoes every message
// (text as text, binary as binary), CORS for any origin, EIO v4 and (unless
// --no-eio3) v3. `--shards` is accepted and ignored: Node is one process here.

import http from "node:http";
import { attach } from "engine.io";

import { parseServerArgs } from "./reference-cli.mjs";

const opts = parseServerArgs(
  process.argv.slice(2),
  {
    "--ping-interval": ["pingInterval", 25000],
    "--ping-timeout": ["pingTimeout", 20000],
    "--max-payload": ["maxPayload", 1000000],
    "--request-timeout": ["requestTimeout", undefined],
    "--http-compression-threshold": ["httpCompressionThreshold", undefined],
  },
  "usage: reference-server.mjs --port P [--host H] [--shards N] [--ping-interval MS] " +
    "[--ping-timeout MS] [--max-payload BYTES] [--no-eio3] [--request-timeout MS] " +
    "[--http-compression-threshold BYTES]",
);

// Node's own request and header timeouts stand for hub's --request-timeout.
const serverOpts = {};
if (opts.requestTimeout !== undefined) {
  serverOpts.requestTimeout = opts.requestTimeout;
  serverOpts.headersTimeout = opts.requestTimeout;
  serverOpts.connectionsCheckingInterval = Math.max(10, Math.floor(opts.requestTimeout / 5));
}
const httpServer = http.createServer(serverOpts, (req, res) => {
  // Anything outside /engine.io/ (engine.io handles its own path).
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found");
});
if (opts.requestTimeout !== undefined) httpServer.keepAliveTimeout = opts.requestTimeout;

const engine = attach(httpServer, {
  path: "/engine.io/",
  allowEIO3: opts.eio3,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  maxHttpBufferSize: opts.maxPayload,
  // Any origin, echoed, with credentials: what the conformance example does.
  cors: { origin: true, credentials: true },
  // Byte-exact bodies for the raw tests, unless a threshold is given
  // (tests/http_compression.rs).
  httpCompression:
    opts.httpCompressionThreshold === undefined
      ? false
      : { threshold: opts.httpCompressionThreshold },
  perMessageDeflate: false,
});

engine.on("connection", (socket) => {
  socket.on("message", (data) => {
    // Strings come back as text, Buffers as binary.
    socket.send(data);
  });
});

httpServer.on("error", (err) => {
  process.stderr.write(`reference-server: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(opts.port, opts.host, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening on ${opts.host}:${port}\n`);
});

function shutdown() {
  engine.close();
  httpServer.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
