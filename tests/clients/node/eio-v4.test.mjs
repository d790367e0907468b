// engine.io-client 6.x (Engine.IO protocol v4) against the conformance server
// with --shards 2: polling only, websocket only, polling upgraded to websocket.

import { after, before } from "node:test";

import { defineEchoSuites } from "./echo-suite.mjs";
import { startServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

defineEchoSuites({ version: 4, label: "engine.io-client v6 (EIO=4)", getServer: () => server });
