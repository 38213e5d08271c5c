"""Process model: titles, the master repairing killed children while the
other workers keep serving, workers = 0, and the privilege drop."""

import os
import pwd
import re
import signal
import time

from qrtest import (Daemon, Hammer, Skip, check, eq, proc_alive, proc_cmdline,
                    proc_status, wait_for)


def test_process_titles():
    d = Daemon(workers=2)
    kids = d.wait_roles()
    master = proc_cmdline(d.pid)
    check(master.startswith("qrelayd: master"),
          "master title: expected 'qrelayd: master', got %r" % master)
    titles = sorted(proc_cmdline(p) for p in kids)
    roles = sorted(kids.values())
    eq(roles, ["logger", "refresher", "worker", "worker"], "child roles")
    for t in titles:
        check(t.split()[0] == "qrelayd:", "child title %r" % t)
    # ps agrees with /proc
    import subprocess
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(d.pid)],
                         capture_output=True, text=True).stdout
    for role in ("worker", "refresher", "logger"):
        check("qrelayd: " + role in out, "ps output lacks 'qrelayd: %s': %r"
              % (role, out))


def _kill_and_wait_replacement(d, role):
    before = d.pids(role)
    check(before, "no %s running" % role)
    victim = before[0]
    off = len(d.log())
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()

    def replaced():
        now = d.pids(role)
        return len(now) == len(before) and victim not in now and now
    now = wait_for(replaced, 3.0, what="a new %s after kill -9 %d (have %r)"
                   % (role, victim, d.children()))
    dt = time.monotonic() - t0
    check(dt < 2.5, "%s replaced only after %.1fs" % (role, dt))
    new = set(now) - set(before)
    check(new, "no new %s pid" % role)
    d.wait_log(r"\b%d\b" % victim, 3.0, start=off)
    return victim, new


def test_kill_worker_repaired_others_keep_serving():
    d = Daemon(workers=2)
    d.wait_roles()
    h = Hammer(d.port)
    time.sleep(0.5)
    other = d.workers_pids()[1]
    victim, new = _kill_and_wait_replacement(d, "worker")
    check(proc_alive(other), "the other worker %d died too" % other)
    time.sleep(0.5)
    ok, errors = h.finish()
    check(ok > 20, "only %d requests succeeded" % ok)
    # a request being handled at the very instant of kill -9 is lost by
    # nature; anything more means the listener was not served meanwhile
    check(len(errors) <= 1, "%d requests failed while a worker was killed "
          "and replaced: %r" % (len(errors), errors[:5]))
    eq(len(d.workers_pids()), 2, "workers after repair")
    # the new worker serves: many new connections, all fine
    for i in range(30):
        eq(d.get("/healthz").status, 200, "request %d after repair" % i)


def test_kill_refresher_and_logger_repaired():
    d = Daemon(workers=2)
    d.wait_roles()
    _kill_and_wait_replacement(d, "refresher")
    _kill_and_wait_replacement(d, "logger")
    d.wait_roles()
    eq(d.get("/healthz").status, 200, "/healthz after repairs")


def test_kill_both_workers_repaired():
    d = Daemon(workers=2)
    d.wait_roles()
    before = d.workers_pids()
    for p in before:
        os.kill(p, signal.SIGKILL)

    def back():
        now = d.workers_pids()
        return len(now) == 2 and not set(now) & set(before)
    wait_for(back, 5.0, what="two new workers after killing both")
    wait_for(lambda: d.get("/healthz", timeout=2).status == 200, 5.0,
             what="/healthz after both workers were replaced")


def test_workers_zero_means_one_per_cpu():
    n = os.cpu_count()
    d = Daemon(workers=0)
    d.wait_roles(workers=n)
    eq(len(d.workers_pids()), n, "workers with workers = 0 on %d CPUs" % n)


def test_privilege_drop_to_nobody():
    if os.geteuid() != 0:
        raise Skip("not root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user nobody")
    d = Daemon(workers=2, top={"user": "nobody"})
    kids = d.wait_roles()
    eq(d.get("/healthz").status, 200, "/healthz after dropping privileges")
    want_uid = "\t".join([str(pw.pw_uid)] * 4)
    want_gid = "\t".join([str(pw.pw_gid)] * 4)
    for pid, role in kids.items():
        st = proc_status(pid)
        eq(st.get("Uid"), want_uid, "%s %d Uid" % (role, pid))
        eq(st.get("Gid"), want_gid, "%s %d Gid" % (role, pid))
        eq(st.get("NoNewPrivs"), "1", "%s %d NoNewPrivs" % (role, pid))
        groups = st.get("Groups", "").split()
        check("0" not in groups, "%s %d keeps root's group: %r"
              % (role, pid, groups))
    # it still writes its database (logger, admin login)
    tok = d.login()
    eq(d.admin("GET", "/v2/status", tok).status, 200, "/v2/status as nobody")


def test_repeated_crashes_still_repaired():
    """A worker that keeps dying is restarted each time (with backoff),
    and the daemon keeps serving through it."""
    d = Daemon(workers=2)
    d.wait_roles()
    for i in range(4):
        victim = d.workers_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(d.workers_pids()) == 2 and
                 victim not in d.workers_pids(), 15,
                 what="worker replaced after crash %d" % (i + 1))
        eq(d.get("/healthz").status, 200, "/healthz after crash %d" % (i + 1))
    check(d.running(), "master gave up")
    log = d.log()
    n = len(re.findall(r"worker \d+ .*(?:killed|died|exited|signal)", log))
    check(n >= 4, "only %d of 4 crashes logged" % n)
