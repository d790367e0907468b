// What the Admin UI suites (admin-ui.test.mjs, admin-ui-cluster.test.mjs)
// share: socket.io-client sockets that keep every event they get, and
// clients spread until every shard of a hub has some.

import assert from "node:assert/strict";

import { io as ioV4 } from "socket.io-client";

import { shardOf, withTimeout } from "./helpers.mjs";

/**
 * The helpers of one test file: its sockets are closed by what it pushes
 * on `cleanup`; each wait gives up after `timeout` ms.
 */
export function recordingClients(cleanup, timeout) {
  /** A socket.io-client socket that keeps every event it gets in `got`. */
  function client(url, { nsp = "/", transports = ["websocket"] } = {}) {
    const socket = ioV4(url + nsp, { transports, forceNew: true, reconnection: false });
    cleanup.push(() => socket.close());
    socket.got = [];
    socket.onAny((event, ...args) => socket.got.push({ event, args }));
    return socket;
  }

  const connectedOf = (s) =>
    withTimeout(
      new Promise((resolve, reject) => {
        if (s.connected) return resolve(s);
        s.once("connect", () => resolve(s));
        s.once("connect_error", reject);
      }),
      timeout,
      "connect",
    );

  const ack = (s, ...args) => withTimeout(s.emitWithAck(...args), timeout, `ack of ${args[0]}`);
  /** The rooms the relay's `session` request says `s` is in. */
  const roomsOf = async (s) => (await ack(s, "session")).rooms;

  /** Connected clients of `/` on `url` until each of `shards` shards has one, `min` at least. */
  async function spread(url, shards, { min = 3, transports } = {}) {
    const clients = [];
    const seen = new Set();
    while (seen.size < shards || clients.length < min) {
      assert.ok(clients.length < 40, "could not get a client on every shard");
      const c = await connectedOf(client(url, { transports }));
      seen.add(shardOf(c.io.engine.id));
      clients.push(c);
    }
    return clients;
  }

  return { client, connectedOf, ack, roomsOf, spread };
}
