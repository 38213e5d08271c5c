"""Upstream accounts: added with qrelayctl and the admin API, renewed by
the refresher against the fake upstream (OIDC refresh_token grant, Kiro
refreshToken), rotation kept or omitted, revocation disabling the
account with the reason, PATCH/DELETE/refresh, secrets never shown in
full (API, CLI, log, database), tokens kept across a restart, and the
403 path through the relay."""

import os
import stat
import subprocess
import time

from qrtest import (Daemon, QRELAYCTL, Skip, check, eq, wait_for)
from qrfake import FakeUpstream


def _setup(**kw):
    fake = FakeUpstream(quiet=True)
    d = Daemon(upstream=fake, **kw)
    return fake, d, d.login()


def _accounts(d, tok):
    r = d.admin("GET", "/v2/accounts", tok)
    eq(r.status, 200, "GET /v2/accounts (body %r)" % r.body)
    return r.json()["accounts"]


def _account(d, tok, aid):
    r = d.admin("GET", "/v2/accounts/%d" % aid, tok)
    eq(r.status, 200, "GET /v2/accounts/%d (body %r)" % (aid, r.body))
    return r.json()


def _wait_ready(d, tok, aid, timeout=10.0, what=None):
    return wait_for(lambda: (lambda a: a if a["ready"] else None)(
        _account(d, tok, aid)), timeout,
        what=what or "account %d ready" % aid)


def _refreshes(fake, rt=None):
    """Refresh requests at the fake (OIDC /token refresh_token grants and
    Kiro /refreshToken), optionally only those presenting rt."""
    out = []
    for r in fake.requests():
        b = r.get("body")
        if not isinstance(b, dict):
            continue
        if (r["path"] == "/token" and b.get("grantType") == "refresh_token") \
                or r["path"] == "/refreshToken":
            if rt is None or b.get("refreshToken") == rt:
                out.append(r)
    return out


def _no_secret(text, secrets, where):
    for s in secrets:
        check(s not in text, "%s shows a secret in full (%s...)"
              % (where, s[:8]))


def _ctl_env(d, **env):
    e = d.env()
    e.update(env)
    return e


def _ctl(d, *args, stdin=None, env=None):
    return subprocess.run([QRELAYCTL, "-f", d.conf] + list(args),
                          input=stdin, capture_output=True, text=True,
                          timeout=60, env=_ctl_env(d, **(env or {})),
                          cwd=d.tmp)


def test_api_add_idc_and_social_renewed():
    fake, d, tok = _setup()
    rt_idc = fake.add_account(kind="idc", clientId="cid-1",
                              clientSecret="csecret-idc-0123456789abcdef")
    rt_soc = fake.add_account(kind="social")
    secrets = [rt_idc, rt_soc, "csecret-idc-0123456789abcdef"]

    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "idc", "label": "work", "refreshToken": rt_idc,
                 "clientId": "cid-1",
                 "clientSecret": "csecret-idc-0123456789abcdef",
                 "region": "us-east-1"})
    eq(r.status, 201, "POST idc (body %r)" % r.body)
    _no_secret(r.body.decode(), secrets, "POST answer")
    a = r.json()
    idc = a["id"]
    eq(a["type"], "idc", "type")
    eq(a["label"], "work", "label")
    eq(a["clientId"], "cid-1", "clientId")
    check(a["refreshToken"].endswith("\u2026") and
          len(a["refreshToken"]) <= 7, "hint %r" % a["refreshToken"])
    check(a["clientSecret"].endswith("\u2026"), "hint %r" % a["clientSecret"])
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt_soc})
    eq(r.status, 201, "POST social (body %r)" % r.body)
    soc = r.json()["id"]
    eq(r.json()["clientSecret"], None, "social clientSecret")

    a = _wait_ready(d, tok, idc)
    check(a["expiresAt"], "no expiresAt: %r" % a)
    eq(a["state"], "enabled", "state")
    eq(a["lastError"], None, "lastError")
    b = _wait_ready(d, tok, soc)
    # the Kiro answer carries the profile ARN
    check(b["profileArn"] and b["profileArn"].startswith("arn:aws:"),
          "profileArn from the Kiro answer: %r" % b)

    # the fake saw one refresh_token grant and one Kiro refresh
    g = _refreshes(fake, rt_idc)
    eq(len(g), 1, "OIDC refresh grants for the idc account")
    eq(g[0]["path"], "/token", "OIDC path")
    eq(g[0]["body"]["clientId"], "cid-1", "clientId sent")
    eq(g[0]["body"]["clientSecret"], "csecret-idc-0123456789abcdef",
       "clientSecret sent")
    eq(g[0]["status"], 200, "OIDC status")
    k = _refreshes(fake, rt_soc)
    eq(len(k), 1, "Kiro refreshes")
    eq(k[0]["path"], "/refreshToken", "Kiro path")

    lst = _accounts(d, tok)
    eq(sorted(x["id"] for x in lst), sorted([idc, soc]), "list ids")
    check(all(x["ready"] for x in lst), "all ready: %r" % lst)
    r = d.admin("GET", "/v2/accounts", tok)
    _no_secret(r.body.decode(), secrets, "GET /v2/accounts")
    # status counts them
    st = d.admin("GET", "/v2/status", tok).json()
    eq(st["accounts"]["enabled"], 2, "status accounts enabled")

    # secrets at rest: not in the database file, a 0600 key beside it
    with open(d.db_path, "rb") as f:
        raw = f.read()
    for p in (d.db_path + "-wal",):
        if os.path.exists(p):
            with open(p, "rb") as f:
                raw += f.read()
    for s in secrets:
        check(s.encode() not in raw, "secret in the database file")
    key = os.path.join(os.path.dirname(d.db_path), "qrelayd.key")
    check(os.path.exists(key), "no key file beside the database")
    eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key file mode")
    _no_secret(d.log(), secrets, "the daemon's log")


def test_api_validation_patch_delete():
    fake, d, tok = _setup()
    bad = [
        ({"type": "oidc", "refreshToken": "x"}, "type"),
        ({"refreshToken": "x"}, "type"),
        ({"type": "idc", "refreshToken": "x", "clientId": "c"},
         "clientSecret"),
        ({"type": "idc", "refreshToken": "x", "clientSecret": "s"},
         "clientId"),
        ({"type": "social"}, "refreshToken"),
        ({"type": "social", "refreshToken": "x", "clientId": "c"},
         "clientId"),
        ({"type": "social", "refreshToken": 5}, "refreshToken"),
        ({"type": "social", "refreshToken": "x", "region": "a/b"}, "region"),
        ({"type": "social", "refreshToken": "x", "label": "a\nb"}, "label"),
        ({"type": "social", "refreshToken": "x", "enabled": "yes"},
         "enabled"),
    ]
    for body, word in bad:
        r = d.admin("POST", "/v2/accounts", tok, body)
        eq(r.status, 400, "POST %r" % body)
        check(word in r.json()["error"]["message"],
              "400 for %r names %r: %r" % (body, word, r.body))
    eq(_accounts(d, tok), [], "nothing added by bad requests")

    rt = fake.add_account(kind="social")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt, "label": "one"})
    eq(r.status, 201, "POST")
    aid = r.json()["id"]
    _wait_ready(d, tok, aid)

    r = d.admin("PATCH", "/v2/accounts/%d" % aid, tok, {"label": "two"})
    eq(r.status, 200, "PATCH label (body %r)" % r.body)
    eq(r.json()["label"], "two", "label changed")
    r = d.admin("PATCH", "/v2/accounts/%d" % aid, tok, {"enabled": False})
    eq(r.status, 200, "PATCH disable")
    a = r.json()
    eq((a["enabled"], a["state"], a["ready"]), (False, "disabled", False),
       "disabled")
    r = d.admin("PATCH", "/v2/accounts/%d" % aid, tok, {"enabled": True})
    eq(r.status, 200, "PATCH enable")
    eq(r.json()["enabled"], True, "enabled again")
    _wait_ready(d, tok, aid)
    for body in ({}, {"refreshToken": "y"}, {"enabled": 1},
                 {"label": "x" * 200}):
        r = d.admin("PATCH", "/v2/accounts/%d" % aid, tok, body)
        eq(r.status, 400, "PATCH %r" % (body,))
    r = d.admin("PATCH", "/v2/accounts/999", tok, {"label": "z"})
    eq(r.status, 404, "PATCH unknown")
    for path in ("/v2/accounts/999", "/v2/accounts/abc", "/v2/accounts/0"):
        eq(d.admin("GET", path, tok).status, 404, "GET %s" % path)
    eq(d.admin("POST", "/v2/accounts/999/refresh", tok).status, 404,
       "refresh unknown")
    eq(d.admin("PUT", "/v2/accounts/%d" % aid, tok, {}).status, 405, "PUT")
    eq(d.admin("GET", "/v2/accounts/%d/refresh" % aid, tok).status, 405,
       "GET refresh")
    eq(d.admin("GET", "/v2/accounts/%d/other" % aid, tok).status, 404,
       "other sub-path")
    eq(d.get("/v2/accounts").status, 401, "no session")

    r = d.admin("DELETE", "/v2/accounts/%d" % aid, tok)
    eq(r.status, 204, "DELETE")
    eq(d.admin("DELETE", "/v2/accounts/%d" % aid, tok).status, 404,
       "DELETE again")
    eq(d.admin("GET", "/v2/accounts/%d" % aid, tok).status, 404,
       "GET deleted")
    eq(_accounts(d, tok), [], "list after delete")
    st = d.admin("GET", "/v2/status", tok).json()
    eq(st["accounts"]["total"], 0, "status after delete")


def test_rotation_kept_and_omitted():
    fake, d, tok = _setup()
    rt_keep = fake.add_account(kind="social", rotate=False)
    rt_rot = fake.add_account(kind="idc", clientId="c2", clientSecret="s2",
                              rotate=True)
    ids = {}
    for name, body in (("keep", {"type": "social", "refreshToken": rt_keep}),
                       ("rot", {"type": "idc", "refreshToken": rt_rot,
                                "clientId": "c2", "clientSecret": "s2"})):
        r = d.admin("POST", "/v2/accounts", tok, body)
        eq(r.status, 201, "POST %s" % name)
        ids[name] = r.json()["id"]
    for aid in ids.values():
        _wait_ready(d, tok, aid)
    new_rt = wait_for(lambda: fake.account(rt_rot).get("rotated_to"),
                      what="rotation at the fake")
    hint = _account(d, tok, ids["rot"])["refreshToken"]
    check(new_rt.startswith(hint.rstrip("\u2026")),
          "hint follows the rotated token: %r" % hint)

    for n in (1, 2):
        for name, aid in ids.items():
            a0 = _account(d, tok, aid)
            r = d.admin("POST", "/v2/accounts/%d/refresh" % aid, tok)
            eq(r.status, 202, "POST refresh %s" % name)
            check(r.json().get("refreshRequested") is True,
                  "refreshRequested in %r" % r.body)
        wait_for(lambda: len(_refreshes(fake, rt_keep)) == 1 + n,
                 what="kept account refreshed again")
        wait_for(lambda: fake.account(new_rt).get("rotated_to"),
                 what="the rotated token presented and rotated again")
        # the rotated-away token was never presented again
        eq(len(_refreshes(fake, rt_rot)), 1, "old rotated token reused")
        eq(len(_refreshes(fake, new_rt)), 1, "new token presented once")
        new_rt = fake.account(new_rt)["rotated_to"]
        a = _wait_ready(d, tok, ids["rot"])
        eq(a["lastError"], None, "no error after rotation")
    eq(_account(d, tok, ids["rot"])["state"], "enabled", "still enabled")
    _no_secret(d.log(), [rt_keep, rt_rot, new_rt], "the daemon's log")


def test_revoked_disables_with_reason():
    fake, d, tok = _setup()
    rt = fake.add_account(kind="idc", clientId="c3", clientSecret="s3")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "idc", "refreshToken": rt, "clientId": "c3",
                 "clientSecret": "s3", "label": "doomed"})
    eq(r.status, 201, "POST")
    aid = r.json()["id"]
    _wait_ready(d, tok, aid)
    fake.revoke(rt)
    eq(d.admin("POST", "/v2/accounts/%d/refresh" % aid, tok).status, 202,
       "refresh")
    a = wait_for(lambda: (lambda x: x if not x["enabled"] else None)(
        _account(d, tok, aid)), what="account disabled")
    eq(a["state"], "disabled", "state")
    eq(a["ready"], False, "ready")
    check(a["lastError"] and "invalid_grant" in a["lastError"],
          "reason names invalid_grant: %r" % a["lastError"])
    row = d.query("SELECT enabled, state, last_error FROM accounts"
                  " WHERE id = ?", (aid,))[0]
    eq(row[:2], (0, "disabled"), "database row")
    check("invalid_grant" in row[2], "database reason %r" % row[2])
    d.wait_log(r"account %d: refresh token refused" % aid)
    # no further refresh attempts while disabled
    n = len(_refreshes(fake))
    time.sleep(1.5)
    eq(len(_refreshes(fake)), n, "refreshes of a disabled account")
    # a bad client is refused the same way (invalid_client, 401)
    rt2 = fake.add_account(kind="idc", clientId="c4", clientSecret="s4")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "idc", "refreshToken": rt2, "clientId": "c4",
                 "clientSecret": "wrong"})
    aid2 = r.json()["id"]
    a = wait_for(lambda: (lambda x: x if not x["enabled"] else None)(
        _account(d, tok, aid2)), what="bad client disabled")
    check("invalid_client" in a["lastError"], "reason %r" % a["lastError"])
    _no_secret(d.log(), [rt, rt2], "the daemon's log")


def test_failure_keeps_account_and_retries():
    fake, d, tok = _setup()
    rt = fake.add_account(kind="social")
    # the fake refuses the first Kiro refresh with a 500
    fake.script({"endpoint": "kiro_refresh", "status": 500,
                 "body": {"message": "Internal failure"}})
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt})
    aid = r.json()["id"]
    a = wait_for(lambda: (lambda x: x if x["lastError"] else None)(
        _account(d, tok, aid)), what="failure recorded")
    check("500" in a["lastError"], "reason %r" % a["lastError"])
    eq(a["enabled"], True, "still enabled after a transient failure")
    # retried after the backoff (5 s), then ready
    a = _wait_ready(d, tok, aid, timeout=15)
    eq(a["lastError"], None, "error cleared after success")


def test_ctl_add_list_enable_refresh_rm():
    fake, d, tok = _setup()
    rt_idc = fake.add_account(kind="idc", clientId="cid-ctl",
                              clientSecret="ctl-secret-abcdefghijklmnop")
    rt_soc = fake.add_account(kind="social")
    secrets = [rt_idc, rt_soc, "ctl-secret-abcdefghijklmnop"]

    # idc: both secrets on stdin, one a line
    p = _ctl(d, "account", "add", "idc", "-c", "cid-ctl", "-l", "ctl idc",
             stdin="%s\nctl-secret-abcdefghijklmnop\n" % rt_idc)
    eq(p.returncode, 0, "account add idc (stderr %r)" % p.stderr)
    idc = int(p.stdout.strip())
    # social: from the environment
    p = _ctl(d, "account", "add", "-l", "ctl social", "social",
             env={"QRELAY_REFRESH_TOKEN": rt_soc})
    eq(p.returncode, 0, "account add social (stderr %r)" % p.stderr)
    soc = int(p.stdout.strip())
    for aid in (idc, soc):
        _wait_ready(d, tok, aid, what="account %d added by qrelayctl ready"
                    % aid)
    eq(len(_refreshes(fake, rt_idc)), 1, "idc renewed once")

    p = _ctl(d, "account", "list")
    eq(p.returncode, 0, "account list")
    _no_secret(p.stdout + p.stderr, secrets, "qrelayctl account list")
    lines = {int(l.split("\t")[0]): l.split("\t")
             for l in p.stdout.splitlines()}
    eq(lines[idc][1:3], ["idc", "ctl idc"], "list idc")
    eq(lines[soc][4], "yes", "list enabled")
    check(lines[idc][5] != "-", "list shows the expiry: %r" % lines[idc])
    eq(lines[idc][8], rt_idc[:6] + "\u2026", "list hint")

    p = _ctl(d, "account", "disable", str(soc))
    eq(p.returncode, 0, "disable")
    wait_for(lambda: _account(d, tok, soc)["state"] == "disabled",
             what="disabled via SIGUSR2")
    p = _ctl(d, "account", "enable", str(soc))
    eq(p.returncode, 0, "enable")
    _wait_ready(d, tok, soc)

    n = len(_refreshes(fake, rt_idc))
    p = _ctl(d, "account", "refresh", str(idc))
    eq(p.returncode, 0, "account refresh (stderr %r)" % p.stderr)
    check(p.stdout.startswith("%d\t" % idc), "refresh output %r" % p.stdout)
    eq(len(_refreshes(fake, rt_idc)), n + 1, "one more refresh")

    # a revoked token: refresh reports the reason, exit 1
    fake.revoke(rt_soc)
    p = _ctl(d, "account", "refresh", str(soc))
    eq(p.returncode, 1, "refresh of a revoked account")
    check("invalid_grant" in p.stdout, "reason printed: %r" % p.stdout)
    p = _ctl(d, "account", "list")
    eq(p.stdout.splitlines()[1].split("\t")[3], "disabled", "list state")

    eq(_ctl(d, "account", "rm", str(soc)).returncode, 0, "rm")
    eq(_ctl(d, "account", "rm", str(soc)).returncode, 1, "rm again")
    wait_for(lambda: d.admin("GET", "/v2/accounts/%d" % soc, tok).status
             == 404, what="removed")
    eq(_ctl(d, "account", "add", "oidc", stdin="x\n").returncode, 1,
       "bad type")
    eq(_ctl(d, "account", "add", "idc", stdin="x\ny\n").returncode, 1,
       "idc without a client id")
    _no_secret(d.log(), secrets, "the daemon's log")


def test_ctl_credential_file_and_restart_keeps_tokens():
    fake, d, tok = _setup()
    rt = fake.add_account(kind="idc", clientId="cid-file",
                          clientSecret="file-secret-0000")
    cache = os.path.join(d.tmp, "sso")
    os.mkdir(cache)
    import json
    with open(os.path.join(cache, "kiro-auth-token.json"), "w") as f:
        json.dump({"accessToken": "ignored", "refreshToken": rt,
                   "expiresAt": "2020-01-01T00:00:00Z", "authMethod": "IdC",
                   "provider": "BuilderId", "region": "us-east-1",
                   "clientIdHash": "abc123"}, f)
    with open(os.path.join(cache, "abc123.json"), "w") as f:
        json.dump({"clientId": "cid-file", "clientSecret": "file-secret-0000",
                   "expiresAt": "2099-01-01T00:00:00Z"}, f)
    p = _ctl(d, "account", "add", "-j",
             os.path.join(cache, "kiro-auth-token.json"))
    eq(p.returncode, 0, "add -j (stderr %r)" % p.stderr)
    aid = int(p.stdout.strip())
    a = _wait_ready(d, tok, aid)
    eq((a["type"], a["clientId"]), ("idc", "cid-file"), "from the file")
    n = len(_refreshes(fake))

    # a restart loads the stored access token: ready without a refresh
    d.stop()
    d.start()
    tok = d.login()
    a = _account(d, tok, aid)
    check(a["ready"], "ready at once after a restart: %r" % a)
    time.sleep(1)
    eq(len(_refreshes(fake)), n, "refreshes after a restart")


def test_bearer_invalid_refreshes_and_retries():
    """A 403 "bearer token invalid" triggers one refresh and one retry
    (relay.c asks through pool_want_refresh; the token generation
    changes)."""
    fake, d, tok = _setup()
    rt = fake.add_account(kind="social")
    r = d.admin("POST", "/v2/accounts", tok,
                {"type": "social", "refreshToken": rt})
    aid = r.json()["id"]
    _wait_ready(d, tok, aid)
    key = d.add_key(tok)["key"]
    body = {"model": "claude-sonnet-4.5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}]}
    r = d.request("POST", "/v1/messages", {"x-api-key": key,
                                           "anthropic-version": "2023-06-01"},
                  body, timeout=30)
    if r.status in (404, 501):
        raise Skip("the relay does not answer /v1/messages yet")
    eq(r.status, 200, "first request (body %r)" % r.body)
    n = len(_refreshes(fake, rt))
    exp0 = _account(d, tok, aid)["expiresAt"]
    fake.expire_tokens(refresh_token=rt)
    r = d.request("POST", "/v1/messages", {"x-api-key": key,
                                           "anthropic-version": "2023-06-01"},
                  body, timeout=30)
    eq(r.status, 200, "request after the token was invalidated (body %r)"
       % r.body)
    eq(len(_refreshes(fake, rt)), n + 1, "exactly one refresh for the 403")
    q = [x for x in fake.assistant_requests()]
    eq([x["status"] for x in q[-2:]], [403, 200], "403 then the retry")
    check(q[-1]["headers"].get("authorization") !=
          q[-2]["headers"].get("authorization"), "retry with the new token")
    check(_account(d, tok, aid)["expiresAt"] >= exp0, "expiry moved")
