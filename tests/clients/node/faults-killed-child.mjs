// A child process for faults-killed.test.mjs (not a test itself): opens
// socket.io-client sockets of both generations over both transports to
// the relay at argv[2], joins room argv[3], and publishes to it with acks,
// one after another (a millisecond apart, so that the machine's two cores
// still answer heartbeats), for ever. Prints `ready` once every socket has had a
// publish acknowledged. The test kills it with SIGKILL mid-stream.

import { io as ioV4 } from "socket.io-client";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ioV2 = require("socket.io-client-v2");

const [url, room] = process.argv.slice(2);
const kinds = [
  [ioV4, ["websocket"]],
  [ioV4, ["polling"]],
  [ioV2, ["websocket"]],
  [ioV2, ["polling"]],
];
let ready = 0;
for (const [io, transports] of kinds) {
  const socket = io(url, { transports, forceNew: true, reconnection: false });
  socket.on("disconnect", (reason) => console.error(`${transports} v${io === ioV4 ? 4 : 2} disconnected: ${reason}`));
  socket.on("connect_error", (err) => console.error(`${transports} connect_error: ${err.message}`));
  socket.on("connect", () => {
    socket.emit("join", room, () => {
      let seq = 0;
      let first = true;
      const publish = () =>
        socket.emit("publish", { to: room, event: "child", data: { pid: process.pid, seq: seq++, pad: "x".repeat(512) } }, () => {
          if (first) {
            first = false;
            ready += 1;
            if (ready === kinds.length) console.log("ready");
          }
          setTimeout(publish, 1);
        });
      publish();
    });
  });
}
