#!/usr/bin/env python3
"""fakeq - a fake Amazon Q / Kiro upstream for qrelay's tests.

    python3 tests/fake/fakeq.py --port-file PATH [--port N] [--quiet]
    python3 tests/fake/fakeq.py --record OUT.bin SCRIPT_JSON

One process plays the three upstream hosts qrelayd talks to: the Q
service (generateAssistantResponse in its REST-JSON and awsJson1_0
flavours, getUsageLimits, ListAvailableModels), AWS SSO OIDC
(/client/register, /device_authorization, /token) and the Kiro auth
service (/refreshToken).  Plain HTTP/1.1 on 127.0.0.1, one asyncio loop,
no thread per connection, so it holds tens of thousands of slow streams.

The event-stream encoder below is written from the wire format in
shared/reference/upstream-protocol.md (sections 3.1-3.3), not derived
from the daemon's decoder.  Responses are written the way TCP delivers
them: split at arbitrary byte offsets across frame boundaries, each
piece its own HTTP chunk, flushed before the next.  Tests steer it
through the /_fake/ control endpoints; see tests/fake/README.

Python 3.11 standard library only.
"""

import argparse
import asyncio
import base64
import binascii
import calendar
import collections
import functools
import http
import json
import os
import random
import re
import resource
import secrets
import signal
import socket
import struct
import sys
import time
import traceback
import urllib.parse
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "streams")
REPO = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------
# event-stream encoder (reference section 3)

HDR_TRUE, HDR_FALSE, HDR_BYTE, HDR_INT16, HDR_INT32, HDR_INT64, \
    HDR_BYTES, HDR_STRING, HDR_TIMESTAMP, HDR_UUID = range(10)


def encode_headers(headers):
    """headers: list of (name, value) strings or (name, type, value)."""
    out = bytearray()
    for h in headers:
        if len(h) == 2:
            name, htype, value = h[0], HDR_STRING, h[1]
        else:
            name, htype, value = h
        nb = name.encode("utf-8")
        if not 1 <= len(nb) <= 255:
            raise ValueError("header name length %d" % len(nb))
        out += struct.pack(">B", len(nb)) + nb + struct.pack(">B", htype)
        if htype in (HDR_TRUE, HDR_FALSE):
            pass
        elif htype == HDR_BYTE:
            out += struct.pack(">b", value)
        elif htype == HDR_INT16:
            out += struct.pack(">h", value)
        elif htype == HDR_INT32:
            out += struct.pack(">i", value)
        elif htype in (HDR_INT64, HDR_TIMESTAMP):
            out += struct.pack(">q", value)
        elif htype in (HDR_BYTES, HDR_STRING):
            vb = value.encode("utf-8") if isinstance(value, str) else value
            if len(vb) > 32767:
                raise ValueError("header value length %d" % len(vb))
            out += struct.pack(">H", len(vb)) + vb
        elif htype == HDR_UUID:
            vb = value.bytes if isinstance(value, uuid.UUID) else value
            if len(vb) != 16:
                raise ValueError("uuid header must be 16 bytes")
            out += vb
        else:
            raise ValueError("header type %r" % htype)
    return bytes(out)


@functools.lru_cache(maxsize=256)
def _cached_headers(headers):
    return encode_headers(headers)


def encode_frame(headers, payload=b"", corrupt_crc=False):
    """One event-stream message: prelude (total, headers length, CRC of
    those 8 bytes), headers, payload, CRC of everything before it."""
    try:
        hb = _cached_headers(tuple(headers))
    except TypeError:       # an unhashable value (a bytearray)
        hb = encode_headers(headers)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    total = 16 + len(hb) + len(payload)
    prelude = struct.pack(">II", total, len(hb))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + hb + payload
    crc = zlib.crc32(msg)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    return msg + struct.pack(">I", crc)


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def event_frame(event_type, payload, corrupt_crc=False):
    return encode_frame([(":event-type", event_type),
                         (":content-type", "application/json"),
                         (":message-type", "event")],
                        json_bytes(payload) if not isinstance(
                            payload, (bytes, str)) else payload,
                        corrupt_crc)


def exception_frame(exc_type, payload, corrupt_crc=False):
    return encode_frame([(":exception-type", exc_type),
                         (":content-type", "application/json"),
                         (":message-type", "exception")],
                        json_bytes(payload), corrupt_crc)


def error_frame(code, message, corrupt_crc=False):
    return encode_frame([(":error-code", code), (":error-message", message),
                         (":message-type", "error")], b"", corrupt_crc)


# ---------------------------------------------------------------------
# turning a scripted response into stream items

DEFAULT_EVENTS = [{"text": "Hello"}, {"text": " from"}, {"text": " fakeq."},
                  {"metering": 0.017}, {"context": 1.25}]


def split_parts(s, n):
    if n <= 0:
        return []
    if n == 1 or len(s) <= 1:
        return [s]
    n = min(n, len(s))
    step, extra = divmod(len(s), n)
    out, i = [], 0
    for k in range(n):
        j = i + step + (1 if k < extra else 0)
        out.append(s[i:j])
        i = j
    return out


def build_items(events, initial=None):
    """Script events -> list of ("bytes", b) | ("sleep", ms) | ("cut", how)
    | ("metering", credits).  initial: payload of an initial-response
    frame to put first (awsJson flavour), or None."""
    items = []
    corrupt = [False]

    def frame(make, *a):
        b = make(*a, corrupt_crc=corrupt[0])
        corrupt[0] = False
        items.append(("bytes", b))

    if initial is not None:
        frame(event_frame, "initial-response", initial)
    for e in events:
        if not isinstance(e, dict):
            raise ValueError("event must be an object: %r" % (e,))
        if "text" in e:
            frame(event_frame, "assistantResponseEvent",
                  {"content": str(e["text"])})
        elif "tool" in e:
            t = e["tool"]
            tid = t.get("id") or "tooluse_" + secrets.token_hex(8)
            name = t.get("name", "tool")
            inp = t.get("input", "{}")
            if not isinstance(inp, str):
                inp = json.dumps(inp, separators=(",", ":"))
            parts = split_parts(inp, int(t.get("parts", 2)))
            first = {"name": name, "toolUseId": tid}
            if t.get("first_input") and parts:
                first["input"] = parts.pop(0)
            frame(event_frame, "toolUseEvent", first)
            for p in parts:
                frame(event_frame, "toolUseEvent",
                      {"name": name, "toolUseId": tid, "input": p})
            if t.get("stop", True):
                frame(event_frame, "toolUseEvent",
                      {"name": name, "toolUseId": tid, "stop": True})
        elif "reasoning" in e:
            p = {"text": str(e["reasoning"])}
            if "signature" in e:
                p["signature"] = e["signature"]
            frame(event_frame, "reasoningContentEvent", p)
        elif "metering" in e:
            frame(event_frame, "meteringEvent",
                  {"unit": "credit", "unitPlural": "credits",
                   "usage": e["metering"]})
            items.append(("metering", float(e["metering"])))
        elif "context" in e:
            frame(event_frame, "contextUsageEvent",
                  {"contextUsagePercentage": e["context"]})
        elif "metadata" in e:
            frame(event_frame, "metadataEvent", e["metadata"])
        elif "exception" in e:
            p = {"message": e.get("message", "An exception occurred.")}
            if "reason" in e:
                p["reason"] = e["reason"]
            frame(exception_frame, e["exception"], p)
        elif "error_frame" in e:
            ef = e["error_frame"]
            frame(error_frame, ef.get("code", "InternalError"),
                  ef.get("message", "internal error"))
        elif "event" in e:
            frame(event_frame, e["event"], e.get("payload", {}))
        elif "raw_hex" in e:
            items.append(("bytes", binascii.unhexlify(
                re.sub(r"\s+", "", e["raw_hex"]))))
        elif "sleep_ms" in e:
            items.append(("sleep", float(e["sleep_ms"])))
        elif "cut" in e:
            items.append(("cut", e["cut"]))
        elif "corrupt_crc" in e:
            corrupt[0] = bool(e["corrupt_crc"])
        else:
            raise ValueError("unknown event %r" % (e,))
    return items


_items_cache = {}


def cached_items(events, initial):
    """build_items for the events list of a script entry used many times
    (the default answer, "times": 0): encode once, not per stream."""
    if any("tool" in e and not e["tool"].get("id") for e in events
           if isinstance(e, dict)):
        return build_items(events, initial)
    key = id(events)
    hit = _items_cache.get(key)
    if hit is None or hit[0] is not events:
        if len(_items_cache) > 64:
            _items_cache.clear()
        hit = (events, build_items(events))
        _items_cache[key] = hit
    if initial is None:
        return hit[1]
    return build_items([], initial) + hit[1]


def resolve_path(p):
    if os.path.isabs(p):
        return p
    for base in (os.getcwd(), FIXTURES, REPO):
        q = os.path.join(base, p)
        if os.path.exists(q):
            return q
    return os.path.join(FIXTURES, p)


def stream_bytes(items):
    out = bytearray()
    for kind, v in items:
        if kind == "bytes":
            out += v
        elif kind == "cut":
            break
    return bytes(out)


# ---------------------------------------------------------------------
# fixed answers of the real service (reference sections 4, 5)

VALIDATION = "com.amazon.aws.codewhisperer#ValidationException"
IMPROPER = {"__type": VALIDATION, "message": "Improperly formed request."}
BEARER_INVALID = {"message":
                  "The bearer token included in the request is invalid."}
TOO_LONG = {"message": "Input is too long.",
            "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"}
INVALID_MODEL = {"__type": VALIDATION,
                 "message": "Invalid model. Please select a different "
                            "model to continue.",
                 "reason": "INVALID_MODEL_ID"}
TOOL_MISMATCH = {"__type": VALIDATION,
                 "message": "Improperly formed request.",
                 "reason": "TOOL_USE_RESULT_MISMATCH"}
UNKNOWN_OP = {"__type": "com.amazon.coral.service#UnknownOperationException"}

DEFAULT_ERROR_BODIES = {
    400: IMPROPER,
    401: BEARER_INVALID,
    402: {"message": "You have reached the limit.",
          "reason": "MONTHLY_REQUEST_COUNT"},
    403: BEARER_INVALID,
    429: {"__type": "com.amazon.kiro.runtimeservice#ThrottlingException",
          "message": "Too many requests, please wait before trying again.",
          "reason": "USER_REQUEST_RATE_EXCEEDED"},
    500: {"__type": "com.amazon.aws.codewhisperer#InternalServerException",
          "message": "Encountered an unexpected error when processing the "
                     "request, please try again."},
    503: {"__type": "com.amazon.aws.codewhisperer#InternalServerException",
          "message": "The model is temporarily unavailable, please try "
                     "again.",
          "reason": "MODEL_TEMPORARILY_UNAVAILABLE"},
}

# Named answers of the real service for scripted responses: R =
# {"preset": NAME} (status and body; R's own "status"/"body" win, so
# {"preset": "INSUFFICIENT_MODEL_CAPACITY", "status": 400} works).
SUSPENDED_MSG = ("Your User ID (d-9067642ac7.34488428-a041-70f4-c0dd-"
                 "33c8e7a1b2c4) temporarily is suspended. We've locked your "
                 "account as a security precaution. To unlock it, please "
                 "contact support.")
ERROR_PRESETS = {
    "THROTTLING": (429, DEFAULT_ERROR_BODIES[429]),
    "USER_REQUEST_RATE_EXCEEDED": (429, DEFAULT_ERROR_BODIES[429]),
    "DAILY_REQUEST_COUNT": (429, {
        "__type": "com.amazon.aws.codewhisperer#ThrottlingException",
        "message": "Daily request limit reached.",
        "reason": "DAILY_REQUEST_COUNT"}),
    "MONTHLY_REQUEST_COUNT": (402, DEFAULT_ERROR_BODIES[402]),
    "OVERAGE_REQUEST_LIMIT_EXCEEDED": (402, {
        "message": "You have reached the limit for overages.",
        "reason": "OVERAGE_REQUEST_LIMIT_EXCEEDED"}),
    "TEMPORARILY_SUSPENDED": (403, {
        "__type": "com.amazon.aws.codewhisperer#AccessDeniedException",
        "message": SUSPENDED_MSG, "reason": "TEMPORARILY_SUSPENDED"}),
    "INSUFFICIENT_MODEL_CAPACITY": (429, {
        "__type": "com.amazon.aws.codewhisperer#ThrottlingException",
        "message": "I am experiencing high traffic, please try again "
                   "shortly.",
        "reason": "INSUFFICIENT_MODEL_CAPACITY"}),
    "BEARER_INVALID": (403, BEARER_INVALID),
    "IMPROPER": (400, IMPROPER),
    "TOO_LONG": (400, TOO_LONG),
    "INTERNAL": (500, DEFAULT_ERROR_BODIES[500]),
    "HIGH_LOAD": (500, {
        "__type": "com.amazon.aws.codewhisperer#InternalServerException",
        "message": "Encountered unexpectedly high load when processing the "
                   "request, please try again."}),
    "UNAVAILABLE": (503, DEFAULT_ERROR_BODIES[503]),
}


def scripted_error(r):
    """(status, body, headers) of a scripted response R, the preset and
    "retry_after" applied; status 200 means a stream."""
    headers = dict(r.get("headers") or {})
    pre = r.get("preset")
    if pre is not None:
        if pre not in ERROR_PRESETS:
            raise ValueError("unknown preset %r" % (pre,))
        st, body = ERROR_PRESETS[pre]
        st = int(r.get("status", st))
        body = r.get("body", body)
    else:
        st = int(r.get("status", 200))
        body = r.get("body", DEFAULT_ERROR_BODIES.get(
            st, {"message": reason_phrase(st)}))
    if r.get("retry_after") is not None:
        headers["Retry-After"] = str(r["retry_after"])
    if isinstance(body, dict) and "__type" in body and not any(
            k.lower() == "x-amzn-errortype" for k in headers):
        headers["x-amzn-ErrorType"] = body["__type"].split("#")[-1]
    return st, body, headers


OIDC_EXC = {
    "authorization_pending": (400, "AuthorizationPendingException"),
    "slow_down": (400, "SlowDownException"),
    "expired_token": (400, "ExpiredTokenException"),
    "access_denied": (400, "AccessDeniedException"),
    "invalid_grant": (400, "InvalidGrantException"),
    "invalid_request": (400, "InvalidRequestException"),
    "invalid_scope": (400, "InvalidScopeException"),
    "unsupported_grant_type": (400, "UnsupportedGrantTypeException"),
    "invalid_client_metadata": (400, "InvalidClientMetadataException"),
    "invalid_client": (401, "InvalidClientException"),
    "server_error": (500, "InternalServerException"),
}

KNOWN_MODELS = ("claude-sonnet-4.5", "claude-sonnet-4", "claude-haiku-4.5",
                "claude-opus-4.5", "claude-opus-4.6", "claude-sonnet-4.6",
                "claude-3.7-sonnet", "CLAUDE_3_7_SONNET_20250219_V1_0",
                "CLAUDE_SONNET_4_5_20250929_V1_0",
                "CLAUDE_SONNET_4_20250514_V1_0", "auto")
LISTED_MODELS = [
    ("auto", "Auto", "Models chosen by task for optimal usage", 200000, 1.0),
    ("claude-sonnet-4.5", "Claude Sonnet 4.5",
     "The latest Claude Sonnet model", 200000, 1.3),
    ("claude-sonnet-4", "Claude Sonnet 4", "Hybrid reasoning and coding",
     200000, 1.3),
    ("claude-haiku-4.5", "Claude Haiku 4.5", "The latest Claude Haiku model",
     200000, 0.4),
    ("claude-opus-4.5", "Claude Opus 4.5", "The Claude Opus 4.5 model",
     200000, 2.2),
    ("claude-opus-4.6", "Claude Opus 4.6", "The Claude Opus 4.6 model",
     1000000, 2.2),
    ("claude-sonnet-4.6", "Claude Sonnet 4.6", "The Claude Sonnet 4.6 model",
     1000000, 1.3),
]
SOCIAL_ARN = ("arn:aws:codewhisperer:us-east-1:699475941385:"
              "profile/EHGA3GRVQMUK")

TRIGGERS = ("MANUAL", "DIAGNOSTIC", "INLINE_CHAT")
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
NAME_RX = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MODEL_RX = re.compile(r"^[a-zA-Z0-9_:.-]{1,1024}$")
ARN_RX = re.compile(r"^arn:aws:(codewhisperer|transform):[a-z0-9-]+:"
                    r"[0-9]{12}:profile/[a-zA-Z0-9]{12}$")
TARGET_GAR = "AmazonCodeWhispererStreamingService.GenerateAssistantResponse"


class Reject(Exception):
    def __init__(self, reason, body=IMPROPER, status=400):
        super().__init__(reason)
        self.reason, self.body, self.status = reason, body, status


def sniff_image(raw):
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if raw.startswith(b"GIF87a") or raw.startswith(b"GIF89a"):
        return "gif"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    return None


def _is_str(v):
    return isinstance(v, str)


def check_tools(tools, where):
    if not isinstance(tools, list):
        raise Reject("%s.tools is not a list" % where)
    for i, t in enumerate(tools):
        w = "%s.tools[%d]" % (where, i)
        if not isinstance(t, dict):
            raise Reject("%s is not an object" % w)
        if "cachePoint" in t and "toolSpecification" not in t:
            continue
        spec = t.get("toolSpecification")
        if not isinstance(spec, dict):
            raise Reject("%s.toolSpecification missing" % w)
        name = spec.get("name")
        if not _is_str(name) or not NAME_RX.match(name):
            raise Reject("%s name %r is not 1..64 of [a-zA-Z0-9_-]"
                         % (w, name))
        d = spec.get("description")
        if not _is_str(d) or not 1 <= len(d) <= 10240:
            raise Reject("%s (%s) description must be a string of "
                         "1..10240 chars (got %s)"
                         % (w, name, len(d) if _is_str(d) else type(d)))
        sch = spec.get("inputSchema")
        if not isinstance(sch, dict) or "json" not in sch:
            raise Reject("%s (%s) inputSchema.json missing" % (w, name))


def check_user(uim, where, prev_uses, strict):
    if not isinstance(uim, dict):
        raise Reject("%s.userInputMessage is not an object" % where)
    c = uim.get("content")
    if not _is_str(c):
        raise Reject("%s.content missing or not a string" % where)
    if len(c) > 10000000:
        raise Reject("%s.content longer than 10,000,000" % where)
    if "modelId" in uim:
        m = uim["modelId"]
        if not _is_str(m) or not MODEL_RX.match(m):
            raise Reject("%s.modelId %r malformed" % (where, m))
        if m not in KNOWN_MODELS:
            raise Reject("%s.modelId %r unknown: INVALID_MODEL_ID"
                         % (where, m), INVALID_MODEL)
    if "origin" in uim and not _is_str(uim["origin"]):
        raise Reject("%s.origin not a string" % where)
    imgs = uim.get("images")
    if imgs is not None:
        if not isinstance(imgs, list):
            raise Reject("%s.images is not a list" % where)
        if len(imgs) > 10:
            raise Reject("%s has %d images (max 10)" % (where, len(imgs)))
        for i, im in enumerate(imgs):
            w = "%s.images[%d]" % (where, i)
            if not isinstance(im, dict) or \
                    im.get("format") not in IMAGE_FORMATS:
                raise Reject("%s format must be one of %s"
                             % (w, "/".join(IMAGE_FORMATS)))
            src = im.get("source")
            b = src.get("bytes") if isinstance(src, dict) else None
            if not _is_str(b) or not b:
                raise Reject("%s.source.bytes missing" % w)
            try:
                raw = base64.b64decode(b, validate=True)
            except (binascii.Error, ValueError):
                raise Reject("%s.source.bytes is not base64" % w)
            if not 1 <= len(raw) <= 10000000:
                raise Reject("%s has %d bytes (1..10,000,000)"
                             % (w, len(raw)))
            got = sniff_image(raw)
            if got and got != im["format"]:
                raise Reject(
                    "%s declared %s but is %s: IMAGE_MIME_MISMATCH"
                    % (w, im["format"], got),
                    {"__type": VALIDATION,
                     "message": "messages.0.content.%d.image.source.base64:"
                                " The image was specified using the image/%s"
                                " media type, but the image appears to be a"
                                " image/%s image" % (i, im["format"], got),
                     "reason": "IMAGE_MIME_MISMATCH"})
    ctx = uim.get("userInputMessageContext")
    results = []
    if ctx is not None:
        if not isinstance(ctx, dict):
            raise Reject("%s.userInputMessageContext not an object" % where)
        if "tools" in ctx:
            check_tools(ctx["tools"], where + ".userInputMessageContext")
        trs = ctx.get("toolResults")
        if trs is not None:
            if not isinstance(trs, list):
                raise Reject("%s.toolResults is not a list" % where)
            for i, tr in enumerate(trs):
                w = "%s.toolResults[%d]" % (where, i)
                if not isinstance(tr, dict):
                    raise Reject("%s is not an object" % w)
                tid = tr.get("toolUseId")
                if not _is_str(tid) or not NAME_RX.match(tid):
                    raise Reject("%s.toolUseId %r malformed" % (w, tid))
                cont = tr.get("content")
                if not isinstance(cont, list):
                    raise Reject("%s.content must be a list" % w)
                for blk in cont:
                    if not isinstance(blk, dict) or not (
                            _is_str(blk.get("text")) or "json" in blk):
                        raise Reject("%s.content block must be {text} or "
                                     "{json}" % w)
                if "status" in tr and tr["status"] not in ("success",
                                                           "error"):
                    raise Reject("%s.status %r" % (w, tr["status"]))
                results.append(tid)
        if "envState" in ctx and not isinstance(ctx["envState"], dict):
            raise Reject("%s.envState not an object" % where)
    dup = [t for t, n in collections.Counter(results).items() if n > 1]
    if dup:
        raise Reject("%s: duplicate toolUseId %s in toolResults: "
                     "TOOL_USE_RESULT_MISMATCH" % (where, dup[0]),
                     TOOL_MISMATCH)
    if set(results) != set(prev_uses):
        missing = sorted(set(prev_uses) - set(results))
        extra = sorted(set(results) - set(prev_uses))
        raise Reject("%s: toolResults do not pair with the toolUses of the "
                     "preceding assistant message (without result: %s; "
                     "without toolUse: %s): TOOL_USE_RESULT_MISMATCH"
                     % (where, missing, extra), TOOL_MISMATCH)


def check_assistant(arm, where):
    if not isinstance(arm, dict):
        raise Reject("%s.assistantResponseMessage is not an object" % where)
    if not _is_str(arm.get("content")):
        raise Reject("%s.content missing or not a string" % where)
    uses = arm.get("toolUses")
    ids = []
    if uses is not None:
        if not isinstance(uses, list):
            raise Reject("%s.toolUses is not a list" % where)
        for i, u in enumerate(uses):
            w = "%s.toolUses[%d]" % (where, i)
            if not isinstance(u, dict):
                raise Reject("%s is not an object" % w)
            tid, name = u.get("toolUseId"), u.get("name")
            if not _is_str(tid) or not NAME_RX.match(tid):
                raise Reject("%s.toolUseId %r malformed" % (w, tid))
            if not _is_str(name) or not NAME_RX.match(name):
                raise Reject("%s.name %r malformed" % (w, name))
            if not isinstance(u.get("input"), dict):
                raise Reject("%s.input must be a JSON object" % w)
            ids.append(tid)
    if len(set(ids)) != len(ids):
        raise Reject("%s: duplicate toolUseId in toolUses" % where)
    return ids, [u.get("name") for u in uses or []]


def validate(doc, strict=False):
    """Raise Reject if the real service would refuse the request body."""
    if not isinstance(doc, dict):
        raise Reject("body is not a JSON object")
    cs = doc.get("conversationState")
    if not isinstance(cs, dict):
        raise Reject("conversationState missing or not an object")
    cid = cs.get("conversationId")
    if not _is_str(cid) or not 1 <= len(cid) <= 128:
        raise Reject("conversationId must be a string of 1..128 chars, "
                     "got %r" % (cid if not _is_str(cid) else len(cid)))
    if cs.get("chatTriggerType") not in TRIGGERS:
        raise Reject("chatTriggerType %r not in %s"
                     % (cs.get("chatTriggerType"), "|".join(TRIGGERS)))
    if "agentTaskType" in cs and cs["agentTaskType"] not in ("vibe",
                                                             "spectask"):
        raise Reject("agentTaskType %r" % cs["agentTaskType"])
    pa = doc.get("profileArn")
    if pa is not None:
        if not _is_str(pa):
            raise Reject("profileArn not a string")
        if strict and not ARN_RX.match(pa):
            raise Reject("profileArn %r does not match the ARN pattern" % pa)
    hist = cs.get("history")
    if hist is None:
        hist = []
    if not isinstance(hist, list):
        raise Reject("history is not a list")
    cm = cs.get("currentMessage")
    if not isinstance(cm, dict) or list(cm.keys()) != ["userInputMessage"]:
        raise Reject("currentMessage must be {\"userInputMessage\": ...}")
    roles = []
    for i, m in enumerate(hist):
        if not isinstance(m, dict) or len(m) != 1 or \
                next(iter(m)) not in ("userInputMessage",
                                      "assistantResponseMessage"):
            raise Reject("history[%d] must hold exactly one of "
                         "userInputMessage/assistantResponseMessage" % i)
        roles.append("user" if "userInputMessage" in m else "assistant")
    for i, r in enumerate(roles):
        want = "user" if i % 2 == 0 else "assistant"
        if r != want:
            raise Reject("history[%d] is a %s message; history must "
                         "alternate user/assistant starting with user"
                         % (i, r))
    if roles and roles[-1] != "assistant":
        raise Reject("history must end with an assistant message")
    prev_uses, used_names = [], set()
    for i, m in enumerate(hist):
        w = "history[%d]" % i
        if "userInputMessage" in m:
            check_user(m["userInputMessage"], w, prev_uses, strict)
            prev_uses = []
        else:
            prev_uses, names = check_assistant(m["assistantResponseMessage"],
                                               w)
            used_names.update(n.lower() for n in names)
    uim = cm["userInputMessage"]
    check_user(uim, "currentMessage", prev_uses, strict)
    if strict and used_names:
        ctx = uim.get("userInputMessageContext") or {}
        have = {(t.get("toolSpecification") or {}).get("name", "").lower()
                for t in ctx.get("tools") or []}
        missing = sorted(used_names - have)
        if missing:
            raise Reject("tools used in history are not defined: %s"
                         % ", ".join(missing))


# ---------------------------------------------------------------------
# state

class State:
    def __init__(self):
        self.config = {
            "too_long_bytes": 600000,
            "device_interval": 1,
            "device_expires_in": 600,
            "default": None,
            "max_records": 5000,
            "accept_any_token": False,
            "strict": False,
            "quiet": False,
            "refresh_delay_ms": 0,
        }
        self.stats = collections.Counter()
        self.reset()

    def reset(self):
        self.accounts = {}      # refresh token -> account dict
        self.tokens = {}        # access token -> {"rt", "exp"}
        self.clients = {}       # clientId -> {"secret", "exp"}
        self.devices = {}       # deviceCode -> device dict
        self.script = []
        self.records = collections.deque(
            maxlen=max(1, int(self.config["max_records"])))
        self.seq = 0
        self.reset_refresh_stats()

    def reset_refresh_stats(self):
        # refreshes (OIDC refresh_token grants, Kiro /refreshToken) in
        # flight, by account id ("aid": the first refresh token, kept
        # across rotation), to show overlap and parallelism
        self.refresh_inflight = collections.Counter()
        self.refresh = {"refresh_total": 0, "refresh_parallel": 0,
                        "refresh_max_parallel": 0,
                        "refresh_overlap_same_account": 0,
                        "refresh_by_account": collections.Counter(),
                        "refresh_overlap_accounts": []}

    def refresh_begin(self, aid):
        r = self.refresh
        r["refresh_total"] += 1
        r["refresh_parallel"] += 1
        r["refresh_max_parallel"] = max(r["refresh_max_parallel"],
                                        r["refresh_parallel"])
        if self.refresh_inflight[aid] > 0:
            r["refresh_overlap_same_account"] += 1
            if len(r["refresh_overlap_accounts"]) < 100:
                r["refresh_overlap_accounts"].append(
                    self.label_of_aid(aid))
        self.refresh_inflight[aid] += 1
        r["refresh_by_account"][self.label_of_aid(aid)] += 1

    def refresh_end(self, aid):
        self.refresh["refresh_parallel"] -= 1
        self.refresh_inflight[aid] -= 1
        if self.refresh_inflight[aid] <= 0:
            del self.refresh_inflight[aid]

    def label_of_aid(self, aid):
        a = self.accounts.get(aid)
        return (a.get("label") if a else None) or aid

    def refresh_stats(self):
        out = {k: v for k, v in self.refresh.items()}
        out["refresh_by_account"] = dict(self.refresh["refresh_by_account"])
        return out

    def add_account(self, spec):
        rt = spec.get("refreshToken") or "aorAAAA" + secrets.token_urlsafe(40)
        old = self.accounts.get(rt, {})
        kind = spec.get("kind", old.get("kind", "idc"))
        if kind not in ("idc", "social"):
            raise ValueError("kind must be idc or social")
        a = dict(old)
        a.update({"kind": kind, "refreshToken": rt})
        for k, dflt in (("clientId", None), ("clientSecret", None),
                        ("profileArn", SOCIAL_ARN if kind == "social"
                         else None),
                        ("expiresIn", 3600), ("rotate", False),
                        ("fail", None), ("usage", {}),
                        ("email", "user@example.com"), ("label", None)):
            a[k] = spec.get(k, old.get(k, dflt))
        a.setdefault("aid", rt)
        a.setdefault("revoked", False)
        a.setdefault("refreshes", 0)
        a.setdefault("credits", 0.0)
        a.setdefault("userId", "d-" + secrets.token_hex(5) + "." +
                     str(uuid.uuid4()))
        if "revoked" in spec:
            a["revoked"] = bool(spec["revoked"])
        self.accounts[rt] = a
        return a

    def find_account(self, key):
        """The live account of a refresh token, first refresh token
        (aid) or label; rotation followed."""
        a = self.accounts.get(key) if key else None
        if a is None and key:
            for b in self.accounts.values():
                if b.get("label") == key or b.get("aid") == key:
                    a = b
                    if not b.get("rotated_to"):
                        break
        seen = 0
        while a is not None and a.get("rotated_to") and seen < 1000:
            a = self.accounts.get(a["rotated_to"])
            seen += 1
        return a

    def issue(self, rt):
        a = self.accounts[rt]
        at = "aoaAAAA" + secrets.token_urlsafe(48)
        self.tokens[at] = {"rt": rt, "exp": time.time() + a["expiresIn"]}
        return at, a["expiresIn"]

    def account_of(self, headers):
        """(account or None, error) for the request's bearer token."""
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            if self.config["accept_any_token"]:
                return None, None
            return None, "no bearer token"
        tok = auth[7:].strip()
        t = self.tokens.get(tok)
        if t is None:
            if self.config["accept_any_token"]:
                return None, None
            return None, "unknown bearer token"
        if t["exp"] <= time.time():
            # the account is still named in the record (a test asks
            # which account's token was refused)
            return self.accounts.get(t["rt"]), "expired bearer token"
        return self.accounts.get(t["rt"]), None

    def take_script(self, endpoint, body_text, acct):
        for i, r in enumerate(self.script):
            if r.get("endpoint", "assistant") != endpoint:
                continue
            m = r.get("match")
            if m is not None and m not in body_text:
                continue
            ra = r.get("account")
            if ra is not None and (acct is None or ra not in (
                    acct["refreshToken"], acct.get("aid"),
                    acct.get("label"))):
                continue
            times = r.get("times", 1)
            if times in (0, -1, None) or times == "forever":
                return r
            if times <= 1:
                del self.script[i]
            else:
                r["times"] = times - 1
            return r
        return None


STATE = State()


def log(msg):
    if not STATE.config["quiet"]:
        sys.stderr.write("fakeq: %s\n" % msg)
        sys.stderr.flush()


# ---------------------------------------------------------------------
# HTTP plumbing

class Closed(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method, self.version = method, version
        u = urllib.parse.urlsplit(target)
        self.path = u.path or "/"
        self.query = dict(urllib.parse.parse_qsl(u.query,
                                                 keep_blank_values=True))
        self.raw_query = u.query
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        if not self.body:
            return {}
        return json.loads(self.body)

    def ctype(self):
        return self.headers.get("content-type", "").split(";")[0].strip() \
            .lower()


class Conn:
    """A connection with its own read buffer, so a watcher can read
    (to notice the client going away) while a stream is written."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.buf = bytearray()
        self.eof = False

    async def fill(self):
        data = await self.r.read(65536)
        if not data:
            self.eof = True
            raise Closed()
        self.buf += data

    async def readuntil(self, sep, limit):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            start = max(0, len(self.buf) - len(sep) + 1)
            await self.fill()

    async def readexactly(self, n):
        while len(self.buf) < n:
            await self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def write(self, data):
        self.w.write(data)
        await self.w.drain()

    async def watch_eof(self):
        """Return when the client closes its side."""
        try:
            while True:
                data = await self.r.read(65536)
                if not data:
                    self.eof = True
                    return
                self.buf += data
        except (ConnectionError, OSError):
            self.eof = True


def reason_phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status %d" % status


def head_bytes(status, headers):
    lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status))]
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def base_headers():
    return [("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                   time.gmtime())),
            ("x-amzn-RequestId", str(uuid.uuid4()))]


class Exchange:
    """One request being answered; records what happened."""

    def __init__(self, conn, req, rec, keep):
        self.conn, self.req, self.rec, self.keep = conn, req, rec, keep

    def note(self, status, error=None):
        if self.rec is not None:
            self.rec["status"] = status
            if error:
                self.rec["error"] = error
        STATE.stats["status_%d" % status] += 1
        log("%s %s -> %d%s" % (self.req.method, self.req.path, status,
                               (" (%s)" % error) if error else ""))

    async def send(self, status, body, headers=None, error=None,
                   ctype="application/json"):
        if isinstance(body, (dict, list)):
            data = json_bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = body or b""
        hdrs = base_headers()
        given = {k.lower(): v for k, v in (headers or {}).items()}
        if "content-type" not in given:
            hdrs.append(("Content-Type", ctype))
        hdrs.extend((headers or {}).items())
        hdrs.append(("Content-Length", str(len(data))))
        if not self.keep:
            hdrs.append(("Connection", "close"))
        self.note(status, error)
        await self.conn.write(head_bytes(status, hdrs) + data)

    async def reject(self, rj):
        hdrs = {}
        if isinstance(rj.body, dict) and "__type" in rj.body:
            hdrs["x-amzn-ErrorType"] = rj.body["__type"].split("#")[-1]
        await self.send(rj.status, rj.body, hdrs, error=rj.reason)

    async def oidc_error(self, code, desc=None, error=None):
        status, exc = OIDC_EXC[code]
        await self.send(status, {"error": code, "error_description": desc},
                        {"x-amzn-ErrorType": exc}, error=error or code)


# ---------------------------------------------------------------------
# writing a stream

def chunk_sizer(chunk, rng):
    """Bytes per write: None -> random 1..512, "random" -> 1..64,
    [lo, hi] -> random lo..hi, N > 0 -> N, 0 -> one write per frame."""
    if chunk is None:
        return lambda: rng.randint(1, 512)
    if chunk == "random":
        return lambda: rng.randint(1, 64)
    if isinstance(chunk, list) and len(chunk) == 2:
        lo, hi = int(chunk[0]), int(chunk[1])
        return lambda: rng.randint(max(1, lo), max(1, lo, hi))
    n = int(chunk)
    if n <= 0:
        return None
    return lambda: n


async def write_stream(ex, items, chunk, delay_ms, rng):
    """Write items as HTTP chunks; returns "complete" or "cut"."""
    conn = ex.conn
    sizer = chunk_sizer(chunk, rng)
    delay = max(0.0, float(delay_ms or 0)) / 1000.0
    first = [True]
    sent = [0]

    async def put(piece):
        if not first[0] and delay:
            await asyncio.sleep(delay)
        first[0] = False
        await conn.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent[0] += len(piece)
        ex.rec["bytes_sent"] = sent[0]

    pending = bytearray()

    async def flush():
        if sizer is None:
            return
        while pending:
            n = sizer()
            piece = bytes(pending[:n])
            del pending[:n]
            await put(piece)

    for kind, v in items:
        if kind == "bytes":
            if sizer is None:
                await put(v)
            else:
                pending += v
        elif kind == "sleep":
            await flush()
            await asyncio.sleep(v / 1000.0)
        elif kind == "cut":
            await flush()
            if v == "rst":
                sock = conn.w.get_extra_info("socket")
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                except OSError:
                    pass
                conn.w.transport.abort()
            else:
                conn.w.close()
            return "cut"
        elif kind == "metering" and ex.rec.get("_acct") is not None:
            ex.rec["_acct"]["credits"] += v
    await flush()
    await conn.write(b"0\r\n\r\n")
    return "complete"


async def send_stream(ex, r, items, extra_headers, flavour, cid):
    hdrs = base_headers()
    hdrs.append(("Content-Type", "application/vnd.amazon.eventstream"))
    hdrs.append(("Transfer-Encoding", "chunked"))
    if flavour == "rest":
        hdrs.append(("x-amzn-codewhisperer-conversation-id", cid))
    hdrs.extend(extra_headers.items())
    if not ex.keep:
        hdrs.append(("Connection", "close"))
    ex.note(200)
    ex.rec["stream"] = "open"
    ex.rec["bytes_sent"] = 0
    seed = r.get("seed")
    rng = random.Random(seed) if seed is not None else random.Random()
    STATE.stats["streams_active"] += 1
    STATE.stats["streams_total"] += 1
    watcher = asyncio.ensure_future(ex.conn.watch_eof())
    writer = asyncio.ensure_future(_stream_body(ex, hdrs, items, r, rng))
    try:
        done, _ = await asyncio.wait({watcher, writer},
                                     return_when=asyncio.FIRST_COMPLETED)
        if writer in done:
            outcome = writer.result()
        else:
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, Exception):
                pass
            outcome = "aborted"
    except (ConnectionError, OSError):
        outcome = "aborted"
    finally:
        if not watcher.done():
            watcher.cancel()
        STATE.stats["streams_active"] -= 1
    ex.rec["stream"] = outcome
    ex.rec["t_end"] = time.time()
    ex.rec.pop("_acct", None)
    if outcome == "aborted":
        STATE.stats["streams_aborted"] += 1
        log("stream aborted by the client after %d bytes"
            % ex.rec["bytes_sent"])
        raise Closed()
    if outcome == "cut":
        raise Closed()


async def _stream_body(ex, hdrs, items, r, rng):
    try:
        await ex.conn.write(head_bytes(200, hdrs))
        return await write_stream(ex, items, r.get("chunk"),
                                  r.get("delay_ms"), rng)
    except (ConnectionError, OSError):
        return "aborted"


# ---------------------------------------------------------------------
# handlers: the Q service

async def h_assistant(ex, flavour):
    req, rec = ex.req, ex.rec
    acct, err = STATE.account_of(req.headers)
    if err:
        note_account(rec, acct)
        return await ex.send(403, BEARER_INVALID, error="bearer-invalid: "
                             + err)
    note_account(rec, acct)
    if len(req.body) > STATE.config["too_long_bytes"]:
        return await ex.reject(Reject(
            "body of %d bytes is over %d: CONTENT_LENGTH_EXCEEDS_THRESHOLD"
            % (len(req.body), STATE.config["too_long_bytes"]), TOO_LONG))
    try:
        doc = json.loads(req.body)
    except ValueError as e:
        return await ex.reject(Reject("body is not JSON: %s" % e))
    try:
        validate(doc, STATE.config["strict"])
    except Reject as rj:
        return await ex.reject(rj)
    if acct and acct.get("fail"):
        f = acct["fail"]
        st = int(f.get("status", 403))
        return await ex.send(st, f.get("body", DEFAULT_ERROR_BODIES.get(
            st, {"message": reason_phrase(st)})), f.get("headers"),
            error="account fail %d" % st)
    r = STATE.take_script("assistant", req.text(), acct)
    if r is not None:
        rec["script"] = True
    else:
        r = STATE.config["default"] or {}
    cid = doc["conversationState"]["conversationId"]
    if r.get("delay_first_ms"):
        await asyncio.sleep(float(r["delay_first_ms"]) / 1000.0)
    if r.get("too_long"):
        return await ex.reject(Reject("scripted too_long: "
                                      "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
                                      TOO_LONG))
    if r.get("drop"):
        return await drop_connection(ex, r)
    status, body, headers = scripted_error(r)
    if status != 200:
        if r.get("delay_ms"):
            await asyncio.sleep(float(r["delay_ms"]) / 1000.0)
        return await ex.send(status, body, headers,
                             error="scripted %d" % status)
    if "replay" in r:
        path = resolve_path(r["replay"])
        with open(path, "rb") as f:
            items = [("bytes", f.read())]
    else:
        initial = None
        if flavour == "awsjson" and r.get("initial", True) is not False:
            initial = r["initial"] if isinstance(r.get("initial"), dict) \
                else {"conversationId": cid}
        items = cached_items(r.get("events", DEFAULT_EVENTS), initial)
    rec["_acct"] = acct
    await send_stream(ex, r, items, headers, flavour, cid)


def next_reset():
    t = time.gmtime()
    y, m = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    ts = calendar.timegm((y, m, 1, 0, 0, 0))
    return ts, max(0, int((ts - time.time()) // 86400))


async def scripted_simple(ex, endpoint, acct=None):
    """A scripted answer for a non-stream endpoint, or False."""
    r = STATE.take_script(endpoint, ex.req.text(), acct)
    if r is None:
        return False
    if r.get("delay_ms"):
        await asyncio.sleep(float(r["delay_ms"]) / 1000.0)
    ex.rec["script"] = True
    if r.get("drop"):
        await drop_connection(ex, r)
    st, body, headers = scripted_error(r)
    await ex.send(st, body, headers, error="scripted %d" % st)
    return True


async def drop_connection(ex, r):
    """R "drop": close the connection without a byte of answer (true:
    FIN; "rst": reset), as a dead upstream host would."""
    ex.rec["error"] = "dropped (%s)" % r["drop"]
    ex.rec["stream"] = "dropped"
    STATE.stats["dropped"] += 1
    log("%s %s -> dropped" % (ex.req.method, ex.req.path))
    if r["drop"] == "rst":
        sock = ex.conn.w.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except OSError:
            pass
        ex.conn.w.transport.abort()
    else:
        ex.conn.w.close()
    raise Closed()


def note_account(rec, acct):
    """Record which account made a request: its refresh token (as
    sent), its first refresh token ("aid") and its label."""
    if rec is None:
        return
    rec["account"] = acct["refreshToken"] if acct else None
    rec["aid"] = acct.get("aid") if acct else None
    rec["label"] = acct.get("label") if acct else None


def set_usage(a, d):
    """POST /_fake/usage: what getUsageLimits says for account a.
    "used" restarts the count (metered credits add to it from now on)."""
    u = dict(a.get("usage_set") or {})
    if "used" in d:
        u["used"] = float(d["used"])
        a["credits"] = 0.0
    if "limit" in d:
        u["limit"] = float(d["limit"])
    if "nextDateReset" in d:
        u["nextDateReset"] = float(d["nextDateReset"])
    if "subscription" in d:
        u["subscription"] = str(d["subscription"])
    if "email" in d:
        a["email"] = str(d["email"])
    if "freeTrial" in d:        # {"limit","used","status","expiry"}
        u["freeTrial"] = dict(d["freeTrial"]) if d["freeTrial"] else None
    a["usage_set"] = u


def usage_answer(acct):
    """The getUsageLimits JSON of reference 5.3 for acct (or None)."""
    u = (acct or {}).get("usage_set") or {}
    reset_ts, days = next_reset()
    if "nextDateReset" in u:
        reset_ts = u["nextDateReset"]
        days = max(0, int((reset_ts - time.time()) // 86400))
    used = u.get("used", 0.0) + (acct["credits"] if acct else 0.0)
    used = round(used, 6)
    limit = u.get("limit", 1000.0)
    bd = {"resourceType": "CREDIT", "unit": "INVOCATIONS",
          "displayName": "Credit", "displayNamePlural": "Credits",
          "usageLimit": int(limit), "usageLimitWithPrecision": float(limit),
          "currentUsage": int(used), "currentUsageWithPrecision": used,
          "currentOverages": 0, "currentOveragesWithPrecision": 0.0,
          "overageCap": 10000, "overageCapWithPrecision": 10000.0,
          "overageRate": 0.04, "overageCharges": 0.0, "currency": "USD",
          "nextDateReset": float(reset_ts), "bonuses": []}
    ft = u.get("freeTrial")
    if ft:
        bd["freeTrialInfo"] = {
            "freeTrialStatus": ft.get("status", "ACTIVE"),
            "freeTrialExpiry": float(ft.get("expiry", reset_ts)),
            "usageLimit": int(ft.get("limit", 500)),
            "usageLimitWithPrecision": float(ft.get("limit", 500)),
            "currentUsage": int(ft.get("used", 0)),
            "currentUsageWithPrecision": float(ft.get("used", 0))}
    if acct:
        bd.update(acct.get("usage") or {})
    return {"daysUntilReset": days, "nextDateReset": float(reset_ts),
            "limits": [],
            "overageConfiguration": {"overageStatus": "DISABLED"},
            "subscriptionInfo": {
                "subscriptionTitle": u.get("subscription", "KIRO PRO+"),
                "type": "Q_DEVELOPER_STANDALONE_PRO_PLUS",
                "subscriptionManagementTarget": "MANAGE",
                "overageCapability": "OVERAGE_CAPABLE",
                "upgradeCapability": "UPGRADE_CAPABLE"},
            "userInfo": {"email": acct["email"] if acct else
                         "user@example.com",
                         "userId": acct["userId"] if acct else "d-0"},
            "usageBreakdownList": [bd]}


async def h_usage(ex, params):
    acct, err = STATE.account_of(ex.req.headers)
    if err:
        note_account(ex.rec, acct)
        return await ex.send(403, BEARER_INVALID,
                             error="bearer-invalid: " + err)
    note_account(ex.rec, acct)
    if await scripted_simple(ex, "usage", acct):
        return
    await ex.send(200, usage_answer(acct))


async def h_models(ex, params):
    acct, err = STATE.account_of(ex.req.headers)
    if err:
        note_account(ex.rec, acct)
        return await ex.send(403, BEARER_INVALID,
                             error="bearer-invalid: " + err)
    note_account(ex.rec, acct)
    if await scripted_simple(ex, "models", acct):
        return
    if not params.get("origin"):
        return await ex.reject(Reject(
            "origin missing",
            {"__type": VALIDATION,
             "message": "1 validation error detected: Value null at "
                        "'origin' failed to satisfy constraint: Member must "
                        "not be null"}))
    models = [{"modelId": mid, "modelName": name, "description": desc,
               "tokenLimits": {"maxInputTokens": ctx,
                               "maxOutputTokens": 64000},
               "supportedInputTypes": ["TEXT", "IMAGE"],
               "rateMultiplier": rate, "rateUnit": "Credit",
               "supportsPromptCache": True}
              for mid, name, desc, ctx, rate in LISTED_MODELS]
    try:
        start = int(params.get("nextToken") or 0)
        n = int(params.get("maxResults") or 50)
    except (TypeError, ValueError):
        return await ex.reject(Reject("bad maxResults/nextToken"))
    if not 1 <= n <= 100:
        return await ex.reject(Reject("maxResults %d not in 1..100" % n))
    body = {"models": models[start:start + n],
            "defaultModel": models[0]}
    if start + n < len(models):
        body["nextToken"] = str(start + n)
    await ex.send(200, body)


async def h_profiles(ex, params):
    acct, err = STATE.account_of(ex.req.headers)
    if err:
        note_account(ex.rec, acct)
        return await ex.send(403, BEARER_INVALID,
                             error="bearer-invalid: " + err)
    arn = (acct or {}).get("profileArn") or \
        "arn:aws:codewhisperer:us-east-1:123456789012:profile/FAKEPROFILE1"
    await ex.send(200, {"profiles": [{"arn": arn,
                                      "profileName": "fakeq-profile"}]})


# ---------------------------------------------------------------------
# handlers: OIDC and Kiro auth

def body_json(ex):
    try:
        d = ex.req.json()
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


async def h_register(ex):
    if await scripted_simple(ex, "register"):
        return
    d = body_json(ex)
    if d is None or not _is_str(d.get("clientName")) or \
            not _is_str(d.get("clientType")):
        return await ex.oidc_error("invalid_request",
                                   "clientName and clientType are required")
    if d["clientType"] != "public":
        return await ex.oidc_error("invalid_client_metadata",
                                   "Invalid client type")
    cid = secrets.token_urlsafe(16)
    sec = "eyJ" + secrets.token_urlsafe(64)
    now = int(time.time())
    STATE.clients[cid] = {"secret": sec, "exp": now + 90 * 86400,
                          "scopes": d.get("scopes") or []}
    await ex.send(200, {"clientId": cid, "clientSecret": sec,
                        "clientIdIssuedAt": now,
                        "clientSecretExpiresAt": now + 90 * 86400})


def client_ok(cid, sec):
    c = STATE.clients.get(cid)
    return c is not None and c["secret"] == sec and c["exp"] > time.time()


async def h_device_authorization(ex):
    if await scripted_simple(ex, "device_authorization"):
        return
    d = body_json(ex)
    if d is None or not all(_is_str(d.get(k)) and d.get(k)
                            for k in ("clientId", "clientSecret",
                                      "startUrl")):
        return await ex.oidc_error("invalid_request", "clientId, "
                                   "clientSecret and startUrl are required")
    if not client_ok(d["clientId"], d["clientSecret"]):
        return await ex.oidc_error("invalid_client", "Invalid client")
    dc = secrets.token_urlsafe(48)
    letters = "BCDFGHJKLMNPQRSTVWXZ"
    uc = "".join(secrets.choice(letters) for _ in range(4)) + "-" + \
        "".join(secrets.choice(letters) for _ in range(4))
    port = ex.conn.w.get_extra_info("sockname")[1]
    uri = "http://127.0.0.1:%d/_fake/verify" % port
    dev = {"deviceCode": dc, "userCode": uc, "clientId": d["clientId"],
           "clientSecret": d["clientSecret"], "state": "pending",
           "slow_down": False, "created": time.time(),
           "expiresIn": int(STATE.config["device_expires_in"]),
           "interval": int(STATE.config["device_interval"]),
           "polls": 0}
    STATE.devices[dc] = dev
    await ex.send(200, {"deviceCode": dc, "userCode": uc,
                        "verificationUri": uri,
                        "verificationUriComplete": uri + "?user_code=" + uc,
                        "expiresIn": dev["expiresIn"],
                        "interval": dev["interval"]})


def token_answer(a, at, exp, new_rt):
    out = {"accessToken": at, "tokenType": "Bearer", "expiresIn": exp}
    if new_rt:
        out["refreshToken"] = new_rt
    return out


def do_refresh(a):
    """Issue an access token for account a; rotate its refresh token if
    asked.  Returns (access token, expiresIn, new refresh token|None)."""
    a["refreshes"] += 1
    rt = a["refreshToken"]
    new_rt = None
    if a.get("rotate"):
        new_rt = "aorAAAA" + secrets.token_urlsafe(40)
        na = dict(a, refreshToken=new_rt, refreshes=0, revoked=False)
        na.pop("rotated_to", None)
        STATE.accounts[new_rt] = na
        a["revoked"] = True
        a["rotated_to"] = new_rt
        rt = new_rt
    at, exp = STATE.issue(rt)
    return at, exp, new_rt


async def refresh_counted(ex, handler):
    """Run a refresh handler (OIDC refresh_token grant or Kiro
    /refreshToken) as one refresh in flight: counted in the refresh
    stats (parallel, overlapping for one account), after the
    configured refresh_delay_ms so overlap would show."""
    d = body_json(ex) or {}
    rt = d.get("refreshToken")
    is_refresh = ex.req.path == "/refreshToken" or \
        d.get("grantType") == "refresh_token"
    if not is_refresh or not _is_str(rt):
        return await handler(ex)
    a = STATE.accounts.get(rt)
    aid = a.get("aid", rt) if a else rt
    STATE.refresh_begin(aid)
    try:
        delay = float(STATE.config.get("refresh_delay_ms") or 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        return await handler(ex)
    finally:
        STATE.refresh_end(aid)


async def h_token(ex):
    return await refresh_counted(ex, h_token_inner)


async def h_kiro_refresh(ex):
    return await refresh_counted(ex, h_kiro_refresh_inner)


async def h_token_inner(ex):
    if await scripted_simple(ex, "oidc_token"):
        return
    d = body_json(ex)
    if d is None:
        return await ex.oidc_error("invalid_request", "body is not JSON")
    cid, sec, gt = d.get("clientId"), d.get("clientSecret"), \
        d.get("grantType")
    if not (_is_str(cid) and cid and _is_str(sec) and sec and _is_str(gt)):
        return await ex.oidc_error("invalid_request", "clientId, "
                                   "clientSecret and grantType are required")
    if gt == "urn:ietf:params:oauth:grant-type:device_code":
        if not client_ok(cid, sec):
            return await ex.oidc_error("invalid_client", "Invalid client")
        dev = STATE.devices.get(d.get("deviceCode") or "")
        if dev is None or dev["clientId"] != cid:
            return await ex.oidc_error("invalid_grant",
                                       "Invalid device code provided")
        dev["polls"] += 1
        if dev["state"] == "consumed":
            return await ex.oidc_error("invalid_grant",
                                       "Device code already used")
        if dev["state"] == "expired" or \
                time.time() > dev["created"] + dev["expiresIn"]:
            dev["state"] = "expired"
            return await ex.oidc_error("expired_token",
                                       "Device code has expired")
        if dev["state"] == "denied":
            return await ex.oidc_error("access_denied",
                                       "Authorization denied")
        if dev["slow_down"]:
            dev["slow_down"] = False
            return await ex.oidc_error("slow_down", "Client is polling too "
                                       "fast")
        if dev["state"] == "pending":
            return await ex.oidc_error("authorization_pending",
                                       "Authorization pending")
        spec = dict(dev.get("account_spec") or {})
        spec.update({"kind": "idc", "clientId": cid, "clientSecret": sec})
        a = STATE.add_account(spec)
        dev["state"] = "consumed"
        dev["refreshToken"] = a["refreshToken"]
        at, exp = STATE.issue(a["refreshToken"])
        note_account(ex.rec, a)
        return await ex.send(200, token_answer(a, at, exp,
                                               a["refreshToken"]))
    if gt == "refresh_token":
        rt = d.get("refreshToken")
        a = STATE.accounts.get(rt) if _is_str(rt) else None
        if a is not None and a["kind"] == "idc" and (
                (a["clientId"] and a["clientId"] != cid) or
                (a["clientSecret"] and a["clientSecret"] != sec) or
                (cid in STATE.clients and not client_ok(cid, sec))):
            return await ex.oidc_error("invalid_client", "Invalid client")
        if a is None or a["kind"] != "idc" or a["revoked"]:
            return await ex.oidc_error(
                "invalid_grant", "Invalid refresh token provided",
                error="invalid_grant: %s" % (
                    "unknown refresh token" if a is None else
                    "revoked" if a["revoked"] else "not an idc account"))
        note_account(ex.rec, a)
        at, exp, new_rt = do_refresh(a)
        return await ex.send(200, token_answer(a, at, exp, new_rt))
    if gt in ("authorization_code",):
        return await ex.oidc_error("invalid_grant", "Invalid code")
    return await ex.oidc_error("unsupported_grant_type",
                               "Unsupported grant type %r" % (gt,))


async def h_kiro_refresh_inner(ex):
    if await scripted_simple(ex, "kiro_refresh"):
        return
    d = body_json(ex)
    rt = d.get("refreshToken") if d else None
    if not _is_str(rt) or not rt:
        return await ex.send(400, {"error": "invalid_request",
                                   "error_description":
                                   "refreshToken is required"},
                             error="invalid_request")
    a = STATE.accounts.get(rt)
    if a is None or a["kind"] != "social" or a["revoked"]:
        return await ex.send(400, {"error": "invalid_grant",
                                   "error_description":
                                   "Invalid refresh token provided"},
                             error="invalid_grant: %s" % (
                                 "unknown refresh token" if a is None else
                                 "revoked" if a["revoked"] else
                                 "not a social account"))
    note_account(ex.rec, a)
    at, exp, new_rt = do_refresh(a)
    out = {"accessToken": at, "expiresIn": exp,
           "profileArn": a["profileArn"] or SOCIAL_ARN}
    if new_rt:
        out["refreshToken"] = new_rt
    await ex.send(200, out)


# ---------------------------------------------------------------------
# control endpoints

def public_account(a):
    return {k: v for k, v in a.items() if k not in ("usage",)} | \
        {"usage": a.get("usage") or {}}


async def h_control(ex):
    req = ex.req
    p = req.path
    try:
        d = req.json() if req.method == "POST" else {}
    except ValueError:
        return await ex.send(400, {"error": "body is not JSON"})
    d = d if d is not None else {}
    if p == "/_fake/requests" and req.method == "GET":
        since = int(req.query.get("since", 0) or 0)
        out = [{k: v for k, v in r.items() if not k.startswith("_")}
               for r in STATE.records if r["seq"] >= since]
        return await ex.send(200, out)
    if p == "/_fake/reset" and req.method == "POST":
        STATE.reset()
        return await ex.send(200, {"reset": True})
    if p == "/_fake/script":
        if req.method == "GET":
            return await ex.send(200, STATE.script)
        rs = d if isinstance(d, list) else d.get("responses")
        if not isinstance(rs, list) or not all(isinstance(r, dict)
                                               for r in rs):
            return await ex.send(400, {"error": "responses must be a list "
                                       "of objects"})
        for r in rs:
            if r.get("preset") is not None and \
                    r["preset"] not in ERROR_PRESETS:
                return await ex.send(400, {"error": "unknown preset %r; "
                                           "known: %s" % (r["preset"], ", "
                                           .join(sorted(ERROR_PRESETS)))})
            if "replay" in r and not os.path.exists(
                    resolve_path(str(r["replay"]))):
                return await ex.send(400, {"error": "no such recording %r"
                                           % r["replay"]})
            if "events" in r:
                try:
                    build_items(r["events"])
                except (ValueError, TypeError, KeyError) as e:
                    return await ex.send(400, {"error": "bad event: %s" % e})
        if d.get("replace") if isinstance(d, dict) else False:
            STATE.script = []
        STATE.script.extend(rs)
        return await ex.send(200, {"queued": len(STATE.script)})
    if p == "/_fake/accounts":
        if req.method == "GET":
            return await ex.send(200, [public_account(a)
                                       for a in STATE.accounts.values()])
        try:
            a = STATE.add_account(d)
        except ValueError as e:
            return await ex.send(400, {"error": str(e)})
        return await ex.send(200, {"refreshToken": a["refreshToken"],
                                   "kind": a["kind"]})
    if p == "/_fake/accounts/revoke" and req.method == "POST":
        a = STATE.accounts.get(d.get("refreshToken") or "")
        if a is None:
            return await ex.send(404, {"error": "no such refresh token"})
        a["revoked"] = True
        return await ex.send(200, {"revoked": True})
    if p == "/_fake/tokens" and req.method == "POST":
        rt = d.get("refreshToken")
        if rt not in STATE.accounts:
            return await ex.send(404, {"error": "no such refresh token"})
        at, exp = STATE.issue(rt)
        if "expiresIn" in d:
            STATE.tokens[at]["exp"] = time.time() + float(d["expiresIn"])
        return await ex.send(200, {"accessToken": at, "expiresIn":
                                   d.get("expiresIn", exp)})
    if p == "/_fake/tokens/expire" and req.method == "POST":
        n = 0
        for at, t in STATE.tokens.items():
            if d.get("accessToken") in (None, at) and (
                    d.get("refreshToken") in (None, t["rt"])):
                if t["exp"] > time.time():
                    n += 1
                t["exp"] = 0
        return await ex.send(200, {"expired": n})
    if p == "/_fake/device" and req.method == "POST":
        action = d.get("action")
        uc = d.get("userCode")
        devs = [v for v in STATE.devices.values()
                if (uc is None and v["state"] == "pending") or
                v["userCode"] == uc]
        if not devs:
            return await ex.send(404, {"error": "no pending device "
                                       "authorization"})
        dev = devs[-1]
        if action == "approve":
            dev["state"] = "approved"
            # optional: how the account the approval creates looks
            dev["account_spec"] = {k: d[k] for k in (
                "label", "refreshToken", "expiresIn", "rotate", "email")
                if k in d}
        elif action == "deny":
            dev["state"] = "denied"
        elif action == "slow_down":
            dev["slow_down"] = True
        elif action == "expire":
            dev["state"] = "expired"
        else:
            return await ex.send(400, {"error": "action must be approve, "
                                       "deny, slow_down or expire"})
        return await ex.send(200, {"userCode": dev["userCode"],
                                   "state": dev["state"],
                                   "polls": dev["polls"]})
    if p == "/_fake/devices" and req.method == "GET":
        return await ex.send(200, list(STATE.devices.values()))
    if p == "/_fake/config":
        if req.method == "POST":
            for k, v in d.items():
                if k not in STATE.config:
                    return await ex.send(400, {"error": "unknown key %r" % k})
                STATE.config[k] = v
            if "max_records" in d:
                STATE.records = collections.deque(
                    STATE.records, maxlen=max(1, int(d["max_records"])))
        return await ex.send(200, STATE.config)
    if p == "/_fake/stats" and req.method == "GET":
        return await ex.send(200, dict(STATE.stats) | STATE.refresh_stats())
    if p == "/_fake/stats/reset" and req.method == "POST":
        STATE.stats.clear()
        STATE.reset_refresh_stats()
        return await ex.send(200, {"reset": True})
    if p == "/_fake/usage" and req.method == "POST":
        a = STATE.find_account(d.get("refreshToken") or d.get("label"))
        if a is None:
            return await ex.send(404, {"error": "no such account"})
        try:
            set_usage(a, d)
        except (TypeError, ValueError) as e:
            return await ex.send(400, {"error": "bad usage: %s" % e})
        return await ex.send(200, usage_answer(a))
    if p == "/_fake/verify":
        return await ex.send(200, "fakeq device verification page\n",
                             ctype="text/plain")
    return await ex.send(404, {"error": "no such control endpoint"})


# ---------------------------------------------------------------------
# routing

def record(req, conn=None):
    STATE.seq += 1
    body = req.body
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    rec = {"seq": STATE.seq, "time": time.time(), "method": req.method,
           "path": req.path, "query": req.query,
           "target": req.headers.get("x-amz-target"),
           "headers": dict(req.headers), "body": parsed,
           "body_bytes": len(body), "status": None, "error": None,
           "account": None}
    if conn is not None:
        # the client's port, to tell which connection (a proxy's) it came on
        peer = conn.w.get_extra_info("peername")
        rec["peer_port"] = peer[1] if peer else None
    STATE.records.append(rec)
    return rec


async def dispatch(ex):
    req = ex.req
    p = req.path
    if p.startswith("/_fake/"):
        return await h_control(ex)
    ex.rec = record(req, ex.conn)
    m = req.method
    if p == "/generateAssistantResponse" and m == "POST":
        if req.ctype() != "application/json":
            return await ex.reject(Reject(
                "content-type %r on /generateAssistantResponse (want "
                "application/json)" % req.ctype(), UNKNOWN_OP))
        ex.rec["flavour"] = "rest"
        return await h_assistant(ex, "rest")
    if p == "/" and m == "POST":
        target = req.headers.get("x-amz-target", "")
        if not target or req.ctype() != "application/x-amz-json-1.0":
            return await ex.reject(Reject(
                "POST / with content-type %r and x-amz-target %r: "
                "UnknownOperationException" % (req.ctype(), target),
                UNKNOWN_OP))
        if target == TARGET_GAR:
            ex.rec["flavour"] = "awsjson"
            return await h_assistant(ex, "awsjson")
        d = body_json(ex) or {}
        params = {k: str(v) for k, v in d.items()}
        if target == "AmazonCodeWhispererService.ListAvailableModels":
            return await h_models(ex, params)
        if target == "AmazonCodeWhispererService.GetUsageLimits":
            return await h_usage(ex, params)
        if target == "AmazonCodeWhispererService.ListAvailableProfiles":
            return await h_profiles(ex, params)
        return await ex.reject(Reject("unknown x-amz-target %r" % target,
                                      UNKNOWN_OP))
    if p == "/getUsageLimits" and m in ("GET", "POST"):
        return await h_usage(ex, req.query)
    if p == "/ListAvailableModels" and m == "GET":
        return await h_models(ex, req.query)
    if p == "/ListAvailableProfiles" and m in ("GET", "POST"):
        return await h_profiles(ex, req.query)
    if p == "/client/register" and m == "POST":
        return await h_register(ex)
    if p == "/device_authorization" and m == "POST":
        return await h_device_authorization(ex)
    if p == "/token" and m == "POST":
        return await h_token(ex)
    if p == "/refreshToken" and m == "POST":
        return await h_kiro_refresh(ex)
    return await ex.send(404, {"message": "Not Found"},
                         error="no such endpoint")


MAX_HEAD = 1 << 20
MAX_BODY = 64 << 20


async def read_request(conn):
    """One request from conn, or None at a clean EOF between requests."""
    try:
        head = await conn.readuntil(b"\r\n\r\n", MAX_HEAD)
    except Closed:
        return None, False
    lines = head[:-4].decode("latin-1").split("\r\n")
    while lines and lines[0] == "":
        lines.pop(0)
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("bad request line %r" % (lines[:1],))
    method, target, version = parts
    headers = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if not sep:
            raise ValueError("bad header line %r" % ln)
        k = k.strip().lower()
        v = v.strip()
        headers[k] = (headers[k] + ", " + v) if k in headers else v
    if headers.get("expect", "").lower() == "100-continue":
        await conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            ln = await conn.readuntil(b"\r\n", 4096)
            size = int(ln.split(b";")[0].strip(), 16)
            if size == 0:
                while await conn.readuntil(b"\r\n", MAX_HEAD) != b"\r\n":
                    pass
                break
            body += await conn.readexactly(size)
            await conn.readexactly(2)
            if len(body) > MAX_BODY:
                raise ValueError("body too large")
        body = bytes(body)
    else:
        n = int(headers.get("content-length", "0") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad content-length")
        body = await conn.readexactly(n)
    conn_hdr = headers.get("connection", "").lower()
    keep = ("close" not in conn_hdr) if version == "HTTP/1.1" else \
        ("keep-alive" in conn_hdr)
    return Request(method, target, version, headers, body), keep


async def handle(reader, writer):
    conn = Conn(reader, writer)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    STATE.stats["connections"] += 1
    STATE.stats["connections_total"] += 1
    try:
        while True:
            try:
                req, keep = await read_request(conn)
            except (ValueError, IndexError) as e:
                log("bad request: %s" % e)
                await conn.write(head_bytes(400, [("Content-Length", "0"),
                                                  ("Connection", "close")]))
                break
            if req is None:
                break
            STATE.stats["requests"] += 1
            ex = Exchange(conn, req, None, keep)
            await dispatch(ex)
            if not keep:
                break
    except (Closed, ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    except asyncio.CancelledError:
        raise
    except Exception:   # noqa: a bug in the fake; keep serving others
        log("internal error:\n" + traceback.format_exc())
        try:
            writer.transport.abort()
        except Exception:
            pass
    finally:
        STATE.stats["connections"] -= 1
        try:
            writer.close()
        except Exception:
            pass


# ---------------------------------------------------------------------
# main

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1048576:
        hard = 1048576
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


async def serve(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", args.port or 0,
                                        backlog=8192, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    log("listening on 127.0.0.1:%d" % port)
    await stop.wait()
    log("exiting on signal")
    sys.stderr.flush()
    os._exit(0)     # no need to wind down thousands of streams politely


def record_mode(out, script):
    if script.lstrip().startswith("{"):
        r = json.loads(script)
    else:
        with open(script) as f:
            r = json.load(f)
    if "replay" in r:
        with open(resolve_path(r["replay"]), "rb") as f:
            data = f.read()
    else:
        initial = None
        if r.get("flavour") == "awsjson" and r.get("initial", True):
            initial = r["initial"] if isinstance(r.get("initial"), dict) \
                else {"conversationId": r.get("conversationId",
                                              "00000000-0000-4000-8000-"
                                              "000000000000")}
        data = stream_bytes(build_items(r.get("events", DEFAULT_EVENTS),
                                        initial))
    with open(out, "wb") as f:
        f.write(data)
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description="fake Amazon Q / Kiro upstream")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--record", nargs=2, metavar=("OUT", "SCRIPT_JSON"))
    args = ap.parse_args(argv)
    if args.record:
        return record_mode(*args.record)
    STATE.config["quiet"] = args.quiet
    raise_nofile()
    asyncio.run(serve(args))
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
