"""python-socketio's sync Client (Socket.IO v5 over Engine.IO v4) against the
Socket.IO testbed (tests/clients/TESTBED.md) with --shards 2: polling only,
websocket only, polling upgraded to websocket. Connecting to `/` and `/custom`
with auth (the `auth` and `hello` events), emits with and without acks in
both directions (`call()`; server-to-client acks through `ask`), binary
nested in objects and arrays, rooms (`join` + `to` seen by another client,
the sender excluded), middleware refusal and unknown namespaces."""

import queue
import threading
import time

import pytest
import socketio

MODES = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}


class Session:
    """A socketio.Client that records every event it receives, per namespace
    and event name (python-socketio runs handlers in their own threads, so
    each event name has its own queue)."""

    def __init__(self, mode, namespaces=("/",), auth=None, handlers=None):
        self.mode = mode
        self.client = socketio.Client(reconnection=False, request_timeout=10, handle_sigint=False)
        self._lock = threading.Lock()
        self._queues = {}
        self.connect_errors = {}
        self.disconnects = []
        handlers = handlers or {}
        for ns in namespaces:
            for event, fn in handlers.get(ns, {}).items():
                self.client.on(event, fn, namespace=ns)
            self.client.on("*", self._recorder(ns), namespace=ns)
            self.client.on("connect_error", self._error_recorder(ns), namespace=ns)
        self.client.on("disconnect", lambda *reason: self.disconnects.append(reason))
        self.namespaces = list(namespaces)
        self.auth = auth

    def connect(self, url):
        self.client.connect(
            url,
            namespaces=self.namespaces,
            auth=self.auth,
            transports=MODES[self.mode],
            socketio_path="socket.io",
            wait_timeout=5,
        )
        if self.mode == "upgrade":
            deadline = time.monotonic() + 10
            while self.client.eio.current_transport != "websocket":
                if time.monotonic() > deadline:
                    pytest.fail("no upgrade to websocket within 10 s")
                time.sleep(0.02)
        return self

    def _queue(self, ns, event):
        with self._lock:
            return self._queues.setdefault((ns, event), queue.Queue())

    def _recorder(self, ns):
        def record(event, *args):
            self._queue(ns, event).put(list(args))

        return record

    def _error_recorder(self, ns):
        def record(data=None):
            self.connect_errors[ns] = data

        return record

    def next(self, event, ns="/", timeout=5.0):
        try:
            return self._queue(ns, event).get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no {event!r} on {ns} within {timeout} s")

    def count(self, event, ns="/"):
        return self._queue(ns, event).qsize()

    def sid(self, ns="/"):
        return self.client.get_sid(ns)

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - best effort in teardown
            pass


@pytest.fixture
def sessions():
    """Sessions created by a test, disconnected at the end."""
    made = []
    yield made
    for s in made:
        s.close()


@pytest.fixture(params=list(MODES))
def mode(request):
    return request.param


def connect(testbed, sessions, mode, **kwargs):
    session = Session(mode, **kwargs)
    sessions.append(session)
    return session.connect(testbed.url)


def binary_payload():
    blob = bytes(range(256)) * 4
    small = b"\x00\xff\x1e:b4"
    return (
        blob,
        {"name": "nested", "data": small, "list": [blob[:10], "text", {"deeper": [small, 1]}]},
        [small, {"x": b""}, None],
        "text after binary",
    )


def test_connect_root_with_auth(testbed, sessions, mode):
    s = connect(testbed, sessions, mode, auth={"token": "py", "n": 1})
    assert s.next("auth") == [{"token": "py", "n": 1}]
    hello = s.next("hello")
    assert hello == [{"id": s.sid(), "nsp": "/"}]
    assert s.client.transport() == ("polling" if mode == "polling" else "websocket")


def test_connect_custom_with_auth(testbed, sessions, mode):
    s = connect(testbed, sessions, mode, namespaces=["/custom"], auth={"token": "c"})
    assert s.next("auth", "/custom") == [{"token": "c"}]
    assert s.next("hello", "/custom") == [{"id": s.sid("/custom"), "nsp": "/custom"}]


def test_root_and_custom_over_one_connection(testbed, sessions, mode):
    s = connect(testbed, sessions, mode, namespaces=["/", "/custom"], auth={"both": True})
    for ns in ("/", "/custom"):
        assert s.next("auth", ns) == [{"both": True}]
        assert s.next("hello", ns) == [{"id": s.sid(ns), "nsp": ns}]
    assert s.sid("/") != s.sid("/custom")
    assert s.client.call("echo", "on custom", namespace="/custom", timeout=5) == "on custom"


def test_no_auth_gives_empty_object(testbed, sessions, mode):
    s = connect(testbed, sessions, mode, namespaces=["/dyn-py1"])
    assert s.next("auth", "/dyn-py1") == [{}]
    assert s.next("hello", "/dyn-py1") == [{"id": s.sid("/dyn-py1"), "nsp": "/dyn-py1"}]


def test_emit_without_ack(testbed, sessions, mode):
    s = connect(testbed, sessions, mode)
    s.client.emit("message", "single")
    assert s.next("message-back") == ["single"]
    s.client.emit("message", ("a", 1, {"b": [2, None]}, "héllo 🎉"))
    assert s.next("message-back") == ["a", 1, {"b": [2, None]}, "héllo 🎉"]
    s.client.emit("echo", ("x", {"y": True}))
    assert s.next("echo-back") == ["x", {"y": True}]


def test_emit_with_ack(testbed, sessions, mode):
    s = connect(testbed, sessions, mode)
    assert s.client.call("message-with-ack", "one", timeout=5) == "one"
    assert s.client.call("message-with-ack", ("one", 2, [3]), timeout=5) == ("one", 2, [3])
    assert s.client.call("echo", {"k": "v"}, timeout=5) == {"k": "v"}
    assert s.client.call("echo", timeout=5) is None  # no arguments: an empty ack
    assert s.count("echo-back") == 0


def test_binary_nested_both_ways(testbed, sessions, mode):
    s = connect(testbed, sessions, mode)
    payload = binary_payload()
    s.client.emit("message", payload)
    back = s.next("message-back")
    assert back == list(payload)
    assert isinstance(back[0], bytes)
    assert isinstance(back[1]["list"][0], bytes)
    assert s.client.call("echo", payload, timeout=5) == payload
    big = bytes(range(256)) * 1000  # 256 KB
    assert s.client.call("echo", {"big": big}, timeout=10) == {"big": big}


def test_server_to_client_ack(testbed, sessions, mode):
    asked = []

    def question(*args):
        asked.append(args)
        return ("answer", {"got": len(args)}, b"\x07\x08")

    s = connect(testbed, sessions, mode, handlers={"/": {"question": question}})
    result = s.client.call("ask", {"event": "question", "args": [1, "two", {"b": b"\x03"}], "timeout": 5000}, timeout=10)
    assert asked == [(1, "two", {"b": b"\x03"})]
    assert result == {"ok": True, "args": ["answer", {"got": 3}, b"\x07\x08"]}


def test_server_to_client_ack_timeout(testbed, sessions, mode):
    # python-socketio always acknowledges (with the handler's return value,
    # none if None): a handler slower than the timeout stands for a client
    # that does not answer in time.
    def slow():
        time.sleep(0.8)
        return "late"

    s = connect(testbed, sessions, mode, handlers={"/": {"slow": slow}})
    started = time.monotonic()
    result = s.client.call("ask", {"event": "slow", "args": [], "timeout": 300}, timeout=10)
    assert result == {"ok": False, "error": "timeout"}
    assert time.monotonic() - started < 0.75, "answered at the timeout, not when the late ack came"
    time.sleep(0.7)  # the late ack arrives and is ignored
    assert s.client.call("echo", "still fine", timeout=5) == "still fine"


def test_rooms_to_reaches_members_not_sender(testbed, sessions, mode):
    ns = "/dyn-pyrooms" + mode
    a = connect(testbed, sessions, mode, namespaces=[ns])
    b = connect(testbed, sessions, mode, namespaces=[ns])
    c = connect(testbed, sessions, mode, namespaces=[ns])
    room = "py-room"
    assert a.client.call("join", room, namespace=ns, timeout=5) == sorted([room, a.sid(ns)])
    assert b.client.call("join", [room, "other"], namespace=ns, timeout=5) == sorted([room, "other", b.sid(ns)])
    spec = {"rooms": [room], "except": [], "event": "news", "args": ["hi", {"bin": b"\x01\x02"}]}
    assert a.client.call("to", spec, namespace=ns, timeout=5) is True
    assert b.next("news", ns) == ["hi", {"bin": b"\x01\x02"}]
    # Barrier from the sender to every member's id: once each has it, all of
    # the sender's earlier broadcasts have arrived.
    ids = [x.sid(ns) for x in (a, b, c)]
    barrier = {"rooms": ids, "except": [], "event": "barrier", "args": []}
    assert a.client.call("server-to", barrier, namespace=ns, timeout=5) is True
    for x in (a, b, c):
        x.next("barrier", ns)
    time.sleep(0.1)  # handlers run in threads: let any stray one finish
    assert a.count("news", ns) == 0, "the sender is excluded"
    assert b.count("news", ns) == 0, "the member got it exactly once"
    assert c.count("news", ns) == 0, "a non-member gets nothing"
    assert a.client.call("room-sockets", room, namespace=ns, timeout=5) == sorted([a.sid(ns), b.sid(ns)])


def test_middleware_refusal(testbed, sessions, mode):
    s = Session(mode, namespaces=["/custom"], auth={"refuse": True})
    sessions.append(s)
    with pytest.raises(socketio.exceptions.ConnectionError) as info:
        s.connect(testbed.url)
    # python-socketio raises a generic error naming the namespace; the
    # server's message and data reach the connect_error handler.
    assert str(info.value) == "One or more namespaces failed to connect: /custom"
    assert s.connect_errors["/custom"] == {"message": "refused by middleware", "data": {"reason": "test"}}


def test_unknown_namespace(testbed, sessions, mode):
    s = Session(mode, namespaces=["/nope"])
    sessions.append(s)
    with pytest.raises(socketio.exceptions.ConnectionError) as info:
        s.connect(testbed.url)
    assert str(info.value) == "One or more namespaces failed to connect: /nope"
    assert s.connect_errors["/nope"] == {"message": "Invalid namespace"}
