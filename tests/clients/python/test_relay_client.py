"""python-socketio's sync Client (Socket.IO v5 over Engine.IO v4) against the
relay hub (docs/relay-protocol.md) with --shards 2: polling only, websocket
only, polling upgraded to websocket. join / leave / publish / echo with their
`{"ok": true}` acks, binary data relayed intact, the sender excluded, the
refusals, and token auth (HS256 tokens minted here with hmac + hashlib +
base64): a valid token connects and its patterns apply, `sub` puts the socket
in `user:<sub>`, bad tokens are refused with `unauthorized`; at its token's
`exp` a socket gets `auth_error` and is disconnected by the server, unless it
sent `refresh` with a fresh token before (tokens 2 s ahead: these tests wait
about 1 to 2 s)."""

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid

import pytest
import socketio

MODES = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}
OK = {"ok": True}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(secret, claims, alg="HS256", digest=hashlib.sha256, exp_in=3600):
    """A JWT: header {"alg", "typ"}, `claims` plus `exp` (unless given, or
    none with `exp_in=None`), signed with HMAC-`digest` (empty for "none")."""
    claims = dict(claims)
    if exp_in is not None:
        claims.setdefault("exp", int(time.time()) + exp_in)
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = b"" if alg == "none" else hmac.new(secret.encode(), signing_input, digest).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def unique(tag):
    return f"{tag}-{uuid.uuid4().hex[:10]}"


class Session:
    """A socketio.Client that records every event it receives, per namespace
    and event name (handlers run in their own threads)."""

    def __init__(self, mode, namespace="/", auth=None):
        self.mode = mode
        self.ns = namespace
        self.auth = auth
        self.client = socketio.Client(reconnection=False, request_timeout=10, handle_sigint=False)
        self._lock = threading.Lock()
        self._queues = {}
        self.connect_errors = {}
        self.disconnects = queue.Queue()
        self.client.on("*", self._record, namespace=namespace)
        self.client.on("connect_error", self._record_error, namespace=namespace)
        self.client.on("disconnect", self._record_disconnect, namespace=namespace)

    def connect(self, url):
        self.client.connect(
            url,
            namespaces=[self.ns],
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

    def _queue(self, event):
        with self._lock:
            return self._queues.setdefault(event, queue.Queue())

    def _record(self, event, *args):
        self._queue(event).put(list(args))

    def _record_error(self, data=None):
        self.connect_errors[self.ns] = data

    def _record_disconnect(self, reason=None):
        self.disconnects.put((reason, time.time()))

    def next_disconnect(self, timeout=5.0):
        """The reason and time of the next disconnect of the namespace."""
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no disconnect of {self.ns} within {timeout} s")

    def call(self, event, *args):
        data = args[0] if len(args) == 1 else tuple(args)
        return self.client.call(event, data, namespace=self.ns, timeout=10)

    def next(self, event, timeout=5.0):
        try:
            return self._queue(event).get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no {event!r} on {self.ns} within {timeout} s")

    def count(self, event):
        return self._queue(event).qsize()

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - best effort in teardown
            pass


@pytest.fixture
def sessions():
    made = []
    yield made
    for s in made:
        s.close()


@pytest.fixture(params=list(MODES))
def mode(request):
    return request.param


def connect(server, sessions, mode, **kwargs):
    session = Session(mode, **kwargs)
    sessions.append(session)
    return session.connect(server.url)


def barrier(sender, room, receivers):
    """`sender` publishes a barrier to `room`; once each receiver has it, it has
    everything `sender` published before."""
    event = unique("barrier")
    assert sender.call("publish", {"to": room, "event": event, "data": None}) == OK
    for r in receivers:
        assert r.next(event) == [None]
    time.sleep(0.1)  # handlers run in threads: let any stray one finish


def test_join_publish_leave(relay, sessions, mode):
    ns = "/" + unique("py")
    a, b, c = (connect(relay, sessions, mode, namespace=ns) for _ in range(3))
    room, other, everyone = unique("room"), unique("other"), unique("all")
    for s in (a, b, c):
        assert s.call("join", everyone) == OK
    assert a.call("join", room) == OK
    assert b.call("join", [room, other]) == OK

    assert c.call("publish", {"to": room, "event": "news", "data": {"text": "héllo 🎉", "n": [1, None]}}) == OK
    assert a.next("news") == [{"text": "héllo 🎉", "n": [1, None]}]
    assert b.next("news") == [{"text": "héllo 🎉", "n": [1, None]}]
    # The sender is excluded even when in the room; a socket in two target rooms gets it once.
    assert a.call("publish", {"to": [room, other], "event": "from-a", "data": 1, "volatile": False}) == OK
    barrier(a, everyone, [b, c])
    barrier(c, everyone, [a, b])
    assert b.next("from-a") == [1]
    assert a.count("from-a") == 0, "the sender is excluded"
    assert b.count("from-a") == 0, "once, though in both rooms"
    assert c.count("news") == 0 and c.count("from-a") == 0, "a non-member gets nothing"

    assert b.call("leave", room) == OK
    assert b.call("leave", unique("never")) == OK
    assert c.call("publish", {"to": room, "event": "after-leave", "data": "x"}) == OK
    assert a.next("after-leave") == ["x"]
    barrier(c, everyone, [a, b])
    assert b.count("after-leave") == 0, "left"


def test_echo(relay, sessions, mode):
    s = connect(relay, sessions, mode)
    assert s.call("echo", "one") == "one"
    assert s.call("echo", "a", 1, {"b": b"\x00\xff"}, [b"\x01"]) == ("a", 1, {"b": b"\x00\xff"}, [b"\x01"])
    assert s.client.call("echo", timeout=10) is None  # no arguments: an empty ack


def test_binary_relay(relay, sessions, mode):
    ns = "/" + unique("pybin")
    sender = connect(relay, sessions, mode, namespace=ns)
    receiver = connect(relay, sessions, mode, namespace=ns)
    room = unique("bin")
    assert receiver.call("join", room) == OK
    blob = bytes(range(256)) * 40
    payloads = [
        blob,
        {"file": blob[:100], "meta": {"parts": [b"\x00\x01", "text", {"deep": b""}]}},
        [b"\xff", 1, None, {"b": blob[:3]}],
    ]
    for i, data in enumerate(payloads):
        assert sender.call("publish", {"to": room, "event": f"bin{i}", "data": data}) == OK
    for i, data in enumerate(payloads):
        got = receiver.next(f"bin{i}")
        assert got == [data]
        if i == 0:
            assert isinstance(got[0], bytes)
    assert sender.count("bin0") == 0, "the sender is excluded"


def test_refusals(relay, sessions, mode):
    s = connect(relay, sessions, mode)
    bad = {"ok": False, "error": "bad request"}
    assert s.call("join", 42) == bad
    assert s.call("join", []) == bad
    assert s.call("join", [1]) == bad
    assert s.call("join", "") == bad
    assert s.call("join", "x" * 257) == bad
    assert s.call("join", [f"n{i}" for i in range(65)]) == bad
    assert s.call("publish", {"event": "e"}) == bad
    assert s.call("publish", {"to": "r"}) == bad
    assert s.call("publish", {"to": "r", "event": "disconnect"}) == {"ok": False, "error": "reserved event"}
    assert s.call("join", "x" * 256) == OK
    # Events outside the protocol: no answer, the connection stays.
    with pytest.raises(socketio.exceptions.TimeoutError):
        s.client.call("subscribe", "room", timeout=0.3)
    assert s.call("echo", "still here") == "still here"


def test_auth_valid_token(relay_auth, sessions, mode):
    ns = "/" + unique("pyauth")
    token = mint(relay_auth.secret, {"rooms": ["chat:*"], "publish": ["chat:*"]})
    a = connect(relay_auth, sessions, mode, namespace=ns, auth={"token": token})
    b = connect(relay_auth, sessions, mode, namespace=ns, auth={"token": token})
    assert a.call("join", "chat:lobby") == OK
    assert a.call("join", "other") == {"ok": False, "error": "forbidden"}
    assert a.call("join", ["chat:x", "other"]) == {"ok": False, "error": "forbidden"}
    assert b.call("publish", {"to": "other", "event": "e", "data": 1}) == {"ok": False, "error": "forbidden"}
    assert b.call("publish", {"to": "chat:lobby", "event": "chat", "data": {"b": b"\x07"}}) == OK
    assert a.next("chat") == [{"b": b"\x07"}]
    assert b.count("chat") == 0


def test_auth_sub_user_room(relay_auth, sessions, mode):
    sub = unique("carol")
    carol = connect(relay_auth, sessions, mode, auth={"token": mint(relay_auth.secret, {"sub": sub})})
    sender = connect(relay_auth, sessions, mode, auth={"token": mint(relay_auth.secret, {"publish": ["user:*"]})})
    assert sender.call("publish", {"to": f"user:{sub}", "event": "dm", "data": "hi"}) == OK
    assert carol.next("dm") == ["hi"]


@pytest.mark.parametrize(
    "case",
    ["missing", "garbage", "wrong secret", "expired", "alg none", "HS512", "no exp"],
)
def test_unauthorized(relay_auth, sessions, mode, case):
    secret = relay_auth.secret
    token = {
        "missing": None,
        "garbage": "not-a-jwt",
        "wrong secret": mint("another-secret", {}),
        "expired": mint(secret, {}, exp_in=-60),
        "alg none": mint(secret, {}, alg="none"),
        "HS512": mint(secret, {}, alg="HS512", digest=hashlib.sha512),
        "no exp": mint(secret, {"sub": "x"}, exp_in=None),
    }[case]
    for ns in ("/", "/py-private"):
        s = Session(mode, namespace=ns, auth=None if token is None else {"token": token})
        sessions.append(s)
        with pytest.raises(socketio.exceptions.ConnectionError) as info:
            s.connect(relay_auth.url)
        assert str(info.value) == f"One or more namespaces failed to connect: {ns}"
        assert s.connect_errors[ns] == {"message": "unauthorized"}


def short_token(secret, claims):
    """A token expiring 2 s ahead, and its exp. `exp` is whole seconds, so
    this waits (at most 0.7 s) for a time early in a second: the token then
    lives 1.7 to 2 s, time enough to connect and ask something first."""
    into = time.time() % 1
    if into > 0.3:
        time.sleep(1.005 - into)
    exp = int(time.time()) + 2
    return exp, mint(secret, {**claims, "exp": exp})


def test_token_expiry_disconnects(relay_auth, sessions, mode):
    tag = unique("pyexp")
    exp, token = short_token(relay_auth.secret, {"rooms": [f"{tag}:*"], "publish": [f"{tag}:*"]})
    s = connect(relay_auth, sessions, mode, auth={"token": token})
    assert s.call("join", f"{tag}:a") == OK
    assert s.call("publish", {"to": f"{tag}:a", "event": "e", "data": 1}) == OK
    assert time.time() < exp, "requests before exp"
    assert s.next("auth_error", timeout=exp - time.time() + 5) == [{"error": "token expired"}]
    reason, at = s.next_disconnect()
    assert reason == "server disconnect"
    assert exp <= at <= exp + 2.5, f"at about exp ({at - exp:.3f} s after)"
    assert not s.client.connected


def test_token_refresh_keeps_the_socket_and_applies_new_claims(relay_auth, sessions, mode):
    secret = relay_auth.secret
    tag = unique("pyref")
    exp, token = short_token(secret, {"rooms": [f"{tag}old:*"]})
    s = connect(relay_auth, sessions, mode, auth={"token": token})
    peer = connect(relay_auth, sessions, mode, auth={"token": mint(secret, {"rooms": ["*"], "publish": ["*"]})})
    assert s.call("join", f"{tag}old:1") == OK
    fresh = mint(secret, {"rooms": [f"{tag}new:*"]})
    assert s.call("refresh", {"token": fresh}) == OK
    assert time.time() < exp, "refreshed before exp"
    assert s.call("join", f"{tag}new:1") == OK
    assert s.call("join", f"{tag}old:2") == {"ok": False, "error": "forbidden"}
    # The room only the old token allowed was left.
    assert peer.call("publish", {"to": f"{tag}old:1", "event": "old", "data": 1}) == OK
    assert peer.call("publish", {"to": f"{tag}new:1", "event": "new", "data": 2}) == OK
    assert s.next("new") == [2]
    assert s.count("old") == 0
    time.sleep(max(0.0, exp + 0.4 - time.time()))
    assert s.call("echo", "past exp") == "past exp"
    assert s.count("auth_error") == 0
    assert s.disconnects.empty()
    assert s.client.connected


def test_bad_refresh_changes_nothing(relay_auth, sessions, mode):
    secret = relay_auth.secret
    exp, token = short_token(secret, {"sub": unique("dan")})
    s = connect(relay_auth, sessions, mode, auth={"token": token})
    refused = {"ok": False, "error": "unauthorized"}
    assert s.call("refresh", {"token": mint("another-secret", {})}) == refused
    assert s.call("refresh", {"token": mint(secret, {}, exp_in=-60)}) == refused
    assert s.call("refresh", {}) == {"ok": False, "error": "bad request"}
    assert s.next("auth_error", timeout=exp - time.time() + 5) == [{"error": "token expired"}]
    reason, at = s.next_disconnect()
    assert reason == "server disconnect"
    assert at >= exp, "the old expiry held"


def test_refresh_with_another_user_disconnects(relay_auth, sessions, mode):
    secret = relay_auth.secret
    s = connect(relay_auth, sessions, mode, auth={"token": mint(secret, {"sub": unique("eve")})})
    assert s.call("refresh", {"token": mint(secret, {"sub": unique("mallory")})}) == {
        "ok": False,
        "error": "user mismatch",
    }
    assert s.next("auth_error") == [{"error": "user mismatch"}]
    assert s.next_disconnect()[0] == "server disconnect"
