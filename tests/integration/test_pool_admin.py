"""The pool's admin API (issue 4): settings, JSON import and export
(with and without secrets, moved to a second daemon), the batch feed
(malformed lines, duplicates, a token the upstream refuses: reported
line by line, only the good ones added, the daemon serving on), and
the AWS device authorization through the fake, ending in an account
that serves a request."""

import glob
import json
import os
import time

from qrtest import Daemon, check, eq, wait_for
from qrfake import FakeUpstream


def _setup(fake=None, **kw):
    fake = fake or FakeUpstream(quiet=True)
    d = Daemon(upstream=fake, **kw)
    return fake, d, d.login()


def _accounts(d, tok):
    r = d.admin("GET", "/v2/accounts", tok)
    eq(r.status, 200, "GET /v2/accounts (body %r)" % r.body[:300])
    return r.json()["accounts"]


def _account(d, tok, aid):
    r = d.admin("GET", "/v2/accounts/%d" % aid, tok)
    eq(r.status, 200, "GET /v2/accounts/%d (body %r)" % (aid, r.body[:300]))
    return r.json()


def _wait_ready(d, tok, aid, timeout=15.0):
    return wait_for(lambda: (lambda a: a if a["ready"] else None)(
        _account(d, tok, aid)), timeout, interval=0.1,
        what="account %d ready" % aid)


def _no_secret(text, secrets, where):
    for s in secrets:
        check(s not in text, "%s shows a secret in full (%s...)"
              % (where, s[:8]))


def _raw(d, method, path, tok, body, ctype):
    return d.request(method, path, {"Authorization": "Bearer " + tok,
                                    "Content-Type": ctype}, body)


def _ask(d, key):
    body = {"model": "claude-sonnet-4.5", "max_tokens": 32,
            "messages": [{"role": "user", "content": "hello"}]}
    return d.request("POST", "/v1/messages",
                     {"x-api-key": key, "anthropic-version": "2023-06-01"},
                     body, timeout=30)


def _job_files(d):
    return glob.glob(os.path.join(os.path.dirname(d.db_path), "job-*"))


def test_settings_get_put_validation():
    fake, d, tok = _setup()
    r = d.admin("GET", "/v2/settings", tok)
    eq(r.status, 200, "GET /v2/settings (body %r)" % r.body)
    s = r.json()
    eq((s["poolStrategy"], s["poolStickyTtl"], s["poolQueueTimeout"],
        s["poolMaxAttempts"]), ("round_robin", 0, 10, 3), "defaults")
    check("admin_password_hash" not in s and "apiKey" not in s,
          "GET /v2/settings shows a secret: %r" % sorted(s))
    eq(s["enableRequestLog"], True, "a legacy setting, typed")

    r = d.admin("PUT", "/v2/settings", tok,
                {"poolStrategy": "least_inflight", "poolMaxAttempts": 5,
                 "poolStickyTtl": 120, "poolQueueTimeout": 2})
    eq(r.status, 200, "PUT (body %r)" % r.body)
    eq(r.json()["poolStrategy"], "least_inflight", "PUT answers the new")
    s = d.admin("GET", "/v2/settings", tok).json()
    eq((s["poolStrategy"], s["poolStickyTtl"], s["poolQueueTimeout"],
        s["poolMaxAttempts"]), ("least_inflight", 120, 2, 5), "after PUT")
    eq(dict(d.query("SELECT name, value FROM settings WHERE name LIKE"
                    " 'pool%'")),
       {"poolStrategy": "least_inflight", "poolMaxAttempts": "5",
        "poolStickyTtl": "120", "poolQueueTimeout": "2"}, "stored")

    bad = [({"poolMaxAttempts": 9}, "poolMaxAttempts"),
           ({"poolMaxAttempts": 0}, "poolMaxAttempts"),
           ({"poolStrategy": "fastest"}, "poolStrategy"),
           ({"poolStrategy": 1}, "poolStrategy"),
           ({"poolStickyTtl": -1}, "poolStickyTtl"),
           ({"poolQueueTimeout": "10"}, "poolQueueTimeout"),
           ({"debugLog": "yes"}, "debugLog"),
           ({"bogus": 1}, "bogus"),
           ({"admin_password_hash": "x"}, "admin_password_hash"),
           # all or nothing: the good one is not kept either
           ({"poolStickyTtl": 5, "poolMaxAttempts": 99}, "poolMaxAttempts"),
           ({}, "no settings")]
    for body, word in bad:
        r = d.admin("PUT", "/v2/settings", tok, body)
        eq(r.status, 400, "PUT %r (body %r)" % (body, r.body))
        check(word in r.json()["error"]["message"],
              "400 for %r names %r: %r" % (body, word, r.body))
    r = _raw(d, "PUT", "/v2/settings", tok, "[1]", "application/json")
    eq(r.status, 400, "PUT an array")
    s = d.admin("GET", "/v2/settings", tok).json()
    eq((s["poolStickyTtl"], s["poolMaxAttempts"]), (120, 5),
       "bad PUTs changed nothing")
    eq(d.request("GET", "/v2/settings").status, 401, "no session")


def test_import_bad_good_duplicate():
    fake, d, tok = _setup()
    rt_old = fake.add_account(kind="social")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt_old, "label": "old"})
    eq(r.status, 201, "POST (body %r)" % r.body)
    old = r.json()["id"]
    # the same refresh token again: refused
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt_old, "label": "dup"})
    eq(r.status, 409, "POST a duplicate (body %r)" % r.body)
    _no_secret(r.body.decode(), [rt_old], "409 answer")

    for body in ("refreshToken=abc\n", "{\"accounts\": [", "",
                 "null", "42", "{\"accounts\": 5}"):
        r = _raw(d, "POST", "/v2/accounts/import", tok, body,
                 "application/json")
        eq(r.status, 400, "import %r (body %r)" % (body, r.body))
    eq(len(_accounts(d, tok)), 1, "nothing added by bad imports")

    rt_a = fake.add_account(kind="social")
    rt_b = fake.add_account(kind="idc", clientId="cid-imp",
                            clientSecret="csecret-imp-0123456789")
    doc = {"version": 1, "accounts": [
        {"type": "social", "refreshToken": rt_a, "label": "a",
         "maxConcurrency": 2, "rpm": 30, "proxy": ""},
        {"type": "idc", "refreshToken": rt_b, "label": "b",
         "clientId": "cid-imp", "clientSecret": "csecret-imp-0123456789"},
        {"type": "idc", "refreshToken": "x-no-client"},
        {"type": "social", "refreshToken": rt_a, "label": "a-again"},
        {"type": "social", "refreshToken": rt_old},
        {"refreshToken": rt_a, "proxy": "ftp://nope"},
        "not an object"]}
    r = d.admin("POST", "/v2/accounts/import", tok, doc)
    eq(r.status, 200, "import (body %r)" % r.body[:300])
    _no_secret(r.body.decode(), [rt_a, rt_b, rt_old,
                                 "csecret-imp-0123456789"], "import answer")
    j = r.json()
    eq((j["added"], j["failed"]), (2, 5), "import counts")
    st = [(x["index"], x["status"]) for x in j["results"]]
    eq(st, [(0, "added"), (1, "added"), (2, "invalid"), (3, "duplicate"),
            (4, "duplicate"), (5, "invalid"), (6, "invalid")],
       "import report")
    eq(j["results"][4]["id"], old, "duplicate names the account")
    check("clientId" in j["results"][2]["error"], "why: %r" % j["results"][2])
    ids = {x["label"]: x["id"] for x in _accounts(d, tok)}
    eq(sorted(ids), ["a", "b", "old"], "accounts after the import")
    a = _wait_ready(d, tok, ids["a"])
    eq((a["maxConcurrency"], a["rpm"]), (2, 30), "caps imported")
    _wait_ready(d, tok, ids["b"])
    check(d.healthy(), "the daemon serves on")


def test_import_live_token_needs_no_renewal():
    """An import that brings a live access token (a Kiro credential
    file, an export) serves with it: workers cannot open stored tokens,
    so the refresher publishes it instead of spending a renewal."""
    fake, d, tok = _setup()
    rt = fake.add_account(kind="social", label="live")
    at = fake.call("POST", "/refreshToken", {"refreshToken": rt})
    check(at.get("accessToken"), "the fake issued a token: %r" % at)
    fake.reset_stats()
    exp = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                        time.gmtime(time.time() + 3000))
    r = d.admin("POST", "/v2/accounts/import", tok, [{
        "authMethod": "social", "provider": "Google", "refreshToken": rt,
        "accessToken": at["accessToken"], "expiresAt": exp}])
    eq((r.status, r.json().get("added")), (200, 1), "import %r" % r.body)
    aid = r.json()["results"][0]["id"]
    _wait_ready(d, tok, aid)
    key = d.add_key(tok)["key"]
    eq(_ask(d, key).status, 200, "served with the imported token")
    eq(fake.refresh_stats()["refresh_total"], 0,
       "renewals of an account imported with a live token")


def test_export_without_and_with_secrets_moves_the_pool():
    fake, d, tok = _setup()
    rt_s = fake.add_account(kind="social")
    rt_i = fake.add_account(kind="idc", clientId="cid-exp",
                            clientSecret="csecret-exp-0123456789")
    secrets = [rt_s, rt_i, "csecret-exp-0123456789", "pw-proxy-secret"]
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt_s, "label": "s",
                 "maxConcurrency": 3, "rpm": 40, "enabled": False,
                 "proxy": "http://user:pw-proxy-secret@127.0.0.1:9"})
    eq(r.status, 201, "POST social (body %r)" % r.body)
    eq(r.json()["proxy"], "http://user:***@127.0.0.1:9", "proxy masked")
    # the proxy leads nowhere: the account stays disabled until it is
    # set back to direct
    sid = r.json()["id"]
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "idc", "refreshToken": rt_i, "label": "i",
                 "clientId": "cid-exp",
                 "clientSecret": "csecret-exp-0123456789",
                 "enabled": False})
    eq(r.status, 201, "POST idc (body %r)" % r.body)

    r = d.admin("GET", "/v2/accounts/export", tok)
    eq(r.status, 200, "export (body %r)" % r.body[:200])
    _no_secret(r.body.decode(), secrets, "export without secrets")
    e = r.json()
    eq(e["version"], 1, "version")
    eq([x["label"] for x in e["accounts"]], ["s", "i"], "entries")
    eq(e["accounts"][0]["proxy"], "http://user:***@127.0.0.1:9", "masked")
    check(e["accounts"][0]["refreshTokenHint"], "a hint: %r" % e)
    check("refreshToken" not in e["accounts"][0], "no token")

    r = d.admin("PATCH", "/v2/accounts/%d" % sid, tok,
                {"proxy": "", "enabled": True})
    eq(r.status, 200, "PATCH proxy off (body %r)" % r.body)
    eq(r.json()["proxy"], None, "proxy removed")
    _wait_ready(d, tok, sid)

    r = d.admin("GET", "/v2/accounts/export?secrets=1", tok)
    eq(r.status, 200, "full export (body %r)" % r.body[:200])
    check("attachment" in (r.header("content-disposition") or ""),
          "Content-Disposition: %r" % r.header("content-disposition"))
    full = r.json()
    by = {x["label"]: x for x in full["accounts"]}
    eq(by["s"]["refreshToken"], rt_s, "social refresh token exported")
    eq(by["i"]["clientSecret"], "csecret-exp-0123456789", "client secret")
    eq(by["i"]["enabled"], False, "enabled kept")
    eq((by["s"]["maxConcurrency"], by["s"]["rpm"]), (3, 40), "caps")
    eq(_job_files(d), [], "the export file is gone after sending")
    _no_secret(d.log(), secrets, "the daemon's log")
    eq(d.request("GET", "/v2/accounts/export?secrets=1").status, 401,
       "the full export needs a session")

    # a second daemon, a fresh database: the same accounts, working
    d2 = Daemon(upstream=fake)
    tok2 = d2.login()
    r = d2.admin("POST", "/v2/accounts/import", tok2, full)
    eq(r.status, 200, "import into the second daemon (body %r)"
       % r.body[:300])
    eq(r.json()["added"], 2, "both added")
    lst = {x["label"]: x for x in _accounts(d2, tok2)}
    eq(sorted(lst), ["i", "s"], "labels")
    eq(lst["i"]["enabled"], False, "disabled stays disabled")
    eq((lst["s"]["maxConcurrency"], lst["s"]["rpm"]), (3, 40), "caps")
    _wait_ready(d2, tok2, lst["s"]["id"])
    r = d2.admin("PATCH", "/v2/accounts/%d" % lst["i"]["id"], tok2,
                 {"enabled": True})
    eq(r.status, 200, "enable the idc account")
    _wait_ready(d2, tok2, lst["i"]["id"])
    key = d2.add_key(tok2)["key"]
    eq(_ask(d2, key).status, 200, "the moved pool serves")
    # importing the same file again: all duplicates
    r = d2.admin("POST", "/v2/accounts/import", tok2, full)
    eq([x["status"] for x in r.json()["results"]],
       ["duplicate", "duplicate"], "second import")


def test_feed_reports_each_line():
    fake, d, tok = _setup()
    rt_old = fake.add_account(kind="social")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt_old, "label": "old"})
    eq(r.status, 201, "POST")
    good1 = fake.add_account(kind="social")
    good2 = fake.add_account(kind="idc", clientId="cid-feed",
                             clientSecret="csecret-feed-0123456789")
    good3 = fake.add_account(kind="social")
    revoked = fake.add_account(kind="social")
    fake.revoke(revoked)
    secrets = [good1, good2, good3, revoked, rt_old,
               "csecret-feed-0123456789"]
    lines = [
        good1,                                          # 1 added
        "cid-feed:csecret-feed-0123456789:" + good2,    # 2 added
        "this is not a token",                          # 3 invalid
        good1,                                          # 4 duplicate
        revoked,                                        # 5 refused
        rt_old,                                         # 6 duplicate
        json.dumps({"type": "social", "refreshToken": good3,
                    "label": "j", "rpm": 7}),           # 7 added
        "{\"refreshToken\": ",                          # 8 invalid
    ]
    r = _raw(d, "POST", "/v2/accounts/feed", tok, "\n".join(lines) + "\n",
             "text/plain")
    eq(r.status, 200, "feed (body %r)" % r.body[:300])
    _no_secret(r.body.decode(), secrets, "feed answer")
    j = r.json()
    got = {x["line"]: x["status"] for x in j["results"]}
    eq(got, {1: "added", 2: "added", 3: "invalid", 4: "duplicate",
             5: "refused", 6: "duplicate", 7: "added", 8: "invalid"},
       "feed report (%r)" % j["results"])
    eq((j["total"], j["added"]), (8, 3), "feed counts")
    check(j["id"], "the job id")
    labels = sorted(x["label"] for x in _accounts(d, tok))
    eq(len(labels), 4, "only the good ones added: %r" % labels)
    for x in _accounts(d, tok):
        _wait_ready(d, tok, x["id"])
    _no_secret(d.log(), secrets, "the daemon's log")
    check(d.healthy(), "the daemon serves on")
    key = d.add_key(tok)["key"]
    eq(_ask(d, key).status, 200, "a request after the feed")

    # the JSON forms; bad bodies
    good4 = fake.add_account(kind="social")
    r = d.admin("POST", "/v2/accounts/feed", tok,
                {"lines": [good4, {"refreshToken": good4}]})
    eq(r.status, 200, "JSON feed (body %r)" % r.body[:300])
    eq([x["status"] for x in r.json()["results"]], ["added", "duplicate"],
       "JSON lines")
    for body in ({"lines": []}, {"text": "  \n"}, {"lines": ["a\nb"]},
                 {"lines": [5]}, {"other": 1}):
        r = d.admin("POST", "/v2/accounts/feed", tok, body)
        eq(r.status, 400, "feed %r (body %r)" % (body, r.body))
    r = _raw(d, "POST", "/v2/accounts/feed", tok, "x", "image/png")
    eq(r.status, 415, "feed of another media type")
    eq(len(_accounts(d, tok)), 5, "bad feeds added nothing")


def test_device_flow_start_poll_approve():
    fake, d, tok = _setup()
    r = d.admin("POST", "/v2/auth/device/start", tok, {"label": "dev"})
    eq(r.status, 200, "device start (body %r)" % r.body)
    j = r.json()
    for k in ("id", "userCode", "verificationUri", "expiresAt",
              "interval"):
        check(j.get(k), "device start lacks %s: %r" % (k, j))
    eq(j["status"], "pending", "status")
    r = d.admin("GET", "/v2/auth/device/%s" % j["id"], tok)
    eq(r.status, 200, "poll")
    eq((r.json()["status"], r.json()["userCode"]), ("pending", j["userCode"]),
       "pending with the code")
    for bad in ("00000000-0000-0000-0000-000000000000", "nope", "start"):
        eq(d.admin("GET", "/v2/auth/device/%s" % bad, tok).status,
           404 if bad != "start" else 405, "GET device %s" % bad)
    fake.device("approve", j["userCode"])
    done = wait_for(lambda: (lambda x: x if x["status"] != "pending"
                             else None)(
        d.admin("GET", "/v2/auth/device/%s" % j["id"], tok).json()),
        30.0, interval=0.2, what="device authorization done")
    eq(done["status"], "done", "status (%r)" % done)
    aid = done["accountId"]
    a = _wait_ready(d, tok, aid)
    eq((a["type"], a["label"]), ("idc", "dev"), "the new account")
    key = d.add_key(tok)["key"]
    eq(_ask(d, key).status, 200, "the device account serves")

    # denied
    r = d.admin("POST", "/v2/auth/device/start", tok, {})
    eq(r.status, 200, "second start (body %r)" % r.body)
    j = r.json()
    fake.device("deny", j["userCode"])
    x = wait_for(lambda: (lambda y: y if y["status"] != "pending" else None)(
        d.admin("GET", "/v2/auth/device/%s" % j["id"], tok).json()),
        30.0, interval=0.2, what="device authorization denied")
    eq(x["status"], "denied", "denied (%r)" % x)
    for body in ({"region": "a/b"}, {"startUrl": "ftp://x"},
                 {"proxy": "gopher://h:1"}, {"label": 5}):
        r = d.admin("POST", "/v2/auth/device/start", tok, body)
        eq(r.status, 400, "device start %r (body %r)" % (body, r.body))
