"""Fixtures for the real-client tests: spawn the conformance server (Engine.IO
suites: the `server` fixture) or the Socket.IO testbed (the `testbed` fixture,
tests/clients/TESTBED.md).

The conformance server command comes from HUB_CONFORMANCE_CMD (split on
spaces; relative paths are resolved from the repository root, which is the
server's cwd), or defaults to <repo>/target/debug/examples/conformance. The
testbed command comes from HUB_TESTBED_CMD the same way, or defaults to
<repo>/target/debug/examples/sio_testbed. The relay (the `relay` and
`relay_auth` fixtures, docs/relay-protocol.md) comes from HUB_RELAY_CMD, or
defaults to <repo>/target/debug/hub. A missing binary is a test failure,
never a skip.
"""

import atexit
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SERVER = REPO_ROOT / "target" / "debug" / "examples" / "conformance"
DEFAULT_TESTBED = REPO_ROOT / "target" / "debug" / "examples" / "sio_testbed"
DEFAULT_RELAY = REPO_ROOT / "target" / "debug" / "hub"
READY_TIMEOUT_S = 10.0
READY_LINE = re.compile(r"^listening on (\S+):(\d+)$")

_live = set()


@atexit.register
def _kill_leftovers():
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()


def server_command():
    env = os.environ.get("HUB_CONFORMANCE_CMD", "")
    cmd = [part for part in env.split(" ") if part] if env.strip() else [str(DEFAULT_SERVER)]
    # A program given as a path must exist (relative paths: from the repo root).
    program = REPO_ROOT / cmd[0]
    if "/" in cmd[0] and not program.exists():
        pytest.fail(
            f"conformance server not found at {program}: build it with "
            "`cargo build --examples` (or `cargo test --workspace`), or set "
            'HUB_CONFORMANCE_CMD (e.g. HUB_CONFORMANCE_CMD="node '
            'tests/clients/node/reference-server.mjs")',
            pytrace=False,
        )
    return cmd


class Server:
    def __init__(self, proc, host, port, stderr_lines):
        self.proc = proc
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self._stderr_lines = stderr_lines

    def stderr(self):
        return "".join(self._stderr_lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _live.discard(self.proc)


def testbed_command():
    env = os.environ.get("HUB_TESTBED_CMD", "")
    cmd = [part for part in env.split(" ") if part] if env.strip() else [str(DEFAULT_TESTBED)]
    program = REPO_ROOT / cmd[0]
    if "/" in cmd[0] and not program.exists():
        pytest.fail(
            f"Socket.IO testbed not found at {program}: build it with "
            "`cargo build -p hub --example sio_testbed`, or set "
            'HUB_TESTBED_CMD (e.g. HUB_TESTBED_CMD="node '
            'tests/clients/node/reference-testbed.mjs")',
            pytrace=False,
        )
    return cmd


def start_server(extra_args=(), shards=2, command=None):
    """Spawns the server (`command`, default: the conformance server) with
    --port 0 --shards N and waits for its ready line."""
    base = server_command() if command is None else list(command)
    cmd = base + ["--port", "0", "--shards", str(shards), *extra_args]
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        pytest.fail(f"cannot spawn server {' '.join(cmd)}: {exc}", pytrace=False)
    _live.add(proc)

    stderr_lines = []
    stdout_lines = queue.Queue()

    def drain_stderr():
        for line in proc.stderr:
            stderr_lines.append(line)
            if len(stderr_lines) > 5000:
                del stderr_lines[:1000]

    def drain_stdout():
        for line in proc.stdout:
            stdout_lines.put(line.rstrip("\r\n"))
        stdout_lines.put(None)  # EOF

    stderr_thread = threading.Thread(target=drain_stderr, daemon=True)
    stderr_thread.start()
    threading.Thread(target=drain_stdout, daemon=True).start()

    seen = []
    failure = f"server did not print its ready line within {READY_TIMEOUT_S:.0f} s"
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            try:
                line = stdout_lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
                failure = f"server closed stdout before it was ready (exit code {proc.poll()})"
                break
            seen.append(line)
            match = READY_LINE.match(line)
            if match:
                return Server(proc, match.group(1), int(match.group(2)), stderr_lines)
    except BaseException:
        Server(proc, "", 0, stderr_lines).stop()
        raise
    server = Server(proc, "", 0, stderr_lines)
    server.stop()
    stderr_thread.join(timeout=2)
    pytest.fail(
        f"{failure}: {' '.join(cmd)}\nstdout so far: {seen!r}\nstderr:\n{server.stderr()}",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def server():
    """One server per test module, killed at the end (also on failure)."""
    srv = start_server()
    try:
        yield srv
    finally:
        srv.stop()


def start_testbed(extra_args=(), shards=2):
    """Spawns the Socket.IO testbed with --port 0 --shards N."""
    return start_server(extra_args, shards=shards, command=testbed_command())


@pytest.fixture(scope="module")
def testbed():
    """One Socket.IO testbed per test module, killed at the end."""
    srv = start_testbed()
    try:
        yield srv
    finally:
        srv.stop()


def relay_command():
    env = os.environ.get("HUB_RELAY_CMD", "")
    cmd = [part for part in env.split(" ") if part] if env.strip() else [str(DEFAULT_RELAY)]
    program = REPO_ROOT / cmd[0]
    if "/" in cmd[0] and not program.exists():
        pytest.fail(
            f"relay hub not found at {program}: build it with `cargo build -p hub`, "
            'or set HUB_RELAY_CMD (e.g. HUB_RELAY_CMD="node '
            'tests/clients/node/reference-relay.mjs")',
            pytrace=False,
        )
    return cmd


RELAY_SECRET = "python-relay-secret"


def start_relay(extra_args=(), shards=2):
    """Spawns the relay (`hub`) with --port 0 --shards N --bind 127.0.0.1."""
    return start_server(["--bind", "127.0.0.1", *extra_args], shards=shards, command=relay_command())


@pytest.fixture(scope="module")
def relay():
    """One open relay (no --auth-secret) per test module, killed at the end."""
    srv = start_relay()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def relay_auth():
    """One relay with --auth-secret RELAY_SECRET per test module (`.secret`).

    Short pings: when a namespace is refused, python-engineio's polling client
    disconnects and waits for its pending long-poll GET, which (against the
    reference at least) sometimes only returns with the next ping; 25 s by
    default, 1 s here."""
    srv = start_relay(["--auth-secret", RELAY_SECRET, "--ping-interval", "1000", "--ping-timeout", "5000"])
    srv.secret = RELAY_SECRET
    try:
        yield srv
    finally:
        srv.stop()
