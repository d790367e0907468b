#!/usr/bin/env node
// Reference implementation of the Socket.IO testbed (tests/clients/TESTBED.md),
// built on the official npm `socket.io` 4.8 server. The sio-*.test.mjs suites
// and ../python/test_socketio_client.py were written and validated against it,
// so they assert reference behaviour; hub's `hub/examples/sio_testbed.rs` must
// pass them too.
//
//   node reference-testbed.mjs --port P [--host 127.0.0.1] [--shards N]
//        [--ping-interval MS] [--ping-timeout MS] [--connect-timeout MS]
//        [--max-payload BYTES] [--no-eio3] [--http-compression-threshold BYTES]
//
// Prints exactly one line `listening on <host>:<port>` on stdout once ready.
// `--shards` is accepted and ignored: Node is one process here, so every
// "cross-shard" operation is trivially local.

import http from "node:http";
import { Server } from "socket.io";

import { parseServerArgs } from "./reference-cli.mjs";

const opts = parseServerArgs(
  process.argv.slice(2),
  {
    "--ping-interval": ["pingInterval", 25000],
    "--ping-timeout": ["pingTimeout", 20000],
    "--connect-timeout": ["connectTimeout", 45000],
    "--max-payload": ["maxPayload", 1000000],
    "--http-compression-threshold": ["httpCompressionThreshold", undefined],
  },
  "usage: reference-testbed.mjs --port P [--host H] [--shards N] [--ping-interval MS] " +
    "[--ping-timeout MS] [--connect-timeout MS] [--max-payload BYTES] [--no-eio3] " +
    "[--http-compression-threshold BYTES]",
);

const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  allowEIO3: opts.eio3,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  connectTimeout: opts.connectTimeout,
  maxHttpBufferSize: opts.maxPayload,
  cors: { origin: true, credentials: true },
  serveClient: false,
  // Off unless a threshold is given (http-compression.test.mjs).
  httpCompression:
    opts.httpCompressionThreshold === undefined
      ? false
      : { threshold: opts.httpCompressionThreshold },
  perMessageDeflate: false,
});

const sorted = (set) => [...set].sort();

// ------------------------------------------------------------------ monitor
// Created first so that it exists before any event can be reported.
const monitor = io.of("/monitor");
function report(event) {
  monitor.emit("server-event", event);
}

// --------------------------------------------------------------- middleware
function refuseMiddleware(socket, next) {
  const auth = socket.handshake.auth || {};
  // v3/v4 clients: auth `{"refuse": true}`; v2 clients: the CONNECT query
  // (`/custom?refuse=1`), which socket.io 4 turns into the auth object
  // (values are strings). `/` is connected implicitly for v2 clients, with
  // `{}`: it is never refused for them.
  if (auth.refuse === true || auth.refuse === "1") {
    const err = new Error("refused by middleware");
    err.data = { reason: "test" };
    return next(err);
  }
  next();
}

function onConnection(socket) {
  const nsp = socket.nsp;
  report({ type: "connection", nsp: nsp.name, id: socket.id });

  socket.use(([event], next) => {
    if (event === "use-fail") return next(new Error("use-fail refused"));
    next();
  });
  // Socket middleware errors (and invalid packets: socket.io reports those
  // as an `error` too, right before it closes the connection).
  socket.on("error", (err) => {
    report({ type: "error", nsp: nsp.name, id: socket.id, message: err && err.message });
  });
  socket.on("disconnecting", (reason) => {
    report({ type: "disconnecting", nsp: nsp.name, id: socket.id, reason, rooms: sorted(socket.rooms) });
  });
  socket.on("disconnect", (reason) => {
    report({ type: "disconnect", nsp: nsp.name, id: socket.id, reason, rooms: sorted(socket.rooms) });
  });

  socket.emit("auth", socket.handshake.auth || {});
  socket.emit("hello", { id: socket.id, nsp: nsp.name });

  /** Splits the trailing ack function off the arguments. */
  const split = (args) =>
    args.length > 0 && typeof args[args.length - 1] === "function"
      ? [args.slice(0, -1), args[args.length - 1]]
      : [args, undefined];
  const ackOf = (args) => {
    const [, ack] = split(args);
    return ack || (() => {});
  };

  socket.on("message", (...args) => {
    const [data] = split(args);
    socket.emit("message-back", ...data);
  });
  socket.on("message-with-ack", (...args) => {
    const [data, ack] = split(args);
    if (ack) ack(...data);
  });
  socket.on("echo", (...args) => {
    const [data, ack] = split(args);
    if (ack) ack(...data);
    else socket.emit("echo-back", ...data);
  });
  socket.on("join", (rooms, ...rest) => {
    socket.join(rooms);
    ackOf(rest)(sorted(socket.rooms));
  });
  socket.on("leave", (room, ...rest) => {
    socket.leave(room);
    ackOf(rest)(sorted(socket.rooms));
  });
  socket.on("rooms", (...rest) => {
    ackOf(rest)(sorted(socket.rooms));
  });

  const target = (base, spec) => {
    const rooms = Array.isArray(spec.rooms) ? spec.rooms : [];
    const except = Array.isArray(spec.except) ? spec.except : [];
    let op = rooms.length > 0 ? base.to(rooms) : base === socket ? socket.broadcast : base.except([]);
    if (except.length > 0) op = op.except(except);
    if (spec.volatile) op = op.volatile;
    return op;
  };
  socket.on("to", (spec, ...rest) => {
    spec = spec || {};
    target(socket, spec).emit(spec.event, ...(spec.args || []));
    ackOf(rest)(true);
  });
  socket.on("server-to", (spec, ...rest) => {
    spec = spec || {};
    target(nsp, spec).emit(spec.event, ...(spec.args || []));
    ackOf(rest)(true);
  });
  socket.on("ask", (spec, ...rest) => {
    spec = spec || {};
    const ack = ackOf(rest);
    const emitter = typeof spec.timeout === "number" ? socket.timeout(spec.timeout) : socket;
    const reply = (err, answer) => (err ? ack({ ok: false, error: "timeout" }) : ack({ ok: true, args: answer }));
    if (typeof spec.timeout === "number") {
      emitter.emit(spec.event, ...(spec.args || []), (err, ...answer) => reply(err, answer));
    } else {
      emitter.emit(spec.event, ...(spec.args || []), (...answer) => reply(null, answer));
    }
  });
  socket.on("room-sockets", async (room, ...rest) => {
    const sockets = await nsp.in(room).fetchSockets();
    ackOf(rest)(sockets.map((s) => s.id).sort());
  });
  socket.on("room-join", (spec, ...rest) => {
    nsp.in(spec.room).socketsJoin(spec.join);
    ackOf(rest)(true);
  });
  socket.on("room-leave", (spec, ...rest) => {
    nsp.in(spec.room).socketsLeave(spec.leave);
    ackOf(rest)(true);
  });
  socket.on("room-disconnect", (spec, ...rest) => {
    ackOf(rest)(true);
    nsp.in(spec.room).disconnectSockets(spec.close === true);
  });
  socket.on("disconnect-me", (close) => {
    socket.disconnect(close === true);
  });
}

for (const name of ["/", "/custom", /^\/dyn-[a-z0-9]+$/]) {
  const nsp = io.of(name);
  nsp.use(refuseMiddleware);
  nsp.on("connection", onConnection);
}

// ------------------------------------------------------------------ process
httpServer.on("error", (err) => {
  process.stderr.write(`reference-testbed: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(opts.port, opts.host, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening on ${opts.host}:${port}\n`);
});

let shuttingDown = false;
async function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // What io.close() does (every socket gets `server shutting down`), but the
  // application namespaces first, so that the /monitor sockets are still
  // there to report it.
  for (const nsp of io._nsps.values()) {
    if (nsp.name === "/monitor") continue;
    for (const socket of nsp.sockets.values()) socket._onclose("server shutting down");
  }
  const done = io.close();
  setTimeout(() => process.exit(0), 1000).unref();
  await done;
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
