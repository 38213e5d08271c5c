"""The fake upstream (tests/fake/fakeq.py) on its own, over real HTTP:
its event-stream encoder against the official vectors, the way it
splits writes, its validation and error bodies, the OIDC and Kiro token
flows, scripting, cut streams, the recorded fixtures.  These tests do
not need the daemon.

The event-stream decoder here is written for these tests from the
reference (section 3), independently of both the fake's encoder and the
daemon's C decoder."""

import binascii
import glob
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib

import qrtest
from qrtest import Conn, build_request, check, eq, TestFailure, wait_for
from qrfake import FakeUpstream, FAKEQ, FIXTURES

sys.path.insert(0, os.path.dirname(FAKEQ))
import fakeq  # noqa: E402  (the encoder under test)


# ---------------------------------------------------------------------
# an independent event-stream decoder

class DecodeError(Exception):
    pass


def decode_headers(hb):
    out, i = [], 0
    while i < len(hb):
        n = hb[i]
        name = hb[i + 1:i + 1 + n].decode("utf-8")
        i += 1 + n
        t = hb[i]
        i += 1
        if t == 0:
            v = True
        elif t == 1:
            v = False
        elif t == 2:
            v = struct.unpack_from(">b", hb, i)[0]
            i += 1
        elif t == 3:
            v = struct.unpack_from(">h", hb, i)[0]
            i += 2
        elif t == 4:
            v = struct.unpack_from(">i", hb, i)[0]
            i += 4
        elif t in (5, 8):
            v = struct.unpack_from(">q", hb, i)[0]
            i += 8
        elif t in (6, 7):
            ln = struct.unpack_from(">H", hb, i)[0]
            v = bytes(hb[i + 2:i + 2 + ln])
            if t == 7:
                v = v.decode("utf-8")
            i += 2 + ln
        elif t == 9:
            v = uuid.UUID(bytes=bytes(hb[i:i + 16]))
            i += 16
        else:
            raise DecodeError("header type %d" % t)
        if i > len(hb):
            raise DecodeError("header runs past the header block")
        out.append((name, t, v))
    return out


class Decoder:
    """Fed bytes in any split; yields (headers list, payload bytes)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 12:
            total, hlen, pcrc = struct.unpack_from(">III", self.buf, 0)
            if zlib.crc32(bytes(self.buf[:8])) != pcrc:
                raise DecodeError("prelude CRC")
            if total < 16 or hlen > total - 16:
                raise DecodeError("lengths %d/%d" % (total, hlen))
            if len(self.buf) < total:
                break
            msg = bytes(self.buf[:total])
            del self.buf[:total]
            mcrc = struct.unpack_from(">I", msg, total - 4)[0]
            if zlib.crc32(msg[:total - 4]) != mcrc:
                raise DecodeError("message CRC")
            out.append((decode_headers(msg[12:12 + hlen]),
                        msg[12 + hlen:total - 4]))
        return out


def decode_all(data, pieces=None):
    """Decode data (whole or as the given list of pieces)."""
    d = Decoder()
    out = []
    for p in (pieces if pieces is not None else [data]):
        out.extend(d.feed(p))
    check(not d.buf, "%d undecoded bytes left over" % len(d.buf))
    return out


def events_of(frames):
    """[(kind, type, payload json)] with kind event/exception/error."""
    out = []
    for hdrs, payload in frames:
        h = {n: v for n, t, v in hdrs}
        names = [n for n, t, v in hdrs]
        mt = h.get(":message-type")
        if mt == "event":
            eq(names, [":event-type", ":content-type", ":message-type"],
               "event header order")
            out.append(("event", h[":event-type"], json.loads(payload)))
        elif mt == "exception":
            eq(names, [":exception-type", ":content-type", ":message-type"],
               "exception header order")
            out.append(("exception", h[":exception-type"],
                        json.loads(payload)))
        else:
            out.append((mt, h.get(":error-code"), h.get(":error-message")))
    return out


def text_of(evs):
    return "".join(p["content"] for k, t, p in evs
                   if k == "event" and t == "assistantResponseEvent")


# ---------------------------------------------------------------------
# helpers

def gar_body(content="Hello", history=None, tools=None, results=None,
             model="claude-sonnet-4.5", cid="conv-1", images=None,
             profile_arn=None, trigger="MANUAL"):
    uim = {"content": content, "origin": "AI_EDITOR"}
    if model is not None:
        uim["modelId"] = model
    ctx = {}
    if tools is not None:
        ctx["tools"] = tools
    if results is not None:
        ctx["toolResults"] = results
    if ctx:
        uim["userInputMessageContext"] = ctx
    if images is not None:
        uim["images"] = images
    cs = {"agentTaskType": "vibe", "chatTriggerType": trigger,
          "currentMessage": {"userInputMessage": uim}}
    if cid is not None:
        cs["conversationId"] = cid
    if history is not None:
        cs["history"] = history
    body = {"conversationState": cs}
    if profile_arn:
        body["profileArn"] = profile_arn
    return body


def tool(name="get_weather", desc="Get the weather", schema=None):
    return {"toolSpecification": {
        "name": name, "description": desc,
        "inputSchema": {"json": schema if schema is not None else
                        {"type": "object", "properties": {}}}}}


def user(content="hi", results=None):
    u = {"content": content, "modelId": "claude-sonnet-4.5"}
    if results is not None:
        u["userInputMessageContext"] = {"toolResults": results}
    return {"userInputMessage": u}


def assistant(content="ok", uses=None):
    a = {"content": content}
    if uses is not None:
        a["toolUses"] = uses
    return {"assistantResponseMessage": a}


def use(tid, name="get_weather", inp=None):
    return {"toolUseId": tid, "name": name,
            "input": inp if inp is not None else {"city": "Paris"}}


def result(tid, text="18C"):
    return {"toolUseId": tid, "content": [{"text": text}],
            "status": "success"}


class Client:
    """http.client against the fake."""

    def __init__(self, fake):
        self.fake = fake

    def request(self, method, path, body=None, headers=None, raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.fake.port,
                                       timeout=10)
        try:
            data = raw if raw is not None else (
                json.dumps(body).encode() if body is not None else None)
            c.request(method, path, data, headers or {})
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in
                                  r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        st, hd, data = self.request(method, path, body, h)
        return st, (json.loads(data) if data else None)


def token_for(fake, **kw):
    rt = fake.add_account(**kw)
    return rt, fake.issue_token(rt)


def gar(fake, token, body, flavour="rest", raw=None, ctype=None):
    """POST an assistant request; (status, headers, body bytes)."""
    c = Client(fake)
    h = {"Authorization": "Bearer " + token}
    if flavour == "rest":
        h["Content-Type"] = ctype or "application/json"
        path = "/generateAssistantResponse"
    else:
        h["Content-Type"] = ctype or "application/x-amz-json-1.0"
        h["X-Amz-Target"] = fakeq.TARGET_GAR
        path = "/"
    return c.request("POST", path, body, h, raw=raw)


def raw_gar(fake, token, body, timeout=10):
    """The same over a raw socket: (status, headers, [chunk payloads],
    terminated by the 0-chunk?)."""
    data = json.dumps(body).encode()
    with Conn(fake.port, timeout) as c:
        c.send(build_request("POST", "/generateAssistantResponse",
                             [("Authorization", "Bearer " + token),
                              ("Content-Type", "application/json"),
                              ("Connection", "close")], data))
        version, status, reason, headers, raw = c.read_head()
        h = {k.lower(): v for k, v in headers}
        chunks, done = [], False
        if "chunked" not in h.get("transfer-encoding", ""):
            return status, h, [c.read_until_close()], True
        try:
            while True:
                line = c.read_until(b"\r\n")
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    c.read_until(b"\r\n")
                    done = True
                    break
                chunks.append(c.read_exact(n))
                c.read_exact(2)
        except (qrtest.ConnClosed, ConnectionResetError):
            pass
        return status, h, chunks, done


def last_req(fake):
    rs = fake.requests()
    check(rs, "no request recorded")
    return rs[-1]


# ---------------------------------------------------------------------
# the encoder against the reference

def H(s):
    return binascii.unhexlify("".join(s.split()))


def test_encoder_official_vectors():
    # reference 3.6: awslabs/aws-c-event-stream test vectors
    eq(fakeq.encode_frame([], b""), H("00000010 00000000 05c248eb 7d98c8ff"),
       "empty message")
    eq(fakeq.encode_frame([], b"{'foo':'bar'}"),
       H("0000001d 00000000 fd528c5a 7b27666f6f273a27626172277d c3653936"),
       "payload only")
    eq(fakeq.encode_frame([("content-type", "application/json")],
                          b"{'foo':'bar'}"),
       H("0000003d 00000020 07fd8396 0c 636f6e74656e742d74797065 07 0010 "
         "6170706c69636174696f6e2f6a736f6e 7b27666f6f273a27626172277d "
         "8d9c08b1"), "string header")
    eq(fakeq.encode_frame([("event-id", fakeq.HDR_INT32, 0x0000A00C)],
                          b"{'foo':'bar'}"),
       H("0000002b 0000000e 348bec7b 08 6576656e742d6964 04 0000a00c "
         "7b27666f6f273a27626172277d d3890285"), "int32 header")
    eq(zlib.crc32(b"123456789"), 0xCBF43926, "CRC-32 check value")


FRAME_A = """
0000007f0000005c7c7db5a80b3a6576656e742d74797065070016617373697374616e74526573706f6e73654576656e74
0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700
056576656e747b22636f6e74656e74223a2248656c6c6f227d9b5d0635"""
FRAME_B = """
000000af000000521230e7f60b3a6576656e742d7479706507000c746f6f6c5573654576656e740d3a636f6e74656e742d
747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226e61
6d65223a226765745f77656174686572222c22746f6f6c5573654964223a22746f6f6c7573655f31222c22696e70757422
3a227b5c22636974795c223a5c2250617269735c227d227d16547792"""
FRAME_E = """
00000090000000618e91a9b70f3a657863657074696f6e2d747970650700135468726f74746c696e67457863657074696f
6e0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d7479706507
0009657863657074696f6e7b226d657373616765223a22546f6f206d616e79207265717565737473227dfeb6d812"""


def test_encoder_kiro_example_frames():
    # reference 3.7 A, B, E byte for byte; C and D by length and CRCs
    a = fakeq.build_items([{"text": "Hello"}])
    eq(fakeq.stream_bytes(a), H(FRAME_A), "frame A")
    b = fakeq.event_frame("toolUseEvent",
                          {"name": "get_weather", "toolUseId": "tooluse_1",
                           "input": "{\"city\":\"Paris\"}"})
    eq(b, H(FRAME_B), "frame B")
    e = fakeq.stream_bytes(fakeq.build_items(
        [{"exception": "ThrottlingException",
          "message": "Too many requests"}]))
    eq(e, H(FRAME_E), "frame E")
    for payload, typ, total, pcrc, mcrc in (
            ({"name": "get_weather", "toolUseId": "tooluse_1", "stop": True},
             "toolUseEvent", 156, 0xf4b125a0, 0x099da129),
            ({"contextUsagePercentage": 1.25}, "contextUsageEvent", 134,
             0xae8b5e0c, 0x78a722ec)):
        f = fakeq.event_frame(typ, payload)
        eq(struct.unpack(">III", f[:12]), (total, len(f) - 16 - len(
            fakeq.json_bytes(payload)), pcrc), typ + " prelude")
        eq(struct.unpack(">I", f[-4:])[0], mcrc, typ + " message CRC")
    # the tool script event produces start / fragments / stop
    items = fakeq.build_items([{"tool": {"id": "tooluse_1",
                                         "name": "get_weather",
                                         "input": "{\"city\":\"Paris\"}",
                                         "parts": 3}}])
    evs = events_of(decode_all(fakeq.stream_bytes(items)))
    eq([p for k, t, p in evs][0], {"name": "get_weather",
                                   "toolUseId": "tooluse_1"}, "tool start")
    eq("".join(p.get("input", "") for k, t, p in evs), "{\"city\":\"Paris\"}",
       "tool fragments")
    eq(len(evs), 5, "start + 3 fragments + stop")
    eq(evs[-1][2].get("stop"), True, "stop frame")
    # the independent decoder agrees on the official vectors too
    for vec in ("0000003d 00000020 07fd8396 0c 636f6e74656e742d74797065 07 "
                "0010 6170706c69636174696f6e2f6a736f6e "
                "7b27666f6f273a27626172277d 8d9c08b1",
                "0000002b 0000000e 348bec7b 08 6576656e742d6964 04 0000a00c "
                "7b27666f6f273a27626172277d d3890285"):
        (hdrs, payload), = decode_all(H(vec))
        eq(payload, b"{'foo':'bar'}", "vector payload")
    # and it notices a corrupted CRC
    bad = bytearray(H(FRAME_A))
    bad[-1] ^= 1
    try:
        Decoder().feed(bytes(bad))
        raise TestFailure("decoder accepted a bad message CRC")
    except DecodeError:
        pass


# ---------------------------------------------------------------------
# streams over HTTP

def test_default_stream_rest_flavour():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        st, h, data = gar(fake, at, gar_body())
        eq(st, 200, "status")
        eq(h.get("content-type"), "application/vnd.amazon.eventstream",
           "content type")
        eq(h.get("transfer-encoding"), "chunked", "transfer-encoding")
        eq(h.get("x-amzn-codewhisperer-conversation-id"), "conv-1",
           "conversation id header")
        evs = events_of(decode_all(data))
        eq(text_of(evs), "Hello from fakeq.", "default text")
        eq([t for k, t, p in evs],
           ["assistantResponseEvent"] * 3 + ["meteringEvent",
                                             "contextUsageEvent"],
           "default event sequence")
        eq(evs[3][2], {"unit": "credit", "unitPlural": "credits",
                       "usage": 0.017}, "metering payload")
        r = last_req(fake)
        eq((r["path"], r["status"], r["error"], r["account"]),
           ("/generateAssistantResponse", 200, None, rt), "record")
        eq(r["body"]["conversationState"]["conversationId"], "conv-1",
           "recorded body")
        eq(r["headers"]["authorization"], "Bearer " + at, "recorded headers")
        eq(r["stream"], "complete", "stream outcome")


def test_awsjson_flavour_initial_response():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"events": [{"text": "hi"}]})
        st, h, data = gar(fake, at, gar_body(cid="cid-77"), flavour="awsjson")
        eq(st, 200, "status")
        evs = events_of(decode_all(data))
        eq(evs[0], ("event", "initial-response", {"conversationId": "cid-77"}),
           "first frame")
        eq(text_of(evs), "hi", "text")
        eq(last_req(fake)["target"], fakeq.TARGET_GAR, "recorded target")
        # application/json at the root path is an unknown operation
        st, h, data = gar(fake, at, gar_body(), flavour="awsjson",
                          ctype="application/json")
        eq(st, 400, "json at / status")
        eq(json.loads(data)["__type"],
           "com.amazon.coral.service#UnknownOperationException", "body")
        # no target either
        st, _, data = Client(fake).request(
            "POST", "/", gar_body(), {"Authorization": "Bearer " + at,
                                      "Content-Type":
                                      "application/x-amz-json-1.0"})
        eq(st, 400, "no target status")
        check("UnknownOperation" in data.decode(), "body %r" % data)
        # the REST path wants application/json
        st, _, data = gar(fake, at, gar_body(),
                          ctype="application/x-amz-json-1.0")
        eq(st, 400, "awsjson content type on REST path")


def test_split_writes_reassemble():
    text = "".join("word%d " % i for i in range(60))
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        events = [{"text": text[i:i + 37]} for i in range(0, len(text), 37)]
        events += [{"tool": {"id": "t1", "name": "n", "input":
                             "{\"a\":[1,2,3],\"b\":\"x\"}", "parts": 5}},
                   {"metering": 0.5}, {"context": 9.5}]
        fake.script({"events": events, "chunk": 1},
                    {"events": events, "chunk": 0},
                    {"events": events, "chunk": "random", "seed": 7},
                    {"events": events},
                    {"events": events, "chunk": 100})
        whole = fakeq.stream_bytes(fakeq.build_items(events))
        nframes = len(decode_all(whole))
        outs = []
        for mode in ("1", "0", "random", "default", "100"):
            st, h, chunks, done = raw_gar(fake, at, gar_body())
            eq(st, 200, "status (%s)" % mode)
            check(done, "stream not terminated (%s)" % mode)
            data = b"".join(chunks)
            eq(data, whole, "bytes (%s)" % mode)
            evs = events_of(decode_all(data, chunks))
            outs.append(evs)
            sizes = [len(c) for c in chunks]
            if mode == "1":
                check(set(sizes) == {1}, "chunk 1: sizes %r" % set(sizes))
            elif mode == "0":
                eq(len(chunks), nframes, "chunk 0: one write per frame")
            elif mode == "random":
                check(max(sizes) <= 64 and len(set(sizes)) > 3,
                      "random sizes %r" % sizes[:20])
            elif mode == "default":
                check(max(sizes) <= 512 and len(chunks) > 1,
                      "default sizes %r" % sizes)
            else:
                check(set(sizes[:-1]) == {100}, "chunk 100: %r" % sizes)
            # some writes must straddle frame boundaries
            if mode in ("random", "100"):
                bounds, pos = set(), 0
                for hd, pl in decode_all(whole):
                    pos += 16 + len(pl) + sum(
                        2 + len(n) + 2 + (len(v) if isinstance(v, str)
                                          else 0) for n, t, v in hd)
                    bounds.add(pos)
                cuts, pos = set(), 0
                for s in sizes:
                    pos += s
                    cuts.add(pos)
                check(cuts - bounds, "no write ends inside a frame")
        for evs in outs[1:]:
            eq(evs, outs[0], "same events whatever the split")
        eq(text_of(outs[0]), text, "text reassembled")


def test_delay_and_slow_stream():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"events": [{"text": "a"}, {"sleep_ms": 300},
                                {"text": "b"}], "chunk": 0})
        t0 = time.monotonic()
        st, h, data = gar(fake, at, gar_body())
        dt = time.monotonic() - t0
        check(dt >= 0.3, "sleep_ms 300 took only %.3fs" % dt)
        eq(text_of(events_of(decode_all(data))), "ab", "text")
        fake.script({"events": [{"text": "x"}] * 5, "chunk": 0,
                     "delay_ms": 80})
        t0 = time.monotonic()
        st, h, data = gar(fake, at, gar_body())
        dt = time.monotonic() - t0
        check(dt >= 0.3, "4 delays of 80 ms took only %.3fs" % dt)
        eq(text_of(events_of(decode_all(data))), "xxxxx", "text")


def test_cut_stream_unterminated():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"events": [{"text": "partial "}, {"text": "answer"},
                                {"cut": True}, {"text": "never"}],
                     "chunk": 0})
        st, h, chunks, done = raw_gar(fake, at, gar_body())
        eq(st, 200, "status")
        check(not done, "a cut stream ended with the 0-chunk")
        evs = events_of(decode_all(b"".join(chunks)))
        eq(text_of(evs), "partial answer", "text before the cut")
        eq(last_req(fake)["stream"], "cut", "recorded outcome")
        # http.client sees an incomplete read
        fake.script({"events": [{"text": "x"}, {"cut": True}]})
        try:
            gar(fake, at, gar_body())
            raise TestFailure("http.client read a cut stream completely")
        except http.client.IncompleteRead:
            pass
        # a cut in the middle of a frame
        fake.script({"events": [{"text": "abc"}, {"raw_hex": "000000"},
                                {"cut": "rst"}], "chunk": 0})
        st, h, chunks, done = raw_gar(fake, at, gar_body())
        check(not done, "rst cut terminated")


def test_exception_and_corrupt_crc_midstream():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"events": [{"text": "Hi"},
                                {"exception": "ThrottlingException",
                                 "message": "Too many requests"}]})
        st, h, data = gar(fake, at, gar_body())
        evs = events_of(decode_all(data))
        eq(evs[-1], ("exception", "ThrottlingException",
                     {"message": "Too many requests"}), "exception frame")
        fake.script({"events": [{"text": "a"}, {"corrupt_crc": True},
                                {"text": "b"}, {"text": "c"}]})
        st, h, data = gar(fake, at, gar_body())
        d = Decoder()
        try:
            d.feed(data)
            raise TestFailure("corrupt_crc frame decoded cleanly")
        except DecodeError as e:
            eq(str(e), "message CRC", "decoder error")
        frames = fakeq.build_items([{"text": "a"}])
        check(data.startswith(fakeq.stream_bytes(frames)),
              "frames before the corrupt one are intact")


def test_script_matching_and_errors():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"match": "second", "events": [{"text": "for second"}]},
                    {"events": [{"text": "first any"}]},
                    {"status": 429},
                    {"status": 402, "body": {"message": "quota",
                                             "reason": "MONTHLY_REQUEST_COUNT"},
                     "headers": {"x-test": "1"}},
                    {"status": 500},
                    {"too_long": True})
        st, h, d = gar(fake, at, gar_body("the second request"))
        eq(text_of(events_of(decode_all(d))), "for second", "match")
        st, h, d = gar(fake, at, gar_body("second again"))
        eq(text_of(events_of(decode_all(d))), "first any", "FIFO order")
        st, h, d = gar(fake, at, gar_body())
        eq(st, 429, "scripted 429")
        eq(json.loads(d)["reason"], "USER_REQUEST_RATE_EXCEEDED",
           "default 429 body")
        eq(h.get("x-amzn-errortype"), "ThrottlingException", "error type")
        st, h, d = gar(fake, at, gar_body())
        eq((st, json.loads(d), h.get("x-test")),
           (402, {"message": "quota", "reason": "MONTHLY_REQUEST_COUNT"},
            "1"), "scripted 402 with headers")
        st, h, d = gar(fake, at, gar_body())
        eq(st, 500, "scripted 500")
        check("unexpected error" in json.loads(d)["message"], "500 body")
        st, h, d = gar(fake, at, gar_body())
        eq((st, json.loads(d)), (400, fakeq.TOO_LONG), "too_long flag")
        st, h, d = gar(fake, at, gar_body())
        eq(text_of(events_of(decode_all(d))), "Hello from fakeq.",
           "default after the queue is empty")
        eq(fake.pending_script(), [], "queue empty")
        # a script for one account only, and a sticky one
        rt2, at2 = token_for(fake)
        fake.script({"account": rt2, "events": [{"text": "acct2"}],
                     "times": 0})
        st, h, d = gar(fake, at, gar_body())
        eq(text_of(events_of(decode_all(d))), "Hello from fakeq.",
           "account filter")
        for _ in range(2):
            st, h, d = gar(fake, at2, gar_body())
            eq(text_of(events_of(decode_all(d))), "acct2", "sticky")
        fake.reset()
        eq(fake.requests(), [], "reset clears requests")
        eq(fake.pending_script(), [], "reset clears scripts")
        st, h, d = gar(fake, at, gar_body())
        eq(st, 403, "reset clears tokens")
        # bad scripts are refused at once
        try:
            fake.script({"events": [{"nonsense": 1}]})
            raise TestFailure("bad event accepted")
        except qrtest.TestFailure as e:
            check("400" in str(e), "bad script error %s" % e)


def test_bearer_token_checks():
    with FakeUpstream() as fake:
        rt, at = token_for(fake, expiresIn=3600)
        for tok in ("", "not-a-token"):
            st, h, d = gar(fake, tok, gar_body())
            eq((st, json.loads(d)), (403, fakeq.BEARER_INVALID),
               "bearer %r" % tok)
            check(last_req(fake)["error"].startswith("bearer-invalid"),
                  "recorded error")
        st, h, d = gar(fake, at, gar_body())
        eq(st, 200, "valid token")
        eq(fake.expire_tokens(access_token=at), 1, "expired one")
        st, h, d = gar(fake, at, gar_body())
        eq(st, 403, "expired token")
        eq(last_req(fake)["error"], "bearer-invalid: expired bearer token",
           "error")
        short = fake.issue_token(rt, expires_in=1)
        eq(gar(fake, short, gar_body())[0], 200, "short token valid")
        time.sleep(1.1)
        eq(gar(fake, short, gar_body())[0], 403, "short token expired")


BAD_BODIES = [
    ("not JSON", None, b"{nope", "not JSON"),
    ("no conversationState", {"x": 1}, None, "conversationState"),
    ("no conversationId", gar_body(cid=None), None, "conversationId"),
    ("empty conversationId", gar_body(cid=""), None, "conversationId"),
    ("long conversationId", gar_body(cid="x" * 129), None, "conversationId"),
    ("AUTO trigger", gar_body(trigger="AUTO"), None, "chatTriggerType"),
    ("content not string", None, json.dumps(gar_body()).replace(
        '"content": "Hello"', '"content": 5').encode(), "content"),
    ("assistant current", {"conversationState": {
        "conversationId": "c", "chatTriggerType": "MANUAL",
        "currentMessage": {"assistantResponseMessage": {"content": "x"}}}},
     None, "currentMessage"),
    ("history starts with assistant",
     gar_body(history=[assistant(), user()]), None, "alternate"),
    ("history two users",
     gar_body(history=[user(), user(), assistant()]), None, "alternate"),
    ("history ends with user",
     gar_body(history=[user(), assistant(), user()]), None, "end with"),
    ("tool name too long", gar_body(tools=[tool("a" * 65)]), None, "name"),
    ("tool name bad chars", gar_body(tools=[tool("get.weather")]), None,
     "name"),
    ("tool description empty", gar_body(tools=[tool(desc="")]), None,
     "description"),
    ("tool description long", gar_body(tools=[tool(desc="d" * 10241)]), None,
     "description"),
    ("no inputSchema.json", gar_body(tools=[{"toolSpecification": {
        "name": "t", "description": "d", "inputSchema": {}}}]), None,
     "inputSchema"),
    ("11 images", gar_body(images=[{"format": "png", "source": {
        "bytes": "iVBORw0KGgo="}}] * 11), None, "images"),
    ("bad image format", gar_body(images=[{"format": "bmp", "source": {
        "bytes": "Qk0="}}]), None, "format"),
    ("image not base64", gar_body(images=[{"format": "png", "source": {
        "bytes": "!!!"}}]), None, "base64"),
    ("tool use input not object", gar_body(
        history=[user(), assistant(uses=[use("t1", inp="x")])],
        results=[result("t1")]), None, "input"),
]


def test_validation_errors():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        for what, body, raw, why in BAD_BODIES:
            st, h, d = gar(fake, at, body, raw=raw)
            eq(st, 400, "%s: status" % what)
            eq(json.loads(d), fakeq.IMPROPER, "%s: body" % what)
            eq(h.get("x-amzn-errortype"), "ValidationException",
               "%s: error type header" % what)
            r = last_req(fake)
            eq(r["status"], 400, "%s: recorded status" % what)
            check(why in (r["error"] or ""), "%s: recorded error %r lacks %r"
                  % (what, r["error"], why))
        # what is valid stays valid
        good = gar_body(
            history=[user("sys"), assistant("OK"),
                     user("weather?"),
                     assistant("", uses=[use("t1"), use("t2")]),
                     user("", results=[result("t1"), result("t2")]),
                     assistant("done")],
            tools=[tool(), tool("a" * 64, "d" * 10240)],
            images=[{"format": "png", "source": {
                "bytes": "iVBORw0KGgoAAAANSUhEUg=="}}] * 10,
            profile_arn=fakeq.SOCIAL_ARN)
        eq(gar(fake, at, good)[0], 200, "valid complex body")
        body = gar_body()
        body["conversationState"]["history"] = None
        eq(gar(fake, at, body)[0], 200, "history null is accepted")
        eq(gar(fake, at, gar_body(model=None))[0], 200, "no modelId")


def test_model_image_and_size_errors():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        for m in fakeq.KNOWN_MODELS:
            eq(gar(fake, at, gar_body(model=m))[0], 200, "model %s" % m)
        st, h, d = gar(fake, at, gar_body(model="claude-sonnet-4-5"))
        eq((st, json.loads(d)), (400, fakeq.INVALID_MODEL), "unknown model")
        check("INVALID_MODEL_ID" in last_req(fake)["error"], "recorded")
        # a JPEG declared as PNG
        jpeg = "/9j/4AAQSkZJRgABAQ=="
        st, h, d = gar(fake, at, gar_body(images=[{
            "format": "png", "source": {"bytes": jpeg}}]))
        eq(st, 400, "mime mismatch status")
        eq(json.loads(d)["reason"], "IMAGE_MIME_MISMATCH", "mime reason")
        eq(gar(fake, at, gar_body(images=[{
            "format": "jpeg", "source": {"bytes": jpeg}}]))[0], 200,
           "jpeg as jpeg")
        # the whole body over 600000 bytes
        big = gar_body("x" * 600000)
        st, h, d = gar(fake, at, big)
        eq((st, json.loads(d)), (400, fakeq.TOO_LONG), "too long")
        check("CONTENT_LENGTH_EXCEEDS_THRESHOLD" in last_req(fake)["error"],
              "recorded too long")
        fake.config(too_long_bytes=1000)
        eq(gar(fake, at, gar_body("y" * 1000))[0], 400, "lowered threshold")


def test_tool_result_pairing():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        ok = gar_body(history=[user(), assistant(uses=[use("t1")])],
                      results=[result("t1")], tools=[tool()])
        eq(gar(fake, at, ok)[0], 200, "paired")
        cases = [
            ("result without use", gar_body(
                history=[user(), assistant()], results=[result("t1")])),
            ("result for another id", gar_body(
                history=[user(), assistant(uses=[use("t1")])],
                results=[result("t2")])),
            ("duplicate results", gar_body(
                history=[user(), assistant(uses=[use("t1")])],
                results=[result("t1"), result("t1")])),
            ("use without result", gar_body(
                history=[user(), assistant(uses=[use("t1"), use("t2")])],
                results=[result("t1")])),
            ("result paired with an older assistant", gar_body(
                history=[user(), assistant(uses=[use("t1")]),
                         user(results=[result("t1")]), assistant()],
                results=[result("t1")])),
            ("results on the first history message", gar_body(
                history=[user(results=[result("t1")]), assistant()])),
        ]
        for what, body in cases:
            st, h, d = gar(fake, at, body)
            eq(st, 400, "%s: status" % what)
            j = json.loads(d)
            check("TOOL_USE_RESULT_MISMATCH" in d.decode(),
                  "%s: body %r" % (what, j))
            check("TOOL_USE_RESULT_MISMATCH" in last_req(fake)["error"],
                  "%s: recorded" % what)


def test_account_fail_and_requests_log():
    with FakeUpstream() as fake:
        rt = fake.add_account(kind="social", fail={"status": 403, "body": {
            "__type": "com.amazon.aws.codewhisperer#AccessDeniedException",
            "message": "suspended", "reason": "TEMPORARILY_SUSPENDED"}})
        at = fake.issue_token(rt)
        st, h, d = gar(fake, at, gar_body())
        eq((st, json.loads(d)["reason"]), (403, "TEMPORARILY_SUSPENDED"),
           "account fail")
        fake.add_account(refreshToken=rt, fail=None)
        eq(gar(fake, at, gar_body())[0], 200, "account updated in place")
        rs = fake.requests()
        eq([r["status"] for r in rs], [403, 200], "statuses")
        eq(fake.assistant_requests(), rs, "assistant filter")
        check(all(r["account"] == rt for r in rs), "account recorded")
        eq(fake.requests(since=rs[-1]["seq"]), rs[-1:], "since")


# ---------------------------------------------------------------------
# auth flows

OIDC_REFRESH = "refresh_token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def test_oidc_device_flow():
    with FakeUpstream() as fake:
        c = Client(fake)
        st, j = c.json("POST", "/client/register",
                       {"clientName": "qrelay", "clientType": "public",
                        "scopes": ["codewhisperer:completions"]})
        eq(st, 200, "register")
        for k in ("clientId", "clientSecret", "clientIdIssuedAt",
                  "clientSecretExpiresAt"):
            check(k in j, "register answer lacks %s: %r" % (k, j))
        cid, sec = j["clientId"], j["clientSecret"]
        st, e = c.json("POST", "/client/register", {"clientName": "x"})
        eq((st, e["error"]), (400, "invalid_request"), "register w/o type")
        st, e = c.json("POST", "/device_authorization",
                       {"clientId": cid, "clientSecret": "wrong",
                        "startUrl": "https://view.awsapps.com/start"})
        eq((st, e["error"]), (401, "invalid_client"), "bad secret")

        def start():
            st, d = c.json("POST", "/device_authorization",
                           {"clientId": cid, "clientSecret": sec,
                            "startUrl": "https://view.awsapps.com/start"})
            eq(st, 200, "device_authorization")
            for k in ("deviceCode", "userCode", "verificationUri",
                      "verificationUriComplete", "expiresIn", "interval"):
                check(k in d, "device answer lacks %s" % k)
            return d

        def poll(dc):
            return c.json("POST", "/token",
                          {"clientId": cid, "clientSecret": sec,
                           "grantType": DEVICE_GRANT, "deviceCode": dc})

        d = start()
        st, e = poll(d["deviceCode"])
        eq((st, e["error"]), (400, "authorization_pending"), "pending")
        fake.device("slow_down")
        eq(poll(d["deviceCode"])[1]["error"], "slow_down", "slow_down")
        eq(poll(d["deviceCode"])[1]["error"], "authorization_pending",
           "pending again")
        fake.device("approve", d["userCode"])
        st, tok = poll(d["deviceCode"])
        eq(st, 200, "approved")
        eq(tok["tokenType"], "Bearer", "tokenType")
        check(tok["accessToken"] and tok["refreshToken"] and
              tok["expiresIn"] == 3600, "token answer %r" % tok)
        eq(poll(d["deviceCode"])[1]["error"], "invalid_grant", "reused code")
        eq(gar(fake, tok["accessToken"], gar_body())[0], 200,
           "device token works upstream")
        # refresh grant with the new refresh token
        st, r = c.json("POST", "/token",
                       {"clientId": cid, "clientSecret": sec,
                        "grantType": OIDC_REFRESH,
                        "refreshToken": tok["refreshToken"]})
        eq(st, 200, "refresh")
        check(r["accessToken"] != tok["accessToken"], "new access token")
        check("refreshToken" not in r, "no rotation by default")
        # deny and expire
        d = start()
        fake.device("deny")
        eq(poll(d["deviceCode"])[1]["error"], "access_denied", "denied")
        d = start()
        fake.device("expire")
        eq(poll(d["deviceCode"])[1]["error"], "expired_token", "expired")
        fake.config(device_expires_in=1)
        d = start()
        eq(d["expiresIn"], 1, "expiresIn configurable")
        time.sleep(1.1)
        eq(poll(d["deviceCode"])[1]["error"], "expired_token", "timed out")
        st, e = c.json("POST", "/token", {"clientId": cid,
                                          "clientSecret": sec,
                                          "grantType": "password"})
        eq((st, e["error"]), (400, "unsupported_grant_type"), "grant type")
        st, e = poll("no-such-code")
        eq((st, e["error"]), (400, "invalid_grant"), "unknown device code")


def test_oidc_refresh_and_revoke():
    with FakeUpstream() as fake:
        c = Client(fake)
        rt = fake.add_account(kind="idc", clientId="cid1",
                              clientSecret="sec1", expiresIn=900)

        def refresh(token, cid="cid1", sec="sec1"):
            return c.json("POST", "/token", {
                "clientId": cid, "clientSecret": sec,
                "grantType": "refresh_token", "refreshToken": token})
        st, j = refresh(rt)
        eq(st, 200, "refresh")
        eq((j["tokenType"], j["expiresIn"]), ("Bearer", 900), "answer")
        at = j["accessToken"]
        eq(gar(fake, at, gar_body())[0], 200, "token accepted")
        st, e = refresh(rt, sec="nope")
        eq((st, e["error"]), (401, "invalid_client"), "wrong secret")
        eq(c.json("POST", "/token", {"clientId": "cid1",
                                     "grantType": "refresh_token",
                                     "refreshToken": rt})[1]["error"],
           "invalid_request", "missing secret")
        st, e = refresh("unknown")
        eq((st, e["error"]), (400, "invalid_grant"), "unknown token")
        eq(e["error_description"], "Invalid refresh token provided", "text")
        fake.revoke(rt)
        st, e = refresh(rt)
        eq((st, e["error"]), (400, "invalid_grant"), "revoked")
        eq(gar(fake, at, gar_body())[0], 200,
           "issued access tokens outlive the revocation")
        eq(fake.account(rt)["refreshes"], 1, "refresh count")
        # rotation
        rt2 = fake.add_account(kind="idc", rotate=True)
        st, j = refresh(rt2, "any", "any")
        eq(st, 200, "rotating refresh")
        new = j.get("refreshToken")
        check(new and new != rt2, "rotated token %r" % new)
        eq(refresh(rt2, "any", "any")[1]["error"], "invalid_grant",
           "old token after rotation")
        eq(refresh(new, "any", "any")[0], 200, "new token works")
        # a social token is not an OIDC token
        srt = fake.add_account(kind="social")
        eq(refresh(srt)[1]["error"], "invalid_grant", "social via OIDC")
        # scripted failure of the token endpoint
        fake.script({"endpoint": "oidc_token", "status": 500,
                     "body": {"error": "server_error",
                              "error_description": "boom"}})
        st, e = refresh(new, "any", "any")
        eq((st, e["error"]), (500, "server_error"), "scripted 500")


def test_kiro_refresh():
    with FakeUpstream() as fake:
        c = Client(fake)
        arn = "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABCDEFGHIJKL"
        rt = fake.add_account(kind="social", profileArn=arn)
        st, j = c.json("POST", "/refreshToken", {"refreshToken": rt})
        eq(st, 200, "kiro refresh")
        eq((j["profileArn"], j["expiresIn"]), (arn, 3600), "answer")
        check("refreshToken" not in j, "no rotation by default")
        eq(gar(fake, j["accessToken"], gar_body(profile_arn=arn))[0], 200,
           "token accepted")
        eq(last_req(fake)["body"]["profileArn"], arn, "profileArn recorded")
        idc = fake.add_account(kind="idc")
        for token in ("nope", idc):
            st, e = c.json("POST", "/refreshToken", {"refreshToken": token})
            eq((st, e["error"]), (400, "invalid_grant"), "bad %s" % token)
            check("Invalid refresh token provided" in e["error_description"],
                  "text")
        fake.revoke(rt)
        eq(c.json("POST", "/refreshToken", {"refreshToken": rt})[0], 400,
           "revoked")
        rr = fake.add_account(kind="social", rotate=True)
        st, j = c.json("POST", "/refreshToken", {"refreshToken": rr})
        check(j.get("refreshToken") not in (None, rr), "rotated")
        eq(j["profileArn"], fakeq.SOCIAL_ARN, "default social ARN")


def test_usage_limits_and_models():
    with FakeUpstream() as fake:
        c = Client(fake)
        rt = fake.add_account(kind="social", email="a@b.c",
                              usage={"usageLimitWithPrecision": 50.0})
        at = fake.issue_token(rt)
        auth = {"Authorization": "Bearer " + at}
        fake.script({"events": [{"text": "x"}, {"metering": 1.5}]})
        gar(fake, at, gar_body())
        st, j = c.json("GET", "/getUsageLimits?origin=AI_EDITOR&"
                       "resourceType=AGENTIC_REQUEST", headers=auth)
        eq(st, 200, "getUsageLimits")
        for k in ("daysUntilReset", "nextDateReset", "limits",
                  "subscriptionInfo", "userInfo", "usageBreakdownList",
                  "overageConfiguration"):
            check(k in j, "usage lacks %s" % k)
        bd = j["usageBreakdownList"][0]
        eq((bd["resourceType"], bd["usageLimitWithPrecision"],
            bd["currentUsageWithPrecision"]), ("CREDIT", 50.0, 1.5),
           "breakdown (credits from the metering event)")
        eq(j["userInfo"]["email"], "a@b.c", "email")
        check(j["nextDateReset"] > time.time(), "reset in the future")
        eq(c.json("GET", "/getUsageLimits")[0], 403, "usage without token")
        st, m = c.json("GET", "/ListAvailableModels?origin=AI_EDITOR",
                       headers=auth)
        eq(st, 200, "models")
        ids = [x["modelId"] for x in m["models"]]
        check("claude-sonnet-4.5" in ids and "auto" in ids, "ids %r" % ids)
        for x in m["models"]:
            check(set(x) >= {"modelId", "modelName", "description",
                             "tokenLimits", "supportedInputTypes",
                             "rateMultiplier", "rateUnit",
                             "supportsPromptCache"}, "model fields %r" % x)
        st, p1 = c.json("GET", "/ListAvailableModels?origin=AI_EDITOR&"
                        "maxResults=3", headers=auth)
        eq(len(p1["models"]), 3, "page size")
        st, p2 = c.json("GET", "/ListAvailableModels?origin=AI_EDITOR&"
                        "maxResults=50&nextToken=" + p1["nextToken"],
                        headers=auth)
        eq([x["modelId"] for x in p1["models"] + p2["models"]], ids,
           "pagination")
        eq(c.json("GET", "/ListAvailableModels", headers=auth)[0], 400,
           "origin required")
        # the awsJson form of the same
        st, m2 = c.json("POST", "/", {"origin": "AI_EDITOR"}, headers=dict(
            auth, **{"Content-Type": "application/x-amz-json-1.0",
                     "X-Amz-Target":
                     "AmazonCodeWhispererService.ListAvailableModels"}))
        eq((st, m2["models"]), (200, m["models"]), "awsJson models")


def test_control_keepalive_and_404():
    with FakeUpstream() as fake:
        c = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
        for i in range(5):
            c.request("GET", "/_fake/stats")
            r = c.getresponse()
            eq(r.status, 200, "stats %d" % i)
            r.read()
            check(r.getheader("Connection") != "close", "keep-alive")
        c.request("POST", "/_fake/config", json.dumps({"nope": 1}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        eq(r.status, 400, "unknown config key")
        r.read()
        c.close()
        st, h, d = Client(fake).request("GET", "/no/such")
        eq(st, 404, "unknown upstream path")
        eq(last_req(fake)["error"], "no such endpoint", "recorded")
        # Expect: 100-continue is answered
        with Conn(fake.port) as cc:
            body = b'{"kind":"idc"}'
            cc.send(("POST /_fake/accounts HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                     % len(body)).encode())
            head = cc.read_until(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 100"), "100-continue %r" % head)
            cc.send(body)
            eq(cc.read_response().status, 200, "after 100")


def test_client_abort_is_recorded():
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        fake.script({"events": [{"text": "x"}] * 100, "chunk": 0,
                     "delay_ms": 50})
        s = socket.create_connection(("127.0.0.1", fake.port))
        body = json.dumps(gar_body()).encode()
        s.sendall(build_request("POST", "/generateAssistantResponse",
                                [("Authorization", "Bearer " + at),
                                 ("Content-Type", "application/json")],
                                body))
        s.recv(100)
        s.close()
        r = wait_for(lambda: (lambda x: x if x.get("stream") == "aborted"
                              else None)(last_req(fake)), 3,
                     what="stream recorded as aborted")
        check(r["bytes_sent"] < 100 * 127, "kept writing: %d bytes"
              % r["bytes_sent"])
        eq(fake.stats().get("streams_active", 0), 0, "no stream left")


# ---------------------------------------------------------------------
# fixtures

def test_fixtures_record_and_replay():
    bins = sorted(glob.glob(os.path.join(FIXTURES, "*.bin")))
    check(len(bins) >= 6, "only %d recordings" % len(bins))
    want = {"text_only": "The capital of France is Paris. Ünïcödé ✓ 漢字.",
            "thinking": "<thinking>\nThe user asks 2+2. Simple arithmetic:"
                        " `</thinking>` is not the end.</thinking>\n\n"
                        "2 + 2 = 4."}
    for b in bins:
        name = os.path.basename(b)[:-4]
        src = b[:-4] + ".json"
        out = os.path.join(qrtest.tempfile.gettempdir(),
                           "qrfake-%d-%s.bin" % (os.getpid(), name))
        try:
            subprocess.run([sys.executable, FAKEQ, "--record", out, src],
                           check=True)
            with open(out, "rb") as f, open(b, "rb") as g:
                eq(f.read(), g.read(), "%s: --record reproduces the fixture"
                   % name)
        finally:
            if os.path.exists(out):
                os.unlink(out)
        with open(b, "rb") as f:
            data = f.read()
        if name == "corrupt_crc":
            try:
                decode_all(data)
                raise TestFailure("corrupt_crc.bin decodes cleanly")
            except DecodeError:
                continue
        evs = events_of(decode_all(data))
        if name in want:
            eq(text_of(evs), want[name], name + " text")
        if name == "tool_fragments":
            tu = [p for k, t, p in evs if t == "toolUseEvent"]
            eq(len(tu), 6, "tool frames")
            eq(json.loads("".join(p.get("input", "") for p in tu)),
               {"city": "Paris", "units": "metric", "days": [1, 2, 3]},
               "tool input")
        if name == "awsjson_initial":
            eq(evs[0][1], "initial-response", "initial first")
        if name in ("exception_midstream", "content_length_exceeded"):
            eq(evs[-1][0], "exception", name + " ends in an exception")
    with FakeUpstream() as fake:
        rt, at = token_for(fake)
        for b in bins:
            fake.script({"replay": os.path.basename(b), "chunk": "random"})
            st, h, chunks, done = raw_gar(fake, at, gar_body())
            with open(b, "rb") as f:
                eq(b"".join(chunks), f.read(), "replay of " + b)
            check(done and len(chunks) > 1, "replay split and terminated")
        try:
            fake.script({"replay": "no-such.bin"})
            raise TestFailure("missing recording accepted")
        except qrtest.TestFailure as e:
            check("400" in str(e), "error %s" % e)


# ---------------------------------------------------------------------
# many connections, the qrtest plumbing

def test_many_concurrent_slow_streams():
    import selectors
    n = int(os.environ.get("QRFAKE_STREAMS", "500"))
    with FakeUpstream(quiet=True) as fake:
        rt, at = token_for(fake)
        fake.config(default={"events": [{"text": "s"}] * 5, "chunk": 0,
                             "delay_ms": 200})
        req = build_request("POST", "/generateAssistantResponse",
                            [("Authorization", "Bearer " + at),
                             ("Content-Type", "application/json"),
                             ("Connection", "close")],
                            json.dumps(gar_body()))
        sel = selectors.DefaultSelector()
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", fake.port))
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, bytearray())
            socks.append(s)
        wait_for(lambda: fake.stats().get("streams_active", 0) >= n * 0.9,
                 10, what="most streams open at once")
        open_ = len(socks)
        deadline = time.monotonic() + 30
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                try:
                    d = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if d:
                    key.data.extend(d)
                else:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_ -= 1
        eq(open_, 0, "streams still open")
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        rs = [r for r in fake.requests() if r["path"] ==
              "/generateAssistantResponse"]
        eq(len(rs), n, "requests recorded")
        bad = [r for r in rs if r.get("stream") != "complete"]
        eq(bad, [], "incomplete streams")


def test_daemon_config_points_at_fake():
    fake = FakeUpstream()
    d = qrtest.Daemon(upstream=fake, start=False)
    text = open(d.conf).read()
    for k in ("q_endpoint", "oidc_endpoint", "kiro_auth_endpoint"):
        check('%s = "%s";' % (k, fake.url) in text,
              "config lacks %s: %s" % (k, text))
    eq(fake.url(), str(fake.url), "url callable")
    d2 = qrtest.Daemon(upstream="http://127.0.0.1:9", start=False,
                       top={"upstream": {"connect_timeout": 3}})
    text = open(d2.conf).read()
    check('q_endpoint = "http://127.0.0.1:9"' in text and
          "connect_timeout = 3" in text, "merged upstream group: %s" % text)
    if os.access(qrtest.QRELAYD, os.X_OK):
        d.start()
        check(d.healthy(), "qrelayd starts with the fake's upstream config")
    eq(fake.stop(), 0, "fakeq exits 0 on SIGTERM")
