"""The refresher's jobs and schedules against the fake upstream: the AWS
device authorization through the admin API (approved, denied, slowed
down, expired; the registered client reused), usage polling shown in
GET /v2/accounts (and exhausted / back when the quota says so), a
suspension learnt from getUsageLimits, renewals bounded in parallel and
never two at once for one account."""

import os
import signal
import time
import uuid

from qrtest import Daemon, check, eq, wait_for
from qrfake import FakeUpstream


def _setup(top=None, **kw):
    fake = FakeUpstream(quiet=True)
    d = Daemon(upstream=fake, top=top or {}, **kw)
    return fake, d, d.login()


def _device_start(d, tok, body=None):
    r = d.admin("POST", "/v2/auth/device/start", tok, body or {})
    eq(r.status, 200, "device start (body %r)" % r.body)
    j = r.json()
    eq(j.get("status"), "pending", "device start status")
    check(j.get("userCode"), "no userCode in %r" % j)
    check(str(j.get("verificationUri", "")).startswith("http"),
          "verificationUri in %r" % j)
    check(j.get("id"), "no id in %r" % j)
    return j


def _device_get(d, tok, jid):
    r = d.admin("GET", "/v2/auth/device/%s" % jid, tok)
    eq(r.status, 200, "device get (body %r)" % r.body)
    return r.json()


def _device_wait(d, tok, jid, status, timeout=15.0):
    return wait_for(lambda: (lambda j: j if j["status"] == status
                             else None)(_device_get(d, tok, jid)),
                    timeout, what="device job %s %s" % (jid, status))


def _paths(fake, path):
    return [r for r in fake.requests() if r["path"] == path]


def _account(d, tok, aid):
    r = d.admin("GET", "/v2/accounts/%d" % aid, tok)
    eq(r.status, 200, "GET /v2/accounts/%d (body %r)" % (aid, r.body))
    return r.json()


def _add_social(d, tok, fake, label, **fake_kw):
    rt = fake.add_account(kind="social", **fake_kw)
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "label": label, "refreshToken": rt})
    eq(r.status, 201, "POST /v2/accounts (body %r)" % r.body)
    return rt, r.json()["id"]


def test_device_flow_approved_and_client_reused():
    fake, d, tok = _setup()
    j = _device_start(d, tok, {"label": "dev-one"})
    eq(len(_paths(fake, "/client/register")), 1, "one client registered")
    # nothing happens until the user approves
    time.sleep(1.5)
    eq(_device_get(d, tok, j["id"])["status"], "pending", "still pending")
    check(len(_paths(fake, "/token")) >= 1, "the refresher polls")
    fake.device("approve", j["userCode"])
    done = _device_wait(d, tok, j["id"], "done")
    aid = done.get("accountId")
    check(isinstance(aid, int) and aid > 0, "accountId in %r" % done)
    a = wait_for(lambda: (lambda x: x if x["ready"] else None)(
        _account(d, tok, aid)), 10, what="the new account ready")
    eq(a["label"], "dev-one", "label")
    eq(a["type"], "idc", "type")
    # the first access token came with the login: no renewal needed
    eq([r for r in fake.requests() if r["path"] == "/token" and
        isinstance(r["body"], dict) and
        r["body"].get("grantType") == "refresh_token"], [],
       "no refresh right after the login")
    # a second login reuses the registered client
    j2 = _device_start(d, tok, {"label": "dev-two"})
    eq(len(_paths(fake, "/client/register")), 1,
       "the registered client is reused")
    fake.device("approve", j2["userCode"])
    _device_wait(d, tok, j2["id"], "done")
    # the client secret is stored sealed, never in clear
    rows = d.db().execute("SELECT name, value FROM settings WHERE name "
                          "LIKE 'oidc_client:%'").fetchall()
    eq(len(rows), 1, "one kept client")
    secret = fake.call("GET", "/_fake/devices")[0]["clientSecret"]
    check(secret not in rows[0][1], "client secret kept in clear")
    check(secret not in d.log(), "client secret in the log")
    d.stop()


def test_device_flow_denied_slowed_expired():
    fake, d, tok = _setup()
    fake.config(device_interval=1)
    j = _device_start(d, tok)
    fake.device("deny", j["userCode"])
    den = _device_wait(d, tok, j["id"], "denied")
    check(den.get("error"), "a denied login says why: %r" % den)

    j = _device_start(d, tok)
    eq(j.get("interval"), 1, "interval")
    fake.device("slow_down", j["userCode"])
    wait_for(lambda: _device_get(d, tok, j["id"]).get("interval") == 6,
             10, what="slow_down adds 5 s")
    polls_before = len(_paths(fake, "/token"))
    time.sleep(3)
    eq(len(_paths(fake, "/token")), polls_before,
       "no poll within the slowed interval")
    fake.device("approve", j["userCode"])
    _device_wait(d, tok, j["id"], "done", timeout=15)

    j = _device_start(d, tok)
    fake.device("expire", j["userCode"])
    _device_wait(d, tok, j["id"], "expired")
    d.stop()


def test_device_job_of_a_killed_refresher_fails_at_once():
    """A refresher that dies leaves its device login behind: the one the
    master starts in its place fails it with a reason (the user starts
    again) instead of leaving it pending for an hour."""
    fake, d, tok = _setup()
    j = _device_start(d, tok)
    old = d.pids("refresher")
    eq(len(old), 1, "one refresher")
    os.kill(old[0], signal.SIGKILL)
    got = _device_wait(d, tok, j["id"], "failed", timeout=20)
    check("start again" in (got.get("error") or ""), "why: %r" % got)
    check(d.pids("refresher") and d.pids("refresher") != old,
          "a new refresher runs")
    j = _device_start(d, tok)
    fake.device("approve", j["userCode"])
    _device_wait(d, tok, j["id"], "done", timeout=15)
    d.stop()


def test_device_flow_upstream_refuses():
    fake, d, tok = _setup()
    fake.script({"endpoint": "register", "status": 400,
                 "body": {"error": "invalid_client_metadata",
                          "error_description": "Invalid client type"}})
    r = d.admin("POST", "/v2/auth/device/start", tok, {})
    eq(r.status, 502, "register refused (body %r)" % r.body)
    check("invalid_client_metadata" in r.body.decode(), r.body)
    # the daemon goes on serving and the next login works
    j = _device_start(d, tok)
    fake.device("approve", j["userCode"])
    _device_wait(d, tok, j["id"], "done")
    d.stop()


def test_usage_polled_and_shown():
    fake, d, tok = _setup(top={"refresher": {"usage_interval": 2}})
    rt, aid = _add_social(d, tok, fake, "u1")
    fake.set_usage(rt, used=12.5, limit=1000, subscription="KIRO PRO+",
                   email="u1@example.com")

    def polled():
        a = _account(d, tok, aid)
        u = a.get("usage") or {}
        return a if u.get("checkedAt") and u.get("used") == 12.5 else None
    a = wait_for(polled, 15, what="usage polled")
    u = a["usage"]
    eq(u["limit"], 1000, "limit")
    eq(u["remaining"], 987.5, "remaining")
    check(u.get("resetAt"), "reset date")
    eq(u.get("email"), "u1@example.com", "email")
    eq(u.get("subscription"), "KIRO PRO+", "subscription")
    # a usage poll carries the account's access token
    reqs = _paths(fake, "/getUsageLimits")
    check(reqs, "no getUsageLimits request")
    check(reqs[-1]["headers"].get("authorization", "").startswith(
        "Bearer "), "bearer token")
    q = reqs[-1].get("query") or {}
    eq(q.get("origin"), "AI_EDITOR", "origin in %r" % q)
    eq(q.get("resourceType"), "AGENTIC_REQUEST", "resourceType in %r" % q)

    # used up: exhausted until the reset date; back when credits return
    reset = int(time.time()) + 7 * 86400
    fake.set_usage(rt, used=1000, limit=1000, next_reset=reset)
    a = wait_for(lambda: (lambda x: x if x["state"] == "exhausted"
                          else None)(_account(d, tok, aid)), 15,
                 what="exhausted")
    check(a["stateUntil"], "exhausted until the reset: %r" % a)
    fake.set_usage(rt, used=5, limit=1000)
    wait_for(lambda: _account(d, tok, aid)["state"] == "enabled", 15,
             what="enabled again")
    d.stop()


def test_usage_suspension_learnt_and_kept():
    fake, d, tok = _setup(top={"refresher": {"usage_interval": 2}})
    rt, aid = _add_social(d, tok, fake, "s1")
    fake.script({"endpoint": "usage", "status": 403, "times": "forever",
                 "body": {"__type": "com.amazon.aws.codewhisperer#"
                          "AccessDeniedException",
                          "message": "Your User ID temporarily is "
                          "suspended.", "reason": "TEMPORARILY_SUSPENDED"}})
    wait_for(lambda: _account(d, tok, aid)["state"] == "suspended", 15,
             what="suspended")
    # persisted by the refresher: a restart shows it still
    wait_for(lambda: d.db().execute("SELECT state FROM accounts WHERE "
                                    "id = ?", (aid,)).fetchone()[0] ==
             "suspended", 10, what="suspended in the database")
    d.stop()
    d.start()
    tok = d.login()
    eq(_account(d, tok, aid)["state"], "suspended", "after a restart")
    d.stop()


def test_renewals_bounded_and_spread():
    n = 24
    fake, d, tok = _setup(top={"refresher": {"parallel": 3,
                                             "usage_interval": 0}})
    fake.config(refresh_delay_ms=150)
    fake.reset_stats()
    ids = []
    for i in range(n):
        _, aid = _add_social(d, tok, fake, "b%d" % i)
        ids.append(aid)
        if i == n // 2:
            # a reload: the old and the new refresher overlap
            d.signal(signal.SIGHUP)
    wait_for(lambda: all(_account(d, tok, a)["ready"] for a in ids), 30,
             what="every account renewed")
    st = fake.refresh_stats()
    check(st["refresh_total"] >= n, "%r renewals for %d accounts"
          % (st["refresh_total"], n))
    check(st["refresh_max_parallel"] <= 3,
          "at most 3 renewals at once: %r" % st)
    check(st["refresh_max_parallel"] >= 2, "renewals run in parallel: %r"
          % st)
    eq(st["refresh_overlap_same_account"], 0, "never two for one account")
    eq(max(st["refresh_by_account"].values()), 1,
       "one renewal per account: %r" % st["refresh_by_account"])
    d.stop()


def test_feed_checked_reported_and_added_at_once():
    fake, d, tok = _setup(top={"refresher": {"usage_interval": 0}})
    rt_have, aid_have = _add_social(d, tok, fake, "have")
    rt_soc = fake.add_account(kind="social")
    rt_rot = fake.add_account(kind="social", rotate=True)
    rt_idc = fake.add_account(kind="idc", clientId="cid-f",
                              clientSecret="csec-f-0123456789abcdef")
    rt_bad = fake.add_account(kind="social")
    fake.revoke(rt_bad)
    feed = "\n".join([
        "# a comment",
        rt_soc,                                             # 2 added
        "",
        "cid-f:csec-f-0123456789abcdef:" + rt_idc,          # 4 added
        rt_have,                                            # 5 duplicate
        rt_soc,                                             # 6 duplicate
        '{"refreshToken": "x", "type": "nope"',             # 7 invalid
        rt_bad,                                             # 8 refused
        '{"refreshToken": "%s", "label": "rot"}' % rt_rot,  # 9 added
    ]) + "\n"
    r = d.request("POST", "/v2/accounts/feed",
                  {"Authorization": "Bearer " + tok,
                   "Content-Type": "text/plain"}, feed, timeout=60)
    eq(r.status, 200, "feed (body %r)" % r.body[:500])
    j = r.json()
    res = {e["line"]: e for e in j["results"]}
    eq(sorted(res), [2, 4, 5, 6, 7, 8, 9], "one result per line")
    eq({k: v["status"] for k, v in res.items()},
       {2: "added", 4: "added", 5: "duplicate", 6: "duplicate",
        7: "invalid", 8: "refused", 9: "added"}, "statuses")
    eq(res[5].get("id"), aid_have, "the duplicate names the account")
    check("line 2" in res[6].get("error", ""), "%r" % res[6])
    eq((j["total"], j["added"], j["failed"]), (7, 3, 4), "counts")
    for s in (rt_soc, rt_idc, rt_bad, rt_rot, "csec-f-0123456789abcdef"):
        check(s not in r.body.decode(), "a secret in the report")
        check(s not in d.log(), "a secret in the log")
    # the added accounts came with their first token: ready at once
    for line in (2, 4, 9):
        a = _account(d, tok, res[line]["id"])
        check(a["ready"], "line %d's account ready: %r" % (line, a))
    eq(_account(d, tok, res[9]["id"])["label"], "rot", "label kept")
    eq([f for f in os.listdir(d.vardir) if f.endswith(".in")], [],
       "the feed's refresh tokens do not stay on disk")
    # the check rotated line 9's token: the new one was kept, so a
    # renewal presents it (the old one is refused by now)
    since = fake.last_seq()
    r = d.admin("POST", "/v2/accounts/%d/refresh" % res[9]["id"], tok)
    check(r.status in (200, 202, 204), "refresh (%r)" % r.body)
    calls = wait_for(lambda: [c for c in fake.refresh_calls(since)
                              if c["status"]], 10,
                     what="the forced renewal")
    eq([(c["status"], c["body"]["refreshToken"] == rt_rot) for c in calls],
       [(200, False)], "renewed with the rotated token")
    eq(_account(d, tok, res[9]["id"])["state"], "enabled", "rotated: fine")
    d.stop()


def test_export_full_through_the_refresher():
    fake, d, tok = _setup(top={"refresher": {"usage_interval": 0}})
    rt, aid = _add_social(d, tok, fake, "ex1")
    r = d.admin("GET", "/v2/accounts/export?secrets=1", tok)
    eq(r.status, 200, "export (body %r)" % r.body[:300])
    check(rt in r.body.decode(), "the full export has the refresh token")
    leftover = [f for f in os.listdir(d.vardir) if f.startswith("job-")]
    eq(leftover, [], "no export file left next to the database")
    d.stop()


def test_stale_job_files_removed_at_start():
    """A daemon stopped with a full export (or a feed) on disk: the next
    start removes what no job entry names; other files stay."""
    fake, d, tok = _setup(top={"refresher": {"usage_interval": 0}})
    d.stop()
    stale = [os.path.join(d.vardir, "job-%s.%s" % (uuid.uuid4(), w))
             for w in ("out", "in", "out.tmp")]
    keep = [os.path.join(d.vardir, n) for n in
            ("job-notes.txt", "job-%s.log" % uuid.uuid4())]
    for p in stale + keep:
        with open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write('[{"refreshToken":"stale-secret"}]')
    d.start()
    wait_for(lambda: not any(os.path.exists(p) for p in stale), 10,
             what="stale job files removed")
    for p in keep:
        check(os.path.exists(p), "%s removed" % p)
    d.stop()


def test_feed_leaves_room_for_a_renewal():
    """A long feed does not hold the renewals off: with one call at a
    time, an admin's refresh runs between the feed's checks, not after
    the last of them."""
    import threading
    fake, d, tok = _setup(top={"refresher": {"parallel": 1,
                                             "usage_interval": 0}})
    rt_have, aid_have = _add_social(d, tok, fake, "have")
    wait_for(lambda: _account(d, tok, aid_have)["ready"], 10,
             what="the account ready")
    n = 30
    feed = "\n".join(fake.add_account(kind="social")
                     for _ in range(n)) + "\n"
    fake.config(refresh_delay_ms=150)
    since = fake.last_seq()
    out = {}

    def run():
        out["r"] = d.request("POST", "/v2/accounts/feed",
                             {"Authorization": "Bearer " + tok,
                              "Content-Type": "text/plain"}, feed,
                             timeout=120)
    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: len(fake.refresh_calls(since)) >= 3, 10,
             what="the feed's checks under way")
    r = d.admin("POST", "/v2/accounts/%d/refresh" % aid_have, tok)
    check(r.status in (200, 202, 204), "refresh (%r)" % r.body)
    t.join(120)
    eq(out["r"].status, 200, "feed (body %r)" % out["r"].body[:300])
    calls = fake.refresh_calls(since)
    mine = [i for i, c in enumerate(calls)
            if c["body"].get("refreshToken") == rt_have]
    check(mine, "the admin's refresh never ran")
    after = len(calls) - 1 - mine[0]
    check(after >= 10, "the refresh waited for the feed: only %d of %d "
          "checks after it" % (after, n))
    d.stop()
