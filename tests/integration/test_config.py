"""Configuration: qrelayd -n, file:line errors, unknown keys, the
environment overrides PORT and DATA_DIR."""

import os
import re
import socket
import sqlite3
import subprocess

from qrtest import (Daemon, QRELAYD, REPO, check, eq, wait_for, free_port)


def _check_conf(d, text, env=None):
    d.write_config(text)
    e = d.env()
    e.update(env or {})
    return subprocess.run([QRELAYD, "-n", "-f", d.conf], capture_output=True,
                          text=True, timeout=20, env=e, cwd=d.tmp)


def _expect_error(d, text, line, words=(), what=""):
    p = _check_conf(d, text)
    eq(p.returncode, 1, "qrelayd -n exit status for %s (stderr %r)"
       % (what, p.stderr))
    rx = r"%s:%d: ?\S" % (re.escape(d.conf), line)
    check(re.search(rx, p.stderr), "%s: expected '%s:%d: reason' on stderr, "
          "got %r" % (what, d.conf, line, p.stderr))
    for w in words:
        check(w in p.stderr, "%s: the reason does not mention %r: %r"
              % (what, w, p.stderr))
    check(not os.path.exists(d.db_path), "qrelayd -n created the database")


def test_check_good_config():
    d = Daemon(start=False)
    p = _check_conf(d, d.config_text())
    eq(p.returncode, 0, "qrelayd -n on a good file (stderr %r)" % p.stderr)
    check(not os.path.exists(d.db_path), "qrelayd -n created the database")
    # every key is optional
    p = _check_conf(d, "# nothing\n")
    eq(p.returncode, 0, "qrelayd -n on an empty file (stderr %r)" % p.stderr)
    # all keys of ARCHITECTURE.md, as documented
    full = d.config_text() + """
user = "";
max_accounts = 1024;
upstream = {
  region             = "us-east-1";
  q_endpoint         = "https://q.us-east-1.amazonaws.com";
  oidc_endpoint      = "https://oidc.us-east-1.amazonaws.com";
  kiro_auth_endpoint = "https://prod.us-east-1.auth.desktop.kiro.dev";
  connect_timeout = 10; first_byte_timeout = 120; idle_timeout = 300;
};
"""
    p = _check_conf(d, full)
    eq(p.returncode, 0, "qrelayd -n on a file with every documented key "
       "(stderr %r)" % p.stderr)


def test_check_shipped_config():
    conf = os.path.join(REPO, "etc", "qrelayd.conf")
    check(os.path.exists(conf), "etc/qrelayd.conf is missing")
    p = subprocess.run([QRELAYD, "-n", "-f", conf], capture_output=True,
                       text=True, timeout=20, cwd=REPO)
    eq(p.returncode, 0, "qrelayd -n -f etc/qrelayd.conf (stderr %r)"
       % p.stderr)


def test_check_bad_configs():
    d = Daemon(start=False)
    good = d.config_text()
    n = len(good.splitlines())
    # syntax error on the line after the last
    _expect_error(d, good + "zz = [ 1\n;\n", n + 2,
                  what="syntax error")
    _expect_error(d, good + "max_keys = \"x\";\n", n + 1, ("max_keys",),
                  "wrong type")
    bad = d.config_text(top={"workers": "x"})
    line = [i for i, ln in enumerate(bad.splitlines(), 1)
            if ln.startswith("workers")][0]
    _expect_error(d, bad, line, ("workers",), "workers = \"x\"")
    _expect_error(d, good + "bogus_key = 1;\n", n + 1, ("bogus_key",),
                  "unknown key")
    check("limits" not in good, "test assumes no limits group")
    _expect_error(d, good + "limits = {\n  max_bodyy = 5;\n};\n", n + 2,
                  ("max_bodyy",), "unknown key in a group")
    bad = d.config_text(top={"workers": 100000})
    _expect_error(d, bad, line, ("workers",), "workers out of range")
    bad = d.config_text(top={"listen": ["nonsense"]})
    lline = [i for i, ln in enumerate(bad.splitlines(), 1)
             if ln.startswith("listen")][0]
    _expect_error(d, bad, lline, (), "bad listen address")
    # a file that does not exist
    p = subprocess.run([QRELAYD, "-n", "-f", d.conf + ".missing"],
                       capture_output=True, text=True, timeout=20)
    eq(p.returncode, 1, "qrelayd -n on a missing file")
    check(p.stderr.strip(), "no message for a missing file")
    # the daemon itself refuses to start on a bad file, with the same message
    d.write_config(good + "bogus_key = 1;\n")
    p = subprocess.run([QRELAYD, "-d", "-f", d.conf], capture_output=True,
                       text=True, timeout=20, env=d.env(), cwd=d.tmp)
    eq(p.returncode, 1, "qrelayd -d on a bad file")
    check(re.search(r"%s:%d: ?\S" % (re.escape(d.conf), n + 1), p.stderr),
          "qrelayd -d on a bad file: no file:line on stderr: %r" % p.stderr)


def test_port_env_overrides_listen():
    port2 = free_port()
    d = Daemon(start=False, env={"PORT": str(port2)})
    d.start(wait=False)
    d.wait_ready(port=port2)
    s = socket.socket()
    s.settimeout(2)
    try:
        rc = s.connect_ex(("127.0.0.1", d.port))
    finally:
        s.close()
    check(rc != 0, "the configured port %d still accepts connections with "
          "PORT=%d" % (d.port, port2))
    check(d.running(), "daemon not running")


def test_data_dir_env_moves_db_and_pid_file():
    d = Daemon(start=False)
    data = os.path.join(d.tmp, "data")
    os.makedirs(data)
    d.extra_env["DATA_DIR"] = data
    d.start()
    wait_for(lambda: os.path.exists(os.path.join(data, "qrelayd.db")), 3,
             what="the database in DATA_DIR")
    wait_for(lambda: os.path.exists(os.path.join(data, "qrelayd.pid")), 3,
             what="the pid file in DATA_DIR")
    check(not os.path.exists(d.db_path), "database also created at the "
          "configured path %s" % d.db_path)
    check(not os.path.exists(d.pid_file), "pid file also written at the "
          "configured path")
    # and it is really the database in use: a login creates a session row
    d.login()
    c = sqlite3.connect(os.path.join(data, "qrelayd.db"))
    try:
        n = c.execute("SELECT COUNT(*) FROM admin_sessions").fetchone()[0]
    finally:
        c.close()
    check(n >= 1, "no session row in DATA_DIR's database after a login")
    d.stop()
    check(not os.path.exists(os.path.join(data, "qrelayd.pid")),
          "pid file in DATA_DIR left behind after stop")
