"""The admin API (/v2) and client keys on /v1: login, sessions (Bearer
and cookie), throttling, status, keys created/deleted taking effect at
once, separation of /v1 and /v2 credentials, no secret at rest or in
the log."""

import glob
import os
import re
import signal
import stat
import time

from qrtest import (Daemon, ADMIN_PASSWORD, check, eq, sha256_hex, wait_for)


def _openai_error(r, what):
    j = r.json()
    e = j.get("error")
    check(isinstance(e, dict), "%s: no error object in %r" % (what, j))
    check(isinstance(e.get("message"), str) and e["message"],
          "%s: error.message missing: %r" % (what, j))
    check(isinstance(e.get("type"), str) and e["type"],
          "%s: error.type missing: %r" % (what, j))


def test_login_token_and_cookie():
    d = Daemon()
    r = d.request("POST", "/v2/auth/login", body={"password": ADMIN_PASSWORD})
    eq(r.status, 200, "login status (body %r)" % r.body)
    j = r.json()
    tok = j.get("token")
    check(isinstance(tok, str) and len(tok) >= 32,
          "login token too short or missing: %r" % j)
    check("expiresAt" in j, "login: no expiresAt in %r" % j)
    cookies = r.header_all("Set-Cookie")
    check(cookies, "login: no Set-Cookie")
    ck = cookies[0]
    attrs = [a.strip().lower() for a in ck.split(";")]
    check("httponly" in attrs, "cookie lacks HttpOnly: %r" % ck)
    check("samesite=strict" in attrs, "cookie lacks SameSite=Strict: %r" % ck)
    name, _, value = ck.split(";")[0].partition("=")
    check(value, "cookie has no value: %r" % ck)
    # the token works as Bearer
    r = d.admin("GET", "/v2/status", tok)
    eq(r.status, 200, "/v2/status with Bearer token")
    # the cookie works alone
    r = d.get("/v2/status", {"Cookie": "%s=%s" % (name.strip(), value)})
    eq(r.status, 200, "/v2/status with the session cookie")
    r = d.get("/v2/status", {"Cookie": "other=1; %s=%s; x=y"
                             % (name.strip(), value)})
    eq(r.status, 200, "/v2/status with the cookie among others")
    # no credentials, bad credentials
    r = d.get("/v2/status")
    eq(r.status, 401, "/v2/status without credentials")
    r = d.admin("GET", "/v2/status", "not-a-token")
    eq(r.status, 401, "/v2/status with a bogus token")
    r = d.admin("GET", "/v2/status", tok[:-1] + ("A" if tok[-1] != "A"
                                                 else "B"))
    eq(r.status, 401, "/v2/status with a token one char off")
    r = d.get("/v2/keys")
    eq(r.status, 401, "/v2/keys without credentials")


def test_wrong_password_401():
    d = Daemon()
    r = d.request("POST", "/v2/auth/login", body={"password": "nope"})
    eq(r.status, 401, "login with a wrong password")
    check("error" in r.json(), "401 without an error object")
    check(not r.header_all("Set-Cookie"), "wrong password set a cookie")
    r = d.request("POST", "/v2/auth/login", body={"password": ""})
    check(r.status in (400, 401), "login with an empty password: %d"
          % r.status)
    r = d.request("POST", "/v2/auth/login", body={})
    check(r.status in (400, 401), "login without a password: %d" % r.status)


def test_login_throttled_after_5_failures():
    d = Daemon()
    for i in range(5):
        r = d.request("POST", "/v2/auth/login",
                      body={"password": "wrong-%d" % i})
        eq(r.status, 401, "wrong password attempt %d" % (i + 1))
    r = d.request("POST", "/v2/auth/login", body={"password": "wrong-6"})
    eq(r.status, 429, "6th attempt after 5 failures")
    ra = r.header("Retry-After")
    check(ra is not None and ra.isdigit() and int(ra) > 0,
          "429 without a positive Retry-After: %r" % ra)
    # even the right password is refused while locked (no oracle)
    r = d.request("POST", "/v2/auth/login", body={"password": ADMIN_PASSWORD})
    eq(r.status, 429, "right password while locked")
    # on a new connection (the other worker, maybe): still locked
    for i in range(4):
        r = d.request("POST", "/v2/auth/login", body={"password": "x"})
        eq(r.status, 429, "attempt %d while locked" % i)


def test_status_processes_and_counters():
    d = Daemon(workers=2)
    kids = d.wait_roles()
    tok = d.login()
    r = d.admin("GET", "/v2/status", tok)
    eq(r.status, 200, "/v2/status")
    check((r.header("Content-Type") or "").startswith("application/json"),
          "/v2/status Content-Type %r" % r.header("Content-Type"))
    j = r.json()
    procs = j.get("processes")
    check(isinstance(procs, list), "processes is not a list: %r" % j)
    roles = sorted(p.get("role") for p in procs)
    eq(roles, ["logger", "master", "refresher", "worker", "worker"],
       "roles in /v2/status")
    pids = {p.get("pid") for p in procs}
    check(d.pid in pids, "master pid %d not in %r" % (d.pid, pids))
    for pid in kids:
        check(pid in pids, "child %d not in /v2/status processes" % pid)
    check(isinstance(j.get("counters"), dict), "no counters: %r" % j)
    check("logDropped" in j["counters"], "no counters.logDropped")
    check(isinstance(j.get("uptime"), int), "no uptime: %r" % j)


def test_keys_lifecycle_and_separation():
    d = Daemon(workers=2)
    d.wait_roles()
    tok = d.login()
    # /v1 without a key: OpenAI-shaped 401
    r = d.get("/v1/models")
    eq(r.status, 401, "/v1/models without a key")
    _openai_error(r, "/v1/models without a key")
    r = d.get("/v1/models", {"Authorization": "Bearer sk-qr-" + "x" * 43})
    eq(r.status, 401, "/v1/models with an unknown key")
    _openai_error(r, "/v1/models with an unknown key")

    j = d.add_key(tok, "t")
    key, kid = j["key"], j.get("id")
    check(key.startswith("sk-qr-"), "key %r lacks the sk-qr- prefix" % key)
    check(len(key) >= 40, "key too short: %r" % key)
    check(kid is not None, "POST /v2/keys returned no id: %r" % j)
    # works at once, on many new connections (so on both workers)
    for i in range(16):
        hdr = {"Authorization": "Bearer " + key} if i % 2 else \
            {"x-api-key": key}
        r = d.get("/v1/models", hdr)
        eq(r.status, 200, "/v1/models with the new key, request %d (%s)"
           % (i, list(hdr)[0]))
        r.json()
    # the key does not open /v2, the admin token does not open /v1
    r = d.admin("GET", "/v2/status", key)
    eq(r.status, 401, "/v2/status with a client key")
    r = d.get("/v2/keys", {"x-api-key": key})
    eq(r.status, 401, "/v2/keys with a client key in x-api-key")
    r = d.get("/v1/models", {"Authorization": "Bearer " + tok})
    eq(r.status, 401, "/v1/models with the admin token")
    r = d.get("/v1/models", {"x-api-key": tok})
    eq(r.status, 401, "/v1/models with the admin token in x-api-key")
    # the list never shows the full key, nor its hash
    r = d.admin("GET", "/v2/keys", tok)
    eq(r.status, 200, "GET /v2/keys")
    check(key.encode() not in r.body, "GET /v2/keys contains the full key")
    check(sha256_hex(key).encode() not in r.body,
          "GET /v2/keys contains the key's hash")
    check(b'"t"' in r.body, "GET /v2/keys does not list the key's name")
    # a second key, then delete the first: it stops at once, the second
    # keeps working
    key2 = d.add_key(tok, "t2")["key"]
    check(key2 != key, "two keys are equal")
    r = d.admin("DELETE", "/v2/keys/%s" % kid, tok)
    check(r.status in (200, 204), "DELETE /v2/keys/%s: %d" % (kid, r.status))
    for i in range(12):
        r = d.get("/v1/models", {"Authorization": "Bearer " + key})
        eq(r.status, 401, "deleted key, request %d" % i)
        r = d.get("/v1/models", {"x-api-key": key2})
        eq(r.status, 200, "other key after a delete, request %d" % i)
    r = d.admin("DELETE", "/v2/keys/%s" % kid, tok)
    eq(r.status, 404, "DELETE of an already deleted key")
    r = d.admin("GET", "/v2/keys", tok)
    check(b'"t2"' in r.body and b'"t"' not in r.body,
          "GET /v2/keys after delete: %r" % r.body[:300])


def test_no_secret_at_rest_or_in_log():
    d = Daemon(workers=2)
    d.wait_roles()
    tok = d.login()
    key = d.add_key(tok, "canary")["key"]
    eq(d.get("/v1/models", {"Authorization": "Bearer " + key}).status, 200,
       "key works")
    # a failing login with a canary password, and one with the key
    d.request("POST", "/v2/auth/login", body={"password": "canary-wrong-pw"})
    d.get("/v1/models", {"x-api-key": key + "x"})
    d.signal(signal.SIGHUP)       # a reload logs and rereads keys
    wait_for(lambda: d.get("/healthz").status == 200, 5, what="healthz")
    time.sleep(1.5)
    secrets = {"client key": key, "admin password": ADMIN_PASSWORD,
               "session token": tok, "wrong password": "canary-wrong-pw"}
    for path in glob.glob(d.db_path + "*"):
        with open(path, "rb") as f:
            data = f.read()
        for what, s in secrets.items():
            check(s.encode() not in data, "%s found in %s" % (what, path))
    log = d.log()
    for what, s in secrets.items():
        check(s not in log, "%s found in the daemon's log" % what)
    # the hash is stored, not the key
    rows = d.query("SELECT hash FROM api_keys")
    check(rows, "no api_keys row")
    check(any(bytes(h).hex() == sha256_hex(key) for (h,) in rows),
          "no api_keys row holds SHA-256(key)")


def test_logout_invalidates_token():
    d = Daemon()
    tok = d.login()
    tok2 = d.login()
    eq(d.admin("GET", "/v2/status", tok).status, 200, "status before logout")
    r = d.admin("POST", "/v2/auth/logout", tok)
    check(r.status in (200, 204), "logout status %d" % r.status)
    for i in range(4):
        eq(d.admin("GET", "/v2/status", tok).status, 401,
           "status with a logged-out token (%d)" % i)
    eq(d.admin("GET", "/v2/status", tok2).status, 200,
       "another session survives a logout")
    # sessions are kept server-side: no row for the dead token
    rows = d.query("SELECT COUNT(*) FROM admin_sessions")
    eq(rows[0][0], 1, "admin_sessions rows after one of two logged out")


def test_change_password():
    d = Daemon()
    tok = d.login()
    new = "brand-new-password-42"
    r = d.admin("PUT", "/v2/auth/password", tok,
                {"old": "not-the-old", "new": new})
    check(400 <= r.status < 500, "password change with a wrong old password: "
          "%d" % r.status)
    r = d.admin("PUT", "/v2/auth/password", tok,
                {"old": ADMIN_PASSWORD, "new": new})
    check(r.status in (200, 204), "PUT /v2/auth/password: %d %r"
          % (r.status, r.body))
    r = d.request("POST", "/v2/auth/login", body={"password": ADMIN_PASSWORD})
    eq(r.status, 401, "login with the old password after the change")
    tok2 = d.login(new)
    eq(d.admin("GET", "/v2/status", tok2).status, 200, "new session works")
    check(new not in d.log(), "the new password is in the log")
    # the password is stored hashed
    for path in glob.glob(d.db_path + "*"):
        with open(path, "rb") as f:
            check(new.encode() not in f.read(), "new password found in %s"
                  % path)


def test_password_not_fixed_default_and_generated_once():
    """Without QRELAYD_ADMIN_PASSWORD a random one is generated and printed
    once; the next start does not print one again."""
    d = Daemon(start=False)
    env = d.env()
    env.pop("QRELAYD_ADMIN_PASSWORD", None)
    d.env = lambda: env
    d.start()
    log1 = d.log()
    d.stop()
    # the password is on a line that says so; try its words, last first
    cands = []
    for ln in log1.splitlines():
        if "password" in ln.lower():
            cands += reversed(re.findall(r"[!-~]{10,}", ln))
    check(cands, "no line about the admin password on the first start: %r"
          % log1[-500:])
    d.start()
    ok = None
    for c in cands[:4]:
        r = d.request("POST", "/v2/auth/login", body={"password": c})
        if r.status == 200:
            ok = c
            break
        if r.status == 429:
            break
    check(ok, "no generated admin password found in the first start's log")
    log2 = d.log()[len(log1):]
    check(ok not in log2, "the generated password was printed again on "
          "the second start")


def test_db_file_mode_0600():
    d = Daemon()
    tok = d.login()
    d.add_key(tok, "mode")
    check(os.path.exists(d.db_path), "no database at %s" % d.db_path)
    for path in [d.db_path, d.db_path + "-wal", d.db_path + "-shm"]:
        if not os.path.exists(path):
            continue
        mode = stat.S_IMODE(os.stat(path).st_mode)
        eq(oct(mode), oct(0o600), "mode of %s" % path)
    mode = stat.S_IMODE(os.stat(d.vardir).st_mode)
    check(not mode & 0o002, "data directory is world-writable")
    jm = d.query("PRAGMA journal_mode")[0][0]
    eq(jm.lower(), "wal", "journal_mode")
    tables = {r[0] for r in d.query(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    for t in ("accounts", "api_keys", "settings", "request_logs",
              "blocked_ips", "admin_sessions", "schema_version"):
        check(t in tables, "table %s missing (have %r)" % (t, tables))
