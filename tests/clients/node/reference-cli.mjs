// The command line both reference servers share with hub's example servers:
// --port P [--host H] [--shards N] [--no-eio3] and numeric options in ms or bytes.

/**
 * Parses `argv` into `{ port, host, shards, eio3, ...numeric }`; `numeric`
 * maps each extra option to its key and default, e.g.
 * `{ "--ping-interval": ["pingInterval", 25000] }`. Exits 2 with `usage` on a bad argument.
 */
export function parseServerArgs(argv, numeric, usage) {
  const opts = { port: undefined, host: "127.0.0.1", shards: 0, eio3: true };
  const keys = { "--port": "port", "--shards": "shards" };
  for (const [flag, [key, value]] of Object.entries(numeric)) {
    keys[flag] = key;
    opts[key] = value;
  }
  const fail = (message) => {
    process.stderr.write(`${message}\n${usage}\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--no-eio3") {
      opts.eio3 = false;
    } else if (arg === "--host") {
      if (i + 1 >= argv.length) fail("--host needs a value");
      opts.host = argv[++i];
    } else if (arg in keys) {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 0) fail(`${arg}: not a non-negative integer`);
      opts[keys[arg]] = value;
    } else {
      fail(`unknown argument: ${arg}`);
    }
  }
  if (opts.port === undefined) fail("--port is required");
  return opts;
}
