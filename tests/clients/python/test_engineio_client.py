"""python-engineio's sync Client (Engine.IO v4) against the conformance server
(--shards 2): polling only, websocket only, polling upgraded to websocket;
text and binary echo, bursts in order, unicode, clean disconnect."""

import queue
import threading
import time

import engineio
import pytest
import requests

MODES = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}

UNICODE_TEXTS = [
    "héllo wörld",
    "日本語のテキスト",
    "🎉👍🏽🧑‍💻 emoji with modifiers and ZWJ",
    "a€𝄞b: surrogate pairs 😀",
    "line\nbreaks\r\nand\ttabs",
    "\u2028\u2029 separators",
]


def pattern_bytes(n, seed=1):
    out = bytearray(n)
    x = seed or 1
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = i if i < 256 else x & 0xFF
    return bytes(out)


class OrderedClient(engineio.Client):
    """engineio.Client runs each `message` handler in its own thread, so two
    handlers can race; run them inline on the read loop to observe the order
    in which messages arrived."""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class Session:
    def __init__(self, url, transports):
        self.client = OrderedClient(request_timeout=10, handle_sigint=False)
        self.messages = queue.Queue()
        self.disconnects = []
        self.disconnected = threading.Event()
        self.client.on("message", self.messages.put)

        def on_disconnect(reason=None):
            self.disconnects.append(reason)
            self.disconnected.set()

        self.client.on("disconnect", on_disconnect)
        self.client.connect(url, transports=transports, engineio_path="engine.io")

    def next(self, timeout=5.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message within {timeout} s")

    def take(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"received {len(out)} of {n} messages in {timeout} s")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue
        return out

    def drain(self, timeout=5.0):
        """Waits until every queued packet has been written.

        python-engineio's write loop exits as soon as the state leaves
        "connected", so a disconnect() issued while a POST is still in flight
        never sends the CLOSE packet (the server then only notices at the next
        ping). Draining first makes the disconnect reliable."""
        deadline = time.monotonic() + timeout
        while self.client.queue.unfinished_tasks > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self):
        if self.client.state == "connected":
            self.drain()
            self.client.disconnect()


def assert_text(got, expected, what="message"):
    assert isinstance(got, str), f"{what}: expected text, got {type(got).__name__} {got!r:.60}"
    assert got == expected, f"{what}: text differs"


def assert_binary(got, expected, what="message"):
    assert isinstance(got, (bytes, bytearray)), f"{what}: expected binary, got {type(got).__name__} {got!r:.60}"
    assert bytes(got) == expected, f"{what}: bytes differ ({len(got)} vs {len(expected)} bytes)"


def wait_session_gone(url, sid, timeout=3.0):
    """The server forgot `sid`: a polling GET answers 400 {"code":1,...}."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            res = requests.get(
                f"{url}/engine.io/",
                params={"EIO": "4", "transport": "polling", "sid": sid, "t": str(time.time())},
                timeout=1,
            )
            last = f"{res.status_code} {res.text}"
            if res.status_code == 400 and res.json().get("code") == 1:
                assert res.json() == {"code": 1, "message": "Session ID unknown"}
                return
        except requests.RequestException as exc:
            last = f"error {exc}"
        time.sleep(0.1)
    pytest.fail(f"session {sid} still known after {timeout} s (last: {last})")


@pytest.fixture(params=list(MODES), ids=list(MODES))
def session(request, server):
    mode = request.param
    s = Session(server.url, MODES[mode])
    s.mode = mode
    try:
        yield s
    finally:
        s.close()


def test_connects_with_handshake(session):
    c = session.client
    assert c.state == "connected"
    assert isinstance(c.sid, str) and c.sid
    expected_transport = "polling" if session.mode == "polling" else "websocket"
    # python-engineio upgrades inside connect(): in upgrade mode it is on
    # websocket as soon as connect() returns.
    assert c.transport() == expected_transport
    expected_upgrades = [] if session.mode == "websocket" else ["websocket"]
    assert c.upgrades == expected_upgrades
    assert c.ping_interval == 25.0
    assert c.ping_timeout == 20.0


def test_text_echo(session):
    session.client.send("hello from python")
    assert_text(session.next(), "hello from python")
    session.client.send("again")
    assert_text(session.next(), "again")


def test_binary_echo(session):
    payloads = [pattern_bytes(300, 7), b"\x00", b"\xff\xfe\x1e:b4", bytes(range(256))]
    for p in payloads:
        session.client.send(p)
    for i, (got, want) in enumerate(zip(session.take(len(payloads)), payloads)):
        assert_binary(got, want, f"binary {i}")


def test_burst_in_order(session):
    # 15, not more: python-engineio refuses a polling payload of more than 16
    # packets (engineio.payload.Payload.max_decode_packets) and aborts the
    # connection, and the server may return the whole burst in one payload.
    sent = [pattern_bytes(i + 1, i + 1) if i % 3 == 2 else f"burst #{i}" for i in range(15)]
    for m in sent:
        session.client.send(m)
    got = session.take(len(sent))
    for i, (g, m) in enumerate(zip(got, sent)):
        if isinstance(m, str):
            assert_text(g, m, f"burst {i}")
        else:
            assert_binary(g, m, f"burst {i}")


def test_unicode_text(session):
    for t in UNICODE_TEXTS:
        session.client.send(t)
    for i, (got, want) in enumerate(zip(session.take(len(UNICODE_TEXTS)), UNICODE_TEXTS)):
        assert_text(got, want, f"unicode {i}")


def test_large_messages(session):
    text = "abc€🎉" * 20_000
    data = pattern_bytes(200_000, 99)
    session.client.send(text)
    assert_text(session.next(10), text, "large text")
    session.client.send(data)
    assert_binary(session.next(10), data, "large binary")


def test_clean_disconnect(session, server):
    session.client.send("bye")
    assert_text(session.next(), "bye")
    sid = session.client.sid
    session.drain()
    session.client.disconnect()
    assert session.client.state == "disconnected"
    assert session.disconnected.wait(5), "disconnect event fired"
    assert session.disconnects == [engineio.Client.reason.CLIENT_DISCONNECT]
    wait_session_gone(server.url, sid)


def test_many_concurrent_polling_sessions(server):
    """12 polling sessions at once over 2 shards, each echoing privately."""
    sessions = []
    errors = []

    def run(i):
        try:
            s = Session(server.url, ["polling"])
            sessions.append(s)
            sent = [f"client {i} {s.client.sid}", pattern_bytes(40 + i, 500 + i)]
            for m in sent:
                s.client.send(m)
            got = s.take(2)
            assert_text(got[0], sent[0], f"client {i} text")
            assert_binary(got[1], sent[1], f"client {i} binary")
            assert s.messages.empty(), f"client {i} received extra messages"
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors[0]
        assert len(sessions) == 12
        assert len({s.client.sid for s in sessions}) == 12, "distinct sids"
    finally:
        for s in sessions:
            s.close()
