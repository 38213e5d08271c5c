"""qrelayctl and the account pool: device login against the fake's OIDC
device flow (approved, denied after a slow_down, expired, interrupted,
the client registration reused), feed (good, duplicate and malformed
lines; -c trying each token), export and import between two hosts,
per-account caps and proxy shown by account list, enable clearing a
suspended or exhausted state, and settings picked up by the running
daemon."""

import json
import os
import pty
import re
import signal
import subprocess
import time

from qrtest import Daemon, QRELAYCTL, check, eq, wait_for
from qrfake import FakeUpstream, Pool

CODE_RE = re.compile(r"code ([A-Z]{4}-[A-Z]{4})")


def _setup(**kw):
    fake = FakeUpstream(quiet=True)
    d = Daemon(upstream=fake, **kw)
    return fake, d, d.login()


def _accounts(d, tok):
    r = d.admin("GET", "/v2/accounts", tok)
    eq(r.status, 200, "GET /v2/accounts (body %r)" % r.body[:300])
    return {a["id"]: a for a in r.json()["accounts"]}


def _wait_ready(d, tok, ids, timeout=15.0):
    wait_for(lambda: all(_accounts(d, tok).get(i, {}).get("ready")
                         for i in ids), timeout, interval=0.1,
             what="accounts %r ready" % (ids,))


def _list(d):
    """qrelayctl account list as {id: [fields]}."""
    p = d.ctl("account", "list")
    eq(p.returncode, 0, "account list (stderr %r)" % p.stderr)
    return {int(l.split("\t")[0]): l.split("\t")
            for l in p.stdout.splitlines()}


def _no_secret(text, secrets, where):
    for s in secrets:
        check(s not in text, "%s shows a secret in full (%s...)"
              % (where, s[:8]))


# -- account login --------------------------------------------------------

def _login(d, *args):
    """Start qrelayctl account login; returns (process, user code,
    the verification address it printed)."""
    p = subprocess.Popen([QRELAYCTL, "-f", d.conf, "account", "login"] +
                         list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=d.env(), cwd=d.tmp)
    seen = ""
    deadline = time.time() + 15
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
        m = CODE_RE.search(seen)
        if m and "waiting" in line:
            url = re.search(r"(http\S+)", seen)
            check(url is not None, "no address printed: %r" % seen)
            return p, m.group(1), url.group(1)
    p.kill()
    raise AssertionError("no user code from account login: %r (rc %r)"
                         % (seen, p.poll()))


def _finish(p, timeout=20):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _registers(fake):
    return [r for r in fake.requests() if r["path"] == "/client/register"]


def test_ctl_login_approved_and_registration_reused():
    fake, d, tok = _setup()
    p, code, url = _login(d, "-l", "device one")
    check(url.endswith("user_code=" + code),
          "the complete address carries the code: %r" % url)
    fake.device("approve", code)
    rc, out, err = _finish(p)
    eq(rc, 0, "login exit status (stderr %r)" % err)
    aid = int(out.strip())
    a = _accounts(d, tok)[aid]
    eq(a["type"], "idc", "type")
    eq(a["label"], "device one", "label")
    # added with its first access token: ready without a renewal
    _wait_ready(d, tok, [aid])
    eq([r for r in fake.requests() if r["path"] == "/token" and
        isinstance(r.get("body"), dict) and
        r["body"].get("grantType") == "refresh_token"], [],
       "no refresh was needed after the login")
    # the registration is kept, its secret sealed
    row = d.query("SELECT value FROM settings WHERE name = ?",
                  ("oidc_client:us-east-1",))
    eq(len(row), 1, "settings row oidc_client:us-east-1")
    kept = json.loads(row[0][0])
    reg = _registers(fake)
    eq(len(reg), 1, "one RegisterClient")
    check("clientId" in kept and kept.get("expiresAt", 0) > time.time(),
          "kept registration %r" % kept)
    # the second login reuses it
    p, code, _ = _login(d, "-l", "device two")
    fake.device("approve", code)
    rc, out, err = _finish(p)
    eq(rc, 0, "second login (stderr %r)" % err)
    eq(len(_registers(fake)), 1, "RegisterClient not called again")
    aid2 = int(out.strip())
    check(aid2 != aid, "a second account")
    lines = _list(d)
    eq(lines[aid2][2], "device two", "list label")
    eq(lines[aid2][3], "enabled", "list state")


def test_ctl_login_denied_expired_interrupted():
    fake, d, tok = _setup()
    # slow_down first: the wait grows by 5 s, then the denial ends it
    p, code, _ = _login(d)
    fake.device("slow_down", code)

    def polls():
        return [v["polls"] for v in fake.call("GET", "/_fake/devices")
                if v["userCode"] == code][0]
    wait_for(lambda: polls() >= 1, 5, what="the poll answered slow_down")
    t0 = time.time()
    fake.device("deny", code)
    rc, out, err = _finish(p)
    eq(rc, 1, "denied login exit status")
    check("denied" in err, "reason printed: %r" % err)
    eq(out, "", "nothing on stdout")
    eq(polls(), 2, "one more poll after slow_down")
    # interval 1 s at the fake, 5 more after slow_down
    check(time.time() - t0 >= 5, "slow_down lengthened the wait (%.1f s)"
          % (time.time() - t0))

    p, code, _ = _login(d)
    fake.device("expire", code)
    rc, out, err = _finish(p)
    eq(rc, 1, "expired login exit status")
    check("expired" in err, "reason printed: %r" % err)

    p, code, _ = _login(d)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    rc, out, err = _finish(p, timeout=5)
    eq(rc, 1, "interrupted login exit status")
    check("interrupted" in err, "reason printed: %r" % err)
    eq(_accounts(d, tok), {}, "no account added by any of them")
    eq(d.ctl("account", "login", "-r", "Bad Region").returncode, 1,
       "bad region refused")
    eq(d.ctl("account", "login", "-p", "ftp://x").returncode, 1,
       "bad proxy refused")


# -- feed -------------------------------------------------------------------

def test_ctl_feed_lines():
    fake, d, tok = _setup()
    rt_soc = fake.add_account(kind="social")
    rt_idc = fake.add_account(kind="idc", clientId="cid-feed",
                              clientSecret="csec-feed-0123456789")
    rt_json = fake.add_account(kind="social")
    secrets = [rt_soc, rt_idc, rt_json, "csec-feed-0123456789"]
    feed = "\n".join([
        "# a comment",
        rt_soc,
        "cid-feed:csec-feed-0123456789:" + rt_idc,
        rt_soc,
        "not a token",
        json.dumps({"type": "social", "refreshToken": rt_json,
                    "label": "from json"}),
        '{"type": "social", "refreshToken": ',
        "",
    ]) + "\n"
    p = d.ctl("account", "feed", stdin=feed)
    eq(p.returncode, 1, "feed with bad lines exits 1 (stderr %r)" % p.stderr)
    _no_secret(p.stdout + p.stderr, secrets, "feed output")
    out = p.stdout.splitlines()
    eq(len(out), 6, "one result per account line (%r)" % out)
    ids = {}
    for no in (2, 3, 6):
        m = [re.fullmatch(r"line %d: added id (\d+)" % no, l) for l in out]
        m = [x for x in m if x]
        eq(len(m), 1, "line %d added (%r)" % (no, out))
        ids[no] = int(m[0].group(1))
    check("line 4: duplicate of line 2" in out, "in-feed duplicate %r" % out)
    check(any(l.startswith("line 5: invalid: ") for l in out),
          "bare line with spaces invalid %r" % out)
    check(any(l.startswith("line 7: invalid: ") and "JSON" in l
              for l in out), "broken JSON invalid %r" % out)
    # the daemon was told and the refresher renews them
    _wait_ready(d, tok, list(ids.values()))
    accts = _accounts(d, tok)
    eq(accts[ids[3]]["type"], "idc", "the idc line")
    eq(accts[ids[3]]["clientId"], "cid-feed", "its client id")
    eq(accts[ids[6]]["label"], "from json", "the JSON line's label")
    eq(len(accts), 3, "three accounts")

    # again, from a file: a duplicate of the database's account
    path = os.path.join(d.tmp, "feed.txt")
    with open(path, "w") as f:
        f.write(rt_soc + "\n")
    p = d.ctl("account", "feed", path)
    eq(p.returncode, 0, "a feed of duplicates exits 0")
    eq(p.stdout.strip(), "line 1: duplicate of id %d" % ids[2], "output")
    eq(len(_accounts(d, tok)), 3, "nothing added")
    eq(d.ctl("account", "feed", "/nonexistent/feed").returncode, 1,
       "missing file")


def test_ctl_feed_check_tries_tokens():
    fake, d, tok = _setup()
    good = fake.add_account(kind="social")
    revoked = fake.add_account(kind="social")
    fake.revoke(revoked)
    unknown = "aorAAAAunknownTokenThatTheFakeNeverIssued0123456789"
    n0 = len(fake.requests())
    p = d.ctl("account", "feed", "-c",
              stdin="%s\n%s\n%s\n" % (good, revoked, unknown))
    eq(p.returncode, 1, "some refused (stdout %r stderr %r)"
       % (p.stdout, p.stderr))
    out = p.stdout.splitlines()
    m = re.fullmatch(r"line 1: added id (\d+)", out[0])
    check(m is not None, "good token added: %r" % out)
    check(out[1].startswith("line 2: refused: "), "revoked: %r" % out)
    check(out[2].startswith("line 3: refused: "), "unknown: %r" % out)
    _no_secret(p.stdout + p.stderr, [good, revoked, unknown], "feed -c")
    tried = [r for r in fake.requests()[n0:]
             if r["path"] == "/refreshToken"]
    eq(len(tried), 3, "each token tried once by qrelayctl")
    aid = int(m.group(1))
    eq(list(_accounts(d, tok)), [aid], "only the good one stored")
    # stored with the token qrelayctl obtained: no second renewal
    _wait_ready(d, tok, [aid])
    time.sleep(0.5)
    eq(len([r for r in fake.requests()[n0:]
            if r["path"] == "/refreshToken"]), 3,
       "the refresher did not renew it again")


# -- export and import ------------------------------------------------------

def test_ctl_export_import_round_trip():
    fake, d, tok = _setup()
    rt_a = fake.add_account(kind="social")
    rt_b = fake.add_account(kind="idc", clientId="cid-x",
                            clientSecret="csec-x-0123456789abcdef")
    secrets = [rt_a, rt_b, "csec-x-0123456789abcdef"]
    p = d.ctl("account", "feed",
              stdin="%s\ncid-x:csec-x-0123456789abcdef:%s\n" % (rt_a, rt_b))
    eq(p.returncode, 0, "feed (stdout %r)" % p.stdout)
    first = int(re.match(r"line 1: added id (\d+)", p.stdout).group(1))
    p = d.ctl("account", "set", str(first), "-c", "3", "-m", "30", "-l",
              "moved")
    eq(p.returncode, 0, "set (stderr %r)" % p.stderr)

    p = d.ctl("account", "export")
    eq(p.returncode, 0, "export (stderr %r)" % p.stderr)
    _no_secret(p.stdout, secrets, "export without -s")
    j = json.loads(p.stdout)
    eq(len(j["accounts"]), 2, "two accounts exported")

    # -s refuses a terminal, unless -f
    master, slave = pty.openpty()
    try:
        r = subprocess.run([QRELAYCTL, "-f", d.conf, "account", "export",
                            "-s"], stdout=slave, stderr=subprocess.PIPE,
                           text=True, env=d.env(), cwd=d.tmp, timeout=20)
    finally:
        os.close(slave)
        os.close(master)
    eq(r.returncode, 1, "export -s to a terminal refused")
    check("terminal" in r.stderr, "says why: %r" % r.stderr)

    p = d.ctl("account", "export", "-s")
    eq(p.returncode, 0, "export -s (stderr %r)" % p.stderr)
    for s in secrets:
        check(s in p.stdout, "export -s holds every secret (%s...)" % s[:8])
    path = os.path.join(d.tmp, "pool.json")
    with open(path, "w") as f:
        f.write(p.stdout)

    # another host: a fresh database and key
    d2 = Daemon(upstream=fake)
    tok2 = d2.login()
    p = d2.ctl("account", "import", path)
    eq(p.returncode, 0, "import (stdout %r stderr %r)"
       % (p.stdout, p.stderr))
    _no_secret(p.stdout + p.stderr, secrets, "import output")
    out = p.stdout.splitlines()
    eq(len(out), 2, "one line per entry (%r)" % out)
    check(all(re.fullmatch(r"entry \d: added id \d+", l) for l in out),
          "import results %r" % out)
    accts = _accounts(d2, tok2)
    eq(sorted(a["label"] for a in accts.values()), ["", "moved"],
       "labels moved")
    moved = [a for a in accts.values() if a["label"] == "moved"][0]
    eq((moved["maxConcurrency"], moved["rpm"]), (3, 30), "caps moved")
    _wait_ready(d2, tok2, list(accts))
    raw = open(d2.db_path, "rb").read()
    _no_secret(raw.decode("latin-1"), secrets, "the new database file")

    # again: duplicates, exit 0; not JSON: refused whole
    p = d2.ctl("account", "import", "-", stdin=open(path).read())
    eq(p.returncode, 0, "import of duplicates")
    check(all(" duplicate of id " in l for l in p.stdout.splitlines()),
          "all duplicates: %r" % p.stdout)
    p = d2.ctl("account", "import", "-", stdin="this is not json\n")
    eq(p.returncode, 1, "not JSON")
    check("nothing was imported" in p.stderr, "says so: %r" % p.stderr)
    eq(len(_accounts(d2, tok2)), 2, "still two accounts")


# -- set, enable, list ------------------------------------------------------

def test_ctl_set_caps_proxy_and_enable():
    fake, d, tok = _setup()
    rt = fake.add_account(kind="social")
    p = d.ctl("account", "feed", stdin=rt + "\n")
    aid = int(re.search(r"added id (\d+)", p.stdout).group(1))
    _wait_ready(d, tok, [aid])
    lines = _list(d)
    eq(len(lines[aid]), 19, "19 columns (%r)" % lines[aid])
    eq(lines[aid][12:14], ["-", "-"], "no caps, no proxy")

    p = d.ctl("account", "set", str(aid), "-c", "4", "-m", "60", "-p",
              "socks5h://user:pw-secret-42@127.0.0.1:1080")
    eq(p.returncode, 0, "set (stderr %r)" % p.stderr)
    p = d.ctl("account", "list")
    check("pw-secret-42" not in p.stdout, "proxy password hidden")
    f = _list(d)[aid]
    eq(f[12], "4/60", "caps column")
    eq(f[13], "socks5h://user:***@127.0.0.1:1080", "masked proxy")
    a = wait_for(lambda: (lambda x: x if x["maxConcurrency"] == 4 else None)(
        _accounts(d, tok)[aid]), what="caps in the daemon")
    eq(a["rpm"], 60, "rpm in the daemon")
    check("pw-secret-42" not in json.dumps(a), "API hides the password")

    p = d.ctl("account", "set", str(aid), "-P", "-m", "0")
    eq(p.returncode, 0, "remove the proxy")
    eq(_list(d)[aid][12:14], ["4/-", "-"], "proxy removed, rpm 0")
    eq(d.ctl("account", "set", str(aid), "-p", "ftp://h:1").returncode, 1,
       "bad proxy")
    eq(d.ctl("account", "set", str(aid), "-c", "-1").returncode, 1,
       "bad cap")
    eq(d.ctl("account", "set", str(aid)).returncode, 2, "nothing to set")
    eq(d.ctl("account", "set", "999", "-c", "1").returncode, 1,
       "unknown account")

    # states from the database: suspended, exhausted; enable clears both.
    # The daemon is stopped first: it would write its own view back.
    d.stop()
    with d.db() as c:
        c.execute("UPDATE accounts SET state = 'suspended' WHERE id = ?",
                  (aid,))
    eq(_list(d)[aid][3], "suspended", "suspended shown")
    eq(d.ctl("account", "enable", str(aid)).returncode, 0, "enable")
    eq(_list(d)[aid][3], "enabled", "enable clears suspended")
    until = int(time.time()) + 86400
    with d.db() as c:
        c.execute("UPDATE accounts SET exhausted_until = ? WHERE id = ?",
                  (until, aid))
    f = _list(d)[aid]
    eq(f[3], "exhausted", "exhausted shown")
    eq(f[9], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)),
       "until column")
    eq(d.ctl("account", "enable", str(aid)).returncode, 0, "enable")
    f = _list(d)[aid]
    eq((f[3], f[9]), ("enabled", "-"), "enable clears exhausted")


def test_ctl_list_shows_live_state_and_counters():
    """What workers learn (a cooldown, the counters) reaches the
    database through the refresher: qrelayctl shows it, and it outlives
    a restart."""
    fake, d, tok = _setup()
    rt = fake.add_account(kind="social")
    p = d.ctl("account", "feed", stdin=rt + "\n")
    aid = int(re.search(r"added id (\d+)", p.stdout).group(1))
    _wait_ready(d, tok, [aid])
    key = d.add_key(tok)["key"]
    hdrs = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-4.5", "max_tokens": 32,
            "messages": [{"role": "user", "content": "count me"}]}
    for _ in range(2):
        eq(d.request("POST", "/v1/messages", hdrs, body).status, 200,
           "a request")
    fake.script({"preset": "THROTTLING", "retry_after": 60})
    eq(d.request("POST", "/v1/messages", hdrs, body).status, 429,
       "throttled, one account")
    f = wait_for(lambda: (lambda x: x if x[3] == "coolingDown" else None)(
        _list(d)[aid]), 15, interval=0.3, what="the cooldown in the list")
    check(f[9] != "-", "until shown: %r" % f)
    # the counters are written once a minute, and at a stop
    d.stop()
    f = _list(d)[aid]
    eq(f[14:16], ["3", "1"], "requests and failures after a stop")
    check(int(f[17]) > 0, "output tokens counted: %r" % f)
    d.start()
    a = _accounts(d, tok)[aid]
    eq((a["state"], a["counters"]["requests"], a["counters"]["failures"]),
       ("coolingDown", 3, 1), "after a restart: %r" % a)


# -- settings ---------------------------------------------------------------

def test_ctl_settings_reach_the_daemon():
    p = Pool(2)
    d = p.d
    out = d.ctl("set")
    eq(out.returncode, 0, "set without arguments")
    shown = dict(l.split("\t", 1) for l in out.stdout.splitlines())
    eq(shown.get("poolStrategy"), "round_robin", "default strategy")
    eq(shown.get("poolMaxAttempts"), "3", "default attempts")
    check("admin_password_hash" not in out.stdout, "no password hash")

    since = p.fake.last_seq()
    for i in range(4):
        eq(p.anth("rr %d" % i).status, 200, "status")
    eq(len(set(lab for lab, _ in p.served(since))), 2,
       "round robin uses both accounts")

    for bad in (("poolStrategy", "fastest"), ("poolMaxAttempts", "9"),
                ("poolQueueTimeout", "-1"), ("nosuch", "1"),
                ("admin_password_hash", "x")):
        r = d.ctl("set", *bad)
        eq(r.returncode, 1, "set %s %s refused" % bad)
    eq(d.ctl("set", "poolStrategy").returncode, 2, "no value: usage")

    start = len(d.log())
    for name, val in (("poolStrategy", "sequential"),
                      ("poolStickyTtl", "600"), ("poolMaxAttempts", "2")):
        r = d.ctl("set", name, val)
        eq(r.returncode, 0, "set %s %s (stderr %r)" % (name, val, r.stderr))
    rows = dict(d.query("SELECT name, value FROM settings WHERE name "
                        "LIKE 'pool%'"))
    eq(rows, {"poolStrategy": "sequential", "poolStickyTtl": "600",
              "poolMaxAttempts": "2"}, "settings rows")
    g = d.admin("GET", "/v2/settings", p.tok).json()
    eq((g["poolStrategy"], g["poolStickyTtl"], g["poolMaxAttempts"]),
       ("sequential", 600, 2), "GET /v2/settings")
    # the master reloaded its tables: the workers pick sequentially now
    d.wait_log(r"accounts reloaded from the database", start=start)
    time.sleep(0.2)
    since = p.fake.last_seq()
    for i in range(4):
        eq(p.anth("seq %d" % i).status, 200, "status")
    labs = [lab for lab, _ in p.served(since)]
    eq(len(labs), 4, "four calls (%r)" % labs)
    eq(len(set(labs)), 1, "sequential: one account (%r)" % labs)
