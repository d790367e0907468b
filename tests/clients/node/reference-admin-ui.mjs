#!/usr/bin/env node
// Reference for hub's Socket.IO Admin UI (`hub --admin-ui`): the official
// npm `socket.io` 4.8 server with `@socket.io/admin-ui` 0.5.1's
// `instrument()` (both pinned in package.json), taking hub's flags, so
// admin-ui.test.mjs runs the same assertions against both.
//
//   node reference-admin-ui.mjs --port P [--bind H] [--shards N]
//        [--admin-ui] [--admin-ui-namespace NSP] [--admin-ui-username NAME]
//        [--admin-ui-password-hash HASH] [--admin-ui-readonly]
//        [--admin-ui-mode development|production] [--admin-bind ADDR]
//
// Prints `listening on <host>:<port>` on stdout once ready. Every
// namespace is served. `--shards` and `--admin-bind` are accepted and
// ignored (one Node process, no admin listener, no metrics). Without
// `--admin-ui` nothing is instrumented. The flags map onto instrument()'s
// options: `auth` is `{type: "basic", username, password: HASH}` with a
// hash and `false` without one; `readonly`, `mode` and `namespaceName` as
// given (mode defaults to development, as hub's; instrument() would read
// NODE_ENV). A hash instrument() refuses exits 2, naming the flag, as hub.
//
// On every namespace, the relay's requests the suite uses (no tokens):
// `join` / `leave` (a room or an array of rooms) and `publish` {to, event,
// data} (to the rooms, the sender excluded) answered `{ok: true}`; `echo`
// acks its arguments; `session` acks `{id, rooms}`. Nothing is put in
// `socket.data`: instrument() proxies it and reports each key it finds
// there as a `socket_updated`.

import http from "node:http";
import { instrument } from "@socket.io/admin-ui";
import { Server } from "socket.io";

import { parseServerArgs } from "./reference-cli.mjs";

const USAGE =
  "usage: reference-admin-ui.mjs --port P [--bind H] [--shards N] [--admin-ui] [--admin-ui-namespace NSP] " +
  "[--admin-ui-username NAME] [--admin-ui-password-hash HASH] [--admin-ui-readonly] " +
  "[--admin-ui-mode development|production] [--admin-bind ADDR]";

const fail = (message) => {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
};

// --------------------------------------------------------------- arguments
const admin = { on: false, namespace: "/admin", username: "admin", hash: undefined, readonly: false, mode: "development" };
const rest = [];
{
  const argv = process.argv.slice(2);
  const value = (i, flag) => (i + 1 < argv.length ? argv[i + 1] : fail(`${flag} needs a value`));
  const strings = {
    "--admin-ui-namespace": "namespace",
    "--admin-ui-username": "username",
    "--admin-ui-password-hash": "hash",
    "--admin-ui-mode": "mode",
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--bind") {
      rest.push("--host", value(i, arg));
      i++;
    } else if (arg === "--admin-ui") {
      admin.on = true;
    } else if (arg === "--admin-ui-readonly") {
      admin.readonly = true;
    } else if (arg in strings) {
      admin[strings[arg]] = value(i, arg);
      i++;
    } else if (arg === "--admin-bind") {
      value(i, arg);
      i++;
    } else {
      rest.push(arg);
    }
  }
}
const opts = parseServerArgs(rest, {}, USAGE);
if (!["development", "production"].includes(admin.mode)) fail("--admin-ui-mode must be development or production");

// ----------------------------------------------------------------- server
const httpServer = http.createServer();
const io = new Server(httpServer, {
  cors: { origin: true, credentials: true },
  serveClient: false,
  httpCompression: false,
  perMessageDeflate: false,
});

const rooms = (value) => (Array.isArray(value) ? value : [value]);

/** `event` answered through its ack (when there is one) with `fn(args)`. */
function answer(socket, event, fn) {
  socket.on(event, (...all) => {
    const ack = typeof all.at(-1) === "function" ? all.pop() : undefined;
    const result = fn(all);
    if (ack) ack(...result);
  });
}

function onConnection(socket) {
  answer(socket, "join", ([names]) => {
    socket.join(rooms(names));
    return [{ ok: true }];
  });
  answer(socket, "leave", ([names]) => {
    for (const room of rooms(names)) socket.leave(room);
    return [{ ok: true }];
  });
  answer(socket, "publish", ([spec]) => {
    socket.to(rooms(spec.to)).emit(spec.event, spec.data === undefined ? null : spec.data);
    return [{ ok: true }];
  });
  answer(socket, "echo", (args) => args);
  answer(socket, "session", () => [{ id: socket.id, rooms: [...socket.rooms] }]);
}

// Every namespace but the Admin UI's: `/`, and any other on demand.
io.of("/").on("connection", onConnection);
io.of((name, _auth, next) => next(null, name !== admin.namespace)).on("connection", onConnection);

if (admin.on) {
  try {
    instrument(io, {
      auth: admin.hash === undefined ? false : { type: "basic", username: admin.username, password: admin.hash },
      readonly: admin.readonly,
      mode: admin.mode,
      namespaceName: admin.namespace,
    });
  } catch (err) {
    fail(`${admin.hash !== undefined ? "--admin-ui-password-hash: " : ""}${err.message}`);
  }
}

// ---------------------------------------------------------------- process
httpServer.on("error", (err) => {
  process.stderr.write(`reference-admin-ui: ${err.stack || err}\n`);
  process.exit(1);
});
httpServer.listen(opts.port, opts.host, () => {
  process.stdout.write(`listening on ${opts.host}:${httpServer.address().port}\n`);
});

function shutdown() {
  setTimeout(() => process.exit(0), 3000).unref();
  io.close(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
