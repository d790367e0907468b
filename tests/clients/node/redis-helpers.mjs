// A redis-server of its own for a test: on a free loopback port, in a
// temporary directory, nothing saved to disk.
//
//   const redis = await startRedis();   // waits until it answers PING
//   redis.url                           // "redis://127.0.0.1:PORT"
//   await redis.restart();              // kill -9, then the same port again (fault tests)
//   await redis.stop();                 // always, in an `after`/`finally`
//
// `redis-server` is found on PATH (Debian's package: `scripts/test` installs
// it when missing); `HUB_REDIS_SERVER` names another program. A missing
// redis-server fails the test that wanted it, saying how to get it: the
// cluster tests never skip.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

import { freePort, sleep } from "./helpers.mjs";

export const REDIS_READY_TIMEOUT_MS = 10_000;
/** How many ports are tried when another process takes the free one first. */
const PORT_ATTEMPTS = 5;

/** The redis-server program: `HUB_REDIS_SERVER` or `redis-server` on PATH. */
export function redisServerProgram() {
  const env = process.env.HUB_REDIS_SERVER;
  return env !== undefined && env.trim() !== "" ? env.trim() : "redis-server";
}

const liveRedis = new Set();
process.on("exit", () => {
  // Last resort if a test file dies without running its `after` hooks.
  for (const child of liveRedis) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * One RESP command (`PING`, `PUBSUB NUMSUB ch`...) on a fresh connection to
 * `port`; resolves with the raw reply text, rejects on a connection error
 * or after `timeoutMs`.
 */
export function redisCommand(port, args, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let reply = "";
    const done = (err) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply);
    };
    const timer = setTimeout(() => done(new Error(`no reply to ${args[0]} within ${timeoutMs} ms`)), timeoutMs);
    socket.once("error", done);
    socket.on("connect", () => {
      const parts = args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`);
      socket.write(`*${args.length}\r\n${parts.join("")}`);
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      reply += chunk;
      if (reply.endsWith("\r\n")) done();
    });
  });
}

/** Spawns redis-server on `port` in `dir` and waits until it answers PING. */
async function spawnRedis(port, dir) {
  const program = redisServerProgram();
  // prettier-ignore
  const args = [
    "--port", String(port), "--bind", "127.0.0.1", "--dir", dir,
    "--save", "", "--appendonly", "no", "--daemonize", "no",
  ];
  const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"] });
  liveRedis.add(child);
  let output = "";
  const keep = (chunk) => {
    output += chunk;
    if (output.length > 100_000) output = output.slice(-50_000);
  };
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      liveRedis.delete(child);
      resolve({ code, signal });
    });
  });
  const spawnError = new Promise((resolve) => child.once("error", resolve));
  const describe = `${program} ${args.join(" ")}`;

  const deadline = Date.now() + REDIS_READY_TIMEOUT_MS;
  for (;;) {
    const failed = await Promise.race([spawnError, exited, Promise.resolve(undefined)]);
    if (failed instanceof Error) {
      liveRedis.delete(child);
      const hint =
        failed.code === "ENOENT"
          ? " (redis-server is not installed: `apt-get install redis-server`, which scripts/test does, " +
            "or set HUB_REDIS_SERVER to a redis-server 7.x)"
          : "";
      throw new Error(`cannot start ${describe}: ${failed.message}${hint}`);
    }
    if (failed !== undefined) {
      const err = new Error(
        `redis-server exited before answering PING (code ${failed.code}, signal ${failed.signal}): ${describe}\n${output}`,
      );
      err.addressInUse = /Address already in use/i.test(output);
      throw err;
    }
    try {
      if ((await redisCommand(port, ["PING"], 500)).startsWith("+PONG")) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`redis-server did not answer PING within ${REDIS_READY_TIMEOUT_MS} ms: ${describe}\n${output}`);
    }
    await sleep(20);
  }
  return { child, exited, output: () => output };
}

async function killHard(proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill("SIGKILL");
  await proc.exited;
}

/**
 * Starts a redis-server on a free loopback port; resolves once it answers
 * PING with `{url, port, stop(), restart(), kill(), output()}`.
 */
export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "hub-redis-"));
  let proc;
  let port;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      proc = await spawnRedis(port, dir);
      break;
    } catch (err) {
      // Another process took the port between freePort() and the bind.
      if (!err.addressInUse || attempt >= PORT_ATTEMPTS) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  let stopped = false;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    /** What redis-server printed (its log). */
    output: () => proc.output(),
    /** kill -9: the server is gone until `restart()`. */
    kill: () => killHard(proc),
    /** kill -9, then a new redis-server on the same port (empty, as after a crash without persistence). */
    async restart() {
      await killHard(proc);
      const deadline = Date.now() + REDIS_READY_TIMEOUT_MS;
      for (;;) {
        try {
          proc = await spawnRedis(port, dir);
          return;
        } catch (err) {
          // The old socket may linger for a moment after SIGKILL.
          if (!err.addressInUse || Date.now() > deadline) throw err;
          await sleep(50);
        }
      }
    },
    /** Stops the server (SIGKILL: nothing is saved anyway) and removes its directory. */
    async stop() {
      if (stopped) return;
      stopped = true;
      await killHard(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
