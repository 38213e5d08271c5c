"""The account pool (issue 4) end to end: qrelayd in front of the fake
upstream with 2 to 1,000 accounts.  Every failover rule (what the fake
saw: which account, how many calls; what the client got), the account
states and their times in GET /v2/accounts, per-account caps and the
queue, the selection strategies and stickiness, an account deleted
under a stream, a 1,000-account pool refreshed without overlap, and the
per-account outbound proxy (tests/fake/proxy.py).

The fake records the label of the account behind each bearer token
(qrfake.Pool registers every account at the fake and at the daemon
under the same label, a0, a1, ...).
"""

import datetime
import http.client
import json
import socket
import struct
import time

from qrtest import Background, TestFailure, check, eq, wait_for
from qrfake import FakeUpstream, FakeProxy, Pool, anth_body, oa_body


# -- helpers -----------------------------------------------------------------

def iso_ts(s):
    """Epoch seconds of an ISO 8601 time, or None."""
    if not s:
        return None
    return datetime.datetime.fromisoformat(
        s.replace("Z", "+00:00")).timestamp()


def until_in(acct):
    """Seconds from now to the account's stateUntil (None: none)."""
    t = iso_ts(acct.get("stateUntil"))
    return None if t is None else t - time.time()


def text_events(parts):
    return [{"text": p} for p in parts] + [{"metering": 0.01},
                                           {"context": 1.0}]


def sse_text(raw):
    """Text of an Anthropic SSE body, and whether message_stop came."""
    text, stop = "", False
    for block in raw.decode().split("\n\n"):
        ev, data = None, ""
        for ln in block.split("\n"):
            if ln.startswith("event:"):
                ev = ln[6:].strip()
            elif ln.startswith("data:"):
                data += ln[5:].strip()
        if ev == "content_block_delta":
            d = json.loads(data)
            text += d["delta"].get("text", "")
        elif ev == "message_stop":
            stop = True
    return text, stop


def req_until(p, pred, n, what, fn=None, pause=0):
    """Send up to n requests (fn, default p.anth; pause s apart) until
    pred(served calls) holds; every client answer must be 200.  Returns
    the calls."""
    since = p.fake.last_seq()
    for i in range(n):
        if i and pause:
            time.sleep(pause)
        r = (fn or p.anth)()
        eq(r.status, 200, "%s: client status (%r)" % (what, r.body[:300]))
        calls = p.served(since)
        if pred(calls):
            return calls
    raise TestFailure("%s: not seen in %d requests; upstream calls %r"
                      % (what, n, p.served(since)))


def clear_script(fake):
    fake.call("POST", "/_fake/script", {"responses": [], "replace": True})


# -- the fake and the proxy themselves ---------------------------------------

def test_fake_pool_controls():
    """The fake's pool additions: per-account scripts (by label),
    labels in the records, refresh overlap/parallel counting with
    refresh_delay_ms, getUsageLimits from POST /_fake/usage, presets
    with Retry-After, dropped connections, device approval naming the
    account."""
    fake = FakeUpstream(quiet=True)
    ra = fake.add_account(kind="social", label="x")
    rb = fake.add_account(kind="idc", label="y", clientId="c",
                          clientSecret="s")
    fake.config(refresh_delay_ms=300)

    def post(path, body, hdrs=None):
        c = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
        h = {"Content-Type": "application/json"}
        h.update(hdrs or {})
        c.request("POST", path, json.dumps(body), h)
        r = c.getresponse()
        out = (r.status, dict((k.lower(), v) for k, v in r.getheaders()),
               r.read())
        c.close()
        return out

    # two refreshes of x at once overlap; y alongside makes 3 parallel
    jobs = [Background(post, "/refreshToken", {"refreshToken": ra}),
            Background(post, "/refreshToken", {"refreshToken": ra}),
            Background(post, "/token", {"grantType": "refresh_token",
                                        "refreshToken": rb,
                                        "clientId": "c",
                                        "clientSecret": "s"})]
    t0 = time.monotonic()
    res = [j.get(10) for j in jobs]
    check(time.monotonic() - t0 >= 0.29, "refresh_delay_ms not applied")
    eq([x[0] for x in res], [200, 200, 200], "refresh statuses")
    st = fake.refresh_stats()
    eq(st["refresh_total"], 3, "refresh_total")
    eq(st["refresh_overlap_same_account"], 1, "overlap of x")
    eq(st["refresh_max_parallel"], 3, "max parallel")
    eq(st["refresh_by_account"], {"x": 2, "y": 1}, "per account")
    fake.config(refresh_delay_ms=0)
    at_x = json.loads(res[0][2])["accessToken"]
    at_y = json.loads(res[2][2])["accessToken"]

    # usage: the real shape, from POST /_fake/usage
    fake.set_usage("y", used=250.5, limit=1000, next_reset=1893456000,
                   subscription="KIRO FREE", email="y@example.com")
    c = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    c.request("GET", "/getUsageLimits?origin=AI_EDITOR&resourceType="
              "AGENTIC_REQUEST", headers={"Authorization": "Bearer " + at_y})
    u = json.loads(c.getresponse().read())
    c.close()
    bd = u["usageBreakdownList"][0]
    eq(bd["currentUsageWithPrecision"], 250.5, "used")
    eq(bd["usageLimitWithPrecision"], 1000.0, "limit")
    eq(u["nextDateReset"], 1893456000.0, "nextDateReset")
    eq(u["subscriptionInfo"]["subscriptionTitle"], "KIRO FREE", "subscr.")
    eq(u["userInfo"]["email"], "y@example.com", "email")
    eq(fake.requests("/getUsageLimits")[-1]["label"], "y", "usage label")

    # per-account script by label, presets, Retry-After, drop
    fake.script({"account": "y", "preset": "TEMPORARILY_SUSPENDED"},
                {"preset": "THROTTLING", "retry_after": 2},
                {"drop": True})
    body = {"conversationState": {
        "conversationId": "c1", "chatTriggerType": "MANUAL",
        "currentMessage": {"userInputMessage": {
            "content": "hi", "modelId": "claude-sonnet-4.5",
            "origin": "AI_EDITOR"}}}}
    st1, h1, b1 = post("/generateAssistantResponse", body,
                       {"Authorization": "Bearer " + at_x})
    eq(st1, 429, "x takes the first R it may (throttling)")
    eq(h1.get("retry-after"), "2", "Retry-After")
    eq(json.loads(b1)["reason"], "USER_REQUEST_RATE_EXCEEDED", "reason")
    st2, h2, b2 = post("/generateAssistantResponse", body,
                       {"Authorization": "Bearer " + at_y})
    eq(st2, 403, "y's own script")
    eq(json.loads(b2)["reason"], "TEMPORARILY_SUSPENDED", "suspended")
    eq(h2.get("x-amzn-errortype"), "AccessDeniedException", "error type")
    try:
        post("/generateAssistantResponse", body,
             {"Authorization": "Bearer " + at_x})
        raise TestFailure("a dropped connection answered")
    except (http.client.HTTPException, ConnectionError):
        pass
    recs = fake.assistant_requests()
    eq([(r["label"], r["status"]) for r in recs],
       [("x", 429), ("y", 403), ("x", None)], "records with labels")
    eq(recs[-1]["error"], "dropped (True)", "drop recorded")

    # device flow approved naming the account
    reg = json.loads(post("/client/register", {
        "clientName": "t", "clientType": "public"})[2])
    dev = json.loads(post("/device_authorization", {
        "clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
        "startUrl": "https://view.awsapps.com/start"})[2])
    poll = {"clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
            "grantType": "urn:ietf:params:oauth:grant-type:device_code",
            "deviceCode": dev["deviceCode"]}
    eq(json.loads(post("/token", poll)[2])["error"],
       "authorization_pending", "pending")
    fake.device("approve", dev["userCode"])
    fake.call("POST", "/_fake/device", {"action": "approve",
                                        "userCode": dev["userCode"],
                                        "label": "dev1"})
    st3, _, b3 = post("/token", poll)
    eq(st3, 200, "approved")
    eq(fake.account(json.loads(b3)["refreshToken"])["label"], "dev1",
       "the approved account's label")


def test_proxy_http_and_socks5():
    """proxy.py: absolute-form HTTP, CONNECT, SOCKS5 without and with
    RFC 1929 auth, counted per user with the onward ports."""
    fake = FakeUpstream(quiet=True)
    px = FakeProxy()
    pa = FakeProxy(user="su", password="p:w")

    # absolute form
    with socket.create_connection(("127.0.0.1", px.port), 5) as s:
        s.sendall(b"GET %s/nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                  % fake.url.encode())
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    check(data.startswith(b"HTTP/1.1 404"), "absolute form: %r" % data[:80])
    check(b"Connection: close" in data, "answer marked close")

    def socks(port, user=None, pw=None):
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.sendall(b"\x05\x01" + (b"\x02" if user else b"\x00"))
        eq(s.recv(2), b"\x05" + (b"\x02" if user else b"\x00"), "method")
        if user:
            s.sendall(b"\x01" + bytes([len(user)]) + user.encode() +
                      bytes([len(pw)]) + pw.encode())
            ans = s.recv(2)
            if ans != b"\x01\x00":
                s.close()
                return None
        s.sendall(b"\x05\x01\x00\x03\x09localhost" +
                  struct.pack(">H", fake.port))
        rep = s.recv(10)
        eq(rep[:2], b"\x05\x00", "SOCKS5 CONNECT reply")
        s.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
        s.close()
        return data
    check(socks(px.port).startswith(b"HTTP/1.1 404"), "socks5 no auth")
    check(socks(pa.port, "su", "p:w").startswith(b"HTTP/1.1 404"),
          "socks5 user/password")
    eq(socks(pa.port, "su", "bad"), None, "wrong password refused")
    c = http.client.HTTPConnection("127.0.0.1", pa.port, timeout=5)
    c.request("GET", fake.url + "/nowhere")
    eq(c.getresponse().status, 407, "HTTP proxy without credentials")
    c.close()
    s = px.stats()
    eq((s["http_requests"], s["socks"]), (1, 1), "px counts")
    eq(s["by_user"], {"-": 2}, "px by user")
    s = pa.stats()
    eq((s["socks"], s["auth_failures"]), (1, 2), "pa counts")
    eq(s["by_user"], {"su": 1}, "pa by user")
    ports = px.out_ports() | pa.out_ports()
    seen = {r.get("peer_port") for r in fake.requests("/nowhere")}
    check(len(ports) == 3, "onward ports recorded: %r" % ports)
    eq(ports - seen, set(), "the fake saw the proxies' onward ports")


# -- failover rules ------------------------------------------------------------

def test_bearer_invalid_refreshes_once_same_account():
    p = Pool(2)
    eq(p.fake.expire_tokens(refresh_token=p.rt["a0"]), 1, "a0's token")
    for _ in range(2):      # round robin reaches a0 within two
        since = p.fake.last_seq()
        r = p.anth()
        eq(r.status, 200, "client status (%r)" % r.body[:300])
        calls = p.served(since)
        if calls[0][0] == "a0":
            break
    eq(calls, [("a0", 403), ("a0", 200)],
       "403, then a refresh and a retry on the same account")
    ref = p.fake.refresh_calls(since)
    eq([(q["label"], q["status"]) for q in ref], [("a0", 200)],
       "one refresh, of that account")
    eq(p.account("a0")["state"], "enabled", "state after")


def test_throttled_cools_down_with_retry_after():
    p = Pool(2)
    since = p.fake.last_seq()
    p.fake.script({"preset": "THROTTLING", "retry_after": 2})
    r = p.oa()
    eq(r.status, 200, "client status (%r)" % r.body[:300])
    calls = p.served(since)
    eq(len(calls), 2, "upstream calls %r" % calls)
    x, y = calls[0][0], calls[1][0]
    eq(calls, [(x, 429), (y, 200)], "429 then another account")
    check(x != y, "served by another account")
    a = p.account(x)
    eq(a["state"], "coolingDown", "state of the throttled account")
    left = until_in(a)
    check(left is not None and 0.5 <= left <= 4.0,
          "stateUntil %r should be ~2 s ahead (is %r s)"
          % (a.get("stateUntil"), left))
    eq(p.account(y)["state"], "enabled", "the other account")
    # the other account serves meanwhile; x comes back by itself
    since = p.fake.last_seq()
    eq(p.anth().status, 200, "next request")
    eq([c[0] for c in p.served(since)], [y], "while x cools down")
    p.wait_state(x, "enabled", timeout=6)


def test_repeated_throttling_backs_off_exponentially():
    p = Pool(2)
    p.fake.script({"preset": "THROTTLING", "retry_after": 1,
                   "account": "a0", "times": 0})
    spans = []
    for rnd in range(3):
        req_until(p, lambda cs: any(c == ("a0", 429) for c in cs), 6,
                  "round %d: a 429 on a0" % rnd)
        a = p.account("a0")
        eq(a["state"], "coolingDown", "round %d: a0 state" % rnd)
        spans.append(until_in(a))
        p.wait_state("a0", "enabled", timeout=20)
    check(all(s is not None for s in spans), "stateUntil %r" % spans)
    check(spans[0] <= 3.0, "first cooldown honours Retry-After: 1 (%r)"
          % spans)
    check(spans[2] >= spans[0] + 1.5 and spans[1] >= spans[0] - 0.5,
          "cooldowns should grow on repeated 429s: %r" % spans)


def _exhausted_case(reason):
    p = Pool(2)
    reset = int(time.time()) + 3 * 86400 + 17
    p.fake.set_usage("a1", used=10, limit=1000, next_reset=reset)
    p.fake.script({"preset": reason, "account": "a0", "times": 0})
    time.sleep(0.3)
    p.fake.set_usage("a0", used=1000, limit=1000, next_reset=reset)
    since = p.fake.last_seq()
    for i in range(3):
        r = p.anth()
        eq(r.status, 200, "%s: client status (%r)" % (reason, r.body[:300]))
    calls = p.served(since)
    eq([c for c in calls if c[0] == "a0"][:1] in ([], [("a0", 402)]), True,
       "%s: a0 answers only 402 (%r)" % (reason, calls))
    check(sum(1 for c in calls if c == ("a0", 402)) <= 1,
          "%s: a0 tried again after its 402: %r" % (reason, calls))
    eq(sum(1 for c in calls if c == ("a1", 200)), 3,
       "%s: a1 served all three (%r)" % (reason, calls))
    a = wait_for(lambda: (lambda x: x if x["state"] == "exhausted" and
                          iso_ts(x.get("stateUntil")) == reset else None)(
        p.account("a0")), 8, what="%s: a0 exhausted until the usage reset "
        "%d (is %r)" % (reason, reset, p.account("a0")))
    check(a.get("lastError"), "%s: no lastError on a0" % reason)
    us = [q for q in p.fake.requests("/getUsageLimits") if q["label"] == "a0"]
    check(us, "%s: getUsageLimits was asked for a0" % reason)
    eq(p.account("a1")["state"], "enabled", "%s: a1" % reason)


def test_quota_402_monthly_exhausted_until_reset():
    _exhausted_case("MONTHLY_REQUEST_COUNT")


def test_quota_402_overage_exhausted_until_reset():
    _exhausted_case("OVERAGE_REQUEST_LIMIT_EXCEEDED")


def test_suspended_elsewhere_then_enabled_again():
    p = Pool(2)
    p.fake.script({"preset": "TEMPORARILY_SUSPENDED", "account": "a0",
                   "times": 0})
    req_until(p, lambda cs: ("a0", 403) in cs, 4, "a 403 on a0")
    a = p.wait_state("a0", "suspended", timeout=3)
    check("TEMPORARILY_SUSPENDED" in (a.get("lastError") or "") or
          "suspended" in (a.get("lastError") or "").lower(),
          "the reason is shown: lastError %r" % a.get("lastError"))
    since = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "served while a0 is suspended")
    eq({c[0] for c in p.served(since)}, {"a1"}, "only a1 while suspended")
    clear_script(p.fake)
    p.patch("a0", enabled=True)
    p.wait_state("a0", "enabled", timeout=5)
    # the slot follows the database through the master's reload: allow
    # it a moment (GET may say enabled a little before picks see it)
    req_until(p, lambda cs: ("a0", 200) in cs, 30, "a0 back in service",
              pause=0.1)


def test_server_errors_and_dead_connection_next_account():
    p = Pool(2)
    for what, script in [
            ("500", {"preset": "INTERNAL"}),
            ("503", {"preset": "UNAVAILABLE"}),
            ("dropped", {"drop": True}),
            ("reset", {"drop": "rst"}),
            ("cut before any event", {"events": [{"cut": True}]})]:
        since = p.fake.last_seq()
        p.fake.script(script)
        t0 = time.monotonic()
        r = p.anth(timeout=15)
        eq(r.status, 200, "%s: client status (%r)" % (what, r.body[:300]))
        calls = p.served(since)
        eq(len(calls), 2, "%s: two upstream calls (%r)" % (what, calls))
        check(calls[0][0] != calls[1][0], "%s: another account (%r)"
              % (what, calls))
        eq(calls[1][1], 200, "%s: second call" % what)
        check(time.monotonic() - t0 < 8, "%s: took %.1fs" %
              (what, time.monotonic() - t0))
        eq(r.json()["content"][0]["text"], "Hello from fakeq.",
           "%s: the answer" % what)


def test_model_capacity_retried_without_marking():
    p = Pool(2)
    since = p.fake.last_seq()
    p.fake.script({"preset": "INSUFFICIENT_MODEL_CAPACITY"},
                  {"preset": "INSUFFICIENT_MODEL_CAPACITY", "status": 400})
    r = p.anth()
    eq(r.status, 200, "client status (%r)" % r.body[:300])
    calls = p.served(since)
    eq([c[1] for c in calls], [429, 400, 200], "retried (%r)" % calls)
    for lab, a in p.accounts().items():
        eq(a["state"], "enabled", "%s not blamed" % lab)
        eq(a.get("stateUntil"), None, "%s stateUntil" % lab)


def test_client_fault_400_not_retried():
    p = Pool(2)
    since = p.fake.last_seq()
    p.fake.script({"preset": "IMPROPER"})
    r = p.anth()
    eq(r.status, 400, "client status (%r)" % r.body[:300])
    eq(r.json()["error"]["type"], "invalid_request_error", "error type")
    eq(len(p.served(since)), 1, "exactly one upstream call")
    for lab, a in p.accounts().items():
        eq(a["state"], "enabled", "%s" % lab)


def test_all_throttled_gives_429_fast():
    p = Pool(3)
    p.fake.script({"preset": "THROTTLING", "retry_after": 3, "times": 0})
    since = p.fake.last_seq()
    for path, body, shape in [
            ("/v1/messages", anth_body(), "anthropic"),
            ("/v1/chat/completions", oa_body(), "openai"),
            ("/v1/messages", anth_body(stream=True), "anthropic"),
            ("/v1/chat/completions", oa_body(stream=True), "openai")]:
        t0 = time.monotonic()
        r = p.post(path, body, timeout=15)
        dt = time.monotonic() - t0
        eq(r.status, 429, "%s: status (%r)" % (path, r.body[:300]))
        check(dt < 5, "%s: answered in %.1fs" % (path, dt))
        ra = r.header("Retry-After")
        check(ra is not None and ra.isdigit() and 1 <= int(ra) <= 60,
              "%s: Retry-After %r" % (path, ra))
        j = r.json()
        if shape == "anthropic":
            eq(j.get("type"), "error", "Anthropic shape")
            eq(j["error"]["type"], "rate_limit_error", "Anthropic type")
        else:
            check(isinstance(j.get("error"), dict) and
                  j["error"].get("message"), "OpenAI shape %r" % j)
    calls = p.served(since)
    check(1 <= len(calls) <= 3 * 3, "bounded tries: %r" % calls)
    check(all(c[1] == 429 for c in calls), "all throttled %r" % calls)
    for lab, a in p.accounts().items():
        eq(a["state"], "coolingDown", lab)


# -- caps and the queue ----------------------------------------------------------

SLOW = {"events": text_events(["s1", "s2", "s3", "s4"]), "chunk": 0,
        "delay_ms": 250, "times": 0}       # ~1.25 s per stream


def _overlaps(recs):
    """Pairs of the same account's streams that ran at once."""
    bad = []
    for i, a in enumerate(recs):
        for b in recs[i + 1:]:
            if a["label"] == b["label"] and a["time"] < b["t_end"] and \
                    b["time"] < a["t_end"]:
                bad.append((a["label"], a["seq"], b["seq"]))
    return bad


def test_max_concurrency_queue_waits():
    p = Pool(2, extra={"a0": {"maxConcurrency": 1},
                       "a1": {"maxConcurrency": 1}},
             settings={"poolQueueTimeout": 10})
    eq((p.account("a0")["maxConcurrency"], p.account("a1")["maxConcurrency"]),
       (1, 1), "caps shown")
    p.fake.script(dict(SLOW, match="slowstream"))
    since = p.fake.last_seq()
    t0 = time.monotonic()
    jobs = [Background(lambda i=i: p.anth("slowstream %d" % i,
                                         stream=True))
            for i in range(3)]
    res = [j.get(30) for j in jobs]
    dt = time.monotonic() - t0
    for r in res:
        eq(r.status, 200, "status (%r)" % r.body[:200])
        text, stop = sse_text(r.body)
        eq((text, stop), ("s1s2s3s4", True), "full stream")
    recs = p.fake.assistant_calls(since)
    eq(len(recs), 3, "three upstream calls")
    eq(_overlaps(recs), [], "one stream at a time per account")
    check(dt >= 2.2, "the third waited for a free account (%.1fs)" % dt)
    last = max(recs, key=lambda r: r["time"])
    first_end = min(r["t_end"] for r in recs if r is not last)
    check(last["time"] >= first_end - 0.05,
          "the queued one started when one finished")


def test_max_concurrency_queue_timeout_429():
    p = Pool(2, extra={"a0": {"maxConcurrency": 1},
                       "a1": {"maxConcurrency": 1}},
             settings={"poolQueueTimeout": 1})
    p.fake.script(dict(SLOW, match="slowstream", delay_ms=800))
    since = p.fake.last_seq()
    jobs = [Background(lambda i=i: p.anth("slowstream %d" % i,
                                         stream=True))
            for i in range(2)]
    wait_for(lambda: len([r for r in p.fake.assistant_calls(since)
                          if r.get("stream") == "open"]) == 2, 5,
             what="two streams open")
    t0 = time.monotonic()
    r = p.anth("third")
    dt = time.monotonic() - t0
    eq(r.status, 429, "third request (%r)" % r.body[:300])
    check(0.7 <= dt <= 3.0, "429 after the queue timeout (%.1fs)" % dt)
    check(r.header("Retry-After") is not None, "Retry-After")
    eq(r.json()["error"]["type"], "rate_limit_error", "Anthropic type")
    for j in jobs:
        eq(j.get(30).status, 200, "the first two")
    eq(len(p.fake.assistant_calls(since)), 2, "the third never went up")


def test_rpm_cap_moves_to_another_account():
    p = Pool(2, extra={"a0": {"rpm": 2}},
             settings={"poolStrategy": "sequential"})
    eq(p.account("a0")["rpm"], 2, "rpm shown")
    since = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "status")
    labs = [c[0] for c in p.served(since)]
    eq(labs.count("a0"), 2, "a0 takes 2 in the minute (%r)" % labs)
    eq(labs[2:], ["a1", "a1"], "then another account (%r)" % labs)


def test_rpm_cap_everywhere_queue_timeout():
    p = Pool(2, extra={"a0": {"rpm": 2}, "a1": {"rpm": 2}},
             settings={"poolQueueTimeout": 1})
    since = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "status")
    labs = sorted(c[0] for c in p.served(since))
    eq(labs, ["a0", "a0", "a1", "a1"], "two each")
    t0 = time.monotonic()
    r = p.oa()
    eq(r.status, 429, "fifth in the minute (%r)" % r.body[:300])
    check(time.monotonic() - t0 < 3, "after the short queue")
    check(r.header("Retry-After") is not None, "Retry-After")
    eq(len(p.served(since)), 4, "nothing more went up")


# -- strategies ------------------------------------------------------------------------

def test_round_robin_spreads_evenly():
    p = Pool(4, settings={"poolStrategy": "round_robin"})
    since = p.fake.last_seq()
    for i in range(8):
        eq(p.anth("rr %d" % i).status, 200, "status")
    labs = [c[0] for c in p.served(since)]
    eq(sorted(labs), ["a0", "a0", "a1", "a1", "a2", "a2", "a3", "a3"],
       "two each (%r)" % labs)
    eq(len(set(labs[:4])), 4, "four in a row are four accounts")


def test_sequential_until_throttled():
    p = Pool(3, settings={"poolStrategy": "sequential"})
    since = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "status")
    labs = [c[0] for c in p.served(since)]
    eq(len(set(labs)), 1, "one account (%r)" % labs)
    x = labs[0]
    p.fake.script({"preset": "THROTTLING", "retry_after": 30,
                   "account": x, "times": 0})
    since = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "status")
    calls = p.served(since)
    eq(calls[0], (x, 429), "x throttled (%r)" % calls)
    y = calls[1][0]
    check(y != x, "another account")
    eq(calls[1:], [(y, 200)] * 4, "then one other account (%r)" % calls)


def test_least_inflight_avoids_busy():
    p = Pool(3, settings={"poolStrategy": "least_inflight"})
    p.fake.script(dict(SLOW, match="busyone", delay_ms=600))
    since = p.fake.last_seq()
    job = Background(lambda: p.anth("busyone", stream=True))
    rec = wait_for(lambda: [r for r in p.fake.assistant_calls(since)
                            if r.get("stream") == "open"], 5,
                   what="the long stream open")
    busy = rec[0]["label"]
    s2 = p.fake.last_seq()
    for _ in range(4):
        eq(p.anth().status, 200, "status")
    labs = [c[0] for c in p.served(s2)]
    check(busy not in labs, "the busy account %s was picked: %r"
          % (busy, labs))
    eq(job.get(30).status, 200, "long stream")


def test_random_serves_from_several():
    p = Pool(3, settings={"poolStrategy": "random"})
    since = p.fake.last_seq()
    for _ in range(15):
        eq(p.anth().status, 200, "status")
    labs = [c[0] for c in p.served(since)]
    eq(len(labs), 15, "one call each")
    check(len(set(labs)) >= 2, "random used one account only: %r" % labs)


def test_weighted_follows_remaining_usage():
    p = Pool(2, top={"refresher": {"parallel": 4, "usage_interval": 2}},
             wait=False)
    p.fake.set_usage("a0", used=50, limit=1000)      # 950 left
    p.fake.set_usage("a1", used=950, limit=1000)     # 50 left
    p.wait_ready()
    wait_for(lambda: (lambda a: (a["a0"].get("usage") or {}).get(
        "remaining") == 950 and (a["a1"].get("usage") or {}).get(
        "remaining") == 50)(p.accounts()), 15, interval=0.2,
        what="usage polled (a0 950 left, a1 50): %r"
        % {k: v.get("usage") for k, v in p.accounts().items()})
    p.settings(poolStrategy="weighted")
    time.sleep(2.5)         # a usage round rebuilds the weights
    since = p.fake.last_seq()
    for _ in range(40):
        eq(p.anth().status, 200, "status")
    labs = [c[0] for c in p.served(since)]
    n0, n1 = labs.count("a0"), labs.count("a1")
    check(n0 >= 30 and n0 > 3 * n1, "weighted 95/5 gave a0 %d, a1 %d"
          % (n0, n1))


def _conv(first, turns):
    msgs = [{"role": "user", "content": first}]
    for i in range(turns):
        msgs += [{"role": "assistant", "content": "answer %d" % i},
                 {"role": "user", "content": "more %d" % i}]
    return anth_body(messages=msgs)


def test_sticky_conversation_stays():
    p = Pool(4, settings={"poolStrategy": "round_robin",
                          "poolStickyTtl": 0})
    since = p.fake.last_seq()
    for t in range(4):
        eq(p.post("/v1/messages", _conv("conversation A", t)).status, 200,
           "status")
    spread = [c[0] for c in p.served(since)]
    check(len(set(spread)) > 1, "without stickiness round_robin moves "
          "the conversation: %r" % spread)
    p.settings(poolStickyTtl=60)
    for conv in ("conversation B", "conversation C"):
        since = p.fake.last_seq()
        for t in range(4):
            eq(p.post("/v1/messages", _conv(conv, t)).status, 200, "status")
            p.anth("an unrelated request %d" % t)
        labs = [r["label"] for r in p.fake.assistant_calls(since)
                if conv in json.dumps(r["body"])]
        eq(len(labs), 4, "%s calls" % conv)
        eq(len(set(labs)), 1, "%s stays on one account: %r" % (conv, labs))


# -- deletion under a stream -------------------------------------------------------------------

def test_delete_account_while_streaming():
    p = Pool(2, top={"max_accounts": 2})
    p.fake.script(dict(SLOW, match="longstream", delay_ms=400, times=1))
    since = p.fake.last_seq()
    job = Background(lambda: p.anth("longstream", stream=True))
    rec = wait_for(lambda: [r for r in p.fake.assistant_calls(since)
                            if r.get("stream") == "open"], 5,
                   what="the stream open")
    x = rec[0]["label"]
    r = p.delete(x)
    check(r.status in (200, 204), "DELETE %s: %d %r" % (x, r.status, r.body))
    r = job.get(30)
    eq(r.status, 200, "stream status")
    eq(sse_text(r.body), ("s1s2s3s4", True), "the stream completed")
    eq([q.get("stream") for q in p.fake.assistant_calls(since)],
       ["complete"], "the upstream stream ran to its end")
    wait_for(lambda: x not in p.accounts(), 5, what="%s gone from the list"
             % x)
    # the slot is free: max_accounts is 2, and a new account fits
    p.add("a9")
    p.wait_ready(["a9"])
    req_until(p, lambda cs: ("a9", 200) in cs, 4, "the new account serves")
    s = p.d.admin("GET", "/v2/status", p.tok)
    eq(s.status, 200, "status")


# -- 1,000 accounts ------------------------------------------------------------------------------------

def test_thousand_accounts_refresh_without_overlap():
    n, par = 1000, 4
    p = Pool(0, workers=2, top={"max_accounts": 1100, "refresher": {
        "parallel": par, "usage_interval": 1800}},
        fake_config={"refresh_delay_ms": 15})
    entries = []
    for i in range(n):
        lab = "k%04d" % i
        rt = p.fake.add_account(kind="social", label=lab)
        p.rt[lab] = rt
        entries.append({"type": "social", "label": lab, "refreshToken": rt,
                        "region": "us-east-1"})
    t0 = time.monotonic()
    r = p.d.admin("POST", "/v2/accounts/import", p.tok, entries)
    check(r.status in (200, 201), "import: %d %r" % (r.status, r.body[:300]))
    check(time.monotonic() - t0 < 10, "import took %.1fs"
          % (time.monotonic() - t0))
    accts = p.accounts()
    eq(len(accts), n, "accounts listed")

    def all_ready():
        a = p.accounts()
        return sum(1 for x in a.values() if x.get("ready")) == n
    wait_for(all_ready, 45, interval=0.5,
             what="1000 accounts ready (%d now)" % sum(
                 1 for x in p.accounts().values() if x.get("ready")))
    st = p.fake.refresh_stats()
    eq(st["refresh_overlap_same_account"], 0,
       "overlapping refreshes of one account (%r)"
       % st["refresh_overlap_accounts"][:5])
    check(st["refresh_max_parallel"] <= par,
          "refresh_max_parallel %d > refresher.parallel %d"
          % (st["refresh_max_parallel"], par))
    check(st["refresh_max_parallel"] >= 2, "refreshes ran in parallel (%d)"
          % st["refresh_max_parallel"])
    eq(len(st["refresh_by_account"]), n, "every account refreshed")
    twice = {k: v for k, v in st["refresh_by_account"].items() if v != 1}
    eq(twice, {}, "each refreshed once")
    since = p.fake.last_seq()
    for _ in range(10):
        eq(p.anth().status, 200, "served")
    eq(len({c[0] for c in p.served(since)}), 10,
       "round robin over the big pool")


# -- per-account proxy ---------------------------------------------------------------------------------

def test_per_account_proxy():
    ph = FakeProxy(user="hu", password="hp-secret-1")
    ps = FakeProxy(user="su", password="sp-secret-2")
    p = Pool(2, extra={"a0": {"proxy": ph.url("http")},
                       "a1": {"proxy": ps.url("socks5")}})
    listing = json.dumps(p.accounts())
    for pw in ("hp-secret-1", "sp-secret-2"):
        check(pw not in listing, "a proxy password is shown")
    eq(p.account("a1")["proxy"],
       "socks5://su:***@127.0.0.1:%d" % ps.port, "masked proxy")
    for _ in range(6):
        eq(p.anth().status, 200, "served")
    hports, sports = ph.out_ports(), ps.out_ports()
    eq(ph.stats()["by_user"].keys() - {"hu"}, set(), "http proxy users")
    eq(ps.stats()["by_user"].keys() - {"su"}, set(), "socks proxy users")
    check(ps.stats()["socks"] >= 1, "no SOCKS5 tunnel was made")
    seen = {"a0": set(), "a1": set()}
    for q in p.fake.requests():
        lab = q.get("label")
        if lab not in seen:
            continue
        port = q.get("peer_port")
        via = "http" if port in hports else "socks" if port in sports \
            else "direct"
        seen[lab].add((q["path"], via))
    for lab, want in (("a0", "http"), ("a1", "socks")):
        vias = {v for _, v in seen[lab]}
        eq(vias, {want}, "%s's upstream calls went via %r" % (lab, seen[lab]))
        paths = {pth for pth, _ in seen[lab]}
        check("/generateAssistantResponse" in paths or "/" in paths,
              "%s made assistant calls: %r" % (lab, paths))
        check(paths & {"/token", "/refreshToken"},
              "%s's refresh went through its proxy: %r" % (lab, paths))
