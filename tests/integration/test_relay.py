"""The relay end to end over raw HTTP: qrelayd in front of the fake
upstream (tests/fake/fakeq.py), checked on the wire.

Covers the streaming mechanics (backpressure, a client that leaves, a
truncated or failing upstream), retries (token refresh, another
account), and what the linter refuses before anything goes upstream.
"""

import json
import os
import re
import socket
import time

from qrtest import (Daemon, Conn, build_request, check, eq, wait_for,
                    TestFailure, ADMIN_PASSWORD)
from qrfake import FakeUpstream, anth_body, oa_body


# -- set-up ----------------------------------------------------------------

def setup(accounts=1, **kw):
    """A fake, a daemon pointed at it with `accounts` accounts whose
    tokens are fresh, and a client key.  Returns (fake, daemon, key)."""
    fake = FakeUpstream()
    env = {"QRELAYD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    env.update(kw.pop("env", {}))
    d = Daemon(upstream=fake, env=env, **kw)
    tok = d.login()
    for i in range(accounts):
        rt = fake.add_account(kind="idc", clientId="cid-%d" % i,
                              clientSecret="csec-%d" % i)
        r = d.admin("POST", "/v2/accounts", tok, {
            "type": "idc", "label": "acct%d" % i, "refreshToken": rt,
            "clientId": "cid-%d" % i, "clientSecret": "csec-%d" % i,
            "region": "us-east-1"})
        check(r.status in (200, 201), "POST /v2/accounts: %d %r"
              % (r.status, r.body))

    def refreshed():
        ok = [q for q in fake.requests()
              if q["path"] in ("/token", "/refreshToken")
              and q["status"] == 200]
        return len(ok) >= accounts
    wait_for(refreshed, timeout=15, what="accounts refreshed by the fake")
    time.sleep(0.3)     # the refresher publishes to the shared table
    key = d.add_key(tok)["key"]
    return fake, d, key


def upstream_calls(fake):
    return [q for q in fake.requests()
            if q["path"] in ("/generateAssistantResponse", "/")]


def post(d, key, path, body, timeout=20):
    return d.request("POST", path, {"Authorization": "Bearer " + key,
                                    "anthropic-version": "2023-06-01"},
                     body, timeout=timeout)


def sse_events(raw):
    """Parse an SSE body into [(event, data)] (data parsed as JSON when
    it is JSON)."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        ev, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                ev = ev or "comment"
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "event":
                ev = v
            elif k == "data":
                data.append(v)
        d = "\n".join(data)
        try:
            d = json.loads(d)
        except ValueError:
            pass
        out.append((ev, d))
    return out


def text_events(parts):
    return [{"text": p} for p in parts] + [{"metering": 0.01},
                                           {"context": 1.0}]


# -- plain answers ----------------------------------------------------------

def test_anthropic_text_nonstream():
    fake, d, key = setup()
    fake.script({"events": text_events(["Hel", "lo, ", "world"]),
                 "chunk": "random"})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 200, "status (%r)" % r.body)
    j = r.json()
    eq(j["type"], "message", "type")
    eq(j["content"], [{"type": "text", "text": "Hello, world"}], "content")
    eq(j["stop_reason"], "end_turn", "stop_reason")
    check(j["usage"]["output_tokens"] > 0, "output tokens %r" % j["usage"])
    check(j["usage"]["input_tokens"] > 0, "input tokens %r" % j["usage"])
    calls = upstream_calls(fake)
    eq(len(calls), 1, "upstream calls")
    cs = calls[0]["body"]["conversationState"]
    eq(cs["currentMessage"]["userInputMessage"]["modelId"],
       "claude-sonnet-4.5", "modelId upstream")


def test_anthropic_stream_order():
    fake, d, key = setup()
    fake.script({"events": text_events(["a" * 10, "b" * 10, "c"]),
                 "chunk": 7})
    r = post(d, key, "/v1/messages?beta=true", anth_body(stream=True))
    eq(r.status, 200, "status")
    check(r.header("Content-Type").startswith("text/event-stream"),
          "content type %r" % r.header("Content-Type"))
    evs = [e for e in sse_events(r.body) if e[0] != "ping"]
    names = [e[0] for e in evs]
    eq(names[0], "message_start", "first event")
    eq(names[-2:], ["message_delta", "message_stop"], "last events")
    text = "".join(e[1]["delta"]["text"] for e in evs
                   if e[0] == "content_block_delta")
    eq(text, "a" * 10 + "b" * 10 + "c", "streamed text")
    eq(evs[-2][1]["delta"]["stop_reason"], "end_turn", "stop_reason")


def test_openai_stream_tool_call():
    fake, d, key = setup()
    args = json.dumps({"command": "ls -la /tmp", "timeout": 5})
    fake.script({"events": [{"text": "Let me look."},
                            {"tool": {"id": "tooluse_abc", "name": "Bash",
                                      "input": args, "parts": 4}},
                            {"metering": 0.02}, {"context": 2.0}],
                 "chunk": "random"})
    tools = [{"type": "function", "function": {
        "name": "Bash", "description": "run a command",
        "parameters": {"type": "object",
                       "properties": {"command": {"type": "string"}}}}}]
    r = post(d, key, "/v1/chat/completions",
             oa_body(stream=True, tools=tools,
                     stream_options={"include_usage": True}))
    eq(r.status, 200, "status")
    evs = sse_events(r.body)
    eq(evs[-1][1], "[DONE]", "last data")
    chunks = [e[1] for e in evs[:-1] if isinstance(e[1], dict)]
    check(all(c["object"] == "chat.completion.chunk" for c in chunks),
          "chunk objects")
    eq(len({c["id"] for c in chunks}), 1, "one id")
    calls = {}
    finish = None
    for c in chunks:
        for ch in c["choices"]:
            for tc in ch["delta"].get("tool_calls") or []:
                e = calls.setdefault(tc["index"], {"args": ""})
                if "id" in tc:
                    e["id"] = tc["id"]
                    e["name"] = tc["function"]["name"]
                e["args"] += tc["function"].get("arguments", "")
            finish = ch.get("finish_reason") or finish
    eq(calls, {0: {"id": "tooluse_abc", "name": "Bash", "args": args}},
       "tool calls")
    eq(finish, "tool_calls", "finish_reason")
    usage = chunks[-1]
    eq(usage["choices"], [], "usage chunk choices")
    check(usage["usage"]["completion_tokens"] > 0, "usage %r" % usage)


def test_models_both_shapes():
    d = Daemon(env={"QRELAYD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    tok = d.login()
    key = d.add_key(tok)["key"]
    r = d.get("/v1/models", {"Authorization": "Bearer " + key})
    eq(r.status, 200, "status")
    j = r.json()
    eq(j["object"], "list", "OpenAI shape")
    ids = [m["id"] for m in j["data"]]
    check("claude-sonnet-4.5" in ids, "ids %r" % ids)
    r = d.get("/v1/models", {"x-api-key": key,
                             "anthropic-version": "2023-06-01"})
    j = r.json()
    check("has_more" in j and j["data"][0]["type"] == "model",
          "Anthropic shape %r" % j)


# -- truncation and failures --------------------------------------------------

def test_cut_stream_is_not_a_clean_stop():
    fake, d, key = setup()
    for _ in range(2):
        fake.script({"events": [{"text": "part one "}, {"text": "part two"},
                                {"cut": True}]})
    r = post(d, key, "/v1/messages", anth_body(stream=True))
    evs = sse_events(r.body)
    text = "".join(e[1]["delta"]["text"] for e in evs
                   if e[0] == "content_block_delta"
                   and e[1]["delta"]["type"] == "text_delta")
    eq(text, "part one part two", "text before the cut is kept")
    deltas = [e[1] for e in evs if e[0] == "message_delta"]
    errors = [e for e in evs if e[0] == "error"]
    check(errors or (deltas and deltas[-1]["delta"]["stop_reason"] ==
                     "max_tokens"),
          "a cut stream ends with max_tokens or an error: %r" % evs[-3:])
    check(not deltas or deltas[-1]["delta"]["stop_reason"] != "end_turn",
          "never end_turn")
    r = post(d, key, "/v1/chat/completions", oa_body(stream=True))
    chunks = [e[1] for e in sse_events(r.body) if isinstance(e[1], dict)]
    fins = [ch["finish_reason"] for c in chunks for ch in c.get("choices", [])
            if ch.get("finish_reason")]
    check(fins in (["length"], []) and fins != ["stop"],
          "OpenAI finish on a cut stream: %r" % fins)


def test_exception_mid_stream():
    fake, d, key = setup()
    fake.script({"events": [{"text": "so far"},
                            {"exception": "ThrottlingException",
                             "message": "Too many requests"}]})
    r = post(d, key, "/v1/messages", anth_body(stream=True))
    evs = sse_events(r.body)
    errs = [e[1] for e in evs if e[0] == "error"]
    eq(len(errs), 1, "one error event (%r)" % evs)
    eq(errs[0]["error"]["type"], "rate_limit_error", "error type")
    check(not any(e[0] == "message_delta" and
                  e[1]["delta"]["stop_reason"] == "end_turn" for e in evs),
          "no clean end_turn after an error")


def test_corrupt_crc_ends_with_error():
    fake, d, key = setup()
    fake.script({"events": [{"text": "ok "}, {"corrupt_crc": True},
                            {"text": "garbage?"}, {"context": 1.0}]})
    r = post(d, key, "/v1/messages", anth_body(stream=True))
    evs = sse_events(r.body)
    text = "".join(e[1]["delta"].get("text", "") for e in evs
                   if e[0] == "content_block_delta")
    eq(text, "ok ", "nothing after the bad frame reaches the client")
    check(any(e[0] == "error" for e in evs), "an error event: %r" % evs)
    eq(d.get("/healthz").status, 200, "still serving")


def test_upstream_400_not_retried():
    fake, d, key = setup(accounts=2)
    fake.script({"status": 400, "body": {
        "__type": "com.amazon.aws.codewhisperer#ValidationException",
        "message": "Improperly formed request."}})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 400, "status (%r)" % r.body)
    j = r.json()
    eq(j["type"], "error", "Anthropic error shape")
    eq(j["error"]["type"], "invalid_request_error", "error type")
    check("Improperly formed request" in j["error"]["message"],
          "message %r" % j)
    eq(len(upstream_calls(fake)), 1, "a client fault is tried once")


def test_throttled_account_fails_over():
    fake, d, key = setup(accounts=2)
    fake.script({"status": 429, "body": {
        "__type": "com.amazon.kiro.runtimeservice#ThrottlingException",
        "message": "Too many requests, please wait before trying again.",
        "reason": "USER_REQUEST_RATE_EXCEEDED"}},
        {"events": text_events(["second account"])})
    r = post(d, key, "/v1/chat/completions", oa_body())
    eq(r.status, 200, "status (%r)" % r.body)
    eq(r.json()["choices"][0]["message"]["content"], "second account",
       "answer")
    calls = upstream_calls(fake)
    eq(len(calls), 2, "two attempts")
    check(calls[0]["headers"]["authorization"] !=
          calls[1]["headers"]["authorization"], "another account's token")


def test_all_throttled_gives_429():
    fake, d, key = setup(accounts=1)
    body = {"message": "Too many requests", "reason":
            "USER_REQUEST_RATE_EXCEEDED"}
    fake.script(*[{"status": 429, "body": body}] * 3)
    r = post(d, key, "/v1/chat/completions", oa_body())
    eq(r.status, 429, "status (%r)" % r.body)
    check(r.header("Retry-After") is not None, "Retry-After")
    check("error" in r.json(), "OpenAI error shape")


def test_invalid_token_refreshes_and_retries():
    fake, d, key = setup()
    before = len([q for q in fake.requests() if q["path"] == "/token"])
    fake.expire_tokens()
    fake.script({"events": text_events(["after refresh"])})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 200, "status (%r)" % r.body)
    eq(r.json()["content"][0]["text"], "after refresh", "answer")
    calls = upstream_calls(fake)
    eq([c["status"] for c in calls], [403, 200], "403 then 200")
    after = len([q for q in fake.requests() if q["path"] == "/token"])
    check(after > before, "a refresh grant went to the fake")


def test_no_account_503():
    d = Daemon(env={"QRELAYD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    tok = d.login()
    key = d.add_key(tok)["key"]
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 503, "status")
    eq(r.json()["error"]["type"], "overloaded_error", "type")


# -- bad input: nothing goes upstream ------------------------------------------

def test_bad_input_never_reaches_upstream():
    fake, d, key = setup()
    deep = "[" * 10000 + "]" * 10000
    cases = [
        ("/v1/messages", "{not json", "JSON"),
        ("/v1/messages", '{"model":"claude-sonnet-4-5","max_tokens":5,'
         '"messages":' + deep + "}", "nested"),
        ("/v1/messages", json.dumps({"model": "claude-sonnet-4-5",
                                     "max_tokens": 5}), "messages"),
        ("/v1/messages", json.dumps(anth_body(model="gpt-nope")), "model"),
        ("/v1/chat/completions", json.dumps({"model": "claude-sonnet-4.5",
         "messages": [{"role": "bot", "content": "x"}]}), "role"),
        ("/v1/messages", json.dumps({
            "model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [
                {"role": "user", "content": [{"type": "tool_result",
                 "tool_use_id": "toolu_x", "content": "orphan"}]}]}),
         "tool"),
        ("/v1/messages", json.dumps(anth_body(text="")), "content"),
        ("/v1/messages", json.dumps(anth_body(messages="hello")),
         "messages"),
        ("/v1/chat/completions", json.dumps({"model": "claude-sonnet-4.5",
         "messages": [{"role": "user", "content": 42}]}), "content"),
        ("/v1/messages", json.dumps(anth_body(text=[
            {"type": "text", "text": "look"},
            {"type": "image", "source": {
                "type": "base64", "media_type": "image/png",
                "data": "iVBORw0KGgo" + "A" * (5 * 1024 * 1024)}}])),
         "image"),
    ]
    for path, body, word in cases:
        r = d.request("POST", path, {"Authorization": "Bearer " + key,
                                     "Content-Type": "application/json"},
                      body)
        eq(r.status, 400, "%s %s: status (%r)" % (path, word, r.body[:200]))
        j = r.json()
        if path == "/v1/messages":
            eq(j["type"], "error", "Anthropic shape")
            msg = j["error"]["message"]
        else:
            msg = j["error"]["message"]
        check(word.lower() in msg.lower(),
              "%s: message names the problem: %r" % (word, msg))
    eq(upstream_calls(fake), [], "nothing was sent upstream")
    eq(d.get("/healthz").status, 200, "still serving")


# -- streaming mechanics -----------------------------------------------------------

def _upstream_conns(d, fake_port):
    """ESTABLISHED TCP connections from the daemon's workers to the
    fake's port (the refresher keeps its own; it does not count)."""
    inodes = set()
    for pid in d.workers_pids():
        fd_dir = "/proc/%d/fd" % pid
        for fd in os.listdir(fd_dir):
            try:
                t = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    n = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(fn) as f:
            next(f)
            for line in f:
                p = line.split()
                rport = int(p[2].split(":")[1], 16)
                if rport == fake_port and p[3] == "01" and p[9] in inodes:
                    n += 1
    return n


def test_client_gone_cancels_upstream():
    fake, d, key = setup()
    fake.script({"events": [{"text": "tick "}] * 200, "delay_ms": 100,
                 "chunk": 0})
    c = Conn(d.port, timeout=10)
    body = json.dumps(anth_body(stream=True))
    c.send(build_request("POST", "/v1/messages", [
        ("Authorization", "Bearer " + key),
        ("Content-Type", "application/json")], body))
    c.read_until(b"tick", timeout=10)
    port = int(fake.url.rsplit(":", 1)[1])
    check(_upstream_conns(d, port) >= 1, "a transfer is in flight")
    c.close()
    wait_for(lambda: _upstream_conns(d, port) == 0, timeout=3,
             what="the upstream transfer cancelled after the client left")
    # the account is free again: a new request goes through at once
    fake.script({"events": text_events(["next"])})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 200, "next request")


def test_slow_client_backpressure():
    fake, d, key = setup()
    n = 4000                      # 16 MB of text, no two pieces alike
    pieces = ["%06d" % i + "x" * 3994 for i in range(n)]
    fake.script({"events": [{"text": p} for p in pieces] +
                 [{"context": 1.0}], "chunk": 65536})
    def rss_kb(pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0
    before = {p: rss_kb(p) for p in d.workers_pids()}
    c = Conn(d.port, timeout=60)
    # a small receive window, so the kernel holds little of the answer
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(build_request("POST", "/v1/messages", [
        ("Authorization", "Bearer " + key),
        ("Content-Type", "application/json")],
        json.dumps(anth_body(stream=True))))
    time.sleep(6)                 # the client reads nothing

    # Far more than the socket buffers hold. Unless the relay pauses the
    # upstream, the fake sends it all and the worker buffers megabytes.
    total = sum(len(p) for p in pieces)
    rec = [q for q in upstream_calls(fake) if q.get("stream") is not None]
    check(rec and rec[-1]["stream"] == "open",
          "the upstream stream is still open: %r" % rec[-1:])
    sent = rec[-1]["bytes_sent"]
    print("the fake sent %d of %d+ bytes while the client did not read"
          % (sent, total))
    check(sent < total * 3 // 4, "the upstream was not paused: it sent %d "
          "of %d bytes" % (sent, total))
    grew = max(rss_kb(p) - before.get(p, 0) for p in d.workers_pids())
    print("worker RSS growth while the client does not read: %d kB" % grew)
    with open("/proc/%d/maps" % d.workers_pids()[0]) as f:
        sanitized = "libasan" in f.read()
    # ASan's quarantine keeps freed memory: RSS says nothing there
    check(sanitized or grew < 4 * 1024,
          "a worker grew by %d kB while its client did not read" % grew)
    r = c.read_response(timeout=60)
    c.close()
    evs = sse_events(r.body)
    text = "".join(e[1]["delta"]["text"] for e in evs
                   if e[0] == "content_block_delta")
    if text != "".join(pieces):
        got = [int(x) for x in re.findall(r"(\d{6})x", text)]
        lost = sorted(set(range(n)) - set(got))
        raise TestFailure("every byte arrives, in order: %d of %d bytes, "
                          "%d pieces lost (first %r), in order: %s; end %r"
                          % (len(text), 4000 * n, len(lost), lost[:5],
                             got == sorted(got), evs[-2:]))
    eq(evs[-2][1]["delta"]["stop_reason"], "end_turn", "clean end")


def test_request_log_row():
    fake, d, key = setup()
    fake.script({"events": [{"text": "logged answer"}, {"metering": 0.25},
                            {"context": 1.0}]})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 200, "status")

    def row():
        rows = d.query("SELECT model, tokens_in, tokens_out, credits, "
                       "account_id, status FROM request_logs WHERE path = "
                       "'/v1/messages'")
        return rows[0] if rows else None
    wait_for(row, timeout=5, what="the request's log row")
    model, tin, tout, credits, acct, status = row()
    eq(model, "claude-sonnet-4-5-20250929", "model as the client named it")
    eq(status, 200, "status")
    check(tin > 0 and tout > 0, "tokens in/out %r/%r" % (tin, tout))
    eq(round(credits, 4), 0.25, "credits from the meteringEvent")
    check(acct >= 1, "account id %r" % acct)


# -- recorded streams, replayed through the relay -------------------------------

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "fixtures", "streams")


def _replay(fake, d, key, name, body):
    fake.script({"replay": os.path.join(FIXTURES, name + ".bin"),
                 "chunk": "random"})
    return post(d, key, "/v1/messages", body)


def test_fixture_corpus_replayed():
    fake, d, key = setup()
    # each recording, and what a client must get from it
    r = _replay(fake, d, key, "text_only", anth_body())
    eq(r.json()["content"], [{"type": "text", "text":
       "The capital of France is Paris. Ünïcödé ✓ 漢字."}], "text_only")
    eq(r.json()["stop_reason"], "end_turn", "text_only stop")

    r = _replay(fake, d, key, "thinking", anth_body(
        thinking={"type": "enabled", "budget_tokens": 2048}))
    blocks = r.json()["content"]
    eq([b["type"] for b in blocks], ["thinking", "text"], "thinking blocks")
    check("`</thinking>` is not the end" in blocks[0]["thinking"],
          "a quoted end tag stays thinking: %r" % blocks[0])
    eq(blocks[1]["text"], "2 + 2 = 4.", "thinking: the answer")

    r = _replay(fake, d, key, "tool_fragments", anth_body(stream=True))
    evs = sse_events(r.body)
    args = "".join(e[1]["delta"]["partial_json"] for e in evs
                   if e[0] == "content_block_delta"
                   and e[1]["delta"]["type"] == "input_json_delta")
    eq(json.loads(args), {"city": "Paris", "units": "metric",
                          "days": [1, 2, 3]}, "tool arguments")
    eq([e[1]["delta"]["stop_reason"] for e in evs
        if e[0] == "message_delta"], ["tool_use"], "tool stop")

    r = _replay(fake, d, key, "duplicates", anth_body())
    j = r.json()
    eq([b["type"] for b in j["content"]], ["text", "tool_use"],
       "a duplicate tool call is dropped, unknown events ignored")

    r = _replay(fake, d, key, "content_length_exceeded", anth_body())
    eq(r.json()["stop_reason"], "max_tokens", "content length exceeded")
    eq(r.json()["content"][0]["text"], "A long answer that runs",
       "text before it kept")

    r = _replay(fake, d, key, "exception_midstream", anth_body(stream=True))
    check(any(e[0] == "error" for e in sse_events(r.body)),
          "an exception mid-stream ends with an error event")


# -- more upstream failures ------------------------------------------------------

def test_quota_and_server_errors_fail_over():
    for status, body in [
            (402, {"message": "You have reached the limit.",
                   "reason": "MONTHLY_REQUEST_COUNT"}),
            (500, {"message": "Encountered an unexpected error when "
                   "processing the request, please try again."}),
            (503, {"message": "busy",
                   "reason": "MODEL_TEMPORARILY_UNAVAILABLE"})]:
        fake, d, key = setup(accounts=2)
        fake.script({"status": status, "body": body},
                    {"events": text_events(["from the other account"])})
        r = post(d, key, "/v1/messages", anth_body())
        eq(r.status, 200, "%d: status (%r)" % (status, r.body))
        calls = upstream_calls(fake)
        eq([c["status"] for c in calls], [status, 200],
           "%d: then another account" % status)
        check(calls[0]["headers"]["authorization"] !=
              calls[1]["headers"]["authorization"], "another token")


def test_model_capacity_retried_without_blame():
    fake, d, key = setup(accounts=1)
    fake.script({"status": 429, "body": {
        "__type": "com.amazon.aws.codewhisperer#ThrottlingException",
        "message": "I am experiencing high traffic, please try again "
                   "shortly.", "reason": "INSUFFICIENT_MODEL_CAPACITY"}},
        {"events": text_events(["after a pause"])})
    r = post(d, key, "/v1/messages", anth_body())
    eq(r.status, 200, "status (%r)" % r.body)
    eq(r.json()["content"][0]["text"], "after a pause", "answer")
    calls = upstream_calls(fake)
    eq([c["status"] for c in calls], [429, 200], "retried")
    eq(calls[0]["headers"]["authorization"],
       calls[1]["headers"]["authorization"], "on the same account")


def test_openai_thinking_as_reasoning_content():
    fake, d, key = setup()
    fake.script({"events": text_events(["<thinking>\nweigh it</thinking>"
                                        "\n\n", "The answer."])})
    r = post(d, key, "/v1/chat/completions",
             oa_body(reasoning_effort="high"))
    eq(r.status, 200, "status (%r)" % r.body)
    m = r.json()["choices"][0]["message"]
    eq(m["content"], "The answer.", "content")
    eq(m.get("reasoning_content"), "weigh it", "reasoning_content")
    cs = upstream_calls(fake)[0]["body"]["conversationState"]
    check("<thinking_mode>adaptive</thinking_mode>" in
          cs["currentMessage"]["userInputMessage"]["content"],
          "thinking asked for upstream")


def test_ping_during_a_long_silence():
    fake, d, key = setup()
    # 21 s without a byte from the upstream: at least one ping comes
    fake.script({"events": [{"text": "before "}, {"sleep_ms": 21000},
                            {"text": "after"}, {"context": 1.0}],
                 "chunk": 0})
    r = post(d, key, "/v1/messages", anth_body(stream=True), timeout=40)
    evs = sse_events(r.body)
    names = [e[0] for e in evs]
    check("ping" in names, "a ping in a long silence: %r" % names)
    i = names.index("ping")
    check(0 < i < len(names) - 2, "the ping comes mid-stream")
    eq(evs[i][1], {"type": "ping"}, "ping data")
    text = "".join(e[1]["delta"]["text"] for e in evs
                   if e[0] == "content_block_delta")
    eq(text, "before after", "text around it")


def test_metrics_count_the_relay():
    fake, d, key = setup(accounts=2)
    fake.script({"status": 500, "body": {"message": "oops"}},
                {"events": text_events(["counted"])})
    r = post(d, key, "/v1/messages", anth_body(stream=True))
    eq(r.status, 200, "status")
    m = {}
    for line in d.get("/metrics").body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            m[k] = float(v)
    eq(m.get("qrelay_upstream_requests_total"), 2.0, "two transfers")
    eq(m.get("qrelay_upstream_failures_total"), 1.0, "one failed")
    eq(m.get("qrelay_streams_active"), 0.0, "none streaming now")
    check(m.get('qrelay_tokens_total{direction="out"}', 0) > 0 and
          m.get('qrelay_tokens_total{direction="in"}', 0) > 0,
          "tokens counted: %r" % {k: v for k, v in m.items()
                                  if "tokens" in k})
