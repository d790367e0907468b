#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the literal
inputs of hub's unit and integration tests (the comment before each group
names where they come from), plus a few hand-written cases.

Each file is an input in its target's format (see the target's doc comment):
mostly one or two configuration bytes, then the bytes a peer sends. Run it
again after changing a target's format:

    python3 fuzz/make_seeds.py

Files are named after their content's SHA-1, as libFuzzer names the inputs
it saves, so rerunning adds nothing twice. The corpus folders also hold the
inputs a long run kept (`scripts/fuzz --merge`); this script never removes
a file, so after changing a seed here, delete the old file by hand.
"""

import base64
import hashlib
import hmac
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEEDS = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    SEEDS.setdefault(target, []).append(bytes(data))


def b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


# ------------------------------------------------------------- http_request
# <limits byte><split byte><request bytes>. Split seeds 0 (byte by byte),
# 3 (up to 16 bytes), 6 (up to 256).
HTTP = [
    # hub/src/http/request.rs tests
    "POST /p?q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    "GET http://h/x HTTP/1.0\r\nUpgrade: websocket\r\n\r\n",
    "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n",
    "\r\nGET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n",
    "GET / HTTP/2.0\r\n\r\n",
    "GET  / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
    "GET / HTTP/1.1\r\nA: x\rz\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 2\r\n\r\nabc",
    "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;xxxx\r\na\r\n1;xxxx\r\na\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n",
    # hub/src/ws/handshake.rs tests: a valid upgrade
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: server.example.com\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n",
    # tests/bad_input.rs
    "GARBAGE\r\n\r\n",
    "GET /engine.io/\r\n\r\n",
    b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
    "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
    "POST /engine.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n"
    "Transfer-Encoding: chunked\r\n\r\n3\r\n4he\r\n3\r\nllo\r\n0\r\n\r\n",
    "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello?\r\n\r\n",
    b"\xff\xff\xff\xff garbage",
    # tests/engineio_raw.rs: polling, JSONP, CORS preflight
    "GET /engine.io/?EIO=4&transport=polling&t=N8hyd6w HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\r\n",
    "POST /engine.io/?EIO=3&transport=polling&j=0&sid=AAAAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\n"
    "d=6%3A4hello9%3A4%22quoted%22",
    "OPTIONS /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n"
    "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\n"
    "Content-Length: 41\r\n\r\n{\"to\":[\"lobby\"],\"event\":\"news\",\"data\":1}",
]
for i, request in enumerate(HTTP):
    seed("http_request", bytes([i % 4, (0, 3, 6)[i % 3]]) + b(request))

# ---------------------------------------------------------------- ws_frames
# <max payload byte><split byte><frames>. Frames as a client masks them.
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(b0, payload, mask=MASK):
    payload = b(payload)
    n = len(payload)
    m = 0x80 if mask is not None else 0
    out = bytearray([b0])
    if n < 126:
        out.append(m | n)
    elif n < 65536:
        out += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        out += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return bytes(out) + payload
    return bytes(out) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


WS = [
    # hub/src/ws/codec.rs tests
    frame(0x81, "Hello"),
    frame(0x8A, "Hello"),
    bytes([0x81, 0x05]) + b"Hello",  # unmasked: refused
    frame(0x01, "Hel") + frame(0x80, "lo"),
    frame(0x82, bytes(i * 31 % 251 for i in range(300))),
    frame(0x81, "4héllo €𝄞"),
    frame(0x01, "He") + frame(0x89, "p1") + frame(0x00, "ll") + frame(0x8A, "") + frame(0x80, "o")
    + frame(0x02, [1, 2]) + frame(0x00, []) + frame(0x88, [0x03, 0xE8]) + frame(0x80, [3]),
    frame(0x01, "€".encode()[:1]) + frame(0x00, "€".encode()[1:2]) + frame(0x80, "€".encode()[2:]),
    frame(0x81 | 0x40, "x"),
    frame(0x83, "x"),
    frame(0x09, "x"),
    frame(0x89, bytes(126)),
    frame(0x80, "x"),
    bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    bytes([0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0]),
    frame(0x01, "a") + frame(0x81, "b"),
    frame(0x81, [0xED, 0xA0, 0x80]),
    frame(0x01, "ok") + frame(0x80, [0xE2, 0x82]),
    frame(0x88, [0x03]),
    frame(0x88, [0x0F, 0xA0, ord("x")]),
    frame(0x88, [0x03, 0xED]),
    frame(0x88, [0x03, 0xE8, 0xFF]),
    frame(0x01, b"a" * 60) + frame(0x89, bytes(100)) + frame(0x00, b"a" * 40) + frame(0x80, b"a"),
    # tests/engineio_raw.rs, tests/socketio_raw.rs: Engine.IO over WebSocket
    frame(0x81, "2probe") + frame(0x81, "5") + frame(0x81, "4after"),
    frame(0x81, '42["message",1,{"a":[true,null]}]'),
    frame(0x81, '452-["message",{"f":{"_placeholder":true,"num":0}},[{"_placeholder":true,"num":1}]]')
    + frame(0x82, [1, 2, 3]) + frame(0x82, []),
    frame(0x82, [4, 1, 2, 3]),
    frame(0x81, "4masked", bytes([1, 2, 3, 4])),
    b"this is not a websocket frame\r\n\r\n",
    frame(0x88, []),
]
for i, frames in enumerate(WS):
    seed("ws_frames", bytes([(7, 5, 2, 3)[i % 4], (0, 3, 6)[i % 3]]) + b(frames))


def deflated(data):
    """A message compressed as a permessage-deflate client sends it."""
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(b(data)) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


# permessage-deflate agreed (the max payload byte's high bit): hub/src/ws/codec.rs
# and tests/ws_deflate.rs: compressed text and binary, fragmented, RSV1 misuse, a bomb.
WS_DEFLATE = [
    frame(0xC1, deflated("4" + "hello deflate " * 40)),
    frame(0x41, deflated("4" + "abc" * 300)[:5]) + frame(0x89, "p") + frame(0x80, deflated("4" + "abc" * 300)[5:]),
    frame(0xC2, deflated(bytes(3000))) + frame(0x81, "4plain"),
    frame(0xC9, ""),
    frame(0x41, deflated("4xyzxyz")[:2]) + frame(0xC0, deflated("4xyzxyz")[2:]),
    frame(0xC1, [0xFF, 0xFF, 0xFF]),
    frame(0xC2, deflated(bytes(200_000))),
]
for i, frames in enumerate(WS_DEFLATE):
    seed("ws_frames", bytes([0x80 | (7, 5, 2, 3)[i % 4], (0, 3, 6)[i % 3]]) + b(frames))

# --------------------------------------------------------------- eio_packet
# <mode byte: bit 0 v3, bit 1 binary frame><payload>
TEXT_PACKETS = [
    # hub/src/engineio/packet.rs tests
    '0{"sid":"abc"}', "0", "1", "2", "2probe", "3", "3probe", "4hello", "4", "4€ 😀 \u001e\n",
    "5", "6", "bAQID", "b4AQID", "b", "b4", "b0AQID", "b9", "bé", "9", "", "é", "1trailing",
    "bAQ", "b!!!not base64", "bAQIDB", "4{\"a\":[1,2]}",
]
for text in TEXT_PACKETS:
    for v3 in (0, 1):
        seed("eio_packet", bytes([v3]) + b(text))
for binary in ([4, 1, 2, 3], [4], [], [1], [0, 1], [7], [4, 9, 9], [0xFF]):
    for v3 in (0, 1):
        seed("eio_packet", bytes([2 | v3]) + bytes(binary))

# -------------------------------------------------------------- eio_payload
# <mode byte: bit 0 v3, bit 1 octet-stream body, bit 2 b64 session><body>
V4_BODIES = [
    # hub/src/engineio/payload.rs tests, tests/engineio_raw.rs, tests/bad_input.rs
    "0{}\x1e1\x1e2probe\x1e3\x1e4hello €\x1ebAQID\x1e5\x1e6",
    "4hello", "4a\x1ebAQI=", "4hello\x1e4world\x1e4€ 😀\x1e4", "4one\x1e4two", "4three\x1ebAQID",
    "4a\x1e", "\x1e4a", "4a\x1e\x1e4b", "4a\x1e9", "4a\x1eb!", "9hello", "4ok\x1ex", "b!!!not base64",
    "bAQIDB", "4x", "1", "2",
]
V3_TEXT_BODIES = [
    "2:4€3:4😀6:4hello", "1:4", "6:b4AQID", "3:4hi6:b4AQID", "0:", "0:0:1:6", "02:4a", "abc:4hi",
    "5:4hi", "2:9x", "4hi", "999:4short", "1:2", "6:4after", "2:4x", "3:4😀", "2:😀", "9:b4AQIDBA==",
    "6:4hello10:b4AQIDBA==", "-1:4", "1e1:4aaaaaaaaa", "000000000000000001:1",
]


def v3_binary(parts):
    out = bytearray()
    for kind, data in parts:
        data = b(data)
        out.append(kind)
        out += bytes(int(d) for d in str(len(data)))
        out.append(0xFF)
        out += data
    return bytes(out)


V3_BINARY_BODIES = [
    v3_binary([(0, "4hello"), (1, [4, 1, 2, 3])]),
    v3_binary([(0, "4€"), (0, "2probe"), (1, [4] + [7] * 12)]),
    v3_binary([(1, [4, 1, 2])]),
    bytes([0, 1, 0xFF]) + b"1",
    bytes([2, 1, 0xFF, ord("1")]),
    bytes([0, 1, 2]),
    bytes([1, 1, 0xFF, 1]),
    bytes([0]) + bytes([1] * 16) + bytes([0xFF]),
]
for body in V4_BODIES:
    seed("eio_payload", bytes([0]) + b(body))
for i, body in enumerate(V3_TEXT_BODIES):
    seed("eio_payload", bytes([1 | (4 if i % 2 else 0)]) + b(body))
for i, body in enumerate(V3_BINARY_BODIES):
    seed("eio_payload", bytes([3 | (4 if i % 2 else 0)]) + body)
seed("eio_payload", bytes([2]) + b"4x")  # v4 octet-stream: refused

# ---------------------------------------------------------------- eio_jsonp
# <mode byte><bytes>: bit 0 clear, a POST body (bit 1: v4); set, a payload.
JSONP_BODIES = [
    # hub/src/engineio/jsonp.rs tests, tests/engineio_raw.rs
    "d=3%3A4hi", "d=3:4a+b", "x=1&d=2%3A4%E2%82%AC", "d=", "d=4a%5Cnb", "d=4a%5C%5Cnb", r"d=\n\\n",
    "d=a\\b\\", "", "e=1", "D=1", "d=1&d=2", "d=6%3A4hello9%3A4%22quoted%22", "d=%FF%FE", "d=%",
    "d=%E2%82", "a=1&" * 20 + "d=1:6", "d=1%3A6",
]
for body in JSONP_BODIES:
    seed("eio_jsonp", bytes([0]) + b(body))
seed("eio_jsonp", bytes([0]) + b"d=\xff\xfe")
seed("eio_jsonp", bytes([2]) + b"d=4hello%1E4world")
for payload in ['6:4hello9:4"quoted"', "4a\nb", "4a\\nb", "€\\n😀", "\\\\\\n", "a\\b\\", "1:6"]:
    seed("eio_jsonp", bytes([1]) + b(payload))

# ---------------------------------------------------------------- eio_query
# <mode byte: bit 0 allows EIO=3><query string>
QUERIES = [
    # hub/src/engineio/query.rs tests
    "?EIO=4&transport=websocket&sid=AB-c_d&token=a%20b+c&x=%E2%82%AC&flag",
    "EIO=&transport=polling", "EIO=04&transport=polling", "EIO=2&transport=polling",
    "EIO=3&transport=polling", "EIO=3&transport=polling&b64=", "EIO=3&transport=polling&b64=0",
    "EIO=3&transport=polling&b64=1&b64=", "EIO=3&transport=polling&b64=1&j=4",
    "EIO=3&transport=polling&j=", "EIO=3&transport=polling&j=%3Cx", "EIO=3&transport=polling&j=1&j=2",
    "EIO=3&transport=websocket&sid=x", "EIO=4&EIO=4&transport=polling", "EIO=4&transport=",
    "EIO=4&transport=Polling", "EIO=4&transport=flashsocket", "EIO=4&transport=polling",
    "EIO=4&transport=polling&sid=", "EIO=4&transport=polling&sid=a&sid=b",
    "EIO=4&transport=polling&transport=polling", "EIO=5&transport=polling", "EIO=9&transport=xhr",
    "eio=4&transport=polling", "transport", "transport=webtransport", "transport=x&sid=a&sid=b",
    "EIO=4&transport=polling&t=N8hyd6w",
    # session ids as hub/src/engineio/sid.rs generates and refuses them
    "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAAAA",
    "EIO=4&transport=websocket&sid=Ab-_0123456789abcdefghiw",
    "AAAAAAAAAAAAAAAAAAAAAAAA", "AB-_0123456789abcdefghiB", "AAAAAAAAAAAAAAAAAAAAAAA=",
    "EIO=4&transport=polling&sid=%41AAAAAAAAAAAAAAAAAAAAAAA",
]
for i, query in enumerate(QUERIES):
    seed("eio_query", bytes([i % 2]) + b(query))

# -------------------------------------------------------------- sio_decoder
# <mode byte: bit 0 v4, bits 1-2 attachment limit><message>(0xFF<message>)*;
# a message starting with 0x00 is binary.
BIN = b"\x00"
SIO = [
    # hub/src/socketio/decoder.rs tests
    ["0"], ["0/admin,"], ['0{"token":"1"}'], ['0/admin,{"token":"1"}'], ["1"], ["1/chat,"],
    ['2["hello",{"a":1}]'], ['2/chat,12["x"]'], ["3/chat,7[1,2]"], ["312[]"],
    ['4/random,{"message":"Invalid namespace"}'], ['4/admin,"Not authorized"'], ['50-["e"]'],
    ['60-5["e"]'], ["0/custom"], ['2/,["x"]'], ['2/é😀,["x"]'], ['2/a/b,["x"]'],
    ["0/admin?token=1,"], ["0/admin?token=1&b=%20x"], ["0/?t=1,"], ['2["connect"]'], ["2[]"],
    ["2[{}]"], ['21-["x"]'], ['5["x"]'], ["5-[]"], ['599999999999999999999-["x"]'], ["3[]"],
    ['2["x"]trailing'], ['1{"a":1}'], ["0[]"], ["9"], [""], ['218446744073709551616["x"]'],
    ['51-["x",{"_placeholder":true,"num":1}]', BIN + b"\x01"],
    ['51-["x",{"_placeholder":true}]', BIN],
    ['51-["x",{"_placeholder":true,"num":0,"extra":1}]', BIN],
    ['51-["x",{"_placeholder":"yes","num":0}]', BIN + b"a"],
    ['52-["x",{"_placeholder":true,"num":0}]', BIN + b"a", '2["y"]'],
    [BIN + b"\x01"],
    ['2["x"' + "[" * 200 + "]" * 200 + "]"],
    # tests/socketio_raw.rs
    ['2["message",1,{"a":[true,null]}]'], ['27["message-with-ack","x",[1]]'],
    ['2["message",{"z":1,"a":2,"m":{"y":3,"b":4}}]'],
    ['52-["message",{"f":{"_placeholder":true,"num":0}},[{"_placeholder":true,"num":1}]]',
     BIN + bytes([1, 2, 3]), BIN],
    ['51-3["message-with-ack",{"_placeholder":true,"num":0}]', BIN + b"\x09"],
    ['0/nope,{"a":1}'], ['0/custom,{"token":"t"}'], ["0/custom?token=abc&x=1,"],
    # tests/hub_admin.rs, the relay's events
    ['27["join","lobby"]'], ['2/chat,7["join","lobby"]'],
    ['23["publish",{"to":["r1","r2"],"event":"news","data":{"n":1},"volatile":true}]'],
    ['51-4["publish",{"to":"r","event":"bin","data":{"_placeholder":true,"num":0}}]', BIN + b"\x00\xff"],
]
for i, messages in enumerate(SIO):
    mode = (i % 2) | ((2 if i % 3 else 3) << 1)
    seed("sio_decoder", bytes([mode]) + b"\xff".join(b(m) for m in messages))

# ---------------------------------------------------------------------- jwt
# <mode byte: bit 0 signed payload, bits 1-2 now><token> or
# <mode><header JSON>\0<claims JSON>
SECRET = b"hub-fuzz-secret"


def b64url(data):
    return base64.urlsafe_b64encode(b(data)).rstrip(b"=").decode()


def sign(header, payload, secret=SECRET):
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


HEADER = '{"alg":"HS256","typ":"JWT"}'
CLAIMS = [
    # hub/src/auth/jwt.rs tests
    '{"sub":"alice","exp":2000000000,"iat":1700000000,"rooms":["chat:*","news/?"],'
    '"publish":["chat:lobby"],"name":"Alice ✓"}',
    '{"exp":1700000000.9}', '{"exp":2000000000,"rooms":[]}', '{"exp":2000000000}',
    '{"exp":2000000000,"sub":"bob","rooms":["a","b*"],"publish":["*"],"iat":1,"nbf":"whatever",'
    '"aud":["x"],"nested":{"deep":[1,2,{}]}}',
    '{"exp":2000000000,"sub":"ü","rooms":["日本*"]}', '{"exp":"2000000000"}', '{"exp":-1}',
    '{"exp":1e300}', '{"exp":2000000000,"sub":42}', '{"exp":2000000000,"rooms":"a"}',
    '{"exp":2000000000,"rooms":[1]}', '{"exp":2000000000,"publish":[null]}', "{}", "[]", "null",
    '{"exp":2000000000,"rooms":["*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?b"]}',
    # tests/hub_admin.rs
    '{"exp":2000000000,"sub":"42"}',
]
HEADERS = [
    HEADER, '{"alg":"HS256"}', '{"typ":"JWT","alg":"HS256"}', '{"alg":"none"}', '{"alg":"HS512"}',
    '{"alg":["HS256"]}', '{"alg":"HS256","typ":"jwt"}', '{"alg":"HS256","typ":"other"}',
    '{"alg":"HS256","crit":["exp"]}', '{"typ":"JWT"}', "[]", "not json",
    '{"alg":"' + "x" * 40 + '"}',
]
for i, claims in enumerate(CLAIMS):
    seed("jwt", bytes([1 | ((i % 4) << 1)]) + b(claims))
    seed("jwt", bytes([(i % 4) << 1]) + b(sign(HEADER, claims)))
for i, header in enumerate(HEADERS):
    seed("jwt", bytes([3]) + b(header) + b"\x00" + b(CLAIMS[i % 4]))
    seed("jwt", bytes([2]) + b(sign(header, CLAIMS[3])))
# Tokens made by Node's crypto.createHmac with "hub-test-secret" (jwt.rs
# tests): well formed, refused here for their signature.
for token in [
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoxNzAw"
    "MDAwMDAwLCJyb29tcyI6WyJjaGF0OioiLCJuZXdzLz8iXSwicHVibGlzaCI6WyJjaGF0OmxvYmJ5Il0sIm5hbWUiOiJB"
    "bGljZSDinJMifQ.pFRXbSg6eo36DEpE0ui8lXhGu8Ml-74I3lF5x_tdMag",
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDAuOX0.fNrbowntH67oEKiUwikBWKgav08C1"
    "kGTRqNSMaPCZDo",
    "", ".", "..", "a.b.c", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.++//",
]:
    seed("jwt", bytes([2]) + b(token))

# ------------------------------------------------------------ relay_request
# <attachments byte><JSON argument list>
RELAY = [
    # hub/src/relay/request.rs tests, tests/clients/node/relay-protocol.test.mjs
    '["a"]', '[["a","b"]]', "[42]", "[[]]", "[[1]]", '[""]', '[["a",""]]', "[null]", '[{"a":1}]',
    "[]", '["' + "x" * 257 + '"]', "[[" + ",".join(f'"{i}"' for i in range(65)) + "]]",
    '[{"to":["r1","r2"],"event":"news","data":{"f":{"_placeholder":true,"num":0}},"volatile":true}]',
    '[{"event":"e"}]', '[{"to":"r"}]', '[{"to":"r","event":3}]',
    '[{"to":"r","event":"e","volatile":"yes"}]', '[{"to":"r","event":"disconnect"}]', '["r"]',
    '[{"to":"r","event":"e"}]', '[{"to":"r1","event":"e1","data":{"n":1}}]',
    '[{"to":["r2"],"event":"e2","data":"two"}]', '[{"to":["ra","ra"],"event":"twice","data":0}]',
    '[{"to":"room","event":"vol","data":1,"volatile":true}]',
    '[{"to":"r","event":"bin","data":[{"_placeholder":true,"num":1}]}]', '{"to":"r","event":"e"}',
    '[{"to":"r","event":"","data":1}]', '[{"to":"r","event":"newListener"}]',
]
for i, args in enumerate(RELAY):
    seed("relay_request", bytes([i % 4]) + b(args))

# ------------------------------------------------------------ redis_message
# <mode><channel index><payload>: every message recorded from Node's adapter
# and emitter (hub/src/redis/fixtures, tests/clients/node/record-redis-fixtures.mjs).
_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hub", "src", "redis", "fixtures")
_CHANNELS = ["socket.io#/#", "socket.io#/#room#", "socket.io#/chat#", "socket.io-request#/#", "socket.io-response#/#", "socket.io#/#me#"]
with open(os.path.join(_FIXTURES, "index.json")) as f:
    for m in json.load(f):
        with open(os.path.join(_FIXTURES, m["file"]), "rb") as payload:
            body = payload.read()
        mode = 2 if m["case"].startswith("sharded") else 0
        channel = m["channel"]
        index = _CHANNELS.index(channel) if channel in _CHANNELS else (3 if "-request#" in channel else 4 if "-response#" in channel else 0)
        seed("redis_message", bytes([mode, index]) + body)

# ------------------------------------------------------------ admin_publish
# the POST /api/publish body (tests/hub_admin.rs)
ADMIN = [
    '{"to":["lobby"],"event":"news","data":{"n":1}}', '{"to":[],"except":["lobby"],"event":"all"}',
    '{"to":["r"],"event":"e"}', "[1]", '{"namespace":"/chat","to":"r"}',
    '{"namespace":"/chat","to":[1],"event":"e"}', '{"namespace":"/chat","to":"r","event":"e","volatile":"no"}',
    '{"namespace":"/chat","to":"r","event":"disconnect"}', '{"namespace":"/other","to":"r","event":"e"}',
    '{"to":"user:42","event":"notice","data":"hi"}', '{"namespace":3}', '{"to":"","event":"e"}',
    '{"to":null,"except":null,"event":"e","volatile":null}', '{"event":"e","volatile":true}', "",
    "{", "not json", '{"event":"e","data":' + "[" * 130 + "]" * 130 + "}",
]
for body in ADMIN:
    seed("admin_publish", body)


def main():
    total = 0
    for target, inputs in sorted(SEEDS.items()):
        folder = os.path.join(ROOT, target)
        os.makedirs(folder, exist_ok=True)
        for data in inputs:
            with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
        total += len(set(inputs))
        print(f"{target}: {len(set(inputs))} seeds")
    print(f"{total} seeds in {ROOT}")


if __name__ == "__main__":
    main()
