"""Regressions found in review: each test failed before its fix.

- a respawned process kept its restart count (the child used to wipe it);
- a decoded control byte in a static path could forge daemon log lines;
- after 100 Continue the body wait used send_timeout, not body_timeout;
- a SIGTERM that reached the refresher during a sweep waited for the
  next tick (5 s) instead of stopping it at once;
- qrelayctl stop/reload signalled whatever process now had the pid of a
  stale pid file (left by a crash), not only qrelayd."""

import os
import re
import signal
import sqlite3
import subprocess
import time

from qrtest import (Daemon, check, eq, proc_alive, wait_for)


def test_restart_count_survives_respawn():
    d = Daemon(workers=1)
    d.wait_roles(workers=1)
    victim = d.workers_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: [p for p in d.workers_pids() if p != victim], 5.0,
             what="a new worker after kill -9")
    d.wait_roles(workers=1)
    body = d.get("/metrics").body.decode()
    m = re.search(r'qrelay_process_restarts_total\{slot="\d+",'
                  r'role="worker"\} (\d+)', body)
    check(m, "no worker restart counter in /metrics: %r" % body[-400:])
    eq(int(m.group(1)), 1, "worker restarts after one kill -9")
    tok = d.login()
    procs = d.admin("GET", "/v2/status", tok).json()["processes"]
    eq([p["restarts"] for p in procs if p["role"] == "worker"], [1],
       "/v2/status worker restarts")


def test_static_path_control_bytes_never_logged():
    d = Daemon(workers=1)
    forged = "2099-01-01T00:00:00.000 qrelayd[1] master: FORGED-LINE"
    # a segment too long for the kernel (ENAMETOOLONG) used to be logged
    # verbatim, decoded %0A included
    path = "/" + "a" * 300 + "%0A" + forged.replace(" ", "%20")
    eq(d.get(path).status, 404, "long static path with %0A")
    eq(d.get("/x%0Ay.html").status, 404, "static path with %0A")
    eq(d.get("/" + "b" * 300).status, 404, "static name too long")
    eq(d.get("/healthz").status, 200, "/healthz afterwards")
    time.sleep(0.3)
    log = d.log()
    check("FORGED-LINE" not in log, "a client forged a log line: %r"
          % log[-300:])
    check("bbbbbbbb" not in log, "a client-chosen path reached the log")


def test_body_timeout_applies_after_100_continue():
    d = Daemon(limits={"body_timeout": 2, "send_timeout": 30})
    with d.conn(timeout=40) as c:
        c.send(b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: 10\r\n"
               b"Expect: 100-continue\r\n\r\n")
        eq(c.read_head()[1], 100, "interim status")
        t0 = time.monotonic()
        check(c.wait_closed(8), "client that never sent the body after "
              "100 Continue still connected after %.1fs (body_timeout = 2,"
              " send_timeout = 30)" % (time.monotonic() - t0))
        check(c.buf.startswith(b"HTTP/1.1 408"),
              "expected a 408, got %r" % c.buf[:60])


def test_refresher_stops_at_once_when_told_mid_sweep():
    d = Daemon(workers=1)
    d.wait_roles(workers=1)
    old = d.pids("refresher")[0]
    db = sqlite3.connect(d.db_path, timeout=10, isolation_level=None)
    try:
        # hold the write lock: the next refresher's first sweep waits
        db.execute("BEGIN IMMEDIATE")
        os.kill(old, signal.SIGKILL)
        new = wait_for(lambda: [p for p in d.pids("refresher")
                                if p != old], 5.0,
                       what="a new refresher")[0]
        time.sleep(0.5)
        os.kill(new, signal.SIGTERM)
        time.sleep(0.2)
        db.execute("COMMIT")
    finally:
        db.close()
    t0 = time.monotonic()
    while proc_alive(new) and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    dt = time.monotonic() - t0
    check(dt < 2.0, "refresher told to stop during a sweep exited %.1fs "
          "after the sweep ended" % dt)
    eq(d.get("/healthz").status, 200, "/healthz afterwards")


def test_ctl_never_signals_a_stranger_with_a_stale_pid():
    d = Daemon(workers=1, start=False)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        with open(d.pid_file, "w") as f:
            f.write("%d\n" % victim.pid)
        for cmd in ("stop", "reload"):
            r = d.ctl(cmd)
            eq(r.returncode, 1, "qrelayctl %s with a stale pid file (%s)"
               % (cmd, r.stderr.strip()))
            time.sleep(0.2)
            check(victim.poll() is None, "qrelayctl %s killed pid %d, "
                  "which is not qrelayd" % (cmd, victim.pid))
        r = d.ctl("status")
        eq(r.returncode, 1, "qrelayctl status with a stale pid file")
        check("running no" in r.stdout, "status: %r" % r.stdout)
    finally:
        victim.kill()
        victim.wait()
