"""qrelayctl against a running daemon: status, key add/list/rm, reload,
stop, passwd."""

import os
import re
import signal
import time

from qrtest import (Daemon, ADMIN_PASSWORD, Background, check, eq, proc_alive,
                    sha256_hex, wait_for)


def _ok(p, what):
    eq(p.returncode, 0, "qrelayctl %s exit status (stdout %r, stderr %r)"
       % (what, p.stdout, p.stderr))
    return p.stdout


def test_ctl_status():
    d = Daemon(workers=2)
    d.wait_roles()
    out = _ok(d.ctl("status"), "status")
    check(re.search(r"^running\s*[:=]?\s*(yes|true)\b|\bis running\b", out,
                    re.M), "status output does not say running: %r" % out)
    check(re.search(r"\b%d\b" % d.pid, out), "status output lacks the master "
          "pid %d: %r" % (d.pid, out))
    d.stop()
    p = d.ctl("status")
    check(p.returncode != 0, "qrelayctl status exit 0 with the daemon "
          "stopped: %r" % p.stdout)
    check(not re.search(r"^running\s*[:=]?\s*(yes|true)\b|\bis running\b",
                        p.stdout, re.M),
          "status says running after stop: %r" % p.stdout)


def test_ctl_keys():
    d = Daemon(workers=2)
    d.wait_roles()
    out = _ok(d.ctl("key", "add", "ctlkey"), "key add")
    lines = out.strip().splitlines()
    eq(len(lines), 1, "key add output lines (%r)" % out)
    key = lines[0].strip()
    check(re.fullmatch(r"sk-qr-[A-Za-z0-9_\-]{20,}", key),
          "key add must print only the key, got %r" % out)
    out = _ok(d.ctl("key", "list"), "key list")
    check("ctlkey" in out, "key list lacks the name: %r" % out)
    check(key not in out, "key list shows the full key")
    check(sha256_hex(key) not in out, "key list shows the key's hash")
    # the daemon uses it (after SIGUSR2 if qrelayctl did not signal)
    d.signal(signal.SIGUSR2)
    wait_for(lambda: d.get("/v1/models", {"x-api-key": key}).status == 200,
             3, what="the key added by qrelayctl to work")
    # id via the admin API, removed via qrelayctl
    tok = d.login()
    keys = d.admin("GET", "/v2/keys", tok).json()
    keys = keys.get("keys", keys) if isinstance(keys, dict) else keys
    ids = [k["id"] for k in keys if k.get("name") == "ctlkey"]
    eq(len(ids), 1, "keys named ctlkey in GET /v2/keys")
    kid = ids[0]
    check(re.search(r"^\s*%s\b.*ctlkey" % kid, out, re.M),
          "key list line for id %s with its name not found: %r" % (kid, out))
    _ok(d.ctl("key", "rm", str(kid)), "key rm")
    out = _ok(d.ctl("key", "list"), "key list after rm")
    check("ctlkey" not in out, "key list still shows the removed key: %r"
          % out)
    d.signal(signal.SIGUSR2)
    wait_for(lambda: d.get("/v1/models", {"x-api-key": key}).status == 401,
             3, what="the removed key to be refused")
    p = d.ctl("key", "rm", "999999")
    check(p.returncode != 0, "key rm of an unknown id exits 0")


def test_ctl_reload():
    d = Daemon(workers=2)
    d.wait_roles()
    old = d.workers_pids()
    _ok(d.ctl("reload"), "reload")
    wait_for(lambda: len(d.workers_pids()) == 2 and
             not set(d.workers_pids()) & set(old), 8,
             what="new workers after qrelayctl reload")
    eq(d.get("/healthz").status, 200, "/healthz after reload")


def test_ctl_stop():
    d = Daemon(workers=2)
    kids = d.wait_roles()
    # the daemon is our child: reap it at once, as init would, or its
    # zombie would look alive to qrelayctl
    reaper = Background(d.proc.wait, 20)
    _ok(d.ctl("stop"), "stop")
    rc = reaper.get(12)
    eq(rc, 0, "daemon exit status after qrelayctl stop")
    wait_for(lambda: not any(proc_alive(p) for p in kids), 3,
             what="children gone")
    check(not os.path.exists(d.pid_file), "pid file left after stop")


def test_ctl_passwd():
    d = Daemon()
    _ok(d.ctl("passwd", stdin="newpassword123\n"), "passwd")
    time.sleep(0.2)
    r = d.request("POST", "/v2/auth/login", body={"password": ADMIN_PASSWORD})
    eq(r.status, 401, "login with the old password after qrelayctl passwd")
    tok = d.login("newpassword123")
    eq(d.admin("GET", "/v2/status", tok).status, 200, "session with the new "
       "password")
    check("newpassword123" not in d.log(), "password in the daemon log")


def test_ctl_account_list():
    d = Daemon()
    _ok(d.ctl("account", "list"), "account list")
