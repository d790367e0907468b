// Minimal reference Engine.IO server (npm engine.io 6.6) with the same CLI and
// ready line as hub/examples/conformance.rs, used to validate
// tests/engineio_raw.rs and tests/bad_input.rs:
//
//   npm ci --prefix tests/reference
//   HUB_CONFORMANCE_CMD="node tests/reference/server.mjs" HUB_CONFORMANCE_REFERENCE=1 \
//     cargo test -p hub --test engineio_raw --test bad_input
//
// CLI: --port P [--host H] [--shards N (ignored)] [--ping-interval MS]
//      [--ping-timeout MS] [--max-payload BYTES] [--no-eio3] [--request-timeout MS]
// Serves raw Engine.IO at /engine.io/, echoing every message (text as text,
// binary as binary), CORS for any origin with credentials, EIO 4 and 3.
// Any other path: 404.
import http from "node:http";
import { Server } from "engine.io";

const args = process.argv.slice(2);
const opt = { port: 0, host: "127.0.0.1", eio3: true };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => {
    const v = args[++i];
    if (v === undefined) {
      console.error(`missing value for ${a}`);
      process.exit(2);
    }
    return v;
  };
  switch (a) {
    case "--port": opt.port = Number(next()); break;
    case "--host": opt.host = next(); break;
    case "--shards": next(); break; // one process, one event loop
    case "--ping-interval": opt.pingInterval = Number(next()); break;
    case "--ping-timeout": opt.pingTimeout = Number(next()); break;
    case "--max-payload": opt.maxPayload = Number(next()); break;
    case "--request-timeout": opt.requestTimeout = Number(next()); break;
    case "--no-eio3": opt.eio3 = false; break;
    default:
      console.error(`unknown argument ${a}`);
      process.exit(2);
  }
}

const engineOpts = {
  allowEIO3: opt.eio3,
  cors: { origin: true, credentials: true },
  // keep byte-exact bodies: no gzip
  httpCompression: false,
  perMessageDeflate: false,
};
if (opt.pingInterval !== undefined) engineOpts.pingInterval = opt.pingInterval;
if (opt.pingTimeout !== undefined) engineOpts.pingTimeout = opt.pingTimeout;
if (opt.maxPayload !== undefined) engineOpts.maxHttpBufferSize = opt.maxPayload;

const serverOpts = {};
if (opt.requestTimeout !== undefined) {
  serverOpts.requestTimeout = opt.requestTimeout;
  serverOpts.headersTimeout = opt.requestTimeout;
  serverOpts.connectionsCheckingInterval = Math.max(10, Math.floor(opt.requestTimeout / 5));
}

const engine = new Server(engineOpts);
engine.on("connection", (socket) => {
  socket.on("message", (data) => socket.send(data));
});

const PATH = "/engine.io/";
const httpServer = http.createServer(serverOpts, (req, res) => {
  if (req.url.startsWith(PATH)) {
    engine.handleRequest(req, res);
  } else {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("Not Found");
  }
});
if (opt.requestTimeout !== undefined) {
  httpServer.keepAliveTimeout = opt.requestTimeout;
}
httpServer.on("upgrade", (req, socket, head) => {
  if (req.url.startsWith(PATH)) {
    engine.handleUpgrade(req, socket, head);
  } else {
    socket.destroy();
  }
});
httpServer.listen(opt.port, opt.host, () => {
  const { address, port } = httpServer.address();
  process.stdout.write(`listening on ${address}:${port}\n`);
});
