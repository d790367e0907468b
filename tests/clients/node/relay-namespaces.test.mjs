// Namespaces (docs/relay-protocol.md "Namespaces") with socket.io-client 4.x
// and 2.x over polling, websocket and upgrade, against two hubs with
// --shards 2: one with `--namespace "/chat*" --namespace "/n?"` (only
// matching namespaces are served, the others, `/` included, are refused with
// `Invalid namespace`), one with the default (every namespace); rooms are
// per namespace.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  MATRIX,
  alsoOn,
  assertReceivers,
  barrier,
  expectRefused,
  relayPool,
  sleep,
  startRelay,
  unique,
  waitConnected,
} from "./relay-helpers.mjs";

const T = { timeout: 20_000 };
const OK = { ok: true };

let patterned;
let open;
const poolP = relayPool(() => patterned.url);
const poolO = relayPool(() => open.url);
before(async () => {
  [patterned, open] = await Promise.all([
    startRelay(["--namespace", "/chat*", "--namespace", "/n?"]),
    startRelay(),
  ]);
});
after(async () => {
  await Promise.all([poolP.closeAll(), poolO.closeAll()]);
  await Promise.all([patterned?.stop(), open?.stop()]);
});

/**
 * A 2.x client always joins `/` implicitly (no CONNECT packet); when `/` is
 * not served, the hub refuses that with an ERROR packet on `/`, which the
 * 2.x client surfaces as an `error` event on every one of its sockets. So a
 * 2.x client of an allowed namespace may see that one root refusal, and
 * still connects.
 */
function checkRootRefusal(client) {
  if (client.version === 4) return;
  assert.ok(client.rootErrors.length <= 1, `at most one root refusal: ${JSON.stringify(client.rootErrors)}`);
  for (const err of client.rootErrors) assert.deepEqual(err, { message: "Invalid namespace" }, "root refusal");
  assert.deepEqual(client.ownErrors, [], "no refusal of its own namespace");
}

describe("namespaces", { concurrency: true }, () => {
  for (const { version, mode } of MATRIX) {
    describe(`v${version} ${mode}`, { concurrency: true }, () => {
      test('--namespace "/chat*" --namespace "/n?": /chat, /chatroom, /chat/x, /n1 are served', T, async () => {
        for (const nsp of ["/chat", "/chatroom", "/chat/deep/er", "/n1"]) {
          const [a, b] = await Promise.all([
            poolP.connect({ version, mode, nsp }),
            poolP.connect({ version: 6 - version, mode, nsp }),
          ]);
          checkRootRefusal(a);
          checkRootRefusal(b);
          const room = unique("ns");
          assert.deepEqual(await b.request("join", room), OK, `${nsp}: join`);
          assert.deepEqual(await a.request("publish", { to: room, event: "hi", data: nsp }), OK, `${nsp}: publish`);
          assert.deepEqual(await b.inbox.next("hi"), [nsp], `${nsp}: delivered`);
          assert.deepEqual(await a.ack("echo", nsp), [nsp], `${nsp}: echo`);
          a.close();
          b.close();
        }
      });

      for (const nsp of ["/", "/other", "/cha", "/Chat", "/n12", "/n", "/xchat"]) {
        test(`--namespace "/chat*" --namespace "/n?": ${nsp} is refused with Invalid namespace`, T, async () => {
          const client = poolP.create({ version, mode, nsp });
          const err = await expectRefused(client);
          if (version === 4) {
            assert.equal(err.message, "Invalid namespace");
            assert.equal(err.data, undefined, "no data");
          } else {
            // Every generation gets the object {"message":"Invalid namespace"}.
            assert.deepEqual(err, { message: "Invalid namespace" });
          }
          client.close();
        });
      }

      test("default: /, a custom namespace and a nested one are all served", T, async () => {
        for (const nsp of ["/", "/anything", `/${unique("dyn")}`, "/a/b"]) {
          const c = await poolO.connect({ version, mode, nsp });
          if (version === 2) assert.deepEqual(c.errors, [], `${nsp}: no error`);
          assert.deepEqual(await c.ack("echo", nsp, 1), [nsp, 1], `${nsp}: echo`);
          assert.deepEqual(await c.request("join", "r"), OK, `${nsp}: join`);
          c.close();
        }
      });

      test("rooms are per namespace: a publish on /a does not reach /b", T, async () => {
        const [nspA, nspB] = [`/${unique("a")}`, `/${unique("b")}`];
        const room = unique("same");
        const [pubA, memberA, memberB, memberRoot] = await Promise.all([
          poolO.connect({ version, mode, nsp: nspA }),
          poolO.connect({ version: 6 - version, mode, nsp: nspA }),
          poolO.connect({ version, mode, nsp: nspB }),
          poolO.connect({ version: 6 - version, mode, nsp: "/" }),
        ]);
        // And one connection with both namespaces.
        const both = await poolO.connect({ version, mode, nsp: nspA });
        const bothB = alsoOn(both, nspB);
        await waitConnected(bothB, { waitUpgrade: false });
        const clients = [pubA, memberA, memberB, memberRoot, both, bothB];
        for (const c of clients) assert.deepEqual(await c.request("join", room), OK);

        assert.deepEqual(await pubA.request("publish", { to: room, event: "on-a", data: nspA }), OK);
        assert.deepEqual(await memberB.request("publish", { to: room, event: "on-b", data: nspB }), OK);
        await barrier(pubA, room, [memberA, both]);
        await barrier(memberB, room, [bothB]);
        await sleep(150); // anything misrouted would have arrived by now
        assertReceivers(clients, "on-a", [memberA, both], `publish on ${nspA}`);
        assertReceivers(clients, "on-b", [bothB], `publish on ${nspB}`);
        assert.deepEqual(memberRoot.inbox.seq, [], "nothing on /");
        for (const c of clients) c.close();
      });
    });
  }
});
