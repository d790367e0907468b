// The echo matrix shared by the engine.io-client v6 (EIO=4) and v3 (EIO=3)
// test files: for each transport mode (polling only, websocket only, polling
// upgraded to websocket) open a session, echo text/binary/bursts/unicode,
// large messages, and close cleanly.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import {
  MODES,
  assertBinary,
  assertText,
  closeAll,
  closeClient,
  openClient,
  patternBytes,
  waitForSessionGone,
  waitForUpgrade,
} from "./helpers.mjs";

export const TEST_TIMEOUT_MS = 20_000;

export const UNICODE_TEXTS = [
  "héllo wörld",
  "日本語のテキスト",
  "🎉👍🏽🧑‍💻 emoji with modifiers and ZWJ",
  "a€𝄞b: surrogate pairs 😀😃😄",
  "line\nbreaks\r\nand\ttabs",
  'quotes " \' and backslashes \\ \\n',
  "12:34 looks like a v3 length prefix 4:b4",
  "\u2028\u2029 JS line separators",
  // (No empty string: engine.io-parser decodes a bare "4" as a message with
  // undefined data on both ends, so "" does not round-trip even on the
  // reference server.)
];

/**
 * Defines one `describe` per transport mode.
 * - version: 4 or 3 (client generation)
 * - getServer: () => the running server handle (from a `before` hook)
 * - clientOpts: extra client options (e.g. { forceBase64: true })
 * - onOpen(client, mode): optional extra checks after each open
 * - modes: the subset of MODES to cover (default: all three)
 * - toWire(bytes): converts a Buffer/ArrayBuffer/Uint8Array before sending
 *   (the browser-flavoured v3 client needs exact ArrayBuffers)
 * - largeBinaryBytes: size of the large binary message (default 200 KB)
 */
export function defineEchoSuites({
  version,
  label,
  getServer,
  clientOpts = {},
  onOpen,
  modes = Object.keys(MODES),
  toWire = (bytes) => bytes,
  largeBinaryBytes = 200_000,
}) {
  for (const mode of modes) {
    const transports = MODES[mode];
    describe(`${label}: ${mode}`, () => {
      const clients = new Set();
      after(() => closeAll(clients));

      /** Opens a client in this mode; in upgrade mode waits for the upgrade. */
      async function open({ waitUpgrade = true } = {}) {
        const server = getServer();
        const client = await openClient(version, server.url, { ...clientOpts, transports });
        clients.add(client);
        if (mode === "upgrade" && waitUpgrade) {
          await waitForUpgrade(client);
          assert.equal(client.socket.transport.name, "websocket", "transport after upgrade");
        }
        if (onOpen) await onOpen(client, mode);
        return client;
      }

      /** Sends text as is and binary through `toWire`. */
      function send(client, msg) {
        client.socket.send(typeof msg === "string" ? msg : toWire(msg));
      }

      test("opens with the expected handshake", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open({ waitUpgrade: false });
        const hs = client.handshake;
        assert.ok(hs, "handshake received");
        assert.equal(typeof hs.sid, "string");
        assert.ok(hs.sid.length > 0, "sid is not empty");
        assert.equal(client.socket.id, hs.sid, "socket.id is the handshake sid");
        const expectedUpgrades = mode === "websocket" ? [] : ["websocket"];
        assert.deepEqual(hs.upgrades, expectedUpgrades, "upgrades");
        assert.equal(hs.pingInterval, 25000, "default pingInterval");
        assert.equal(hs.pingTimeout, 20000, "default pingTimeout");
        if (version === 4) {
          assert.deepEqual(
            Object.keys(hs),
            ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"],
            "v4 handshake keys, in order",
          );
          assert.equal(hs.maxPayload, 1000000, "default maxPayload");
        }
        const expectedFirst = mode === "websocket" ? "websocket" : "polling";
        assert.equal(client.socket.transport.name, expectedFirst, "transport at open");
        assert.equal(client.socket.readyState, "open");
        await closeClient(client);
      });

      test("echoes text", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        send(client, "hello");
        assertText(await client.messages.next(), "hello", "echo of 'hello'");
        send(client, "second message, same session");
        assertText(await client.messages.next(), "second message, same session", "second echo");
        await closeClient(client);
      });

      test("echoes binary as identical bytes (Buffer, ArrayBuffer, Uint8Array)", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        const all = patternBytes(256 + 64, 7); // every byte value 0..255 plus more
        const asBuffer = Buffer.from(all);
        const asArrayBuffer = new Uint8Array([0, 1, 2, 0xfe, 0xff, 0x1e, 0x3a, 0x62]).buffer;
        const asUint8Array = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x0a, 0x0d]);
        const single = Buffer.from([0x42]);
        send(client, asBuffer);
        send(client, asArrayBuffer);
        send(client, asUint8Array);
        send(client, single);
        const got = await client.messages.take(4);
        assertBinary(got[0], asBuffer, "Buffer echo");
        assertBinary(got[1], asArrayBuffer, "ArrayBuffer echo");
        assertBinary(got[2], asUint8Array, "Uint8Array echo");
        assertBinary(got[3], single, "1-byte echo");
        await closeClient(client);
      });

      test("delivers a burst of mixed messages in order", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        const sent = [];
        for (let i = 0; i < 40; i++) {
          const msg = i % 3 === 2 ? patternBytes(1 + i * 5, i + 1) : `burst #${i}`;
          sent.push(msg);
          send(client, msg);
        }
        const got = await client.messages.take(sent.length);
        sent.forEach((msg, i) => {
          if (typeof msg === "string") assertText(got[i], msg, `burst message ${i}`);
          else assertBinary(got[i], msg, `burst message ${i}`);
        });
        await closeClient(client);
      });

      test("unicode and emoji text survives", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        for (const text of UNICODE_TEXTS) send(client, text);
        const got = await client.messages.take(UNICODE_TEXTS.length);
        UNICODE_TEXTS.forEach((text, i) => assertText(got[i], text, `unicode text ${i} ${JSON.stringify(text)}`));
        await closeClient(client);
      });

      test(`echoes large text (200 KB) and binary (${largeBinaryBytes / 1000} KB) messages`, { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        const text = "abc€🎉".repeat(20_000); // 120k UTF-16 units, 200 KB of UTF-8
        const bytes = patternBytes(largeBinaryBytes, 99);
        send(client, text);
        assertText(await client.messages.next(10_000), text, "large text");
        send(client, bytes);
        assertBinary(await client.messages.next(10_000), bytes, "large binary");
        await closeClient(client);
      });

      if (mode === "upgrade") {
        test("upgrades to websocket and keeps order across the upgrade", { timeout: TEST_TIMEOUT_MS }, async () => {
          const client = await open({ waitUpgrade: false });
          assert.equal(client.socket.transport.name, "polling", "starts on polling");
          const sent = [];
          // Sent while the upgrade probe is in flight: travels on polling or
          // is buffered by the client until the switch.
          for (let i = 0; i < 10; i++) {
            const msg = i % 2 ? Buffer.from(`before-${i}`) : `before-${i}`;
            sent.push(msg);
            send(client, msg);
          }
          await waitForUpgrade(client);
          assert.equal(client.socket.transport.name, "websocket", "transport.name after upgrade");
          for (let i = 0; i < 10; i++) {
            const msg = i % 2 ? Buffer.from(`after-${i}`) : `after-${i}`;
            sent.push(msg);
            send(client, msg);
          }
          const got = await client.messages.take(sent.length);
          sent.forEach((msg, i) => {
            if (typeof msg === "string") assertText(got[i], msg, `message ${i}`);
            else assertBinary(got[i], msg, `message ${i}`);
          });
          assert.equal(client.socket.transport.name, "websocket");
          await closeClient(client);
        });
      }

      test("client closes cleanly and the server forgets the session", { timeout: TEST_TIMEOUT_MS }, async () => {
        const client = await open();
        send(client, "last words");
        assertText(await client.messages.next(), "last words");
        const sid = client.socket.id;
        const { reason } = await closeClient(client);
        assert.equal(reason, "forced close", "close reason");
        assert.equal(client.socket.readyState, "closed");
        await waitForSessionGone(getServer().url, sid, version);
      });
    });
  }
}
